"""RQ-KMeans: residual k-means without a network (faiss k-means per level on the residuals)."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from genir.ids.base import CodecBase, compute_stats, kmeans, nearest


def residual_kmeans(x: np.ndarray, levels: int, k: int, *, seed: int, niter: int) -> np.ndarray:
    """Codebooks (levels, k, d) float32: level l clusters what levels < l left unexplained."""
    residual = np.array(x, dtype=np.float32)
    books = []
    for level in range(levels):
        book = kmeans(residual, k, seed=seed + level, niter=niter)
        residual -= book[nearest(residual, book)]
        books.append(book)
    return np.stack(books)


def residual_encode(x: np.ndarray, books: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy residual assignment: codes (n, levels) int64 and the reconstruction (n, d) float32."""
    residual = np.array(x, dtype=np.float32)
    codes = np.empty((len(x), len(books)), dtype=np.int64)
    for level, book in enumerate(books):
        codes[:, level] = nearest(residual, book)
        residual -= book[codes[:, level]]
    return codes, np.asarray(x, dtype=np.float32) - residual


class RQKMeansCodec(CodecBase):
    """L levels of k-means on residuals; reconstruction = sum of the chosen centroids."""

    scheme = "rqkmeans"

    def fit(self, emb: np.ndarray, *, seed: int | None = None) -> "RQKMeansCodec":
        """Fit on ``emb`` (n, d), n >= codebook_size."""
        t0 = time.perf_counter()
        emb = np.asarray(emb, dtype=np.float32)
        self.books = residual_kmeans(emb, self.levels, self.cfg.codebook_size, seed=self._seed(seed), niter=self.cfg.kmeans_iters)
        codes, recon = residual_encode(emb, self.books)
        self._stats = compute_stats(
            self.scheme, codes, self.codebook_sizes, fit_seconds=time.perf_counter() - t0, emb=emb, recon=recon
        )
        return self

    def encode(self, emb: np.ndarray) -> np.ndarray:
        """(n, d) -> (n, levels) int64."""
        self._check_fitted()
        return residual_encode(emb, self.books)[0]

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"codebooks": self.books}

    def _restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.books = arrays["codebooks"]
