"""Run a job: skip the cells already finished, build each index needed once, evaluate the rest on a backend
(this process, or Ray tasks), then write the summary (JSON, markdown, plot) and compare with expected scores."""
from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from genir.bench.cells import (Context, build_index, cell_path, embed_corpus, evaluate_cell, failed_cell, finished,
                               read_json, run_provenance, write_json)
from genir.bench.job import Build, Cell, Job, describe, load_job
from genir.provenance import git_state
from genir.store import atomic_write_text as write_json_text

logger = logging.getLogger(__name__)

BACKENDS = ("local", "ray")
RAY_MISSING = "the Ray backend needs ray: pip install 'genir[ray]'"


@dataclass(frozen=True)
class Outcome:
    summary: dict  # what summary.json holds
    text: str  # the markdown summary, plus the check table when asked
    exit_code: int  # 0; 1 when a cell failed or (with check) a score moved beyond its tolerance


def run_job(path: str | Path, *, out: str | Path | None = None, check: bool = False, backend: str = "local",
            address: str | None = None, device: str = "auto", timeout: float | None = None,
            argv: Sequence[str] | None = None) -> Outcome:
    """Run the job file ``path`` (see genir.bench.job) and summarise every cell, finished earlier or now.

    ``backend``: "local" (this process, one cell after another) or "ray" (one Ray task per step, on the cluster
    at ``address`` or a local one). ``timeout`` (Ray only): seconds after which the job stops waiting for the
    tasks still running and their cells fail with a message saying so, so a starved or stuck cluster ends the job
    instead of hanging it (a Ray the job started is shut down with its tasks; see ``_run_ray``). ``check``: exit code 1 when a score is not within tolerance of the job's expected value. Bad job
    files raise ValueError before any work."""
    job = load_job(path, out=out)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {list(BACKENDS)}")
    if address is not None and backend != "ray":
        raise ValueError("--address applies to --backend ray")
    if timeout is not None and (backend != "ray" or timeout <= 0):
        raise ValueError("--timeout SECONDS (> 0) applies to --backend ray (a local job runs in this process)")
    if backend == "ray":
        _import_ray()  # before any work: a missing extra costs nothing
    ctx = Context(job=describe(job), out=str(job.out), work=str(job.work), device=device, backend=backend,
                  command=tuple(sys.argv if argv is None else argv), git=git_state())
    done = {c.key: r for c in job.cells if (r := finished(ctx, c)) is not None}
    pending = [c for c in job.cells if c.key not in done]
    logger.info("%s: %d cells, %d finished earlier, %d to run (%s)", job.name, len(job.cells), len(done),
                len(pending), backend)
    runner = _run_ray if backend == "ray" else _run_local
    new, builds = runner(pending, ctx, address=address, timeout=timeout) if pending else ({}, {})
    summary = summarise(job, ctx, {**done, **new}, skipped=set(done), builds=builds)
    text = markdown(summary)
    failed = summary["counts"]["failed"] + summary["counts"]["missing"]
    moved = [row for row in summary["check"] if not row["ok"]]
    if check:
        text += "\n" + check_table(summary["check"], job)
    return Outcome(summary=summary, text=text, exit_code=1 if failed or (check and moved) else 0)


def plan(path: str | Path, *, out: str | Path | None = None) -> str:
    """What `genir bench JOB.toml` would do, without doing it (`--dry-run`): the job file checked as a run checks
    it, its builds, its cells (finished earlier, or to run) and expected scores. -> the text printed."""
    job = load_job(path, out=out)
    ctx = Context(job=describe(job), out=str(job.out), work=str(job.work), device="cpu", backend="local", command=())
    cells = [(c, finished(ctx, c) is not None) for c in job.cells]
    lines = [f"{job.name} ({job.task}): {len(job.builds)} builds, {len(cells)} cells "
             f"({sum(done for _, done in cells)} finished earlier), {len(job.expected)} expected scores",
             f"out: {job.out}", f"work: {job.work}", "builds:"]
    lines += [f"  {b.key}  hash {b.hash}  data {b.data}" for b in job.builds]
    lines.append("cells:")
    lines += [f"  {c.key}  {'finished' if done else 'to run'}" for c, done in cells]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- backends
