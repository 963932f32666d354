"""Distillation from the dense index into the ID decoder (TrainConfig.distill): the soft targets, the teacher's
neighbours and the loss, then a build with it."""
import dataclasses

import numpy as np
import pyarrow as pa
import pytest
import torch

from genir.config import CodecConfig, EmbedConfig, IndexConfig, ModelConfig, TrainConfig
from genir.data.types import Corpus, Qrels, Queries
from genir.generative import Teacher
from genir.index import GenerativeIndex, distill_choice
from genir.model import IdDecoder, soft_targets
from tests.synthetic import synthetic_corpus


def test_soft_targets_sum_the_weights_of_candidates_under_the_gold_prefix():
    gold = torch.tensor([[1, 2, 0]])
    cands = torch.tensor([[[1, 2, 0], [1, 3, 0], [0, 2, 0], [1, 2, 1]]])  # the gold document first
    w = torch.tensor([[0.4, 0.3, 0.2, 0.1]])
    levels = [soft_targets(gold, cands, w, level=t, vocab=4)[0].tolist() for t in range(3)]
    # level 0: every candidate counts; level 1: those starting with 1; level 2: those starting with 1, 2
    np.testing.assert_allclose(levels, [[0.2, 0.8, 0, 0], [0, 0, 0.625, 0.375], [0.8, 0.2, 0, 0]], atol=1e-6)


def test_the_loss_is_the_plain_cross_entropy_without_weight_or_with_a_one_hot_teacher():
    torch.manual_seed(0)
    dec = IdDecoder((4, 4, 2), d_model=16, n_layers=1, n_heads=2, d_mem=16, dropout=0.0).eval()
    mem, mask = torch.randn(3, 2, 16), torch.ones(3, 2, dtype=torch.bool)
    codes = torch.tensor([[0, 1, 1], [3, 2, 0], [1, 1, 1]])
    others = torch.tensor([[[2, 0, 0]], [[3, 3, 1]], [[1, 0, 0]]])
    cands = torch.cat([codes[:, None], others], dim=1)
    plain = dec.loss(mem, mask, codes)
    one_hot = torch.tensor([[1.0, 0.0]] * 3)
    spread = torch.tensor([[0.5, 0.5]] * 3)
    assert torch.allclose(dec.loss(mem, mask, codes, soft=(cands, spread), soft_weight=0.0), plain)
    assert torch.allclose(dec.loss(mem, mask, codes, soft=(cands, one_hot), soft_weight=1.0), plain, atol=1e-6)
    assert not torch.allclose(dec.loss(mem, mask, codes, soft=(cands, spread), soft_weight=1.0), plain)


def test_teacher_pools_each_text_and_ranks_documents_by_cosine():
    docs = np.eye(4, 8, dtype=np.float32)  # four orthogonal unit documents
    # text 0: two tokens averaging to doc 2 (plus a little of doc 1); text 1: one token on doc 0
    states = [torch.tensor([[0.0, 0.2, 2.0, 0, 0, 0, 0, 0], [0.0, 0.0, 1.0, 0, 0, 0, 0, 0]]),
              torch.tensor([[3.0, 0, 0, 0, 0, 0, 0, 0]])]
    flat = torch.cat(states).half()
    offsets = torch.tensor([0, 2, 3])
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    teacher = Teacher.build(flat, offsets, text_idx=np.array([0, 1, 0]), doc_idx=np.array([2, 0, 1]), doc_emb=docs,
                            codes=codes, k=2, temperature=0.1, chunk=1)
    assert teacher.docs[0].tolist() == [2, 1] and teacher.docs[1, 0] == 0  # text 1's second is a tie at 0
    np.testing.assert_allclose(teacher.gold_sims.numpy(), [teacher.sims[0, 0], 1.0, teacher.sims[0, 1]], atol=1e-3)
    cand, weights = teacher.candidates(torch.tensor([0, 0]), torch.tensor([0, 2]))  # examples 0 and 2 (gold 2, 1)
    # example 0: gold doc 2 is also the first neighbour, which is masked out (weight 0), not counted twice
    assert cand[0, :, 0].tolist() == [1, 1, 0] and weights[0, 1] == 0 and abs(weights[0].sum() - 1) < 1e-6
    # example 2 targets doc 1, the second neighbour: the nearer doc 2 gets the larger weight
    assert weights[1, 1] > weights[1, 0] and weights[1, 2] == 0
    with pytest.raises(ValueError, match="distill_temperature"):
        Teacher.build(flat, offsets, np.array([0]), np.array([0]), docs, codes, k=2, temperature=0.0)


