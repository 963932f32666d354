"""Where the recommendation models run and at what precision: one device for a whole Recommender.

The device string is resolved once (``genir.train.resolve_device``, as for retrieval); models, the item
trie and every batch go there, and results come back with ``.cpu()`` before ``.numpy()``.
"""
from __future__ import annotations

import contextlib

import torch

from genir.train import resolve_device

__all__ = ["resolve_device", "bf16_is_fast", "autocast", "to_device"]


def bf16_is_fast(device: torch.device) -> bool:
    """True where bfloat16 matmuls beat float32: CUDA GPUs with bf16 support, CPUs with AVX512-BF16.

    eval/bench_rec_bf16.py (eval/results/rec-bf16-cpu.json) on this project's CPU with AVX512-BF16: 563 ms
    per step in bf16 vs 821 in float32 at the default size; a tiny model gains nothing (RecConfig.bf16=False
    for such models). With bf16 emulated (AVX2 only) a one-off run was ~10x slower, so there autocast stays off.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # torch.cpu._is_avx512_bf16_supported is private; without it (or the instruction set) stay in float32
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return device.type == "cpu" and bool(probe and probe())


def autocast(device: torch.device, *, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device``'s type when asked for and fast there; a no-op context otherwise."""
    if not (enabled and bf16_is_fast(device)):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def to_device(batch: tuple, device: torch.device) -> tuple:
    """A training batch (tuple of tensors) on ``device``; non-tensors pass through."""
    return tuple(t.to(device, non_blocking=True) if torch.is_tensor(t) else t for t in batch)