def _builds_of(cells: list[Cell]) -> list[Build]:
    """The builds of ``cells``, each once, those built from another index ([reuse]) after the others."""
    builds = list({c.build.key: c.build for c in cells}.values())
    return sorted(builds, key=lambda b: b.reuse is not None)


def _run_local(cells: list[Cell], ctx: Context, **_ray_only: Any) -> tuple[dict, dict]:
    results, records = {}, {}
    for build in _builds_of(cells):
        records[build.key] = build_index(build, ctx)
        for cell in (c for c in cells if c.build.key == build.key):
            results[cell.key] = evaluate_cell(cell, ctx, records[build.key])
    return results, records


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError(RAY_MISSING) from None
    return ray


def _run_ray(cells: list[Cell], ctx: Context, *, address: str | None, timeout: float | None) -> tuple[dict, dict]:
    """One Ray task per step: embedding (once per corpus and encoder), build (once per index), cell. Each task
    waits on the results it needs; the folders OUT and WORK must be shared by every node. Tasks not done
    ``timeout`` seconds after the start are reported as failed (and left to Ray: see the note at the end)."""
    ray = _import_ray()
    from ray.exceptions import GetTimeoutError

    deadline = None if timeout is None else time.monotonic() + timeout

    def get(ref: Any) -> Any:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return ray.get(ref, timeout=left)
        except GetTimeoutError:
            raise TimeoutError(f"not finished within --timeout {timeout:g} s (a starved or stuck Ray cluster? "
                               "ray status shows what its CPUs/GPUs are doing)") from None

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        # a GPU per task where the cluster has GPUs (CUDA present), else one CPU each
        opts: dict[str, Any] = {"num_gpus": 1} if ray.cluster_resources().get("GPU", 0) >= 1 else {"num_cpus": 1}
        embed_task, build_task, cell_task = (ray.remote(**opts)(f) for f in (embed_corpus, build_index, evaluate_cell))
        embeds: dict[str, Any] = {}
        build_refs = {}
        for build in _builds_of(cells):
            after = []
            if build.task == "retrieve":
                key = json.dumps([build.data, build.config["embed"]], sort_keys=True)
                after = [embeds.setdefault(key, embed_task.remote(build, ctx))]
            if build.reuse is not None and build.reuse.key in build_refs:
                after.append(build_refs[build.reuse.key])  # its source is built by that task, not twice
            build_refs[build.key] = build_task.remote(build, ctx, *after)
        cell_refs = {c.key: cell_task.remote(c, ctx, build_refs[c.build.key]) for c in cells}
        results, records = {}, {}
        for cell in cells:
            try:
                results[cell.key] = get(cell_refs[cell.key])
            except Exception as exc:  # the task's process died, Ray did, or time ran out: record it, go on
                results[cell.key] = failed_cell(cell, ctx, f"Ray task failed: {type(exc).__name__}: {exc}")
        for key, ref in build_refs.items():
            try:
                records[key] = get(ref)
            except Exception as exc:
                records[key] = {"status": "failed", "error": f"Ray task failed: {exc}"}
        # Tasks still running at the deadline are not cancelled: ray.cancel (forced or not) races with a task's
        # own completion and aborts this process ("Check failed: ... Tried to complete task that was not
        # pending", reproduced here with Ray 2.60 in about one of 40 cancels). A Ray started here stops them
        # with the shutdown below; on a cluster of the caller's they finish, and the next run skips their cells.
        return results, records
    finally:
        if started_here:
            ray.shutdown()