def _config(distill: float, when: str = "always", **embed) -> IndexConfig:
    return IndexConfig(
        embed=EmbedConfig(**embed), codec=CodecConfig(scheme="rqkmeans", levels=2, codebook_size=4),
        train=dataclasses.replace(TrainConfig(), max_steps=10, batch_size=32, pseudo_per_doc=1, checkpoint_every=0,
                                  distill=distill, distill_k=4, distill_when=when))


class _Ranker:
    """A stand-in for the dense index / BM25 / embedder: every query gets ``order`` (doc_idx, best first)."""

    def __init__(self, order: list[int]) -> None:
        self.order = np.array(order)

    def encode(self, texts):
        return np.zeros((len(texts), 4), np.float32)

    def search(self, queries, k, **_):
        idx = np.tile(self.order[:k], (len(queries), 1))
        return np.zeros(idx.shape, np.float32), idx


def test_the_distillation_rule_distils_only_when_dense_ranks_the_train_queries_better_than_bm25():
    corpus = Corpus.from_records([f"d{i}" for i in range(12)], [""] * 12, [f"text {i}" for i in range(12)])
    queries = Queries.from_records(["q0", "q1", "unjudged"], ["a", "b", "c"])
    qrels = Qrels(pa.table({"query_id": ["q0", "q1", "elsewhere"], "doc_id": ["d0", "d0", "d1"],
                            "relevance": pa.array([1, 1, 1], pa.int32())}))
    gold_first, gold_fifth = _Ranker(list(range(12))), _Ranker([5, 6, 7, 8, 0, 1, 2, 3, 4, 9, 10, 11])
    cfg = _config(0.5, when="dense_beats_bm25")
    wins = distill_choice(cfg, gold_first, gold_first, gold_fifth, corpus, queries, qrels)
    assert wins["distill"] == 0.5 and wins["queries"] == 2  # the unjudged query and the foreign qrel are left out
    assert wins["dense_ndcg10"] == 1.0 and 0 < wins["bm25_ndcg10"] < 1
    loses = distill_choice(cfg, gold_first, gold_fifth, gold_first, corpus, queries, qrels)
    assert loses["distill"] == 0.0 and loses["dense_ndcg10"] < loses["bm25_ndcg10"]
    tie = distill_choice(cfg, gold_first, gold_first, gold_first, corpus, queries, qrels)
    assert tie["distill"] == 0.0  # the teacher has to be better, not as good
    assert distill_choice(_config(0.5, when="always"), gold_first, gold_fifth, gold_first, corpus, queries,
                          qrels)["distill"] == 0.5
    assert distill_choice(cfg, gold_first, gold_first, gold_fifth, corpus, None, None)["distill"] == 0.0
    trained_top = dataclasses.replace(cfg, model=dataclasses.replace(ModelConfig(), trainable_encoder_layers=1))
    assert distill_choice(trained_top, gold_first, gold_first, gold_fifth, corpus, queries, qrels)["distill"] == 0.0


