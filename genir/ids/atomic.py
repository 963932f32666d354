"""Atomic IDs (DSI's naive baseline): one token per document, so the vocabulary is the corpus size."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from genir.ids.base import CodecBase, compute_stats


class AtomicCodec(CodecBase):
    """Row i of the fitted embeddings gets code i; a single level whose vocabulary is n.

    The code carries no content, so ``encode(emb)`` numbers its rows 0..len(emb)-1: encode the corpus
    in doc_idx order. Documents added later also get 0..m-1, which collide with fitted ones and are told
    apart by the collision suffix; that keeps the level-0 vocabulary (the decoder's output size) fixed.
    """

    scheme = "atomic"

    def fit(self, emb: np.ndarray, *, seed: int | None = None) -> "AtomicCodec":
        t0 = time.perf_counter()
        n = len(emb)
        if n < 1:
            raise ValueError("atomic IDs need at least one document")
        self.levels = 1
        self.codebook_sizes = (n,)
        self._stats = compute_stats(self.scheme, self.encode_rows(n), self.codebook_sizes, fit_seconds=time.perf_counter() - t0)
        return self

    def encode(self, emb: np.ndarray) -> np.ndarray:
        """(n, d) -> (n, 1) int64 row numbers."""
        self._check_fitted()
        return self.encode_rows(len(emb))

    @staticmethod
    def encode_rows(n: int) -> np.ndarray:
        return np.arange(n, dtype=np.int64)[:, None]

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"num_docs": np.array([self.codebook_sizes[0]], dtype=np.int64)}

    def _restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.levels = 1
        self.codebook_sizes = (int(arrays["num_docs"][0]),)
