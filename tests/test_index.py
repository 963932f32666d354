"""GenerativeIndex over a small synthetic corpus: build, search modes, save -> load -> identical results."""
import dataclasses

import numpy as np
import pytest

from genir.config import IndexConfig
from genir.data.types import Corpus
from genir.index import GenerativeIndex
from tests.synthetic import synthetic_corpus

@pytest.fixture(scope="module")
def base_index():
    return GenerativeIndex.build(synthetic_corpus(), IndexConfig(generative=False), device="cpu", progress=False)


@pytest.mark.parametrize("mode", ["dense", "bm25", "rrf"])
def test_modes_find_the_topic(base_index, mode):
    hits = base_index.search(["galaxy telescope orbit", "bake a cake with butter"], k=5, mode=mode)
    assert [len(h) for h in hits] == [5, 5]
    assert all(h.doc_id.startswith("astronomy") for h in hits[0])
    assert all(h.doc_id.startswith("cooking") for h in hits[1])
    scores = [h.score for h in hits[0]]
    assert scores == sorted(scores, reverse=True)
    assert [h.rank for h in hits[0]] == [1, 2, 3, 4, 5]


def test_bm25_exact_token(base_index):
    top = base_index.search(["item7finance"], k=1, mode="bm25")[0][0]
    assert top.doc_id == "finance-7"


def test_save_load_identical(base_index, tmp_path):
    base_index.save(tmp_path / "idx")
    loaded = GenerativeIndex.load(tmp_path / "idx", device="cpu")
    queries = ["inflation and bonds", "vaccine trial", "planet nebula"]
    for mode in ("dense", "bm25", "rrf"):
        a = base_index.search_arrays(queries, 10, mode=mode)
        b = loaded.search_arrays(queries, 10, mode=mode)
        np.testing.assert_array_equal(a.doc_idx, b.doc_idx)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    assert loaded.cfg == base_index.cfg
    assert loaded.corpus.table.equals(base_index.corpus.table)


@pytest.mark.parametrize("bad,match", [
    (dict(k=0), "k must be a positive integer"),
    (dict(mode="magic"), "unknown mode 'magic'; expected one of"),
    (dict(mode="generative"), "needs the generative model"),
    (dict(queries=["  "]), "empty query"),
])
def test_bad_search_arguments(base_index, bad, match):
    args = {"queries": ["stock"], "k": 3, "mode": "dense", **bad}
    with pytest.raises(ValueError, match=match):
        base_index.search(args.pop("queries"), args.pop("k"), **args)


def test_k_larger_than_corpus(base_index):
    res = base_index.search_arrays(["stock"], 100, mode="dense")
    assert res.doc_idx.shape == (1, 100)
    assert (res.doc_idx[0, :len(base_index)] >= 0).all() and (res.doc_idx[0, len(base_index):] == -1).all()


def test_hnsw_factory():
    from genir.config import DenseConfig

    cfg = IndexConfig(generative=False, dense=DenseConfig(factory="HNSW32"))
    idx = GenerativeIndex.build(synthetic_corpus(4), cfg, device="cpu", progress=False)
    hits = idx.search(["galaxy telescope"], k=3, mode="dense")[0]
    assert hits[0].doc_id.startswith("astronomy")


def test_bad_factory_string():
    from genir.config import DenseConfig

    with pytest.raises(ValueError, match="faiss could not build factory string 'Nope'"):
        GenerativeIndex.build(synthetic_corpus(2), IndexConfig(generative=False, dense=DenseConfig(factory="Nope")),
                              device="cpu", progress=False)


