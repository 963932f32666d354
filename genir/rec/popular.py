"""Most-popular baseline: the same ranking for everyone, by interaction count in the training parts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file


class PopularRecommender:
    """Ranks items by how often they occur in the training parts (ties: lower item index first)."""

    def __init__(self, counts: np.ndarray) -> None:
        self.counts = np.asarray(counts, dtype=np.int64)  # (num_items,)
        # stable sort so ties resolve deterministically
        self.order = np.argsort(-self.counts, kind="stable")

    @classmethod
    def fit(cls, train_seqs: list[np.ndarray], *, num_items: int) -> "PopularRecommender":
        flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in train_seqs] or [np.zeros(0, np.int64)])
        return cls(np.bincount(flat, minlength=num_items))

    def add_items(self, n: int) -> None:
        """New items enter with count 0 (ranked last)."""
        self.counts = np.concatenate([self.counts, np.zeros(n, dtype=np.int64)])
        self.order = np.argsort(-self.counts, kind="stable")

    def rank(self, histories: np.ndarray, lengths: np.ndarray, users: np.ndarray, *, k: int) -> np.ndarray:
        """(Q, k) int64 item indices, identical rows (seen items are not filtered, as in the protocol)."""
        top = self.order[:k]
        out = np.full((len(lengths), k), -1, dtype=np.int64)
        out[:, : len(top)] = top
        return out

    def save(self, folder: Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        save_file({"counts": self.counts}, str(Path(folder) / "popular.safetensors"))

    @classmethod
    def load(cls, folder: Path) -> "PopularRecommender":
        return cls(load_file(str(Path(folder) / "popular.safetensors"))["counts"])
