"""The work of a `genir bench` job, one function per step, each runnable in this process or as a Ray task.

    WORK/indexes/<build key>/          the index (genir.store format) and <build key>.build.json, its record
    WORK/train/<build key>/            checkpoints + lineage.json (one entry per process that built it)
    WORK/cache/{embeddings,encoder_cache}/   shared by every build (linked into each train folder): keyed by
                                             model and texts, so a second config over a corpus skips embedding
    OUT/cells/<cell key>.json          one result per cell: metrics, full config, seeds, timings, lineage,
                                       provenance; written atomically, by code only

Every step catches its own failure and returns a record saying so: one bad cell never stops the others.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genir.bench.job import Build, Cell
from genir.provenance import git_state, provenance

logger = logging.getLogger(__name__)

FORMAT = 1  # of the cell and build records
CACHES = ("embeddings", "encoder_cache")  # workdir subfolders GenerativeIndex.build reads and fills by content key


@dataclass(frozen=True)
class Context:
    """What every step needs besides its build or cell (picklable: it travels to Ray workers)."""

    job: dict  # genir.bench.job.describe(job)
    out: str  # result folder
    work: str  # indexes, checkpoints, caches
    device: str  # auto | cpu | cuda | cuda:N
    backend: str  # local | ray
    command: tuple[str, ...]  # the command line that started the job (the driver's, also inside Ray workers)
    # genir.provenance.git_state() when the job started: the code that ran. Taken again per file it would read
    # "dirty" from the second cell on, because the job writes its committed result files into the checkout
    git: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- small helpers
def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def process(ctx: Context) -> dict:
    """Which process did a step, at which commit: recorded in lineage, never typed."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "backend": ctx.backend, "command": " ".join(ctx.command),
            "git": ctx.git or git_state()}


def run_provenance(ctx: Context) -> dict:
    """genir.provenance of a step (its machine, load and time), with the git state of the job's start."""
    return {**provenance(list(ctx.command)), "git": ctx.git or git_state()}


def write_json(path: Path, obj: Any) -> None:
    """Atomically (genir.store.atomic_write: readers see the old file or the new one, never a part)."""
    from genir.store import atomic_write_text

    atomic_write_text(Path(path), json.dumps(obj, indent=2, default=str))


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def failure(exc: BaseException) -> dict:
    return {"error": f"{type(exc).__name__}: {exc}".strip().splitlines()[0],
            "traceback": traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:]}


def index_dir(ctx: Context, build: Build) -> Path:
    return Path(ctx.work) / "indexes" / build.key


def record_path(ctx: Context, build: Build) -> Path:
    return Path(ctx.work) / "indexes" / f"{build.key}.build.json"


def cell_path(ctx: Context, cell: Cell) -> Path:
    return Path(ctx.out) / "cells" / f"{cell.key}.json"


def finished(ctx: Context, cell: Cell) -> dict | None:
    """The cell's result when a finished one with the same hash is on disk (a re-run skips it), else None."""
    result = read_json(cell_path(ctx, cell))
    return result if result and result.get("status") == "ok" and result.get("cell", {}).get("hash") == cell.hash else None


# ---------------------------------------------------------------------------------------------- embed
def embed_corpus(build: Build, ctx: Context) -> dict:
    """Fill the shared embedding cache for a retrieval build's corpus (the builds then read it); under Ray this
    runs once per corpus and encoder before the builds that share it."""
    started = time.perf_counter()
    try:
        from genir.data import load_corpus
        from genir.embed import Embedder

        cfg = build.cfg()
        Embedder(cfg.embed, device=ctx.device).encode_cached(load_corpus(build.data).passages(),
                                                             Path(ctx.work) / "cache" / "embeddings", progress=False)
        return {"status": "ok", "seconds": time.perf_counter() - started, **process(ctx)}
    except Exception as exc:  # the builds retry and report it; nothing else depends on this step
        logger.warning("embedding %s failed: %s", build.data, exc)
        return {"status": "failed", **failure(exc)}


