"""Where the recommendation models run and at what precision: one device for a whole Recommender.

The device string is resolved once (``genir.train.resolve_device``, as for retrieval); models, the item
trie and every batch go there, and results come back with ``.cpu()`` before ``.numpy()``.
"""
from __future__ import annotations

import torch

from genir.device import autocast, bf16_is_fast
from genir.train import resolve_device

__all__ = ["resolve_device", "bf16_is_fast", "autocast", "to_device"]


def to_device(batch: tuple, device: torch.device) -> tuple:
    """A training batch (tuple of tensors) on ``device``; non-tensors pass through."""
    return tuple(t.to(device, non_blocking=True) if torch.is_tensor(t) else t for t in batch)
