"""Training loop: AdamW, linear warm-up + decay, gradient clipping, atomic checkpoints, exact resume, DDP.

Single process, or one process per device under ``torchrun --nproc_per_node=N`` (DistributedDataParallel;
gloo on CPU, nccl on CUDA). Determinism is by construction rather than by saved RNG state: epoch e's data
order comes from ``default_rng((seed, e))`` and step s reseeds torch with ``(seed, s, rank)`` before its
forward pass, so a run resumed from a checkpoint ends with the same weights as an uninterrupted one.

Checkpoint ``workdir/checkpoints/step-00000100/``: ``model.safetensors`` (trained parameters),
``optimizer.safetensors`` (AdamW moments and step counts per parameter) and ``state.json`` (step, names,
config). Each is written to a temporary folder that is renamed into place. No pickle.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from genir.config import TrainConfig, to_dict
from genir.progress import progress_enabled
from genir.store import crash_point

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
CHECKPOINT_FORMAT = 1


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


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    device: torch.device


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" -> this process's GPU when torch sees one (LOCAL_RANK under torchrun), else CPU."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of {DEVICES}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no GPU; use device='auto' or 'cpu'")
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def setup_distributed(device: str = "auto") -> DistInfo:
    """Resolve the device and, under torchrun (WORLD_SIZE > 1), join the process group (idempotent)."""
    dev = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return DistInfo(rank=rank, world_size=world if dist.is_initialized() else 1, device=dev)


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
    bar = _Bar(total, start, enabled=progress_enabled(progress) and info.rank == 0)
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
        bar.update(done, loss_value)
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


def save_checkpoint(
    folder: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, *, cfg: TrainConfig, loss: float,
    examples: int | None = None,
) -> Path:
    """Write ``folder/step-XXXXXXXX`` atomically (temp folder + rename) and prune old checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(_trained(model))
    index = {id(p): i for i, p in enumerate(_trained(model).values())}
    opt_tensors: dict[str, Tensor] = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if torch.is_tensor(value):
                    opt_tensors[f"{names[index[id(p)]]}::{key}"] = value.detach().cpu().contiguous()
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step-{step}-", dir=folder))
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in _trained(model).items()}, str(tmp / "model.safetensors"))
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        state = {"format": CHECKPOINT_FORMAT, "step": step, "loss": loss, "parameters": names, "train_config": to_dict(cfg),
                 "examples": examples}
        (tmp / "state.json").write_text(json.dumps(state, indent=2))
        crash_point("train.checkpoint.written")  # complete files under a temp name: resume must ignore them
        final = folder / f"step-{step:08d}"
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        crash_point("train.checkpoint.renamed")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in _checkpoints(folder)[: -max(1, cfg.keep_checkpoints)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _checkpoints(folder: Path) -> list[Path]:
    found = [p for p in folder.glob("step-*") if (p / "state.json").exists()] if folder.exists() else []
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(folder: Path) -> Path | None:
    """Newest complete checkpoint folder under ``folder`` (temp folders of interrupted writes are ignored)."""
    found = _checkpoints(Path(folder))
    return found[-1] if found else None


# settings that may change between a run and its resumption without changing what it computes
RESUMABLE_FIELDS = ("checkpoint_every", "keep_checkpoints")


def _check_resumable(path: Path, state: dict, cfg: TrainConfig, examples: int | None) -> None:
    """Refuse to resume from a checkpoint of another run: other training settings or another training set
    would silently give a model that matches neither run."""
    saved, now = dict(state.get("train_config") or {}), json.loads(json.dumps(to_dict(cfg)))
    for name in RESUMABLE_FIELDS:
        saved.pop(name, None), now.pop(name, None)
    changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed[:4])
        raise ValueError(f"cannot resume from {path}: training settings differ ({diffs}); "
                         "use the same settings or another --workdir")
    if None not in (state.get("examples"), examples) and state["examples"] != examples:
        raise ValueError(f"cannot resume from {path}: it trained on {state['examples']} examples, this run has "
                         f"{examples} (other documents or queries); use another --workdir")


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, *,
                    cfg: TrainConfig | None = None, examples: int | None = None) -> int:
    """Load weights (and optimizer moments) from a checkpoint folder; returns its step. With ``cfg`` (a
    resume), a checkpoint of other training settings, or of another number of ``examples``, is refused."""
    state = json.loads((path / "state.json").read_text())
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} has checkpoint format {state.get('format')}; expected {CHECKPOINT_FORMAT}")
    if cfg is not None:
        _check_resumable(path, state, cfg, examples)
    params = _trained(model)
    if list(params) != state["parameters"]:
        missing = sorted(set(state["parameters"]) ^ set(params))[:5]
        raise ValueError(f"{path} was saved from a different model (parameters differ, e.g. {missing}); check ModelConfig")
    weights = load_file(str(path / "model.safetensors"))
    wrong = [n for n, p in params.items() if weights[n].shape != p.shape]
    if wrong:
        raise ValueError(f"{path} was saved from a different model (shapes differ for {wrong[:5]}); check ModelConfig")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(weights[name].to(p.device))
    if optimizer is not None:
        moments = load_file(str(path / "optimizer.safetensors"))
        for name, p in params.items():
            entry = {key.split("::", 1)[1]: v for key, v in moments.items() if key.split("::", 1)[0] == name}
            if entry:
                # "step" stays on CPU as AdamW keeps it; the moments follow the parameter
                optimizer.state[p] = {k: (v if k == "step" else v.to(p.device)) for k, v in entry.items()}
    return int(state["step"])


class _Bar:
    """A rich progress bar showing the loss; a no-op when disabled."""

    def __init__(self, total: int, start: int, *, enabled: bool) -> None:
        self._progress = None
        if enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("training"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(), transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("train", total=total, completed=start, loss="-")

    def update(self, done: int, loss: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, loss=f"{loss:.4f}")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
