"""`make demo` from a fresh clone, timed: the newcomer's wait from `make demo` to the last table.

Clones this repository at --commit into a folder beside ../shared (so the demo's default data path holds),
runs `make demo` there (venv from nothing, index SciFact, search, eval), and records the wall time of each
phase, the index's own stage timings (manifest) and the dev report's numbers. Each invocation adds one row
(with its own provenance: the commit it ran, the command, the machine's load) to eval/results/demo-cpu.json,
keeping the rows earlier invocations wrote, so "before" and "after" rows sit side by side with their lineage.

    python eval/bench_demo.py --commit HEAD --label bf16-encoder
    python eval/bench_demo.py --commit b2a5fa6 --label fp32-encoder   # the code before the bf16 encoder
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

from genir.provenance import provenance, write_result

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "eval" / "results" / "demo-cpu.json"
GOAL_MINUTES = 15.0  # issue 16: make demo on SciFact, fresh clone, 2 cores


def run(cmd: list[str], cwd: Path, log: Path) -> float:
    start = time.perf_counter()
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commit", default="HEAD")
    ap.add_argument("--label", required=True)
    ap.add_argument("--dest", type=Path, default=None, help="clone folder (default: beside this checkout)")
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args()
    started = provenance()
    commit = subprocess.run(["git", "rev-parse", args.commit], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    dest = args.dest or ROOT.parent / f"demo-{args.label}"
    if dest.exists():
        shutil.rmtree(dest)
    log = ROOT / "indexes" / f"demo-{args.label}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    phases = {"clone": run(["git", "clone", "-q", str(ROOT), str(dest)], ROOT, log)}
    phases["clone"] += run(["git", "checkout", "-q", commit], dest, log)
    phases["venv"] = run(["make", "venv"], dest, log)
    phases["demo"] = run(["make", "demo"], dest, log)  # index + search + eval
    report = json.loads((dest / "indexes" / "scifact-report.json").read_text())
    current = (dest / "indexes" / "scifact" / "CURRENT").read_text().strip()  # the version the demo wrote
    manifest = json.loads((dest / "indexes" / "scifact" / current / "manifest.json").read_text())
    total = phases["venv"] + phases["demo"]
    row = {"label": args.label, "commit": commit, "provenance": started, "phases_seconds": phases,
           "make_demo_minutes": total / 60, "goal_minutes": GOAL_MINUTES, "meets_goal": total / 60 <= GOAL_MINUTES,
           "index_stage_seconds": manifest.get("build_seconds"),
           "peak_rss_mb": manifest.get("peak_rss_mb"),
           "dev": {r["mode"]: r["metrics"] for r in report["results"]}}
    rows = []
    if args.out.exists():
        rows = [r for r in json.loads(args.out.read_text()).get("rows", []) if r["label"] != args.label]
    write_result(args.out, {"what": "make demo (SciFact) from a fresh clone on this machine", "rows": rows + [row]},
                 started=started)
    print(json.dumps({k: row[k] for k in ("label", "make_demo_minutes", "phases_seconds")}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
