"""ir-measures wrapper and TREC run files."""
import numpy as np
import pytest

from genir.data.types import Qrels
from genir.metrics import evaluate, read_trec_run, run_from_arrays, write_trec_run


def _qrels(rows):
    import pyarrow as pa

    q, d, r = zip(*rows)
    return Qrels(pa.table({"query_id": list(q), "doc_id": list(d), "relevance": list(r)}))


def test_metrics_match_hand_computation():
    qrels = _qrels([("q1", "a", 1), ("q2", "b", 1), ("q2", "c", 1)])
    run = {"q1": {"x": 3.0, "a": 2.0}, "q2": {"b": 5.0, "y": 4.0, "c": 1.0}}
    m = evaluate(run, qrels, ["RR@10", "R@2", "nDCG@10"])
    assert m["RR@10"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["R@2"] == pytest.approx((1 + 0.5) / 2)
    ndcg_q1 = (1 / np.log2(3)) / 1.0
    ndcg_q2 = (1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    assert m["nDCG@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2)


def test_query_without_results_counts_as_zero():
    qrels = _qrels([("q1", "a", 1), ("q2", "b", 1)])
    m = evaluate({"q1": {"a": 1.0}}, qrels, ["RR@10"])
    assert m["RR@10"] == pytest.approx(0.5)


def test_unknown_measure_lists_examples():
    with pytest.raises(ValueError, match="unknown measure 'nope@3'.*nDCG@10"):
        evaluate({}, _qrels([("q", "d", 1)]), ["nope@3"])


def test_run_arrays_and_trec_round_trip(tmp_path):
    idx = np.array([[2, 0, -1], [1, 1, 2]])
    scores = np.array([[0.9, 0.5, -np.inf], [0.8, 0.7, 0.1]])
    run = run_from_arrays(["q1", "q2"], idx, scores, ["d0", "d1", "d2"])
    assert run == {"q1": {"d2": 0.9, "d0": 0.5}, "q2": {"d1": 0.8, "d2": 0.1}}
    write_trec_run(run, tmp_path / "r.trec")
    back = read_trec_run(tmp_path / "r.trec")
    assert back == {q: {d: round(s, 6) for d, s in h.items()} for q, h in run.items()}
    (tmp_path / "bad.trec").write_text("q1 Q0 d1 1 0.5\n")
    with pytest.raises(ValueError, match="bad.trec:1: expected 6 columns"):
        read_trec_run(tmp_path / "bad.trec")
