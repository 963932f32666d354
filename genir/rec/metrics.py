"""Recall@k and nDCG@k with one relevant item per query, computed from ranked top-k lists.

Every recommender (popularity, SASRec, generative) returns a ranked (Q, k) matrix of item indices, so one
function scores them all the same way; a target absent from the list counts as a miss.
"""
from __future__ import annotations

import numpy as np

DEFAULT_CUTOFFS = (5, 10)


def target_ranks(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target in its list, or -1 when absent.

    ranked: (Q, k) int64 item indices (-1 pads); targets: (Q,) int64 -> (Q,) int64.
    """
    ranked = np.asarray(ranked)
    targets = np.asarray(targets)
    if ranked.ndim != 2 or ranked.shape[0] != targets.shape[0]:
        raise ValueError(f"ranked must be (Q, k) with Q = len(targets); got {ranked.shape} and {targets.shape}")
    hit = ranked == targets[:, None]
    return np.where(hit.any(axis=1), hit.argmax(axis=1), -1).astype(np.int64)


def rec_metrics(ranked: np.ndarray, targets: np.ndarray, *,
                cutoffs: tuple[int, ...] = DEFAULT_CUTOFFS) -> dict[str, float]:
    """{"R@5", "nDCG@5", "R@10", "nDCG@10"} (for the default cutoffs) averaged over queries."""
    if len(targets) == 0:
        raise ValueError("no queries to evaluate; every user needs at least 3 interactions")
    if max(cutoffs) > np.asarray(ranked).shape[1]:
        raise ValueError(f"lists hold {np.asarray(ranked).shape[1]} items; cutoffs {cutoffs} need more (raise k)")
    ranks = target_ranks(ranked, targets)
    found = ranks >= 0
    gain = np.where(found, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)
    out: dict[str, float] = {}
    for k in cutoffs:
        within = found & (ranks < k)
        out[f"R@{k}"] = float(within.mean())
        out[f"nDCG@{k}"] = float(np.where(within, gain, 0.0).mean())
    return out
