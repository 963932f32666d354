"""Leave-one-out split, training prefixes, metrics and the popularity baseline on exact small cases."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from genir.data.types import Sequences
from genir.rec.evaluate import evaluate_ranker
from genir.rec.metrics import rec_metrics, target_ranks
from genir.rec.popular import PopularRecommender
from genir.rec.protocol import PAD, Interactions, eval_queries, train_parts, training_examples, training_windows
from genir.rec.synthetic import planted_sequences


def _interactions(rows: list[list[str]], items: list[str] | None = None) -> Interactions:
    table = pa.table({"user_id": [f"u{i}" for i in range(len(rows))], "items": rows})
    items = items or sorted({x for r in rows for x in r})
    return Interactions.from_sequences(Sequences(table, pa.table({"item_id": items, "text": [""] * len(items)})))


def test_split_targets_and_histories():
    data = _interactions([["a", "b", "c", "d", "e"], ["c", "a", "b"]])
    ex = training_examples(data, max_history=20)
    # user 0 train part a b c -> (a)->b, (a b)->c ; user 1 train part c -> nothing
    assert ex.targets.tolist() == [1, 2]
    assert ex.lengths.tolist() == [1, 2]
    assert ex.histories[1, :2].tolist() == [0, 1] and (ex.histories[1, 2:] == PAD).all()
    valid = eval_queries(data, "valid")
    test = eval_queries(data, "test")
    assert valid.targets.tolist() == [3, 0] and test.targets.tolist() == [4, 1]
    assert valid.histories[0, : valid.lengths[0]].tolist() == [0, 1, 2]
    # the test history includes the validation item
    assert test.histories[0, : test.lengths[0]].tolist() == [0, 1, 2, 3]
    assert test.histories[1, : test.lengths[1]].tolist() == [2, 0]


def test_history_cap_keeps_newest():
    data = _interactions([[f"x{i:02d}" for i in range(30)]])
    ex = training_examples(data, max_history=5)
    last = ex.histories[-1]
    assert ex.lengths[-1] == 5 and last.tolist() == [22, 23, 24, 25, 26] and ex.targets[-1] == 27
    test = eval_queries(data, "test", max_history=5)
    assert test.histories[0].tolist() == [24, 25, 26, 27, 28] and test.targets[0] == 29


def test_split_never_leaks_held_out_positions():
    # every item is unique per user, so leaks show up as item identity
    rng = np.random.default_rng(0)
    rows = [[f"u{u}_{j}" for j in range(int(rng.integers(3, 12)))] for u in range(50)]
    data = _interactions(rows)
    ex = training_examples(data, max_history=4)
    held = {int(s[-1]) for s in data.seqs} | {int(s[-2]) for s in data.seqs}
    seen = set(ex.targets.tolist()) | set(ex.histories[ex.histories != PAD].tolist())
    assert not held & seen
    assert not held & {int(x) for p in train_parts(data) for x in p}
    valid = eval_queries(data, "valid")
    test_targets = {int(s[-1]) for s in data.seqs}
    assert not test_targets & set(valid.histories[valid.histories != PAD].tolist())
    # number of examples = sum over users of (train part length - 1)
    assert len(ex) == sum(max(len(s) - 3, 0) for s in data.seqs)


def test_short_users_are_not_evaluated_and_unknown_split_errors():
    data = _interactions([["a", "b"], ["a", "b", "c"]])
    assert eval_queries(data, "test").users.tolist() == [1]
    with pytest.raises(ValueError, match="expected one of"):
        eval_queries(data, "dev")


def test_items_only_in_sequences_are_appended():
    data = _interactions([["a", "zz", "b"]], items=["a", "b"])
    assert data.item_ids == ["a", "b", "zz"] and data.item_text == ["", "", ""]
    assert data.seqs[0].tolist() == [0, 2, 1]


def test_metrics_exact():
    ranked = np.array([[3, 1, 2, 0, 4, 5, 6, 7, 8, 9], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]])
    targets = np.array([3, 4, 42])
    assert target_ranks(ranked, targets).tolist() == [0, 5, -1]
    m = rec_metrics(ranked, targets)
    assert m["R@5"] == pytest.approx(1 / 3) and m["R@10"] == pytest.approx(2 / 3)
    assert m["nDCG@5"] == pytest.approx(1 / 3)
    assert m["nDCG@10"] == pytest.approx((1 + 1 / np.log2(7)) / 3)
    with pytest.raises(ValueError, match="raise k"):
        rec_metrics(ranked[:, :5], targets)


def test_popularity_counts_training_parts_only():
    # "z" is every user's test item: it must not become popular
    rows = [["a", "b", "a", "c", "z"], ["a", "b", "b", "c", "z"], ["b", "c", "a", "a", "z"]]
    data = _interactions(rows)
    pop = PopularRecommender.fit(train_parts(data), num_items=data.num_items)
    test = eval_queries(data, "test")
    ranked = pop.rank(test.histories, test.lengths, test.users, k=4)
    names = [data.item_ids[i] for i in ranked[0]]
    assert names == ["a", "b", "c", "z"]
    assert evaluate_ranker(pop, eval_queries(data, "test"), cutoffs=(1, 3))["R@3"] == 0.0


def test_popularity_save_load(tmp_path):
    data = Interactions.from_sequences(planted_sequences(num_users=50, seed=1))
    pop = PopularRecommender.fit(train_parts(data), num_items=data.num_items)
    pop.save(tmp_path)
    again = PopularRecommender.load(tmp_path)
    q = eval_queries(data, "test")
    assert (again.rank(q.histories, q.lengths, q.users, k=10) == pop.rank(q.histories, q.lengths, q.users, k=10)).all()


def test_training_windows_cover_every_target_once():
    rng = np.random.default_rng(3)
    rows = [[f"u{u}_{j}" for j in range(int(rng.integers(3, 40)))] for u in range(40)]
    data = _interactions(rows)
    windows, users = training_windows(data, max_history=6)
    assert all(2 <= len(w) <= 7 for w in windows)
    targets = sorted(int(x) for w in windows for x in w[1:])
    ex = training_examples(data, max_history=6)
    assert targets == sorted(ex.targets.tolist())  # the same targets as the per-prefix examples, once each
    held = {int(s[-1]) for s in data.seqs} | {int(s[-2]) for s in data.seqs}
    assert not held & {int(x) for w in windows for x in w}
    assert all(set(w.tolist()) <= set(data.seqs[u].tolist()) for w, u in zip(windows, users))
