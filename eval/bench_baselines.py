"""Baselines on the SciFact development split (20 % of train queries, seed 0): BM25, dense, and their RRF.

    HF_HUB_OFFLINE=1 .venv/bin/python eval/bench_baselines.py [--data ../shared/data/scifact] [--device cpu|cuda]

Writes --out (REPORT format plus build time per part and genir.provenance: commit, machine, command).
eval/gpu_check.sh runs it on the GPU. The committed SciFact baselines come from the job
eval/jobs/scifact-baselines.toml (`genir bench`), which evaluates the same three modes on the same split.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    ap.add_argument("--out", type=Path, default=ROOT / "indexes" / "scifact-dev-baselines.json")
    ap.add_argument("--device", default="cpu", help="where passages and queries are embedded: auto | cpu | cuda")
    ap.add_argument("--workdir", type=Path, default=ROOT / "data" / "cache" / "scifact-work",
                    help="embedding cache (a fresh folder makes the device embed the whole corpus)")
    args = ap.parse_args()
    from genir.provenance import provenance, write_result

    started = provenance()
    from genir.config import IndexConfig
    from genir.data import load_dataset
    from genir.evaluate import evaluate_index
    from genir.index import GenerativeIndex

    ds = load_dataset(args.data, split="dev", dev_fraction=0.2, seed=0)
    t = time.perf_counter()
    index = GenerativeIndex.build(ds.corpus, IndexConfig(generative=False), device=args.device,
                                  workdir=args.workdir)
    build = time.perf_counter() - t
    report = evaluate_index(index, ds.split_queries(), ds.qrels, modes=["bm25", "dense", "rrf"],
                            dataset=args.data.name, split="dev")
    report["build_seconds"] = {**index.meta["build_seconds"], "total": build,
                               "note": f"embed is a cache hit when {args.workdir} holds this corpus"}
    report["dev_split"] = {"fraction": 0.2, "seed": 0, "source": "train"}
    report["device"] = args.device
    write_result(args.out, report, started=started)
    for r in report["results"]:
        print(r["mode"], {k: round(v, 4) for k, v in r["metrics"].items()}, f"{r['queries_per_second']:.1f} q/s")
    print("build seconds", report["build_seconds"], file=sys.stderr)


if __name__ == "__main__":
    main()
