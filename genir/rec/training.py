"""One training loop for every recommender model: epochs, early stopping on validation, checkpoints, resume.

Each epoch reseeds numpy and torch from (seed, epoch), so a run resumed from a checkpoint continues
exactly as an uninterrupted run would. Every epoch writes ``CHECKPOINT_DIR/epoch-00000003/`` through
genir.checkpoint (temporary folder renamed into place): model, best model and optimizer tensors as
safetensors plus state.json (report, epochs without improvement, learning rates, fingerprint); no pickle.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from genir import checkpoint
from genir.progress import track

logger = logging.getLogger(__name__)

LEGACY_STATE = "train_state.json"  # checkpoints written in place before genir.checkpoint (not resumable)
KEEP = 1  # epoch checkpoints kept: the newest is complete (renamed into place) before the previous one goes


# config fields a resumed run may change: they decide how long to train, not what an epoch trains; a resumed
# run that raises patience or max_epochs trains on (changing this tuple changes every checkpoint's fingerprint)
RESUMABLE = ("max_epochs", "patience", "threads")


# RecConfig fields that shape SASRec's training: the rest (codec, generative model) leave its checkpoints valid,
# and the generative model's fingerprint leaves out the sasrec_* fields in turn
SASREC_SHARED = ("max_history", "early_stop_metric", "seed")
# RecConfig fields that shape no model's training: the hybrid fusion is tuned after both models are trained
SERVING = ("hybrid", "hybrid_users", "hybrid_objective")


def _shapes(model: str, name: str) -> bool:
    if name in SERVING:
        return False
    if model == "sasrec":
        return name.startswith("sasrec_") or name in SASREC_SHARED
    if model == "generative":
        return not name.startswith("sasrec_")
    return True


def fingerprint_of(cfg, *arrays: np.ndarray, model: str = "") -> checkpoint.Fingerprint:
    """What a checkpoint was trained on: a config dataclass's fields and a sha256 of the arrays.

    RESUMABLE fields are left out; with ``model`` ("sasrec" / "generative") so are RecConfig fields that do
    not shape that model's training, so tuning one model never invalidates the other's checkpoints.
    """
    from genir.config import to_dict

    return checkpoint.fingerprint(to_dict(cfg), data=arrays,
                                  leave_out=lambda name: name in RESUMABLE or not _shapes(model, name))


LOG_EVERY = 120.0  # seconds between progress log lines inside an epoch (for runs without a terminal)


@dataclass
class TrainReport:
    """What a training run did; saved next to the model and into benchmark JSON."""

    epochs: int = 0  # epochs run in total (including ones before a resume)
    best_epoch: int = 0  # 1-based epoch whose weights were kept (0: none)
    best_metric: float = -math.inf  # validation value of the watched metric at best_epoch
    seconds: float = 0.0  # wall-clock training time, validation included
    stopped_early: bool = False  # patience ran out before max_epochs
    history: list[dict] = field(default_factory=list)  # per epoch: loss, validation metrics, seconds

    def to_dict(self) -> dict:
        return asdict(self)


def _save_checkpoint(folder: Path, model: nn.Module, opt: torch.optim.Optimizer, report: TrainReport, bad: int,
                     best_state: dict[str, torch.Tensor] | None, fingerprint: checkpoint.Fingerprint) -> None:
    """One atomic checkpoint per epoch: last and best weights, optimizer and report always belong together."""
    files = {"model": model.state_dict(), "optimizer": checkpoint.optimizer_tensors(dict(model.named_parameters()), opt)}
    if best_state is not None:
        files["best"] = best_state
    state = {"report": report.to_dict(), "bad_epochs": bad, "lrs": [g["lr"] for g in opt.param_groups]}
    checkpoint.write(folder, report.epochs, files, state, fingerprint=fingerprint, keep=KEEP, unit="epoch")


def _resume(folder: Path, model: nn.Module, opt: torch.optim.Optimizer, fingerprint: checkpoint.Fingerprint,
            ) -> tuple[TrainReport, int, dict[str, torch.Tensor] | None] | None:
    """Restore the newest checkpoint in ``folder`` -> (report, epochs without improvement, best weights), or None."""
    last = checkpoint.latest(folder)
    if last is None:
        return None
    state = checkpoint.read(last, fingerprint)
    model.load_state_dict(checkpoint.tensors(last, "model"))
    checkpoint.load_optimizer(dict(model.named_parameters()), opt, checkpoint.tensors(last, "optimizer"))
    for group, lr in zip(opt.param_groups, state["lrs"]):
        group["lr"] = lr  # decayed after epochs without improvement
    best = checkpoint.tensors(last, "best") if (last / "best.safetensors").exists() else None
    return TrainReport(**state["report"]), int(state["bad_epochs"]), best


def _fits(folder: Path, fingerprint: checkpoint.Fingerprint, description: str) -> bool:
    """resume=checkpoint.IF_FITS: resume when the newest checkpoint in ``folder`` (if any) was trained like this run."""
    last = checkpoint.latest(folder)
    if last is None:
        return True
    try:
        checkpoint.read(last, fingerprint)
    except checkpoint.CheckpointMismatch as exc:
        logger.warning("%s: training from scratch: %s", description, exc)
        return False
    return True


def _prepare(folder: Path, resume: bool) -> None:
    if (folder / LEGACY_STATE).exists():
        if resume:
            raise ValueError(f"{folder} holds a checkpoint of an older genir, written in place (a kill could leave "
                             "its weights and report from different epochs); delete it, use another --workdir, "
                             "or train without --resume")
        for name in (LEGACY_STATE, "last.safetensors", "best.safetensors", "optimizer.safetensors"):
            (folder / name).unlink(missing_ok=True)
    checkpoint.prepare(folder, resume=resume)


def fit(
    model: nn.Module,
    *,
    batches: Callable[[np.random.Generator], Iterable[tuple]],
    loss_fn: Callable[[nn.Module, tuple], torch.Tensor],
    validate: Callable[[], dict[str, float]],
    metric: str,
    lr: float,
    weight_decay: float = 0.0,
    max_epochs: int,
    patience: int,
    lr_decay: float = 1.0,
    seed: int = 0,
    checkpoint_dir: Path | None = None,
    resume: bool | str = True,
    progress: bool | None = None,
    description: str = "train",
    fingerprint: checkpoint.Fingerprint = checkpoint.Fingerprint({}, ""),
) -> TrainReport:
    """Train ``model`` in place and leave it holding the weights of the best validation epoch.

    batches(rng) yields one epoch of batches; loss_fn(model, batch) -> scalar loss; validate() ->
    metrics dict containing ``metric`` (higher is better); every epoch without improvement multiplies the
    learning rate by ``lr_decay``. With ``checkpoint_dir``, every epoch saves
    the last and best weights, and ``resume`` continues from the newest checkpoint there (without it, earlier
    checkpoints are removed); ``fingerprint`` (fingerprint_of config and targets) must match the checkpoint's,
    so a resume never mixes incompatible runs: refused (CheckpointMismatch), or with ``resume=genir.checkpoint.IF_FITS`` a new
    start (the checkpoints of another run are removed, logged).
    """
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    report, bad, best_state = TrainReport(), 0, None
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if folder is not None and resume == checkpoint.IF_FITS:
        resume = _fits(folder, fingerprint, description)
    if folder is not None:
        _prepare(folder, resume)
    restored = _resume(folder, model, opt, fingerprint) if folder is not None and resume else None
    if restored is not None:
        report, bad, best_state = restored
        logger.info("%s: resumed after epoch %d (best %.4f at %d)", description, report.epochs, report.best_metric,
                    report.best_epoch)
    report.stopped_early = report.epochs > 0 and bad >= patience  # judged with this run's patience
    done = report.stopped_early or report.epochs >= max_epochs
    while not done:
        epoch = report.epochs + 1
        t0 = time.perf_counter()
        torch.manual_seed(seed * 100_003 + epoch)
        model.train()
        total, count, last_log = 0.0, 0, t0
        epoch_batches = batches(np.random.default_rng([seed, epoch]))
        for batch in track(epoch_batches, description=f"{description} epoch {epoch}", enabled=progress):
            loss = loss_fn(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total, count = total + float(loss.detach()), count + 1
            if time.perf_counter() - last_log > LOG_EVERY:
                last_log = time.perf_counter()
                logger.info("%s epoch %d: %d batches, loss %.4f", description, epoch, count, total / count)
        model.eval()
        with torch.no_grad():
            scores = validate()
        if metric not in scores:
            raise ValueError(f"unknown early-stopping metric {metric!r}; expected one of {sorted(scores)}")
        seconds = time.perf_counter() - t0
        report.epochs, report.seconds = epoch, report.seconds + seconds
        report.history.append({"epoch": epoch, "loss": total / max(count, 1), "valid": scores,
                               "seconds": round(seconds, 2)})
        logger.info("%s epoch %d: loss %.4f valid %s (%.0fs)", description, epoch, total / max(count, 1),
                    {k: round(v, 4) for k, v in scores.items()}, seconds)
        if scores[metric] > report.best_metric:
            report.best_metric, report.best_epoch, bad = scores[metric], epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            for group in opt.param_groups:
                group["lr"] *= lr_decay
        report.stopped_early = bad >= patience
        done = report.stopped_early or epoch >= max_epochs
        if folder is not None:
            _save_checkpoint(folder, model, opt, report, bad, best_state, fingerprint)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return report