def test_a_default_build_applies_the_rule_and_records_it(tmp_path):
    corpus = synthetic_corpus(6)
    cfg = dataclasses.replace(_config(0.5), train=dataclasses.replace(_config(0.5).train, distill_when="dense_beats_bm25"))
    assert TrainConfig().distill_when == "dense_beats_bm25" and TrainConfig().distill == 0.5
    zero_shot = GenerativeIndex.build(corpus, cfg, train_queries=None, train_qrels=None, device="cpu",
                                      workdir=tmp_path / "a", progress=False)
    assert zero_shot.semantic.meta["distill"]["distill"] == 0.0 and "teacher" not in zero_shot.meta["build_seconds"]
    assert zero_shot.semantic.meta["train_config"]["distill"] == 0.0
    queries = Queries.from_records(["q1", "q2"], ["telescope galaxy", "flour butter"])
    qrels = Qrels(pa.table({"query_id": ["q1", "q2"], "doc_id": ["astronomy-0", "cooking-1"], "relevance": [1, 1]}))
    labelled = GenerativeIndex.build(corpus, cfg, train_queries=queries, train_qrels=qrels, device="cpu",
                                     workdir=tmp_path / "b", progress=False)
    record = labelled.semantic.meta["distill"]
    assert record["queries"] == 2 and {"dense_ndcg10", "bm25_ndcg10"} <= set(record)
    assert record["distill"] == (0.5 if record["dense_ndcg10"] > record["bm25_ndcg10"] else 0.0)
    assert ("teacher" in labelled.meta["build_seconds"]) == (record["distill"] > 0)
    assert labelled.semantic.meta["train_config"]["distill"] == record["distill"]


def test_an_unknown_distill_rule_or_weight_is_refused_before_any_work(tmp_path):
    corpus = synthetic_corpus(2)
    bad_precision = dataclasses.replace(_config(0.0), train=dataclasses.replace(_config(0.0).train, precision="fp8"))
    for cfg, match in ((_config(0.5, when="sometimes"), "distill_when"), (_config(1.5), r"\[0, 1\]"),
                       (bad_precision, "unknown train.precision 'fp8'")):
        with pytest.raises(ValueError, match=match):
            GenerativeIndex.build(corpus, cfg, train_queries=None, train_qrels=None, device="cpu",
                                  workdir=tmp_path / "w", progress=False)
        assert not (tmp_path / "w").exists()


def test_a_build_with_distillation_trains_on_the_teachers_targets(tmp_path):
    corpus = synthetic_corpus(6)
    plain = GenerativeIndex.build(corpus, _config(0.0), train_queries=None, train_qrels=None, device="cpu",
                                  workdir=tmp_path / "a", progress=False)
    distilled = GenerativeIndex.build(corpus, _config(0.5), train_queries=None, train_qrels=None, device="cpu",
                                      workdir=tmp_path / "b", progress=False)
    assert "teacher" in distilled.meta["build_seconds"] and "teacher" not in plain.meta["build_seconds"]
    assert distilled.semantic.meta["train_config"]["distill"] == 0.5
    a, b = (i.semantic.meta["train"]["final_loss"] for i in (plain, distilled))
    assert a != b  # same seed and data: only the teacher's targets differ
    res = distilled.search_arrays(["galaxy orbit star"], 5, mode="generative")
    assert (res.doc_idx[res.doc_idx >= 0] < len(corpus)).all()


def test_distillation_refuses_a_dense_index_of_another_model_or_a_trained_encoder(tmp_path):
    corpus = synthetic_corpus(2)
    emb = np.random.default_rng(0).standard_normal((len(corpus), 384)).astype(np.float32)
    with pytest.raises(ValueError, match="one model"):
        GenerativeIndex.build(corpus, _config(0.5, model="/some/other-model"), train_queries=None, train_qrels=None,
                              device="cpu", workdir=tmp_path, progress=False, embeddings=emb)
    trained_top = dataclasses.replace(_config(0.5), model=dataclasses.replace(ModelConfig(), trainable_encoder_layers=1))
    with pytest.raises(ValueError, match="trainable_encoder_layers=0"):
        GenerativeIndex.build(corpus, trained_top, train_queries=None, train_qrels=None, device="cpu",
                              workdir=tmp_path, progress=False, embeddings=emb)
