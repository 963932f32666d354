"""Dense retrieval over embeddings with FAISS, index type chosen by a factory string."""
from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np

from genir.config import DenseConfig
from genir.ranking import finalize

logger = logging.getLogger(__name__)

METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}


def search_params(cfg: DenseConfig) -> dict[str, int]:
    """DenseConfig's search-time parameters under the names faiss.ParameterSpace knows."""
    return {"nprobe": cfg.nprobe, "efSearch": cfg.hnsw_ef_search}


def apply_search_params(index: faiss.Index, params: dict[str, int], *, space: faiss.ParameterSpace | None = None
                        ) -> dict[str, int]:
    """Set each of ``params`` that ``index`` (or an index it wraps) has; returns the ones that applied.

    faiss.ParameterSpace reaches through wrappers (PCA/OPQ pre-transforms, IDMap, Refine, an IVF's HNSW
    quantizer, GPU replicas) that a downcast + hasattr misses: "PCA64,IVF256,Flat" used to keep nprobe=1.
    A parameter no part of the index has (nprobe on HNSW) is skipped; any other faiss error is raised.
    """
    space = faiss.ParameterSpace() if space is None else space
    applied = {}
    for name, value in params.items():
        try:
            space.set_index_parameter(index, name, value)
        except RuntimeError as exc:
            if f"could not set parameter {name}" not in str(exc):
                raise
            continue
        applied[name] = value
    return applied


class DenseIndex:
    """FAISS index over (n, d) float32 vectors; row i is doc_idx i. Removed rows are masked, not re-packed,
    so doc_idx stays stable across add/remove."""

    def __init__(self, index: faiss.Index, cfg: DenseConfig, deleted: np.ndarray | None = None) -> None:
        self.index = index
        self.cfg = cfg
        self.deleted = np.zeros(index.ntotal, dtype=bool) if deleted is None else deleted
        self.search_params = apply_search_params(index, search_params(cfg))  # the ones this index type has
        logger.debug("faiss search parameters for %s: %s", cfg.factory, self.search_params)
        self._search_index = self._maybe_gpu(index)

    @classmethod
    def build(cls, emb: np.ndarray, cfg: DenseConfig = DenseConfig()) -> "DenseIndex":
        """emb: (n, d) float32."""
        if cfg.metric not in METRICS:
            raise ValueError(f"unknown metric {cfg.metric!r}; expected one of {sorted(METRICS)}")
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        try:
            index = faiss.index_factory(emb.shape[1], cfg.factory, METRICS[cfg.metric])
        except RuntimeError as exc:
            raise ValueError(
                f"faiss could not build factory string {cfg.factory!r} ({exc}); try 'Flat', 'HNSW32' or 'IVF256,Flat'"
            ) from None
        if not index.is_trained:
            index.train(emb)
        index.add(emb)
        return cls(index, cfg)

    def _maybe_gpu(self, index: faiss.Index) -> faiss.Index:
        # faiss-gpu and faiss-cpu install the same module; only the former reports GPUs.
        if self.cfg.use_gpu and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:
            try:
                gpu = faiss.index_cpu_to_all_gpus(index)
            except RuntimeError as exc:  # e.g. HNSW has no GPU version
                logger.info("keeping %s on CPU: %s", self.cfg.factory, exc)
            else:
                # set again on the GPU copy rather than trusting the cloner to carry every parameter over
                apply_search_params(gpu, search_params(self.cfg), space=faiss.GpuParameterSpace())
                return gpu
        return index

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries (q, d) -> (scores (q, k) float32, doc_idx (q, k) int64), -1 where fewer than k exist.
        Scores are larger-is-better for both metrics (negated squared distance for l2)."""
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        n_del = int(self.deleted.sum())
        kk = min(k + n_del, len(self)) if len(self) else 0
        if kk == 0:
            return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        D, I = self._search_index.search(np.ascontiguousarray(queries, dtype=np.float32), kk)
        if self.cfg.metric == "l2":
            D = -D
        return finalize(D, I, k, self.deleted)

    def add(self, emb: np.ndarray) -> None:
        """Append vectors: they get doc_idx len(self) .. len(self)+n-1."""
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        self.index.add(emb)
        self.deleted = np.concatenate([self.deleted, np.zeros(len(emb), dtype=bool)])
        self._search_index = self._maybe_gpu(self.index)

    def remove(self, doc_idx: np.ndarray) -> None:
        self.deleted[np.asarray(doc_idx, dtype=np.int64)] = True

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, cfg: DenseConfig, deleted: np.ndarray | None = None) -> "DenseIndex":
        return cls(faiss.read_index(str(path)), cfg, deleted)
