"""Fusion functions on hand-made rankings; expected orders and scores are worked out by hand in comments."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from genir.config import HybridConfig
from genir.data.types import Qrels
from genir.hybrid import NEVER, Prefixes, apply, confidence, gated, interpolate, normalize, prefix_then_dense, rrf, tune

L = np.log  # generative scores are log-probabilities

A = (np.array([[3, 1, 2], [5, 6, -1]]), np.array([[0.9, 0.5, 0.1], [2.0, 1.0, -np.inf]]))
B = (np.array([[1, 4, -1], [6, 5, -1]]), np.array([[10.0, 6.0, -np.inf], [3.0, 1.0, -np.inf]]))


def test_rrf_by_hand():
    # k_rrf=1, q0: 3 -> 1/2; 1 -> 1/3 + 1/2 = 5/6; 2 -> 1/4; 4 -> 1/3  => [1, 3, 4, 2]
    # q1: 5 -> 1/2 + 1/3, 6 -> 1/3 + 1/2: a tie, smaller doc_idx first => [5, 6]
    d, s = rrf([A, B], k_rrf=1, k=5)
    np.testing.assert_array_equal(d, [[1, 3, 4, 2, -1], [5, 6, -1, -1, -1]])
    np.testing.assert_allclose(s[0, :4], [5 / 6, 1 / 2, 1 / 3, 1 / 4], rtol=1e-6)
    assert np.isneginf(s[0, 4]) and np.isneginf(s[1, 2:]).all() and s.dtype == np.float32
    # weights (2, 1): 3 -> 1; 1 -> 2/3 + 1/2 = 7/6; 2 -> 1/2; 4 -> 1/3  => [1, 3, 2, 4]
    d, s = rrf([A, B], k_rrf=1, weights=[2, 1], k=4)
    np.testing.assert_array_equal(d[0], [1, 3, 2, 4])
    np.testing.assert_allclose(s[0], [7 / 6, 1.0, 0.5, 1 / 3], rtol=1e-6)


def test_interpolate_by_hand():
    # minmax q0: A 3 -> 1, 1 -> .5, 2 -> 0 ; B 1 -> 1, 4 -> 0 ; missing docs get the ranking's floor 0
    # alpha .5: 1 -> .25 + .5 = .75 ; 3 -> .5 ; 2 -> 0 ; 4 -> 0 (tie: 2 before 4)
    d, s = interpolate([A, B], alpha=0.5, k=4)
    np.testing.assert_array_equal(d[0], [1, 3, 2, 4])
    np.testing.assert_allclose(s[0], [0.75, 0.5, 0.0, 0.0], atol=1e-7)
    # alpha .8: 3 -> .8 ; 1 -> .4 + .2 = .6 ; 2 -> 0 ; 4 -> 0
    d, s = interpolate([A, B], alpha=0.8, k=4)
    np.testing.assert_array_equal(d[0], [3, 1, 2, 4])
    np.testing.assert_allclose(s[0], [0.8, 0.6, 0.0, 0.0], atol=1e-7)
    with pytest.raises(ValueError, match="alpha needs exactly 2"):
        interpolate([A], alpha=0.5)


def test_normalize_rows():
    s = np.array([[3.0, 1.0, 2.0], [5.0, 5.0, 0.0]])
    valid = np.array([[True, True, True], [True, True, False]])
    np.testing.assert_allclose(normalize(s, valid, norm="minmax"), [[1, 0, 0.5], [1, 1, 0]])
    z = normalize(s, valid, norm="zscore")
    np.testing.assert_allclose(z[0], [1.224745, -1.224745, 0.0], rtol=1e-5)
    np.testing.assert_allclose(z[1], [0, 0, 0])
    with pytest.raises(ValueError, match="expected one of"):
        normalize(s, valid, norm="rank")


GEN = (np.array([[8, 7], [7, 9], [8, 7]]), L(np.array([[0.9, 0.05], [0.3, 0.2], [0.05, 0.01]])))
DENSE = (np.array([[1, 7, 2]] * 3), np.array([[0.8, 0.7, 0.6]] * 3))


def test_gated_paths_by_hand():
    d, s, path = gated(GEN, DENSE, low=0.1, high=0.5, k=3, k_rrf=1)
    assert path.tolist() == ["generative", "fused", "dense"]
    # q2 (p=.05 < .1): dense alone
    np.testing.assert_array_equal(d[2], [1, 7, 2])
    np.testing.assert_allclose(s[2], [0.8, 0.7, 0.6], rtol=1e-6)
    # q1 (p=.3): RRF k=1: 7 -> 1/2 + 1/3 ; 1 -> 1/2 ; 9 -> 1/3 ; 2 -> 1/4  => [7, 1, 9]
    np.testing.assert_array_equal(d[1], [7, 1, 9])
    # q0 (p=.9 >= .5): 8 leads, then the fused order 7 (1/3 + 1/3), 1 (1/2; ties with 8, smaller first), 8
    np.testing.assert_array_equal(d[0], [8, 7, 1])
    assert np.all(np.diff(s, axis=1) <= 0)
    # margin signal: q0 .85, q1 .1, q2 .04
    np.testing.assert_allclose(confidence(GEN, signal="margin"), [0.85, 0.1, 0.04], atol=1e-9)
    _, _, path = gated(GEN, DENSE, low=0.05, high=0.5, signal="margin", k=3)
    assert path.tolist() == ["generative", "fused", "dense"]
    with pytest.raises(ValueError, match="low <= high"):
        gated(GEN, DENSE, low=0.6, high=0.5)


def test_gated_places_an_unseen_fallback_top_second():
    # doc 1 tops the fallback for every query and was added after training (the model cannot generate it)
    unseen = np.zeros(10, dtype=bool)
    unseen[1] = True
    d, s, path = gated(GEN, DENSE, low=0.1, high=0.5, k=3, k_rrf=1, unseen=unseen)
    assert path.tolist() == ["generative", "fused", "dense"]
    np.testing.assert_array_equal(d[0], [8, 1, 7])  # was [8, 7, 1]: 1 moves up to second
    np.testing.assert_array_equal(d[1], [7, 1, 9])  # already second: unchanged
    np.testing.assert_array_equal(d[2], [1, 7, 2])  # dense path: the fallback's own order
    assert np.all(np.diff(s, axis=1) <= 0)
    # the same through apply(); and nothing moves when the unseen document is not the fallback's top
    cfg = HybridConfig(method="gated", gate_low=0.1, gate_high=0.5, k_rrf=1)
    np.testing.assert_array_equal(apply(cfg, {"generative": GEN, "dense": DENSE}, k=3, unseen=unseen)[0], d)
    # HybridConfig.unseen_second=False turns the rule off: the order is the one without ``unseen``
    off = apply(HybridConfig(method="gated", gate_low=0.1, gate_high=0.5, k_rrf=1, unseen_second=False),
                {"generative": GEN, "dense": DENSE}, k=3, unseen=unseen)[0]
    np.testing.assert_array_equal(off, gated(GEN, DENSE, low=0.1, high=0.5, k=3, k_rrf=1)[0])
    assert off[0].tolist() == [8, 7, 1]
    unseen[:] = False
    unseen[2] = True
    np.testing.assert_array_equal(gated(GEN, DENSE, low=0.1, high=0.5, k=3, k_rrf=1, unseen=unseen)[0],
                                  gated(GEN, DENSE, low=0.1, high=0.5, k=3, k_rrf=1)[0])


def test_prefix_then_dense_by_hand():
    doc_emb = np.array([[1, 0], [0, 1], [0.6, 0.8], [0.8, 0.6], [-1, 0]], dtype=np.float32)
    q = np.array([[1.0, 0.0]], dtype=np.float32)  # cosines: 1, 0, .6, .8, -1
    dense = (np.array([[0, 3, 2]]), np.array([[1.0, 0.8, 0.6]]))
    # hard (bonus 3): prefix docs 1 (3.0), 4 (2.0) first, then dense 0 (1.0), 3 (.8)
    d, s = prefix_then_dense([np.array([1, 4])], q, doc_emb, dense=dense, k=4)
    np.testing.assert_array_equal(d, [[1, 4, 0, 3]])
    np.testing.assert_allclose(s, [[3.0, 2.0, 1.0, 0.8]], rtol=1e-6)
    # soft (bonus .3): 0 (1.0), 3 (.8), 2 (.6), 1 (.3), 4 (-.7)
    d, _ = prefix_then_dense([np.array([1, 4])], q, doc_emb, dense=dense, bonus=0.3, k=6)
    np.testing.assert_array_equal(d, [[0, 3, 2, 1, 4, -1]])


def test_apply_and_tune_pick_the_better_fusion():
    # 4 queries; q0/q1: generative ranks the relevant doc first (p=.95), dense misses it; q2/q3: generative
    # misses it (p=.3), dense ranks it first. Relevant ids are larger than the distractors, so RRF ties go
    # against them: RRF needs w_gen > 1 for q0 and < 1 for q2, interpolation alpha > .5 and < .5; neither
    # fits all four. Gating does: generative first when sure, RRF with w_gen=.5 otherwise.
    rel = [50, 51, 52, 53]
    gen = (np.array([[50, 20], [51, 21], [22, 24], [23, 25]]), L(np.array([[0.95, 0.01], [0.95, 0.01], [0.3, 0.2], [0.3, 0.2]])))
    dense = (np.array([[30, 31, 32], [30, 31, 32], [52, 30, 31], [53, 30, 31]]), np.array([[0.9, 0.8, 0.7]] * 4))
    doc_ids = [f"d{i}" for i in range(60)]
    qids = ["q0", "q1", "q2", "q3"]
    qrels = Qrels(pa.table({"query_id": qids, "doc_id": [doc_ids[r] for r in rel], "relevance": pa.array([1] * 4, pa.int32())}))
    for method in ("rrf", "interpolate"):
        assert tune({"generative": gen, "dense": dense}, qrels, qids, doc_ids, methods=[method], k=3).dev_ndcg10 < 0.99
    cfg = tune({"generative": gen, "dense": dense}, qrels, qids, doc_ids, k=3)
    assert cfg.dev_ndcg10 == pytest.approx(1.0)
    d, _, path = apply(cfg, {"generative": gen, "dense": dense}, k=3)
    np.testing.assert_array_equal(d[:, 0], rel)
    assert cfg.method == "gated" and path[:2].tolist() == ["generative", "generative"]
    with pytest.raises(ValueError, match="cannot tune"):
        tune({"generative": gen, "dense": dense}, qrels, qids, doc_ids, methods=["magic"])
    with pytest.raises(ValueError, match="prefix_dense needs the documents under the generated prefixes of level 1"):
        apply(HybridConfig(method="prefix_dense"), {"generative": gen, "dense": dense})


def test_gdr_is_applied_and_tuned_here():
    # GDR through apply: the index passes the prefix documents + embeddings; same as prefix_then_dense
    doc_emb = np.eye(6, dtype=np.float32)
    q = doc_emb[[4, 5]]  # q0 is doc 4, q1 is doc 5 (cosine 1 with itself, 0 with the rest)
    dense = (np.array([[0, 1], [0, 1]]), np.array([[0.5, 0.4], [0.5, 0.4]]))
    gen = (np.array([[2, 3], [2, 3]]), L(np.array([[0.6, 0.3], [0.6, 0.3]])))
    prefixes = Prefixes({1: [np.array([4, 2]), np.array([3])], 2: [np.array([4]), np.array([5])]}, q, doc_emb)
    cfg = HybridConfig(method="prefix_dense", prefix_level=2, prefix_bonus=3.0)
    d, s, path = apply(cfg, {"generative": gen, "dense": dense}, k=3, prefixes=prefixes)
    want = prefix_then_dense(prefixes.docs[2], q, doc_emb, dense=dense, bonus=3.0, k=3)
    np.testing.assert_array_equal(d, want[0])
    np.testing.assert_array_equal(s, want[1])
    assert d[:, 0].tolist() == [4, 5] and path.tolist() == ["prefix_dense"] * 2
    # tuning sees the GDR grid (every level x bonus) after the other methods and picks level 2: only it is perfect
    doc_ids = [f"d{i}" for i in range(6)]
    qrels = Qrels(pa.table({"query_id": ["q0", "q1"], "doc_id": ["d4", "d5"], "relevance": pa.array([1, 1], pa.int32())}))
    candidates: dict[str, float] = {}
    best = tune({"generative": gen, "dense": dense}, qrels, ["q0", "q1"], doc_ids, k=3, prefixes=prefixes,
                report=candidates)
    assert (best.method, best.prefix_level, best.dev_ndcg10) == ("prefix_dense", 2, pytest.approx(1.0))
    grid = [name for name in candidates if name.endswith("(best of grid)")]
    assert grid == ["fallback alone (best of grid)", "rrf/interpolate/gated (best of grid)"]
    assert max(candidates[name] for name in grid) < 1.0
    assert set(candidates) - set(grid) == {f"prefix_dense level {lv} bonus {b}" for lv in (1, 2) for b in (0.1, 3.0)}
    assert tune({"generative": gen, "dense": dense}, qrels, ["q0", "q1"], doc_ids, k=3, prefixes=prefixes) == best
    assert tune({"generative": gen, "dense": dense}, qrels, ["q0", "q1"], doc_ids, k=3).method != "prefix_dense"


def test_unseen_second_defaults_on_for_configs_saved_before_the_field():
    from genir.config import from_dict, to_dict

    old = {k: v for k, v in to_dict(HybridConfig(method="gated")).items() if k != "unseen_second"}
    assert from_dict(HybridConfig, old).unseen_second is True


def test_tune_serves_the_fallback_alone_when_no_fusion_beats_it():
    # the generative ranking is wrong everywhere and dense right everywhere: no fusion can beat dense (the best
    # ones tie it), so tuning serves dense alone (path "dense" on every row): a tie keeps the earlier fallback
    doc_ids = [f"d{i}" for i in range(40)]
    qids = ["q0", "q1", "q2"]
    dense = (np.array([[10, 11, 12], [13, 14, 15], [16, 17, 18]]), np.array([[0.9, 0.5, 0.4]] * 3))
    gen = (np.array([[20, 21], [22, 23], [24, 25]]), L(np.array([[0.99, 0.005]] * 3)))
    qrels = Qrels(pa.table({"query_id": qids, "doc_id": ["d10", "d13", "d16"], "relevance": pa.array([1] * 3, pa.int32())}))
    report: dict[str, float] = {}
    cfg = tune({"generative": gen, "dense": dense}, qrels, qids, doc_ids, k=3, report=report)
    d, _, path = apply(cfg, {"generative": gen, "dense": dense}, k=3)
    np.testing.assert_array_equal(d, dense[0])
    assert path.tolist() == ["dense"] * 3 and cfg.dev_ndcg10 == pytest.approx(1.0)
    assert report["fallback alone (best of grid)"] == pytest.approx(1.0) and cfg.gate_low == cfg.gate_high == NEVER
