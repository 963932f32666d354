"""Training loop: AdamW, linear warm-up + decay, gradient clipping, atomic checkpoints, exact resume, DDP.

Single process, or one process per device under ``torchrun --nproc_per_node=N`` (DistributedDataParallel;
gloo on CPU, nccl on CUDA). Determinism is by construction rather than by saved RNG state: epoch e's data
order comes from ``default_rng((seed, e))`` and step s reseeds torch with ``(seed, s, rank)`` before its
forward pass, so a run resumed from a checkpoint ends with the same weights as an uninterrupted one.

Checkpoint ``workdir/checkpoints/step-00000100/``: ``model.safetensors`` (trained parameters),
``optimizer.safetensors`` (AdamW moments and step counts per parameter) and ``state.json`` (step, names,
config, fingerprint), written by genir.checkpoint (temporary folder renamed into place). No pickle.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from genir import checkpoint
from genir.config import TrainConfig, to_dict
from genir.device import (DEVICES, DistInfo, autocast, resolve_decoder_precision, resolve_device,  # noqa: F401
                          setup_distributed)  # DEVICES, resolve_device re-exported: one resolver
from genir.progress import ProgressBar, progress_enabled

logger = logging.getLogger(__name__)


class Batches(Protocol):
    """Training examples addressable by index; ``batch`` returns the keyword arguments of ``model(**batch)``."""

    def __len__(self) -> int: ...

    def batch(self, idx: np.ndarray, device: torch.device) -> dict[str, Tensor]: ...


class TensorBatches:
    """In-memory examples: tensors sharing their first dimension, sliced per batch."""

    def __init__(self, **tensors: Tensor) -> None:
        sizes = {len(t) for t in tensors.values()}
        if len(sizes) != 1:
            raise ValueError(f"tensors must share their first dimension; got sizes {sorted(sizes)}")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def batch(self, idx: np.ndarray, device: torch.device) -> dict[str, Tensor]:
        index = torch.from_numpy(idx)
        return {k: v[index].to(device) for k, v in self.tensors.items()}


@dataclass(frozen=True)
class TrainResult:
    """steps: optimizer steps done in total (resumed runs included); losses: mean loss per logged window."""

    steps: int
    final_loss: float
    losses: list[float]
    seconds: float
    resumed_from: int


def default_param_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices only (biases, norms and 1-d tensors are not decayed)."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for _, p in params if p.dim() >= 2]
    rest = [p for _, p in params if p.dim() < 2]
    groups = [{"params": decay, "lr": lr, "weight_decay": weight_decay}, {"params": rest, "lr": lr, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def lr_factor(step: int, total: int, warmup_fraction: float) -> float:
    """Linear warm-up to 1 over the first ``warmup_fraction`` of steps, then linear decay to 0."""
    warm = max(1, int(round(warmup_fraction * total)))
    if step < warm:
        return (step + 1) / warm
    return max(0.0, (total - step) / max(1, total - warm))


def total_steps(n_examples: int, cfg: TrainConfig) -> int:
    if cfg.max_steps > 0:
        return cfg.max_steps
    return max(1, math.ceil(cfg.epochs * _steps_per_epoch(n_examples, cfg.batch_size)))


def _steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size)  # full batches only, so every step has the same size on every rank


def train_model(
    model: nn.Module,
    data: Batches,
    cfg: TrainConfig,
    *,
    workdir: Path | None = None,
    resume: bool = False,
    device: str = "auto",
    param_groups: list[dict] | None = None,
    progress: bool | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place; ``model(**data.batch(idx))`` must return the scalar loss.

    ``workdir`` enables checkpoints every ``cfg.checkpoint_every`` steps and at the end; ``resume=True``
    continues from the newest one there. ``param_groups`` (AdamW groups with "lr") default to
    ``default_param_groups``; each group's lr is its peak. ``on_step(step, loss)`` runs after every step
    (rank 0 and others alike). Under torchrun, ``cfg.batch_size`` is the global batch.
    """
    info = setup_distributed(device)
    bf16 = resolve_decoder_precision(cfg.precision, info.device) == "bf16"
    n = len(data)
    if n < info.world_size:
        raise ValueError(f"{n} training examples cannot be split over {info.world_size} processes")
    if cfg.batch_size % info.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} must be a multiple of the {info.world_size} processes")
    model.to(info.device)
    groups = param_groups if param_groups is not None else default_param_groups(model, cfg.lr, cfg.weight_decay)
    for g in groups:
        g.setdefault("initial_lr", g["lr"])
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    ckpt_dir = Path(workdir) / "checkpoints" if workdir is not None else None
    start = 0
    if ckpt_dir is not None and info.rank == 0:
        checkpoint.prepare(ckpt_dir, resume=resume)  # without resume, an earlier run's checkpoints are removed
    if resume and ckpt_dir is not None:
        latest = latest_checkpoint(ckpt_dir)
        if latest is not None:
            start = load_checkpoint(latest, model, optimizer, cfg=cfg, examples=n)
            logger.info("resuming from %s (step %d)", latest, start)
    net = model
    if info.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
    total = total_steps(n, cfg)
    per_epoch = _steps_per_epoch(n, cfg.batch_size)
    params = [p for g in groups for p in g["params"]]
    losses: list[float] = []
    window: list[float] = []
    log_every = max(1, min(50, total // 20))
    t0 = time.perf_counter()
    model.train()
    bar = ProgressBar("training", total=total, completed=start, enabled=progress_enabled(progress) and info.rank == 0,
                      fields={"loss": "-"})
    perm, perm_epoch = None, -1
    loss_value = float("nan")
    for step in range(start, total):
        epoch, pos = divmod(step, per_epoch)
        if epoch != perm_epoch:
            perm, perm_epoch = np.random.default_rng((cfg.seed, epoch)).permutation(n), epoch
        idx = perm[pos * cfg.batch_size : (pos + 1) * cfg.batch_size][info.rank :: info.world_size]
        for g in optimizer.param_groups:
            g["lr"] = g["initial_lr"] * lr_factor(step, total, cfg.warmup_fraction)
        torch.manual_seed((cfg.seed * 1_000_003 + step) * 1024 + info.rank)  # dropout: a function of the step
        with autocast(info.device, enabled=bf16):
            loss = net(**data.batch(idx, info.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        loss_value = float(loss.detach())
        window.append(loss_value)
        done = step + 1
        if done % log_every == 0 or done == total:
            losses.append(float(np.mean(window)))
            window = []
            logger.info("step %d/%d loss %.4f", done, total, losses[-1])
        bar.update(done, loss=f"{loss_value:.4f}")
        if ckpt_dir is not None and (done == total or (cfg.checkpoint_every > 0 and done % cfg.checkpoint_every == 0)):
            _save_on_rank0(info, ckpt_dir, done, model, optimizer, cfg, loss_value, n)
        if on_step is not None:
            on_step(done, loss_value)
    bar.close()
    model.eval()
    return TrainResult(steps=total, final_loss=loss_value, losses=losses, seconds=time.perf_counter() - t0, resumed_from=start)


# ---------------------------------------------------------------------------------------------- checkpoints
def _trained(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def _save_on_rank0(info: DistInfo, folder: Path, step: int, model: nn.Module, opt: torch.optim.Optimizer,
                   cfg: TrainConfig, loss: float, examples: int) -> None:
    if info.rank == 0:
        save_checkpoint(folder, step, model, opt, cfg=cfg, loss=loss, examples=examples)
    if info.world_size > 1:
        dist.barrier()  # no rank runs ahead of a checkpoint it might need to resume from


# settings that may change between a run and its resumption without changing what it computes
RESUMABLE_FIELDS = ("checkpoint_every", "keep_checkpoints")


def train_fingerprint(train_config: dict, examples: int | None) -> checkpoint.Fingerprint:
    """What a retrieval checkpoint trained on: the TrainConfig fields (as a dict) and the number of examples."""
    return checkpoint.fingerprint(train_config, data="" if examples is None else f"{examples} examples",
                                  leave_out=lambda name: name in RESUMABLE_FIELDS)


def _legacy_fingerprint(state: dict) -> checkpoint.Fingerprint:
    """Format-1 checkpoints (before genir.checkpoint) stored the TrainConfig and the example count."""
    return train_fingerprint(state.get("train_config") or {}, state.get("examples"))


def save_checkpoint(
    folder: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, *, cfg: TrainConfig, loss: float,
    examples: int | None = None,
) -> Path:
    """Write ``folder/step-XXXXXXXX`` atomically (genir.checkpoint) and prune old checkpoints."""
    params = _trained(model)
    return checkpoint.write(
        folder, step, {"model": params, "optimizer": checkpoint.optimizer_tensors(params, optimizer)},
        {"loss": loss, "parameters": list(params), "train_config": to_dict(cfg), "examples": examples},
        fingerprint=train_fingerprint(to_dict(cfg), examples), keep=cfg.keep_checkpoints)


def latest_checkpoint(folder: Path) -> Path | None:
    """Newest complete checkpoint folder under ``folder`` (temp folders of interrupted writes are ignored)."""
    return checkpoint.latest(folder)


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, *,
                    cfg: TrainConfig | None = None, examples: int | None = None) -> int:
    """Load weights (and optimizer moments) from a checkpoint folder; returns its step. With ``cfg`` (a
    resume), a checkpoint of other training settings, or of another number of ``examples``, is refused.
    Checkpoints of the first format (before genir.checkpoint) load too."""
    now = train_fingerprint(to_dict(cfg), examples) if cfg is not None else None
    state = checkpoint.read(path, now, legacy=_legacy_fingerprint)
    params = _trained(model)
    if list(params) != state["parameters"]:
        missing = sorted(set(state["parameters"]) ^ set(params))[:5]
        raise ValueError(f"{path} was saved from a different model (parameters differ, e.g. {missing}); check ModelConfig")
    weights = checkpoint.tensors(path, "model")
    wrong = [n for n, p in params.items() if weights[n].shape != p.shape]
    if wrong:
        raise ValueError(f"{path} was saved from a different model (shapes differ for {wrong[:5]}); check ModelConfig")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(weights[name].to(p.device))
    if optimizer is not None:
        checkpoint.load_optimizer(params, optimizer, checkpoint.tensors(path, "optimizer"))
    return int(state["step"])
