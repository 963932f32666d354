"""The semantic-ID codec interface, its statistics, and save/load shared by every scheme.

A codec maps embeddings (n, d) to codes (n, L) (no collision suffix; see genir.ids.suffix). On disk a
codec is a folder with ``codec.json`` (format version, scheme, config, stats, scheme metadata) and
``codec.safetensors`` (its arrays); ``load_codec`` dispatches on the saved scheme name.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from genir.config import CodecConfig, from_dict, to_dict
from genir.ids.suffix import collision_groups

FORMAT_VERSION = 1
SCHEMES = ("rqvae", "rqkmeans", "hkmeans", "atomic")


@dataclass(frozen=True)
class CodecStats:
    """Quality of a fitted codec, measured on the embeddings it was fitted on."""

    scheme: str  # which codec
    num_docs: int  # rows fitted
    codebook_sizes: tuple[int, ...]  # codes available per level
    utilization: tuple[float, ...]  # per level: distinct codes used / codebook size
    perplexity: tuple[float, ...]  # per level: exp(entropy of the code distribution); max = codebook size
    collision_share: float  # share of documents whose full code (before the suffix) is shared with another
    largest_collision: int  # size of the largest group of documents sharing a full code (1 = no collisions)
    suffix_levels_needed: int  # vocabulary the suffix level needs (= largest_collision)
    recon_mse: float | None  # mean squared error per element of the reconstructed embeddings (None: no decoder)
    recon_rel: float | None  # sum of squared errors / sum of squared inputs (None: no decoder)
    fit_seconds: float  # wall time of fit()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CodecStats":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def compute_stats(
    scheme: str,
    codes: np.ndarray,
    codebook_sizes: tuple[int, ...],
    *,
    fit_seconds: float,
    emb: np.ndarray | None = None,
    recon: np.ndarray | None = None,
) -> CodecStats:
    """Stats of ``codes`` (n, L); reconstruction error when ``recon`` (n, d) approximates ``emb`` (n, d)."""
    util, perp = [], []
    for level, size in enumerate(codebook_sizes):
        counts = np.bincount(codes[:, level], minlength=size)
        p = counts[counts > 0] / max(len(codes), 1)
        util.append(float((counts > 0).sum() / size))
        perp.append(float(math.exp(-(p * np.log(p)).sum())) if len(p) else 0.0)
    groups = collision_groups(codes)
    largest = int(groups.max()) if len(groups) else 0
    mse = rel = None
    if recon is not None and emb is not None:
        err = float(((recon.astype(np.float64) - emb) ** 2).sum())
        mse = err / emb.size
        rel = err / float((emb.astype(np.float64) ** 2).sum())
    return CodecStats(
        scheme=scheme,
        num_docs=len(codes),
        codebook_sizes=tuple(int(s) for s in codebook_sizes),
        utilization=tuple(util),
        perplexity=tuple(perp),
        collision_share=float(groups[groups > 1].sum() / max(len(codes), 1)),
        largest_collision=largest,
        suffix_levels_needed=largest,
        recon_mse=mse,
        recon_rel=rel,
        fit_seconds=float(fit_seconds),
    )


@runtime_checkable
class SemanticIdCodec(Protocol):
    """Embeddings -> semantic IDs. ``levels`` = L codebooks before the suffix."""

    levels: int
    codebook_sizes: tuple[int, ...]  # vocabulary per level (what a decoder's output slice needs)

    def fit(self, emb: np.ndarray, *, seed: int | None = None) -> "SemanticIdCodec":
        """Learn from ``emb`` (n, d) float32; ``seed`` None uses the config's seed."""
        ...

    def encode(self, emb: np.ndarray) -> np.ndarray:
        """(n, d) -> (n, L) int64 codes, no suffix, deterministic."""
        ...

    def stats(self) -> CodecStats: ...

    def save(self, folder: Path) -> None: ...


