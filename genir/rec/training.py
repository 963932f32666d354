"""One training loop for every recommender model: epochs, early stopping on validation, checkpoints, resume.

Each epoch reseeds numpy and torch from (seed, epoch), so a run resumed from a checkpoint continues
exactly as an uninterrupted run would. Checkpoints are safetensors (model, best model, optimizer tensors)
plus a JSON state file; no pickle.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from genir.progress import track

logger = logging.getLogger(__name__)

STATE_FILE = "train_state.json"


# config fields a resumed run may change: they decide how long to train, not what an epoch trains; a resumed
# run that raises patience or max_epochs trains on (changing this tuple changes every checkpoint's fingerprint)
RESUMABLE = ("max_epochs", "patience", "threads")


# RecConfig fields that shape SASRec's training: the rest (codec, generative model) leave its checkpoints valid,
# and the generative model's fingerprint leaves out the sasrec_* fields in turn
SASREC_SHARED = ("max_history", "early_stop_metric", "seed")


def _shapes(model: str, name: str) -> bool:
    if model == "sasrec":
        return name.startswith("sasrec_") or name in SASREC_SHARED
    if model == "generative":
        return not name.startswith("sasrec_")
    return True


def fingerprint_of(cfg, *arrays: np.ndarray, model: str = "") -> str:
    """sha256 of a config dataclass and arrays: what a checkpoint was trained on.

    RESUMABLE fields are left out; with ``model`` ("sasrec" / "generative") so are RecConfig fields that do
    not shape that model's training, so tuning one model never invalidates the other's checkpoints.
    """
    from genir.config import to_dict

    h = hashlib.sha256()
    fixed = {k: v for k, v in to_dict(cfg).items() if k not in RESUMABLE and _shapes(model, k)}
    h.update(json.dumps(fixed, sort_keys=True, default=str).encode())
    for arr in arrays:
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


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


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into flat tensors (safetensors) and the JSON-able rest."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in list(tensors.items()) + list(meta["scalars"].items()):
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _save_checkpoint(folder: Path, model: nn.Module, opt: torch.optim.Optimizer, report: TrainReport, bad: int,
                     fingerprint: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors, meta = _optimizer_tensors(opt)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(folder / "last.safetensors"))
    save_file(tensors, str(folder / "optimizer.safetensors"))
    tmp = folder / (STATE_FILE + ".tmp")
    state = {"report": report.to_dict(), "bad_epochs": bad, "optimizer": meta, "fingerprint": fingerprint}
    tmp.write_text(json.dumps(state))
    tmp.replace(folder / STATE_FILE)  # the state file is written last: it marks a complete checkpoint


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
    resume: bool = True,
    progress: bool | None = None,
    description: str = "train",
    fingerprint: str = "",
) -> TrainReport:
    """Train ``model`` in place and leave it holding the weights of the best validation epoch.

    batches(rng) yields one epoch of batches; loss_fn(model, batch) -> scalar loss; validate() ->
    metrics dict containing ``metric`` (higher is better); every epoch without improvement multiplies the
    learning rate by ``lr_decay``. With ``checkpoint_dir``, every epoch saves
    the last and best weights, and ``resume`` continues from whatever is there; ``fingerprint`` (e.g. a
    hash of config and targets) must match the checkpoint's, so a resume never mixes incompatible runs.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    report, bad, best_state = TrainReport(), 0, None
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if folder is not None and resume and (folder / STATE_FILE).exists():
        saved = json.loads((folder / STATE_FILE).read_text())
        if saved.get("fingerprint", "") != fingerprint:
            raise ValueError(f"checkpoint {folder} belongs to a different run (data, IDs or config differ); "
                             "delete it or train with resume=False")
        report, bad = TrainReport(**saved["report"]), saved["bad_epochs"]
        model.load_state_dict(load_file(str(folder / "last.safetensors")))
        _load_optimizer(opt, load_file(str(folder / "optimizer.safetensors")), saved["optimizer"])
        if (folder / "best.safetensors").exists():
            best_state = load_file(str(folder / "best.safetensors"))
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
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
                save_file({k: v.contiguous() for k, v in best_state.items()}, str(folder / "best.safetensors"))
        else:
            bad += 1
            for group in opt.param_groups:
                group["lr"] *= lr_decay
        report.stopped_early = bad >= patience
        done = report.stopped_early or epoch >= max_epochs
        if folder is not None:
            _save_checkpoint(folder, model, opt, report, bad, fingerprint)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return report
