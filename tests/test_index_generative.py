"""GenerativeIndex with the generative layer: build, every mode, save -> load -> identical, add without retraining."""
import dataclasses

import numpy as np
import pytest

from genir.config import CodecConfig, IndexConfig, TrainConfig
from genir.data.types import Corpus, Qrels, Queries
from genir.index import MODES, GenerativeIndex
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
    gen_index.save(tmp_path / "tuned")
    back = GenerativeIndex.load(tmp_path / "tuned", device="cpu")
    assert back.semantic.hybrid == gen_index.semantic.hybrid
    assert back.semantic.hybrid.dev_ndcg10 == pytest.approx(out["chosen"]["dev_ndcg10"])


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