def test_add_and_remove_without_rebuild(tmp_path):
    idx = GenerativeIndex.build(synthetic_corpus(3), IndexConfig(generative=False), device="cpu", progress=False)
    new = Corpus.from_records(["zoo-1"], ["zebra giraffe"], ["zebra giraffe savanna lion zoo"])
    assert idx.add(new).tolist() == [12]
    for mode in ("dense", "bm25"):
        assert idx.search(["zebra giraffe savanna"], k=1, mode=mode)[0][0].doc_id == "zoo-1"
    with pytest.raises(ValueError, match="already in the index"):
        idx.add(new)
    idx.remove(["zoo-1", "cooking-0"])
    for mode in ("dense", "bm25"):
        found = {h.doc_id for h in idx.search(["zebra giraffe savanna recipe oven"], k=20, mode=mode)[0]}
        assert "zoo-1" not in found and "cooking-0" not in found
    assert len(idx) == 11
    with pytest.raises(ValueError, match="not in the index"):
        idx.remove(["zoo-1"])
    idx.save(tmp_path / "i")
    back = GenerativeIndex.load(tmp_path / "i", device="cpu")
    assert len(back) == 11 and back.deleted.sum() == 2
    np.testing.assert_array_equal(back.search_arrays(["recipe oven"], 5, mode="bm25").doc_idx,
                                  idx.search_arrays(["recipe oven"], 5, mode="bm25").doc_idx)


def test_index_config_has_no_dead_seed_and_old_manifests_still_load(base_index, tmp_path):
    # IndexConfig.seed was saved but never read; indexes written with it must keep loading, same config
    import json

    from genir.config import from_dict, to_dict
    from genir.store import current_version

    assert "seed" not in to_dict(IndexConfig())
    assert from_dict(IndexConfig, {**to_dict(IndexConfig()), "seed": 3}) == IndexConfig()
    base_index.save(tmp_path / "idx")
    manifest = current_version(tmp_path / "idx") / "manifest.json"
    data = json.loads(manifest.read_text())
    data["config"]["seed"] = 0  # as every manifest written before the field went away
    manifest.write_text(json.dumps(data))
    assert GenerativeIndex.load(tmp_path / "idx", device="cpu").cfg == base_index.cfg
    with pytest.raises(ValueError, match="unknown IndexConfig fields"):
        from_dict(IndexConfig, {"seeds": 1})


def test_changed_encoder_weights_are_detected_at_load(base_index, tmp_path):
    """The manifest records a sha256 of the text encoder's weights; other installed weights fail the load with
    one clear error, and an index written before the field loads unchecked."""
    import json

    from genir.embed import weights_sha256
    from genir.store import current_version

    base_index.save(tmp_path / "idx")
    manifest_path = current_version(tmp_path / "idx") / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["encoder_sha256"] == weights_sha256("all-MiniLM-L6-v2", "cpu")
    manifest_path.write_text(json.dumps({**manifest, "encoder_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="has other weights .* than this index was built with"):
        GenerativeIndex.load(tmp_path / "idx", device="cpu")
    manifest_path.write_text(json.dumps({k: v for k, v in manifest.items() if k != "encoder_sha256"}))
    GenerativeIndex.load(tmp_path / "idx", device="cpu")


def test_seq2seq_encoder_must_be_the_embedding_model():
    from genir.config import EmbedConfig, ModelConfig

    cfg = IndexConfig(embed=EmbedConfig(model="sentence-transformers/all-MiniLM-L6-v2"))  # an alias: same weights
    from genir.embed import same_model

    assert cfg.model.encoder != cfg.embed.model and same_model(cfg.model.encoder, cfg.embed.model)
    with pytest.raises(ValueError, match="set both to one model"):
        GenerativeIndex.build(synthetic_corpus(1), dataclasses.replace(cfg, model=ModelConfig(encoder="/elsewhere")),
                              device="cpu", progress=False)


def test_bm25_search_starts_no_thread_pool_and_matches_the_pooled_scoring(base_index, monkeypatch):
    import bm25s

    queries = ["inflation and bonds", "vaccine trial", "item7finance"]
    bm25 = base_index.bm25
    docs, scores = bm25.retriever.retrieve(bm25._tokenize(queries), k=10, show_progress=False, n_threads=2)

    def no_pool(*args, **kwargs):
        raise AssertionError("Bm25Index.search started a thread pool (per-call thread start-up: single-query latency)")

    monkeypatch.setattr(bm25s, "ThreadPoolExecutor", no_pool)
    got_scores, got_docs = bm25.search(queries, 10)
    keep = scores > 0
    np.testing.assert_array_equal(got_docs, np.where(keep, docs, -1))
    np.testing.assert_array_equal(got_scores, np.where(keep, scores, -np.inf).astype(np.float32))
