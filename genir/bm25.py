"""BM25 baseline with the bm25s library, stored inside the index directory."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import bm25s
import numpy as np

from genir.config import Bm25Config
from genir.ranking import finalize

logger = logging.getLogger(__name__)


def _stemmer(cfg: Bm25Config):
    if not cfg.stemmer:
        return None
    try:
        import Stemmer  # PyStemmer
    except ImportError:
        logger.warning("PyStemmer is not installed; BM25 runs without stemming (pip install PyStemmer)")
        return None
    return Stemmer.Stemmer("english")


class Bm25Index:
    """Sparse BM25 over passages; row i is doc_idx i."""

    def __init__(self, retriever: bm25s.BM25, cfg: Bm25Config) -> None:
        self.retriever = retriever
        self.cfg = cfg
        self._stem = _stemmer(cfg)

    def _tokenize(self, texts: Sequence[str]):
        return bm25s.tokenize(
            list(texts), stopwords=self.cfg.stopwords or None, stemmer=self._stem, show_progress=False
        )

    @classmethod
    def build(cls, passages: Sequence[str], cfg: Bm25Config = Bm25Config()) -> "Bm25Index":
        idx = cls(bm25s.BM25(k1=cfg.k1, b=cfg.b, method=cfg.method), cfg)
        idx.retriever.index(idx._tokenize(passages), show_progress=False)
        return idx

    def __len__(self) -> int:
        return int(self.retriever.scores["num_docs"])

    def search(self, queries: Sequence[str], k: int, *, deleted: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """queries -> (scores (q, k) float32, doc_idx (q, k) int64); -1 / -inf past the matching docs.
        `deleted` (n,) bool masks removed documents."""
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        n_del = 0 if deleted is None else int(deleted.sum())
        kk = min(k + n_del, len(self))
        # n_threads=0: bm25s scores the queries in this thread; any other value starts a thread pool per call,
        # which cost 1-5 ms per single query here (eval/bench_latency.py) for the same per-query results
        docs, scores = self.retriever.retrieve(self._tokenize(queries), k=kk, show_progress=False, n_threads=0)
        # bm25s fills zero-score slots with arbitrary docs; treat them as no result.
        docs = np.where(scores > 0, docs, -1)
        return finalize(np.where(scores > 0, scores, -np.inf), docs, k, deleted)

    def save(self, folder: Path) -> None:
        self.retriever.save(str(folder))

    @classmethod
    def load(cls, folder: Path, cfg: Bm25Config) -> "Bm25Index":
        return cls(bm25s.BM25.load(str(folder)), cfg)
