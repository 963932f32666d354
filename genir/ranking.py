"""Small array operations on ranked lists shared by every retriever: (scores, doc_idx) of shape (q, k)."""
from __future__ import annotations

import numpy as np


def finalize(scores: np.ndarray, idx: np.ndarray, k: int, deleted: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Drop deleted and empty slots, re-sort by score, cut or pad to k.

    scores (q, m) larger-is-better, idx (q, m) with -1 for empty -> (scores (q, k) float32, idx (q, k) int64),
    padded with -inf / -1.
    """
    scores = np.asarray(scores, dtype=np.float32)
    idx = np.asarray(idx, dtype=np.int64)
    gone = idx < 0
    if deleted is not None and deleted.any():
        gone |= deleted[np.clip(idx, 0, None)]
    if gone.any():
        scores = np.where(gone, -np.inf, scores)
        idx = np.where(gone, -1, idx)
        order = np.argsort(-scores, axis=1, kind="stable")
        scores, idx = np.take_along_axis(scores, order, 1), np.take_along_axis(idx, order, 1)
    scores, idx = scores[:, :k], idx[:, :k]
    if scores.shape[1] < k:
        pad = ((0, 0), (0, k - scores.shape[1]))
        scores = np.pad(scores, pad, constant_values=-np.inf)
        idx = np.pad(idx, pad, constant_values=-1)
    idx = np.where(np.isfinite(scores), idx, -1)
    return scores.astype(np.float32), idx