# ---------------------------------------------------------------------------------------------- summary
def summarise(job: Job, ctx: Context, results: dict[str, dict], *, skipped: set[str], builds: dict) -> dict:
    """summary.json / .md / .png in OUT: one row per cell (finished earlier or now), the check against expected
    scores, and how this run went (cells skipped, indexes built or reused). -> the summary dict."""
    rows = []
    for c in job.cells:
        r = results.get(c.key) or read_json(cell_path(ctx, c)) or {}
        rows.append({"cell": c.key, "dataset": c.build.dataset, "config": c.build.config_name, "split": c.split,
                     "mode": c.mode, "status": r.get("status", "missing"), "metrics": r.get("metrics", {}),
                     "error": r.get("error"), "skipped": c.key in skipped,
                     "file": str(cell_path(ctx, c).relative_to(job.out))})
    status = [r["status"] for r in rows]
    summary = {
        "format": 1, "kind": "genir-bench-summary", "job": describe(job), "metrics": list(job.metrics),
        "counts": {"cells": len(rows), "ok": status.count("ok"), "failed": status.count("failed"),
                   "missing": status.count("missing"), "skipped": len(skipped),
                   "evaluated": len(rows) - len(skipped),
                   "built": sum(1 for b in builds.values() if b.get("status") == "ok" and not b.get("reused")),
                   "reused": sum(1 for b in builds.values() if b.get("reused"))},
        "cells": rows, "check": compare(job, rows), "provenance": run_provenance(ctx),
    }
    job.out.mkdir(parents=True, exist_ok=True)
    summary["plot"] = plot(summary, job.out / "summary.png")
    write_json(job.out / "summary.json", summary)
    write_json_text(job.out / "summary.md", markdown(summary))
    return summary


def compare(job: Job, rows: list[dict]) -> list[dict]:
    """Each expected score against the measured one: ok when |measured - expected| <= tolerance."""
    by_cell = {r["cell"]: r for r in rows}
    out = []
    for e in job.expected:
        measured = by_cell[e.cell]["metrics"].get(e.metric)
        diff = None if measured is None else measured - e.value
        out.append({"cell": e.cell, "metric": e.metric, "expected": e.value, "measured": measured, "diff": diff,
                    "tolerance": e.tolerance, "ok": diff is not None and abs(diff) <= e.tolerance + 1e-12})
    return out


def markdown(summary: dict) -> str:
    metrics = summary["metrics"]
    c = summary["counts"]
    lines = [f"# {summary['job']['name']}", "",
             f"{c['cells']} cells: {c['ok']} ok, {c['failed']} failed, {c['missing']} missing; {c['skipped']} "
             f"finished earlier (skipped), {c['evaluated']} evaluated now; indexes built {c['built']}, "
             f"reused {c['reused']}", "",
             "| dataset | config | split | mode | " + " | ".join(metrics) + " | status |",
             "|---" * (len(metrics) + 5) + "|"]
    for r in summary["cells"]:
        values = [f"{r['metrics'][m]:.4f}" if m in r["metrics"] else "-" for m in metrics]
        lines.append(f"| {r['dataset']} | {r['config']} | {r['split']} | {r['mode']} | " + " | ".join(values)
                     + f" | {r['status']} |")
    errors = [r for r in summary["cells"] if r["error"]]
    if errors:
        lines += ["", "Failed cells:", *(f"- {r['cell']}: {r['error']}" for r in errors)]
    return "\n".join(lines) + "\n"


def check_table(rows: list[dict], job: Job) -> str:
    if not rows:
        return f"check: {job.path.name} has no [[expected]] scores; nothing to compare\n"
    moved = sum(not r["ok"] for r in rows)
    lines = [f"check: {len(rows) - moved} of {len(rows)} expected scores within tolerance"
             + (f"; {moved} moved:" if moved else ""), "",
             "| cell | metric | expected | measured | diff | tolerance | |", "|---" * 7 + "|"]
    for r in rows:
        measured = "missing" if r["measured"] is None else f"{r['measured']:.4f}"
        diff = "-" if r["diff"] is None else f"{r['diff']:+.4f}"
        lines.append(f"| {r['cell']} | {r['metric']} | {r['expected']:.4f} | {measured} | {diff} | "
                     f"{r['tolerance']:.4f} | {'ok' if r['ok'] else 'MOVED'} |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> str:
    """A bar per finished cell for each metric; -> the file name, or a note when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed (pip install matplotlib)"
    rows = [r for r in summary["cells"] if r["status"] == "ok"]
    metrics = summary["metrics"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(rows) * len(metrics) + 2), 4))
    width = 0.8 / max(len(metrics), 1)
    for i, m in enumerate(metrics):
        ax.bar([x + i * width for x in range(len(rows))], [r["metrics"].get(m, 0.0) for r in rows], width, label=m)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(rows))])
    ax.set_xticklabels([f"{r['dataset']}\n{r['config']}\n{r['split']} {r['mode']}" for r in rows], fontsize=7)
    ax.set_title(summary["job"]["name"])
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name