# ---------------------------------------------------------------------------------------------- build
def build_index(build: Build, ctx: Context, *_after: Any) -> dict:
    """Build (or resume, or reuse) the index of ``build``; -> its build record (status ok | failed).

    A record with the same hash and a loadable index means it is built: reused. Otherwise training resumes from
    the checkpoints in its train folder when they belong to the same hash (an earlier process was killed or
    failed), and starts over when they do not; a recommendation build also tries the checkpoints of an earlier
    hash (a changed serving field, e.g. the hybrid fusion's, needs no retraining): each model resumes from its
    own when they were trained with its settings and data, and trains from scratch otherwise (logged; the
    attempt's epochs say how far each went). ``_after``: Ray results this build waits for (the embedding)."""
    from genir.checkpoint import IF_FITS
    from genir.store import is_index

    record = read_json(record_path(ctx, build))
    if record and record.get("hash") == build.hash and record.get("status") == "ok" and is_index(index_dir(ctx, build)):
        return {**record, "reused": True}
    train = Path(ctx.work) / "train" / build.key
    lineage = read_json(train / "lineage.json") or {}
    for old in lineage.get("attempts", []):
        if old.get("status") == "running":
            old["status"] = "interrupted"  # its process died without a word (killed)
    found = _checkpoints(train)
    same = lineage.get("hash") == build.hash
    # a recommendation build of another hash may still resume: its models' checkpoints are fingerprinted by the
    # settings and data that shape each model (genir.rec.training), so a change to what only serves (the hybrid
    # fusion) keeps them, and a model whose settings or data changed trains from scratch (resume=IF_FITS)
    resume = same or (build.task == "recommend" and bool(found))
    if not same:
        lineage = {"hash": build.hash, "attempts": [],
                   **({"earlier": lineage} if lineage and resume else {})}  # whose checkpoints it may resume
    attempt = {**process(ctx), "started": now(), "resume": resume, "checkpoints_found": found, "status": "running"}
    lineage["attempts"].append(attempt)
    train.mkdir(parents=True, exist_ok=True)
    write_json(train / "lineage.json", lineage)
    _link_caches(train, Path(ctx.work) / "cache")
    try:
        if build.task == "retrieve":
            built = _build_retrieval(build, ctx, train, resume)
        else:
            built = _build_recommend(build, ctx, train, True if same else IF_FITS if resume else False)
        attempt.update(status="ok", ended=now(), **built.pop("attempt"))
    except Exception as exc:
        attempt.update(status="failed", ended=now(), **failure(exc))
        write_json(train / "lineage.json", lineage)
        logger.warning("building %s failed: %s", build.key, attempt["error"])
        return {"key": build.key, "hash": build.hash, "status": "failed", "error": attempt["error"],
                "lineage": lineage["attempts"]}
    write_json(train / "lineage.json", lineage)
    record = {"format": FORMAT, "kind": "genir-bench-build", "key": build.key, "hash": build.hash, "status": "ok",
              "index": str(index_dir(ctx, build)), "dataset": build.dataset, "data": build.data,
              "config_name": build.config_name, "config": build.config, "seeds": build.seeds(), **built,
              "lineage": lineage["attempts"], "earlier_lineage": lineage.get("earlier"), "provenance": run_provenance(ctx)}
    write_json(record_path(ctx, build), record)
    return record


def _checkpoints(train: Path) -> dict:
    """Newest checkpoint per training loop in ``train`` (retrieval: checkpoints/, recommendation: tiger/, sasrec/)."""
    from genir.checkpoint import latest

    found = {sub: latest(train / sub) for sub in ("checkpoints", "tiger", "sasrec")}
    return {sub: path.name for sub, path in found.items() if path is not None}


def _link_caches(train: Path, cache: Path) -> None:
    """Point the build's cache folders at the shared ones (their files are keyed by content, written atomically)."""
    for name in CACHES:
        (cache / name).mkdir(parents=True, exist_ok=True)
        link = train / name
        if not link.is_symlink():
            if link.exists():
                continue  # a real folder from another tool: leave it
            link.symlink_to((cache / name).resolve(), target_is_directory=True)


def _build_retrieval(build: Build, ctx: Context, train: Path, resume: bool) -> dict:
    """The steps of `genir index` for one config: train on train_split, tune on tune_split, save."""
    from genir.data import load_corpus, load_dataset, load_training
    from genir.index import GenerativeIndex

    started = time.perf_counter()
    cfg = build.cfg()
    if cfg.generative:
        corpus, train_q, train_qrels = load_training(build.data, build.train_split, dev_fraction=build.dev_fraction,
                                                     seed=build.seed)
    else:
        corpus, train_q, train_qrels = load_corpus(build.data), None, None
    load_seconds = time.perf_counter() - started
    built = GenerativeIndex.build(corpus, cfg, train_queries=train_q, train_qrels=train_qrels, device=ctx.device,
                                  workdir=train, resume=resume, progress=False)
    built.meta["build_seconds"] = {"load": load_seconds, **built.meta["build_seconds"]}
    tuned = None
    if cfg.generative and build.tune_split and train_q is not None:
        dev = load_dataset(build.data, split=build.tune_split, dev_fraction=build.dev_fraction, seed=build.seed)
        tuned = built.tune(dev.split_queries(), dev.qrels)["chosen"]
    version = built.save(index_dir(ctx, build), started=started)
    training = built.semantic.meta.get("train") if built.semantic is not None else None
    return {"version": version.name, "build_seconds": built.meta["build_seconds"],
            "peak_rss_mb": built.meta.get("peak_rss_mb"), "training": training, "fusion": tuned,
            "attempt": {"resumed_from": (training or {}).get("resumed_from"),
                        "steps": (training or {}).get("steps")}}


