"""Seeded dev carve-out: determinism, row-order stability, disjointness, and split-name resolution."""
from __future__ import annotations

import pyarrow as pa
import pytest

from genir.data import available_splits, load_dataset, resolve_split
from genir.data.split import dev_split
from genir.data.types import Qrels, Queries


def synthetic(n: int, *, reverse: bool = False) -> tuple[Queries, Qrels]:
    ids = [f"q{i:03d}" for i in range(n)]
    order = ids[::-1] if reverse else ids
    queries = Queries.from_records(order + ["unjudged"], [f"text {q}" for q in order] + ["no qrels"])
    rows = [(q, f"d{j}", 1) for q in order for j in range(2)]
    qrels = Qrels(pa.table({"query_id": [r[0] for r in rows], "doc_id": [r[1] for r in rows],
                            "relevance": pa.array([r[2] for r in rows], pa.int32())}))
    return queries, qrels


def test_sizes_disjoint_and_complete():
    queries, qrels = synthetic(50)
    (train_q, train_r), (dev_q, dev_r) = dev_split(queries, qrels, fraction=0.2, seed=0)
    assert len(dev_q) == 10 and len(train_q) == 40
    assert not set(dev_q.query_ids) & set(train_q.query_ids)
    assert set(dev_q.query_ids) | set(train_q.query_ids) == {f"q{i:03d}" for i in range(50)}  # no "unjudged"
    assert set(dev_r.table.column("query_id").to_pylist()) == set(dev_q.query_ids)
    assert len(dev_r) + len(train_r) == len(qrels)


def test_deterministic_and_stable_under_row_order():
    a = dev_split(*synthetic(50), fraction=0.2, seed=3)
    b = dev_split(*synthetic(50), fraction=0.2, seed=3)
    c = dev_split(*synthetic(50, reverse=True), fraction=0.2, seed=3)
    assert a[1][0].query_ids == b[1][0].query_ids
    assert set(a[1][0].query_ids) == set(c[1][0].query_ids)
    other = dev_split(*synthetic(50), fraction=0.2, seed=4)
    assert set(other[1][0].query_ids) != set(a[1][0].query_ids)


def test_tiny_and_invalid_inputs():
    (train_q, _), (dev_q, _) = dev_split(*synthetic(2), fraction=0.01)
    assert (len(train_q), len(dev_q)) == (1, 1)  # clamped so neither side is empty
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\)"):
        dev_split(*synthetic(5), fraction=1.0)
    with pytest.raises(ValueError, match="at least 2 judged queries"):
        dev_split(*synthetic(1))


def big_beir(write_beir, *, dev_file: bool = False):
    corpus = [{"_id": f"d{i}", "title": "", "text": f"doc {i}"} for i in range(30)]
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(30)]
    qrels = {"train": [(f"q{i}", f"d{i}", 1) for i in range(20)],
             "test": [(f"q{i}", f"d{i}", 1) for i in range(20, 30)]}
    if dev_file:
        qrels["dev"] = [("q0", "d1", 1)]
    return write_beir(corpus=corpus, queries=queries, qrels=qrels)


def test_resolve_carved_splits(write_beir):
    folder = big_beir(write_beir)
    dev_q, dev_r = resolve_split(folder, "dev")
    rest_q, rest_r = resolve_split(folder, "train-dev")
    assert len(dev_q) == 4 and len(rest_q) == 16
    assert set(dev_q.query_ids) | set(rest_q.query_ids) == {f"q{i}" for i in range(20)}
    test_q, _ = resolve_split(folder, "test")
    assert not set(test_q.query_ids) & (set(dev_q.query_ids) | set(rest_q.query_ids))
    assert resolve_split(folder, "dev", seed=1)[0].query_ids != dev_q.query_ids
    assert load_dataset(folder, split="dev").split == "dev"


def test_real_dev_file_wins_over_carving(write_beir):
    folder = big_beir(write_beir, dev_file=True)
    assert available_splits(folder) == ["dev", "test", "train", "train-dev"]
    dev_q, dev_r = resolve_split(folder, "dev")
    assert dev_q.query_ids == ["q0"] and dev_r.as_dict() == {"q0": {"d1": 1}}


@pytest.mark.realdata
def test_scifact_dev_carve(shared_data):
    dev_q, dev_r = resolve_split(shared_data / "scifact", "dev")
    rest_q, _ = resolve_split(shared_data / "scifact", "train-dev")
    assert len(dev_q) + len(rest_q) == 809 and len(dev_q) == round(0.2 * 809)
    assert not set(dev_q.query_ids) & set(rest_q.query_ids)
