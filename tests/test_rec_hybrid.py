"""The hybrid recommendation mode (genir.rec.hybrid): the generative beam fused with SASRec, tuned on the
validation split only, stored in the manifest's config.hybrid, served and evaluated by the CLI; an index saved
before the mode serves it with the untuned default fusion."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from genir import store
from genir.config import CodecConfig, RecConfig, RecHybridConfig, to_dict
from genir.rec import hybrid
from genir.rec.metrics import rec_metrics
from genir.rec.protocol import Interactions, eval_queries
from genir.rec.recommender import Recommender, _hybrid_users, _sample
from genir.rec.synthetic import planted_sequences
from tests.test_rec_layout import IDS, SETS, _genir  # the tiny CLI build of the layout tests

CFG = RecConfig(item_embedding="cooc", cooc_dim=8, codec=CodecConfig(scheme="rqkmeans", levels=2, codebook_size=8),
                d_model=16, encoder_layers=1, decoder_layers=1, heads=2, d_ff=32, max_epochs=2, beam_size=10,
                bf16=False, sasrec_dim=16, sasrec_layers=1, user_buckets=50)


# ---------------------------------------------------------------------------------------------- planted fusion
class _Beam:
    """A stand-in generative ranker: a fixed beam per query (the query is the history's first item - 50)."""

    def __init__(self, items: np.ndarray, logp: np.ndarray) -> None:
        self.items, self.logp, self.beam_size = items, logp, items.shape[1]

    def search(self, histories, lengths, users, *, k):
        rows = histories[:, 0] - 50
        return self.items[rows, :k], self.logp[rows, :k]


class _SASRec:
    """A stand-in SASRec: fixed logits over every item per query."""

    def __init__(self, logits: np.ndarray) -> None:
        self.logits = logits
        self.model = type("M", (), {"num_items": logits.shape[1]})()

    def scores(self, histories, lengths):
        return self.logits[histories[:, 0] - 50].astype(np.float32)


def _planted(num_items: int = 100, queries: int = 20, beam: int = 10):
    """Generative right (confident, target first) on the first half of the queries and SASRec right (target
    first by far) on the second; each part ranks the other half's target outside its top 10."""
    half = queries // 2
    targets = np.arange(queries)
    beam_items = np.tile(60 + np.arange(beam), (queries, 1))
    beam_logp = np.full((queries, beam), np.log(0.05))
    beam_items[:half, 0], beam_logp[:half, 0], beam_logp[:half, 1:] = targets[:half], np.log(0.9), np.log(0.01)
    logits = np.zeros((queries, num_items))
    logits[:half, 80:94] = 3.0  # 14 items above the target: SASRec ranks it 15th
    logits[np.arange(half), targets[:half]] = 2.0
    logits[np.arange(half, queries), targets[half:]] = 6.0
    histories = (50 + np.arange(queries))[:, None]
    vectors = np.random.default_rng(0).normal(size=(num_items, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cands = hybrid.gather(_Beam(beam_items, beam_logp), _SASRec(logits), vectors, histories, np.ones(queries, np.int64),
                          np.zeros(queries, np.int64), candidates=30, batch_size=7)
    return cands, targets, logits


def test_fusion_beats_both_parts_where_each_is_right_on_half_the_users():
    cands, targets, logits = _planted()
    gen_alone = rec_metrics(cands.beam[0], targets)["R@10"]
    sasrec_alone = rec_metrics(np.argsort(-logits, axis=1, kind="stable")[:, :10], targets)["R@10"]
    assert gen_alone == sasrec_alone == 0.5
    # the candidates: SASRec's ranking of the union holds every beam item, best first
    union, logp = cands.sasrec
    assert all(set(cands.beam[0][q]) <= set(union[q]) for q in range(len(targets)))
    assert (np.diff(np.where(union >= 0, logp, -1e9), axis=1) <= 0).all()
    # the untuned default (an even mixture of the two models' probabilities) puts every target first
    items, scores = hybrid.fuse(RecHybridConfig(), cands, k=10)
    assert (items[:, 0] == targets).all() and (np.diff(scores, axis=1) <= 0).all()
    assert rec_metrics(items, targets)["R@10"] == 1.0
    # plain RRF of ranks cannot see the generative model's confidence: it loses users here
    rrf_items, _ = hybrid.fuse(RecHybridConfig(method="rrf"), cands, k=10)
    assert rec_metrics(rrf_items, targets)["R@10"] < 1.0
    tuned = hybrid.tune(cands, targets, metric="nDCG@10", configs=[RecHybridConfig(method="rrf"), RecHybridConfig()])
    assert tuned == RecHybridConfig(valid_score=1.0)  # the better of the two, with its score


def test_min_gain_objective_refuses_to_buy_ndcg_with_recall(monkeypatch):
    """SASRec finds 5 of 10 targets at rank 10; fusion A finds 4 at rank 1 (more nDCG@10, less R@10), fusion B 6
    at rank 5 (more of both): the metric objective takes A, min_gain B."""
    targets = np.arange(10)
    def ranking(hits: int, rank: int) -> np.ndarray:
        items = np.tile(np.arange(100, 110), (10, 1))
        items[:hits, rank - 1] = targets[:hits]
        return items
    sasrec = ranking(5, 10)
    cands = hybrid.Candidates(beam=(sasrec, np.zeros((10, 10))), sasrec=(sasrec, np.zeros((10, 10))),
                              similarity=(sasrec, np.zeros((10, 10))))
    a, b = RecHybridConfig(weight_generative=0.1), RecHybridConfig(weight_generative=0.2)
    fused = {a: ranking(4, 1), b: ranking(6, 5)}
    monkeypatch.setattr(hybrid, "fuse", lambda cfg, cands, k=10: (fused[cfg], None))
    assert rec_metrics(fused[a], targets)["nDCG@10"] > rec_metrics(fused[b], targets)["nDCG@10"]
    by_metric = hybrid.tune(cands, targets, objective="metric", configs=[a, b])
    by_gain = hybrid.tune(cands, targets, objective="min_gain", configs=[a, b])
    assert by_metric.weight_generative == 0.1 and by_gain.weight_generative == 0.2
    assert by_gain.valid_score == pytest.approx(rec_metrics(fused[b], targets)["nDCG@10"])  # still the metric
    with pytest.raises(ValueError, match="unknown hybrid objective"):
        hybrid.tune(cands, targets, objective="recall", configs=[a])


def test_items_added_after_training_come_through_the_beam_alone():
    items, logp = np.array([[5, 100, 1]]), np.log([[0.5, 0.4, 0.1]])  # item 100: newer than SASRec and the vectors
    vectors = np.eye(100)
    cands = hybrid.gather(_Beam(items, logp), _SASRec(np.zeros((1, 100))), vectors, np.array([[50]]),
                          np.array([1]), np.array([0]), candidates=10)
    assert 100 not in cands.sasrec[0] and 100 not in cands.similarity[0]
    fused, _ = hybrid.fuse(RecHybridConfig(), cands, k=10)
    assert fused[0, :2].tolist() == [5, 100]  # SASRec is flat here: the beam's order decides


def test_fusion_errors_name_the_choices():
    cands, _, _ = _planted()
    for cfg, message in ((RecHybridConfig(method="gated"), "expected one of"), (RecHybridConfig(norm="l2"), "expected one of"),
                         (RecHybridConfig(weight_generative=0, weight_sasrec=0), "needs a positive weight")):
        with pytest.raises(ValueError, match=message):
            hybrid.fuse(cfg, cands)


# ---------------------------------------------------------------------------------------------- tuned on validation
def test_build_tunes_the_fusion_on_validation_users_only(monkeypatch, tmp_path):
    seqs = planted_sequences(num_users=80, num_items=30, seed=2)
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    real_tune = hybrid.tune

    def spy(cands, targets, **kwargs):
        seen.append((cands.beam[0].shape[0], np.asarray(targets).copy()))
        return real_tune(cands, targets, **kwargs)

    monkeypatch.setattr(hybrid, "tune", spy)
    gathered = []
    real_gather = hybrid.gather
    monkeypatch.setattr(hybrid, "gather", lambda *a, **k: gathered.append(a[3].copy()) or real_gather(*a, **k))
    cfg = replace(CFG, valid_users=50)
    with pytest.raises(ValueError, match="unknown hybrid_users 'test'"):
        Recommender.build(seqs, replace(cfg, hybrid_users="test"), progress=False, device="cpu")
    rec = Recommender.build(seqs, cfg, progress=False, device="cpu")
    data = Interactions.from_sequences(seqs)
    every = eval_queries(data, "valid", max_history=cfg.max_history)
    stopping = _sample(every, 50, cfg.seed)  # what the generative model's early stopping watched
    valid = _hybrid_users(every, cfg)  # default: the other validation users
    assert len(valid) == len(every) - 50 and not set(valid.users) & set(stopping.users)
    assert _hybrid_users(every, replace(cfg, hybrid_users="sample")).users.tolist() == stopping.users.tolist()
    assert _hybrid_users(every, replace(cfg, valid_users=0)).users.tolist() == every.users.tolist()
    test = _hybrid_users(eval_queries(data, "test", max_history=cfg.max_history), cfg)
    assert len(seen) == 1 and np.array_equal(seen[0][1], valid.targets)  # the held-out validation users' targets
    assert len(gathered) == 1 and np.array_equal(gathered[0], valid.histories)  # ... and their histories
    assert not np.array_equal(gathered[0], test.histories)
    assert rec.modes == ("generative", "sasrec", "popular", "hybrid") and rec.cfg.hybrid.valid_score > 0
    assert rec.reports["hybrid"]["tuned_on"] == "valid" and rec.reports["hybrid"]["users"] == len(every) - 50
    assert rec.reports["hybrid"]["which_users"] == "held_out" and rec.reports["hybrid"]["objective"] == "min_gain"
    # the served fusion scores on those users what tuning measured, and is saved in the manifest's config
    ranked = rec.ranker("hybrid").rank(valid.histories, valid.lengths, valid.users, k=10)
    assert rec_metrics(ranked, valid.targets)["nDCG@10"] == pytest.approx(rec.cfg.hybrid.valid_score)
    rec.save(tmp_path / "idx")
    manifest = store.verify(tmp_path / "idx")
    assert manifest["config"]["hybrid"] == to_dict(rec.cfg.hybrid)
    assert "hybrid" not in json.loads((store.current_version(tmp_path / "idx") / "generative" / "generative.json")
                                      .read_text())["config"]  # one home: the manifest
    loaded = Recommender.load(tmp_path / "idx", device="cpu")
    assert loaded.cfg.hybrid == rec.cfg.hybrid
    assert loaded.recommend(user="u1", k=10, mode="hybrid") == rec.recommend(user="u1", k=10, mode="hybrid")


def test_the_fusion_shapes_no_models_training():
    from genir.rec.training import fingerprint_of

    tuned = replace(CFG, hybrid=RecHybridConfig(method="rrf", weight_generative=2.0, valid_score=0.3))
    for model in ("generative", "sasrec"):
        # checkpoints and a --reuse of a model stay valid whatever the fusion; fingerprints from before the field
        assert fingerprint_of(tuned, model=model) == fingerprint_of(CFG, model=model)
        assert "hybrid" not in fingerprint_of(CFG, model=model).settings


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_serves_evaluates_and_retunes_hybrid(planted_amazon, tmp_path, capsys, monkeypatch):
    index = ["index", planted_amazon, "--task", "recommend", "--device", "cpu", "--no-verbose", *IDS, *SETS]
    code, out, err = _genir([*index, "--out", tmp_path / "idx"], capsys)
    assert code == 0 and "modes: generative, sasrec, popular, hybrid" in out, err
    tuned = store.verify(tmp_path / "idx")["config"]["hybrid"]
    assert tuned["valid_score"] > 0
    code, out, err = _genir(["recommend", tmp_path / "idx", "--user", "u1", "-k", "7", "--mode", "hybrid", "--json",
                             "--device", "cpu"], capsys)
    assert code == 0, err
    recs = json.loads(out)
    assert recs["mode"] == "hybrid" and [r["rank"] for r in recs["items"]] == list(range(1, 8))
    code, out, err = _genir(["eval", tmp_path / "idx", "--data", planted_amazon, "--split", "test", "--mode", "hybrid",
                             "--out", tmp_path / "report.json", "--device", "cpu"], capsys)
    assert code == 0 and "hybrid" in out, err
    report = json.loads((tmp_path / "report.json").read_text())
    assert [r["mode"] for r in report["results"]] == ["hybrid"] and report["config"]["hybrid"] == tuned
    # retraining SASRec alone re-tunes the fusion (on the new SASRec), once
    calls = []
    real_tune = hybrid.tune
    monkeypatch.setattr(hybrid, "tune", lambda *a, **k: calls.append(1) or real_tune(*a, **k))
    code, out, err = _genir([*index, "--out", tmp_path / "sas", "--reuse", tmp_path / "idx", "--mode", "sasrec",
                             "--set", "seed=1"], capsys)
    assert code == 0 and calls == [1], err
    manifest = store.verify(tmp_path / "sas")
    assert manifest["reports"]["hybrid"]["tuned_on"] == "valid" and manifest["config"]["hybrid"]["valid_score"] > 0
    rec = Recommender.load(tmp_path / "sas", device="cpu")
    valid = _hybrid_users(eval_queries(rec.data, "valid", max_history=rec.cfg.max_history), rec.cfg)
    served = rec_metrics(rec.ranker("hybrid").rank(valid.histories, valid.lengths, valid.users, k=10), valid.targets)
    assert served["nDCG@10"] == pytest.approx(manifest["config"]["hybrid"]["valid_score"])
    # --mode hybrid alone copies every model and tunes the fusion again: the same models, the same fusion
    code, out, err = _genir([*index, "--out", tmp_path / "again", "--reuse", tmp_path / "sas", "--mode", "hybrid",
                             "--set", "seed=1"], capsys)
    assert code == 0 and calls == [1, 1], err
    again = store.verify(tmp_path / "again")
    assert again["reused"]["stages"] == ["item_ids", "generative", "sasrec", "popular"]
    assert again["config"]["hybrid"] == manifest["config"]["hybrid"]
    assert {n: e["sha256"] for n, e in again["files"].items()} == {n: e["sha256"] for n, e in manifest["files"].items()}
    # without both models there is no hybrid: one error line naming the fix
    code, _, err = _genir([*index, "--out", tmp_path / "gen", "--mode", "generative", "--mode", "hybrid"], capsys)
    assert code == 2 and len(err) == 1 and "add --mode sasrec" in err[0], err
    assert not (tmp_path / "gen").exists()
    code, _, err = _genir([*index, "--out", tmp_path / "gen", "--mode", "generative"], capsys)
    assert code == 0, err
    code, _, err = _genir(["recommend", tmp_path / "gen", "--user", "u1", "--mode", "hybrid", "--device", "cpu"], capsys)
    assert code == 2 and len(err) == 1 and "fuses the generative model with SASRec" in err[0], err


# ---------------------------------------------------------------------------------------------- old indexes
def test_index_saved_before_the_hybrid_mode_serves_it_with_the_default_fusion(tmp_path):
    shutil.copytree(Path(__file__).resolve().parent / "fixtures" / "rec-index-v1", tmp_path / "old")
    old = Recommender.load(tmp_path / "old", device="cpu")
    assert "hybrid" not in store.verify(tmp_path / "old")["config"]  # saved before the field
    assert old.cfg.hybrid == RecHybridConfig() and "hybrid" in old.modes  # untuned default: valid_score 0
    recs = old.recommend(user=old.data.user_ids[0], k=10, mode="hybrid")
    assert len(recs) == 10 and len({r["item_id"] for r in recs}) == 10
    report = old.evaluate("test", modes=["hybrid"])
    assert report["results"][0]["mode"] == "hybrid" and 0 <= report["results"][0]["metrics"]["R@10"] <= 1
