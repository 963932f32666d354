"""Training checkpoints of both training loops (genir.train: retrieval, genir.rec.training: recommendation).

    CHECKPOINT_DIR/
      step-00000100/          retrieval: numbered by optimizer step (recommendation: epoch-00000003/)
        *.safetensors         weights, optimizer moments, ... (no pickle)
        state.json            format, counter, fingerprint and the loop's own state; written last
      .tmp-step-00000200-XXXX/  a write in progress (or killed): never read, removed when the next run starts

One write discipline (genir.store.atomic_write): every checkpoint is built in a temporary folder and renamed into place, and nothing is
ever modified in place, so a kill at any moment leaves each checkpoint complete or absent. One fingerprint
rule: a checkpoint records the settings that shape training and an identity of the training data, and a
resume from a checkpoint whose fingerprint differs is refused, naming what differs. Crash hooks
(genir.store.crash_point) mark the points the SIGKILL tests kill at.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from genir.store import atomic_write, crash_point

logger = logging.getLogger(__name__)

FORMAT = 2  # 1: retrieval checkpoints written before this module (train_config + examples, no fingerprint)
STATE = "state.json"
_NAME = re.compile(r"^(step|epoch)-(\d{8})$")


@dataclass(frozen=True)
class Fingerprint:
    """What a run trains on. A resume must match both parts: otherwise it would silently give a model that
    matches neither run."""

    settings: dict[str, Any]  # config fields that shape training, as JSON values (fields a resume may change left out)
    data: str  # identity of the training data: "sha256:..." of its arrays, "N examples", or "" (unknown: not checked)


def fingerprint(config: Mapping[str, Any], *, data: str | Iterable[np.ndarray],
                leave_out: Callable[[str], bool] = lambda name: False) -> Fingerprint:
    """The fingerprint of a run: ``config`` (a config as a dict) without the fields ``leave_out`` names, and
    ``data`` (arrays are hashed; a string is kept as it is)."""
    settings = {k: v for k, v in json.loads(json.dumps(dict(config), default=str)).items() if not leave_out(k)}
    if not isinstance(data, str):
        h = hashlib.sha256()
        for arr in data:
            h.update(str(np.asarray(arr).dtype).encode() + str(np.shape(arr)).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        data = f"sha256:{h.hexdigest()}"
    return Fingerprint(settings, data)


# a training loop's ``resume`` value: continue from the checkpoints when their fingerprint matches the run's, else
# start over (genir bench rebuilding a recommendation index whose config changed: an untouched model resumes)
IF_FITS = "if_fits"


class CheckpointMismatch(ValueError):
    """A resume refused: the checkpoint was written by a run with other settings or data."""


def check_resumable(path: Path, saved: Fingerprint, now: Fingerprint) -> None:
    """CheckpointMismatch naming what differs unless a run with fingerprint ``now`` may resume from ``path``."""
    changed = sorted(k for k in set(saved.settings) | set(now.settings) if saved.settings.get(k) != now.settings.get(k))
    if changed:
        diffs = ", ".join(f"{k}: {saved.settings.get(k)!r} -> {now.settings.get(k)!r}" for k in changed[:4])
        raise CheckpointMismatch(f"cannot resume from {path}, a checkpoint of a different run: training settings differ "
                         f"({diffs}); use the same settings, another --workdir, or train without --resume")
    if saved.data and now.data and saved.data != now.data:
        raise CheckpointMismatch(f"cannot resume from {path}, a checkpoint of a different run: it trained on other data "
                         f"({saved.data[:19]}, this run {now.data[:19]}: other documents, queries, items or IDs); "
                         "use another --workdir, or train without --resume")


# ---------------------------------------------------------------------------------------------- the folder
def checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints under ``folder``, oldest first (temp folders of interrupted writes are not listed)."""
    folder = Path(folder)
    found = [p for p in folder.iterdir() if _NAME.match(p.name) and (p / STATE).is_file()] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(2)))


def latest(folder: Path) -> Path | None:
    """The newest complete checkpoint under ``folder``, or None."""
    found = checkpoints(folder)
    return found[-1] if found else None


