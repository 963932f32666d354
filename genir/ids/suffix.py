"""Collision suffix (TIGER): one extra ID position that makes every full semantic ID unique."""
from __future__ import annotations

import numpy as np


def add_suffix(codes: np.ndarray, *, existing: np.ndarray | None = None) -> np.ndarray:
    """Append a collision index to each row of ``codes`` (n, L) -> (n, L+1) int64.

    Rows sharing a code get 0, 1, 2, ... in row order. With ``existing`` (m, L+1) -- IDs already issued --
    a new row continues after the largest suffix already used for its code, so incremental adds never
    reuse an ID (even when an earlier holder was removed in between).
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be an (n, L) integer array; got shape {codes.shape} dtype {codes.dtype}")
    n, levels = codes.shape
    codes = codes.astype(np.int64, copy=False)
    if existing is None:
        existing = np.zeros((0, levels + 1), dtype=np.int64)
    existing = np.asarray(existing, dtype=np.int64)
    if existing.ndim != 2 or existing.shape[1] != levels + 1:
        raise ValueError(f"existing must have shape (m, {levels + 1}) (codes plus suffix); got {existing.shape}")
    m = len(existing)
    if n == 0:
        return np.zeros((0, levels + 1), dtype=np.int64)
    _, group = np.unique(np.concatenate([existing[:, :levels], codes]), axis=0, return_inverse=True)
    group = group.ravel()  # numpy 2 may return (k, 1) for axis=0
    start = np.zeros(group.max() + 1, dtype=np.int64)
    np.maximum.at(start, group[:m], existing[:, levels] + 1)
    new_group = group[m:]
    order = np.argsort(new_group, kind="stable")
    sorted_group = new_group[order]
    first = np.searchsorted(sorted_group, sorted_group)  # first position of each row's group
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - first
    return np.concatenate([codes, (start[new_group] + rank)[:, None]], axis=1)


def collision_groups(codes: np.ndarray) -> np.ndarray:
    """Sizes (g,) of the groups of rows of ``codes`` (n, L) that share a full code, one per distinct code."""
    codes = np.asarray(codes)
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64)
    _, counts = np.unique(codes, axis=0, return_counts=True)
    return counts.astype(np.int64)
