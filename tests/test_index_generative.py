"""GenerativeIndex with the generative layer: build, every mode, save -> load -> identical, add without retraining."""
import dataclasses

import numpy as np
import pytest

from genir.config import CodecConfig, IndexConfig, TrainConfig, to_dict
from genir.data.types import Corpus, Qrels, Queries
from genir.index import MODES, GenerativeIndex, manifest_of
from genir.semantic import check_decoded_ids
from tests.synthetic import synthetic_corpus


def tiny_config(scheme: str = "rqkmeans") -> IndexConfig:
    return IndexConfig(
        codec=CodecConfig(scheme=scheme, levels=2, codebook_size=4),
        # validity, persistence and updates are under test here, not quality: a few steps suffice
        train=dataclasses.replace(TrainConfig(), max_steps=12, batch_size=32, pseudo_per_doc=1, checkpoint_every=0),
    )


@pytest.fixture(scope="module")
def gen_index(tmp_path_factory):
    corpus = synthetic_corpus(6)
    queries = Queries.from_records(["q1", "q2"], ["telescope galaxy", "flour butter"])
    import pyarrow as pa

    qrels = Qrels(pa.table({"query_id": ["q1", "q2"], "doc_id": ["astronomy-0", "cooking-1"], "relevance": [1, 1]}))
    return GenerativeIndex.build(corpus, tiny_config(), train_queries=queries, train_qrels=qrels, device="cpu",
                                 workdir=tmp_path_factory.mktemp("work"), progress=False)


def test_all_modes_available_and_valid(gen_index):
    assert gen_index.modes == MODES
    for mode in MODES:
        res = gen_index.search_arrays(["galaxy orbit star", "stock bond"], 5, mode=mode)
        valid = res.doc_idx[res.doc_idx >= 0]
        assert len(valid) > 0 and valid.max() < len(gen_index.corpus)
        for row in res.doc_idx:
            row = row[row >= 0]
            assert len(set(row.tolist())) == len(row), f"{mode}: duplicate documents"
        assert len(res.path) == 2


def test_generative_outputs_are_real_documents(gen_index):
    # checked against the corpus table and its ID array, not the trie: and the check must be able to fail
    queries = ["recipe oven", "vaccine dose", "inflation"]
    sem = gen_index.semantic

    def check(**kw):
        out = sem.retriever.decode(queries, k=10, beam_size=10, **kw)
        return check_decoded_ids(out.codes, out.doc_idx, sem.ids, num_docs=len(gen_index.corpus),
                                 deleted=gen_index.deleted)

    assert (check().outputs, check().valid) == (30, 30)
    np.testing.assert_array_equal(sem.retriever.decode(queries, k=10, beam_size=10).doc_idx,
                                  gen_index.search_arrays(queries, 10, mode="generative").doc_idx)  # what users get
    free = check(constrained=False)  # the seeded, barely trained model leaves the trie without its mask
    assert free.outputs == 30 and free.valid < 30


def test_save_load_identical_every_mode(gen_index, tmp_path):
    gen_index.save(tmp_path / "idx")
    back = GenerativeIndex.load(tmp_path / "idx", device="cpu")
    queries = ["galaxy telescope", "bond market", "clinical trial virus"]
    for mode in MODES:
        a, b = gen_index.search_arrays(queries, 8, mode=mode), back.search_arrays(queries, 8, mode=mode)
        np.testing.assert_array_equal(a.doc_idx, b.doc_idx)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)
        assert a.path == b.path


def test_add_is_decodable_without_retraining(gen_index, tmp_path):
    gen_index.save(tmp_path / "idx")
    idx = GenerativeIndex.load(tmp_path / "idx", device="cpu")
    new = Corpus.from_records(["zoo-1"], ["zebra giraffe"], ["zebra giraffe savanna lion zoo"])
    (row,) = idx.add(new).tolist()
    code = idx.semantic.ids[row]
    assert idx.semantic.trie.lookup(code[None])[0] == row
    assert len({tuple(c) for c in idx.semantic.ids.tolist()}) == len(idx.semantic.ids), "IDs stay unique"
    assert "zoo-1" in {h.doc_id for h in idx.search(["zebra giraffe savanna"], k=3, mode="hybrid")[0]}
    assert idx.semantic.unseen().tolist() == [False] * row + [True]  # added after training: the gate knows
    idx.save(tmp_path / "idx")
    assert GenerativeIndex.load(tmp_path / "idx", device="cpu").semantic.unseen()[row]
    idx.remove(["zoo-1"])
    assert idx.semantic.trie.lookup(code[None])[0] == -1
    for mode in MODES:
        assert "zoo-1" not in {h.doc_id for h in idx.search(["zebra giraffe savanna"], k=10, mode=mode)[0]}