def prepare(folder: Path, *, resume: bool) -> None:
    """Get ``folder`` ready for a run (rank 0 only): remove temp leftovers of killed writes and, unless the run
    resumes, the checkpoints of earlier runs, so a later resume can never pick one of them up."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for tmp in folder.glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    old = checkpoints(folder)
    if old and not resume:
        logger.warning("starting over: removing %d checkpoint(s) of an earlier run in %s (resume to continue "
                       "from them instead)", len(old), folder)
        for path in old:
            _remove(path)


def _remove(path: Path) -> None:
    """Delete a checkpoint by renaming it out of sight first: a kill mid-delete never leaves a partial one listed."""
    doomed = Path(tempfile.mkdtemp(prefix=f".tmp-old-{path.name}-", dir=path.parent))
    os.rename(path, doomed / path.name)
    shutil.rmtree(doomed, ignore_errors=True)


def write(folder: Path, count: int, tensors: Mapping[str, Mapping[str, Tensor]], state: Mapping[str, Any], *,
          fingerprint: Fingerprint, keep: int, unit: str = "step") -> Path:
    """Write checkpoint ``folder/{unit}-{count:08d}`` atomically and keep only the newest ``keep``.

    ``tensors``: file name (without .safetensors) -> tensors; ``state``: the loop's JSON-able state.
    """
    final = Path(folder) / f"{unit}-{count:08d}"

    def fill(tmp: Path) -> None:
        for name, group in tensors.items():
            save_file({k: v.detach().cpu().contiguous() for k, v in group.items()}, str(tmp / f"{name}.safetensors"))
        doc = {"format": FORMAT, unit: count, **state, "settings": fingerprint.settings, "data": fingerprint.data}
        (tmp / STATE).write_text(json.dumps(doc, indent=2))

    def before_rename() -> None:
        crash_point("checkpoint.written")  # complete, fsynced files under a temp name: a resume must ignore them
        if final.exists():  # the same count again (an earlier run's leftover): replace it
            _remove(final)

    atomic_write(final, fill, directory=True, before_replace=before_rename)  # temp folder .tmp-{unit}-{count:08d}-*
    crash_point("checkpoint.renamed")
    for old in checkpoints(folder)[: -max(1, keep)]:
        _remove(old)
    return final


def read(path: Path, now: Fingerprint | None = None, *,
         legacy: Callable[[dict], Fingerprint] | None = None) -> dict[str, Any]:
    """The state of checkpoint ``path``; with ``now`` (a resume), refused unless the fingerprints match.

    ``legacy(state) -> Fingerprint`` reads a format-1 checkpoint (the retrieval loop's first format).
    """
    path = Path(path)
    state = json.loads((path / STATE).read_text())
    fmt = state.get("format")
    if fmt == FORMAT:
        saved = Fingerprint(state["settings"], state["data"])
    elif fmt == 1 and legacy is not None:
        saved = legacy(state)
    else:
        raise ValueError(f"{path} has checkpoint format {fmt!r}, which this genir cannot read (it writes "
                         f"{FORMAT}); delete it or use another --workdir")
    if now is not None:
        check_resumable(path, saved, now)
    return state


def tensors(path: Path, name: str) -> dict[str, Tensor]:
    """The tensors of file ``name`` (without .safetensors) of checkpoint ``path``."""
    return load_file(str(Path(path) / f"{name}.safetensors"))


# ---------------------------------------------------------------------------------------------- optimizer
def optimizer_tensors(params: Mapping[str, nn.Parameter], optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    """The optimizer's per-parameter state (AdamW: moments and step) keyed ``"param name::key"``: by name, so a
    checkpoint does not depend on the order of parameter groups."""
    out: dict[str, Tensor] = {}
    for name, p in params.items():
        for key, value in optimizer.state.get(p, {}).items():
            if torch.is_tensor(value):
                out[f"{name}::{key}"] = value.detach().cpu().contiguous()
    return out


def load_optimizer(params: Mapping[str, nn.Parameter], optimizer: torch.optim.Optimizer,
                   saved: Mapping[str, Tensor]) -> None:
    """Restore what ``optimizer_tensors`` saved onto ``params`` (moments follow each parameter's device)."""
    by_param: dict[str, dict[str, Tensor]] = {}
    for key, value in saved.items():
        name, field = key.split("::", 1)
        by_param.setdefault(name, {})[field] = value
    for name, p in params.items():
        if name in by_param:
            # "step" stays on CPU as AdamW keeps it; the moments follow the parameter
            optimizer.state[p] = {k: (v if k == "step" else v.to(p.device)) for k, v in by_param[name].items()}