class CodecBase:
    """Shared plumbing: config, fitted flag, stats, save/load. Schemes fill _arrays/_meta/_restore."""

    scheme: ClassVar[str]

    def __init__(self, cfg: CodecConfig) -> None:
        if cfg.levels < 1 or cfg.codebook_size < 2:
            raise ValueError(f"need levels >= 1 and codebook_size >= 2; got {cfg.levels}, {cfg.codebook_size}")
        self.cfg = cfg
        self.levels: int = cfg.levels
        self.codebook_sizes: tuple[int, ...] = (cfg.codebook_size,) * cfg.levels
        self._stats: CodecStats | None = None

    def stats(self) -> CodecStats:
        """Stats measured at the end of ``fit`` on the fitted embeddings."""
        self._check_fitted()
        assert self._stats is not None
        return self._stats

    def _check_fitted(self) -> None:
        if self._stats is None:
            raise ValueError(f"{self.scheme} codec is not fitted; call fit(emb) first")

    def _seed(self, seed: int | None) -> int:
        return self.cfg.seed if seed is None else int(seed)

    # -- persistence: subclasses return their arrays and JSON-able metadata, and restore from both
    def _arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _meta(self) -> dict[str, Any]:
        return {}

    def _restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        raise NotImplementedError

    def save(self, folder: Path) -> None:
        """Write codec.json + codec.safetensors into ``folder`` (created if missing)."""
        from safetensors.numpy import save_file

        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {k: np.ascontiguousarray(v) for k, v in self._arrays().items()}
        save_file(arrays, str(folder / "codec.safetensors"))
        doc = {
            "format_version": FORMAT_VERSION,
            "scheme": self.scheme,
            "config": to_dict(self.cfg),
            "levels": self.levels,
            "codebook_sizes": list(self.codebook_sizes),
            "stats": self.stats().to_dict(),
            "meta": self._meta(),
        }
        (folder / "codec.json").write_text(json.dumps(doc, indent=2))


def _registry() -> dict[str, type[CodecBase]]:
    from genir.ids.atomic import AtomicCodec
    from genir.ids.hkmeans import HKMeansCodec
    from genir.ids.rqkmeans import RQKMeansCodec
    from genir.ids.rqvae import RQVAECodec

    return {c.scheme: c for c in (RQVAECodec, RQKMeansCodec, HKMeansCodec, AtomicCodec)}


def make_codec(cfg: CodecConfig) -> SemanticIdCodec:
    """An unfitted codec for ``cfg.scheme``."""
    registry = _registry()
    if cfg.scheme not in registry:
        raise ValueError(f"unknown codec scheme {cfg.scheme!r}; expected one of {SCHEMES}")
    return registry[cfg.scheme](cfg)


def load_codec(folder: Path | str) -> SemanticIdCodec:
    """A fitted codec from a folder written by ``save``."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    path = folder / "codec.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; expected a folder written by codec.save(folder)")
    doc = json.loads(path.read_text())
    if doc.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} has format {doc.get('format_version')}; this genir reads {FORMAT_VERSION}")
    registry = _registry()
    if doc["scheme"] not in registry:
        raise ValueError(f"{path} names scheme {doc['scheme']!r}; expected one of {SCHEMES}")
    codec = registry[doc["scheme"]](from_dict(CodecConfig, doc["config"]))
    codec.levels = int(doc["levels"])
    codec.codebook_sizes = tuple(int(s) for s in doc["codebook_sizes"])
    codec._restore(load_file(str(folder / "codec.safetensors")), doc["meta"])
    codec._stats = CodecStats.from_dict(doc["stats"])
    return codec


def nearest(x: np.ndarray, centroids: np.ndarray, *, chunk: int = 65536) -> np.ndarray:
    """Index (n,) int64 of the nearest row of ``centroids`` (k, d) for each row of ``x`` (n, d), L2."""
    c = centroids.astype(np.float32, copy=False)
    c_sq = (c.astype(np.float64) ** 2).sum(1).astype(np.float32)
    out = np.empty(len(x), dtype=np.int64)
    for i in range(0, len(x), chunk):
        block = x[i : i + chunk].astype(np.float32, copy=False)
        out[i : i + chunk] = np.argmin(c_sq[None, :] - 2.0 * block @ c.T, axis=1)
    return out


def kmeans(x: np.ndarray, k: int, *, seed: int, niter: int) -> np.ndarray:
    """faiss k-means centroids (k, d) float32 of ``x`` (n, d); needs n >= k."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    if len(x) < k:
        raise ValueError(f"k-means with {k} centroids needs at least {k} points; got {len(x)} (lower codebook_size)")
    # min_points_per_centroid=1: small clusters are expected here (hkmeans leaves); no stderr warning
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, verbose=False, min_points_per_centroid=1)
    km.train(x)
    return np.asarray(km.centroids, dtype=np.float32)