def test_tune_chooses_best_and_is_stored(gen_index, tmp_path):
    import pyarrow as pa

    queries = Queries.from_records(["t1", "t2"], ["galaxy star orbit", "butter sugar oven"])
    qrels = Qrels(pa.table({"query_id": ["t1", "t2"], "doc_id": ["astronomy-3", "cooking-2"], "relevance": [1, 1]}))
    out = gen_index.tune(queries, qrels)
    assert out["chosen"]["dev_ndcg10"] == pytest.approx(max(out["candidates"].values()))
    assert any(name.startswith("prefix_dense") for name in out["candidates"])
    assert to_dict(gen_index.cfg.hybrid) == out["chosen"]  # served from here on, one home: cfg.hybrid
    gen_index.save(tmp_path / "tuned")
    back = GenerativeIndex.load(tmp_path / "tuned", device="cpu")
    assert back.cfg.hybrid == gen_index.cfg.hybrid
    assert back.cfg.hybrid.dev_ndcg10 == pytest.approx(out["chosen"]["dev_ndcg10"])
    assert manifest_of(tmp_path / "tuned")["config"]["hybrid"] == out["chosen"]


def _rewrite(version, rel: str, change) -> None:
    """Edit a file of an index version as an older genir would have written it, keeping the manifest's checksum."""
    import hashlib
    import json

    path = version / rel
    path.write_text(json.dumps(change(json.loads(path.read_text())), indent=2))
    manifest = json.loads((version / "manifest.json").read_text())
    if rel in manifest["files"]:
        manifest["files"][rel] = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "bytes": path.stat().st_size}
        (version / "manifest.json").write_text(json.dumps(manifest, indent=2))


def test_old_index_with_fusion_only_in_hybrid_json_still_serves_it(gen_index, tmp_path):
    """Before the manifest held the served fusion, config.hybrid kept the default and the tuned fusion lived in
    semantic/hybrid.json (without the fields added since): such an index loads its tuned fusion; a new index
    serves its manifest's even when hybrid.json says otherwise (one source of truth)."""
    from genir.config import HybridConfig
    from genir.store import current_version

    tuned = dataclasses.replace(HybridConfig(), method="gated", gate_low=0.0, gate_high=0.9, weight_bm25=0.5,
                                dev_ndcg10=0.5)
    queries = ["galaxy telescope", "bond market", "clinical trial virus"]
    index = GenerativeIndex(dataclasses.replace(gen_index.cfg, hybrid=tuned), gen_index.corpus, gen_index.embeddings,
                            gen_index.dense, gen_index.bm25, semantic=gen_index.semantic, device="cpu")
    want = index.search_arrays(queries, 8, mode="hybrid")
    index.save(tmp_path / "old")
    version = current_version(tmp_path / "old")
    old_fields = lambda d: {k: v for k, v in d.items() if k != "unseen_second"}  # noqa: E731
    _rewrite(version, "manifest.json", lambda m: {**m, "config": {**m["config"], "hybrid": old_fields(to_dict(HybridConfig()))}})
    (version / "semantic" / "hybrid.json").write_text("{}")  # genir no longer writes this copy; old indexes had it
    _rewrite(version, "semantic/hybrid.json", lambda _: old_fields(to_dict(tuned)))
    back = GenerativeIndex.load(tmp_path / "old", device="cpu")
    assert back.cfg.hybrid == tuned
    got = back.search_arrays(queries, 8, mode="hybrid")
    np.testing.assert_array_equal(got.doc_idx, want.doc_idx)
    assert got.path == want.path
    # a manifest that holds a tuned fusion is the one source: a differing hybrid.json copy is not read
    _rewrite(version, "manifest.json", lambda m: {**m, "config": {**m["config"], "hybrid": to_dict(tuned)}})
    _rewrite(version, "semantic/hybrid.json", lambda h: to_dict(HybridConfig(method="interpolate", dev_ndcg10=0.1)))
    assert GenerativeIndex.load(tmp_path / "old", device="cpu").cfg.hybrid == tuned


def test_fusion_from_reads_the_served_fusion_which_has_one_home(gen_index, tmp_path):
    """The served fusion lives in the manifest's config.hybrid only (no top-level "hybrid", no semantic/hybrid.json
    copy), and what `genir index --fusion-from` carries (manifest_fusion) is read from there; an index written
    before config.hybrid held it carries its top-level copy."""
    from genir.config import HybridConfig
    from genir.index import manifest_fusion
    from genir.store import current_version

    tuned = dataclasses.replace(HybridConfig(), method="gated", gate_low=0.1, gate_high=0.8, dev_ndcg10=0.4)
    GenerativeIndex(dataclasses.replace(gen_index.cfg, hybrid=tuned), gen_index.corpus, gen_index.embeddings,
                    gen_index.dense, gen_index.bm25, semantic=gen_index.semantic, device="cpu").save(tmp_path / "idx")
    manifest = manifest_of(tmp_path / "idx")
    version = current_version(tmp_path / "idx")
    assert "hybrid" not in manifest and not (version / "semantic" / "hybrid.json").exists()
    assert manifest["config"]["hybrid"] == to_dict(tuned) and manifest_fusion(manifest) == tuned
    # as written before the manifest's config held the served fusion: default there, the tuned one at the top
    old = {**manifest, "config": {**manifest["config"], "hybrid": to_dict(HybridConfig())}, "hybrid": to_dict(tuned)}
    assert manifest_fusion(old) == tuned
    # an index that serves a tuned fusion in config.hybrid is the one source, whatever an old copy says
    assert manifest_fusion({**manifest, "hybrid": to_dict(HybridConfig(method="interpolate"))}) == tuned
    assert manifest_fusion({**manifest, "modes": ["dense", "bm25", "rrf"]}) is None  # built without the model