def _build_recommend(build: Build, ctx: Context, train: Path, resume: bool | str) -> dict:
    from genir.rec import commands

    started = time.perf_counter()
    reuse = None
    if build.reuse is not None:  # the index it is built from: built (or found built) first
        source = build_index(build.reuse, ctx)
        if source.get("status") != "ok":
            raise RuntimeError(f"its reused index {build.reuse.key} was not built: {source.get('error')}")
        reuse = index_dir(ctx, build.reuse)
    summary = commands.index(build.data, out=index_dir(ctx, build), config=build.cfg(),
                             modes=build.train_modes or build.modes, checkpoint_dir=train, resume=resume,
                             progress=False, device=ctx.device, reuse=reuse)
    reports = summary["reports"]
    seconds = {mode: r.get("seconds") for mode, r in reports.items()}
    return {"version": summary["version"], "build_seconds": {**seconds, "total": time.perf_counter() - started},
            "training": {mode: r.get("train") for mode, r in reports.items()},
            "attempt": {"epochs": {mode: (r.get("train") or {}).get("epochs") for mode, r in reports.items()}}}


# ---------------------------------------------------------------------------------------------- evaluate
_LOADED: dict[tuple[str, str], Any] = {}  # the last retrieval index loaded in this process (cells share it)


def evaluate_cell(cell: Cell, ctx: Context, record: dict) -> dict:
    """Evaluate one cell on its index (``record``: the build's record) and write its result file; -> the result."""
    started, t0 = now(), time.perf_counter()
    result: dict[str, Any] = {
        "format": FORMAT, "kind": "genir-bench-cell", "job": ctx.job,
        "cell": {"key": cell.key, "hash": cell.hash, "task": cell.build.task, "dataset": cell.build.dataset,
                 "data": cell.build.data, "config": cell.build.config_name, "split": cell.split, "mode": cell.mode,
                 "metrics": list(cell.metrics), "rel_threshold": cell.rel_threshold, "depth": cell.depth},
        "config": cell.build.config, "seeds": cell.build.seeds()}
    try:
        if record.get("status") != "ok":
            raise RuntimeError(f"index {cell.build.key} was not built: {record.get('error')}")
        report, load_seconds = (_eval_retrieval if cell.build.task == "retrieve" else _eval_recommend)(cell, ctx, record)
        row = report["results"][0]
        result.update(status="ok", metrics={m: row["metrics"][m] for m in cell.metrics},
                      queries_per_second=row["queries_per_second"], num_queries=report["num_queries"],
                      report=report)
        result["timings"] = {"load_index": load_seconds, "evaluate": time.perf_counter() - t0 - load_seconds}
    except Exception as exc:
        result.update(status="failed", **failure(exc))
        logger.warning("cell %s failed: %s", cell.key, result["error"])
    result["index"] = {k: record.get(k) for k in ("key", "hash", "index", "version", "build_seconds", "peak_rss_mb",
                                                  "training", "fusion", "lineage", "earlier_lineage")}
    result["lineage"] = {**process(ctx), "started": started, "ended": now()}
    result["provenance"] = run_provenance(ctx)
    write_json(cell_path(ctx, cell), result)
    return result


def failed_cell(cell: Cell, ctx: Context, error: str) -> dict:
    """The result of a cell whose task died before it could write one (e.g. a Ray worker killed)."""
    result = {"format": FORMAT, "kind": "genir-bench-cell", "job": ctx.job, "cell": {"key": cell.key, "hash": cell.hash},
              "status": "failed", "error": error, "lineage": {**process(ctx), "ended": now()},
              "provenance": run_provenance(ctx)}
    write_json(cell_path(ctx, cell), result)
    return result


def _eval_retrieval(cell: Cell, ctx: Context, record: dict) -> tuple[dict, float]:
    from genir.data import load_dataset
    from genir.evaluate import evaluate_index
    from genir.index import GenerativeIndex

    t = time.perf_counter()
    key = (record["index"], record["version"])
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = GenerativeIndex.load(Path(record["index"]), device=ctx.device)
    load_seconds = time.perf_counter() - t
    b = cell.build
    ds = load_dataset(b.data, split=cell.split, dev_fraction=b.dev_fraction, seed=b.seed)
    report = evaluate_index(_LOADED[key], ds.split_queries(), ds.qrels, modes=[cell.mode], dataset=b.dataset,
                            split=cell.split, measures=cell.metrics, k=cell.depth, progress=False,
                            rel=cell.rel_threshold)
    return report, load_seconds


def _eval_recommend(cell: Cell, ctx: Context, record: dict) -> tuple[dict, float]:
    from genir.rec import commands

    report = commands.evaluate(record["index"], data=cell.build.data, split=cell.split, modes=[cell.mode],
                               device=ctx.device)
    return report, 0.0  # loaded inside the evaluation
