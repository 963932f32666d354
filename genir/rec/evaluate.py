"""Score any recommender on leave-one-out queries: one ranking call, rec metrics, throughput."""
from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from genir.rec.metrics import DEFAULT_CUTOFFS, rec_metrics
from genir.rec.protocol import Examples


class Ranker(Protocol):
    def rank(self, histories: np.ndarray, lengths: np.ndarray, users: np.ndarray, *, k: int) -> np.ndarray:
        """(Q, L) right-padded item histories, (Q,) lengths, (Q,) user indices -> (Q, k) item indices."""
        ...


def evaluate_ranker(ranker: Ranker, queries: Examples, *,
                    cutoffs: tuple[int, ...] = DEFAULT_CUTOFFS) -> dict[str, float]:
    """{"R@5", "nDCG@5", "R@10", "nDCG@10"} of ``ranker`` on ``queries``."""
    return timed_evaluation(ranker, queries, cutoffs=cutoffs)[0]


def timed_evaluation(ranker: Ranker, queries: Examples, *,
                     cutoffs: tuple[int, ...] = DEFAULT_CUTOFFS) -> tuple[dict[str, float], float]:
    """(metrics, queries per second) of ``ranker`` on ``queries``."""
    t0 = time.perf_counter()
    ranked = ranker.rank(queries.histories, queries.lengths, queries.users, k=max(cutoffs))
    seconds = time.perf_counter() - t0
    return rec_metrics(ranked, queries.targets, cutoffs=cutoffs), len(queries) / max(seconds, 1e-9)