def test_rrf_mode_uses_the_configured_reciprocal_rank_constant(gen_index):
    from genir.config import HybridConfig
    from genir.hybrid import rrf

    queries = ["galaxy telescope", "bond market"]
    default = gen_index.search_arrays(queries, 5, mode="rrf")
    index = GenerativeIndex(dataclasses.replace(gen_index.cfg, hybrid=HybridConfig(k_rrf=1)), gen_index.corpus,
                            gen_index.embeddings, gen_index.dense, gen_index.bm25, semantic=gen_index.semantic,
                            device="cpu")
    got = index.search_arrays(queries, 5, mode="rrf")
    ds, di = gen_index.dense.search(gen_index.embedder.encode(queries), 100)
    bs, bi = gen_index.bm25.search(queries, 100, deleted=gen_index.deleted)
    for res, k_rrf in ((default, 60), (got, 1)):
        want = rrf([(di, ds), (bi, bs)], k=5, k_rrf=k_rrf)
        np.testing.assert_array_equal(res.doc_idx, want[0])
        np.testing.assert_allclose(res.scores, want[1], rtol=1e-6)
    assert not np.allclose(default.scores, got.scores)


@pytest.mark.parametrize("scheme", ["rqvae", "hkmeans", "atomic"])
def test_every_id_scheme_builds_a_searchable_index(scheme, tmp_path):
    cfg = tiny_config(scheme)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=2))
    idx = GenerativeIndex.build(synthetic_corpus(3), cfg, device="cpu", progress=False)
    assert idx.semantic.meta["codec_stats"]["scheme"] == scheme
    res = idx.search_arrays(["galaxy orbit", "bond rate"], 5, mode="generative")
    got = res.doc_idx[res.doc_idx >= 0]
    assert len(got) > 0
    np.testing.assert_array_equal(idx.semantic.trie.lookup(idx.semantic.ids[got]), got)
    idx.save(tmp_path / scheme)
    back = GenerativeIndex.load(tmp_path / scheme, device="cpu")
    np.testing.assert_array_equal(back.search_arrays(["galaxy orbit", "bond rate"], 5, mode="generative").doc_idx,
                                  res.doc_idx)


STAGES_BY_MODE = {  # the stages genir.timing must see for one search in each mode (default fusion: RRF)
    "dense": {"encode", "dense"},
    "bm25": {"bm25"},
    "rrf": {"encode", "dense", "bm25", "fusion"},
    "generative": {"encode_memory", "decode", "fusion"},
    "hybrid": {"encode", "decode", "dense", "bm25", "fusion"},  # one MiniLM pass, "encode", serves both (default: shared)
}


def test_search_timings_fill_every_stage_of_the_mode_and_do_not_change_results(gen_index):
    import time

    from genir.config import HybridConfig
    from genir.timing import STAGES, collect

    gdr = GenerativeIndex(dataclasses.replace(gen_index.cfg, hybrid=HybridConfig(method="prefix_dense")),
                          gen_index.corpus, gen_index.embeddings, gen_index.dense, gen_index.bm25,
                          semantic=gen_index.semantic, device="cpu")
    cases = [(gen_index, mode, want) for mode, want in STAGES_BY_MODE.items()]
    cases.append((gdr, "hybrid", STAGES_BY_MODE["hybrid"] | {"prefix"}))
    queries = ["galaxy telescope", "bond market", "oven butter"]
    for index, mode, want in cases:
        plain = index.search_arrays(queries, 5, mode=mode)
        seconds: dict[str, float] = {}
        started = time.perf_counter()
        timed = index.search_arrays(queries, 5, mode=mode, timings=seconds)
        wall = time.perf_counter() - started
        np.testing.assert_array_equal(timed.doc_idx, plain.doc_idx)
        np.testing.assert_array_equal(timed.scores, plain.scores)
        assert timed.path == plain.path
        assert set(seconds) == want, (mode, index.cfg.hybrid.method)
        assert set(seconds) <= set(STAGES) and all(s > 0 for s in seconds.values())
        assert sum(seconds.values()) <= wall  # exclusive times: nothing counted twice
        with collect() as outer:  # search() adds the Hit objects to what search_arrays measures
            hits = index.search(queries, 5, mode=mode)
        assert set(outer) == want | {"hits"}
        assert [[h.doc_id for h in row] for row in hits] == [[index._doc_ids[i] for i in row if i >= 0]
                                                             for row in plain.doc_idx]
