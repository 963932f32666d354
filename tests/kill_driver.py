"""Kill-suite driver (run as a subprocess by tests/test_reliability.py; not collected by pytest).

Imports genir once, then for every crash point of a command forks a child that runs the command with
GENIR_CRASH_AT=i (the child SIGKILLs itself there), plus children killed by the parent after timed delays.
After each kill it checks the index directory: it must verify (manifest + every sha256), load, and answer
the probe queries exactly as the index before the command or as the index after it.

    python tests/kill_driver.py WORK_DIR COMMAND_JSON PROBES_JSON  ->  prints one JSON report line
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

torch.set_num_threads(1)  # no OpenMP pool before fork: forked children cannot inherit a stuck one

from genir import store  # noqa: E402
from genir.cli import main  # noqa: E402
from genir.index import GenerativeIndex  # noqa: E402


def answers(index_dir: Path, probes: list[str]) -> list:
    idx = GenerativeIndex.load(index_dir, device="cpu")
    return [[(h.doc_id, round(h.score, 4)) for h in hits] for mode in idx.modes
            for hits in idx.search(probes, k=5, mode=mode)]


def run_child(argv: list[str], crash_at: int | None, log: str | None, kill_after: float | None) -> int:
    pid = os.fork()
    if pid == 0:  # child
        if crash_at is not None:
            os.environ["GENIR_CRASH_AT"] = str(crash_at)
        if log is not None:
            os.environ["GENIR_CRASH_LOG"] = log
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        try:
            main(argv)
        except SystemExit as exc:
            os._exit(exc.code or 0)
        os._exit(0)
    if kill_after is not None:
        time.sleep(kill_after)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def main_driver() -> None:
    work, argv, probes = Path(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
    index_dir = Path(argv[argv.index("--out") + 1]) if "--out" in argv else Path(argv[1])
    pristine = work / "pristine"
    had_before = index_dir.exists()
    if had_before:
        shutil.copytree(index_dir, pristine, symlinks=True)
    before = answers(index_dir, probes) if had_before else None

    def reset() -> None:
        shutil.rmtree(index_dir, ignore_errors=True)
        if had_before:
            shutil.copytree(pristine, index_dir, symlinks=True)

    log = work / "points.log"
    start = time.perf_counter()
    assert run_child(argv, None, str(log), None) == 0, "the command fails without any kill"
    full_seconds = time.perf_counter() - start
    after = answers(index_dir, probes)
    points = log.read_text().splitlines()
    trials = [("point", i + 1, p.split(" ", 1)[1]) for i, p in enumerate(points)]
    trials += [("timed", None, f"{f:.2f} of run") for f in (0.1, 0.3, 0.5, 0.7, 0.9)]
    report = {"points": len(trials), "killed": 0, "survived": 0, "as_before": 0, "as_after": 0, "failures": []}
    for kind, at, name in trials:
        reset()
        delay = float(name.split()[0]) * full_seconds if kind == "timed" else None
        code = run_child(argv, at, None, delay)
        report["killed"] += code == -signal.SIGKILL
        try:
            if not index_dir.exists() and not had_before:
                state = "before"  # a first build killed early leaves nothing, as before
            else:
                store.verify(index_dir)
                got = answers(index_dir, probes)
                state = "before" if got == before else "after" if got == after else "between"
        except Exception as exc:  # noqa: BLE001 - any failure to load is what the suite looks for
            state = f"broken: {type(exc).__name__}: {exc}"
        if state in ("before", "after"):
            report["survived"] += 1
            report[f"as_{state}"] += 1
        else:
            report["failures"].append({"kind": kind, "at": at, "name": name, "exit": code, "state": state})
    print(json.dumps(report))


if __name__ == "__main__":
    main_driver()
