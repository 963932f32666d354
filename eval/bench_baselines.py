"""Baselines on the SciFact development split (20 % of train queries, seed 0): BM25, dense, and their RRF.

    HF_HUB_OFFLINE=1 .venv/bin/python eval/bench_baselines.py [--data ../shared/data/scifact] [--device cpu|cuda]

Writes eval/results/scifact-dev-baselines.json in the REPORT format plus build time per part and the
machine and command that produced it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict:
    import faiss
    import torch

    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "faiss": faiss.__version__, "gpu": torch.cuda.get_device_name(0)
            if torch.cuda.is_available() else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    ap.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "scifact-dev-baselines.json")
    ap.add_argument("--device", default="cpu", help="where passages and queries are embedded: auto | cpu | cuda")
    ap.add_argument("--workdir", type=Path, default=ROOT / "data" / "cache" / "scifact-work",
                    help="embedding cache (a fresh folder makes the device embed the whole corpus)")
    args = ap.parse_args()
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
    report["machine"] = machine()
    report["command"] = " ".join(["HF_HUB_OFFLINE=1 .venv/bin/python eval/bench_baselines.py", *sys.argv[1:]])
    report["device"] = args.device
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    for r in report["results"]:
        print(r["mode"], {k: round(v, 4) for k, v in r["metrics"].items()}, f"{r['queries_per_second']:.1f} q/s")
    print("build seconds", report["build_seconds"], file=sys.stderr)


if __name__ == "__main__":
    main()
