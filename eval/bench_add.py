"""Incremental add on SciFact: build with 10 % of the documents held back, `add` them, compare with the
full build that had them from the start, on the dev queries whose relevant documents are among the added.

    HF_HUB_OFFLINE=1 .venv/bin/python eval/bench_add.py --full-index PATH [--epochs 10]

PATH is an index of the whole corpus built with the same settings (eval/bench_scifact.py --save-index PATH).
Writes eval/results/scifact-add.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "eval"))
from bench_baselines import machine  # noqa: E402

MODES = ["bm25", "dense", "rrf", "generative", "hybrid"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    ap.add_argument("--full-index", type=Path, default=None, help="absent: only build/save the held-back index")
    ap.add_argument("--heldback-index", type=Path, default=ROOT / "data" / "cache" / "scifact-heldback-index",
                    help="the held-back build is saved here and reused when it exists")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--held-back", type=float, default=0.1)
    ap.add_argument("--epochs", type=float, default=None)
    ap.add_argument("--workdir", type=Path, default=ROOT / "data" / "cache" / "scifact-heldback-work")
    ap.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "scifact-add.json")
    args = ap.parse_args()
    import torch

    from genir.config import IndexConfig
    from genir.data import Corpus, Qrels, Queries, load_dataset
    from genir.embed import Embedder
    from genir.evaluate import evaluate_index
    from genir.index import GenerativeIndex
    from genir.store import atomic_write_json

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = IndexConfig()  # the defaults eval/bench_scifact.py builds the full index with
    if args.epochs is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=args.epochs))
    train = load_dataset(args.data, split="train-dev", dev_fraction=0.2, seed=0)
    dev = load_dataset(args.data, split="dev", dev_fraction=0.2, seed=0)
    n = len(train.corpus)
    rng = np.random.default_rng(0)
    held = np.sort(rng.choice(n, size=int(round(args.held_back * n)), replace=False))
    keep = np.setdiff1d(np.arange(n), held)
    base_corpus, new_docs = Corpus(train.corpus.table.take(keep)), Corpus(train.corpus.table.take(held))

    if args.heldback_index.exists():
        index = GenerativeIndex.load(args.heldback_index)
        build_seconds = index.meta["build_seconds"]
    else:
        # the full corpus's embeddings (cached by bench_scifact / bench_baselines), rows of the kept documents
        emb = Embedder(cfg.embed).encode_cached(train.corpus.passages(), ROOT / "data" / "cache" / "scifact-work" / "embeddings")
        t = time.perf_counter()
        index = GenerativeIndex.build(base_corpus, cfg, train_queries=train.split_queries(), train_qrels=train.qrels,
                                      device="auto", workdir=args.workdir, embeddings=emb[keep])
        build_seconds = time.perf_counter() - t
        # tuning sees only the documents present at build time, as a deployed index would
        index.tune(dev.split_queries(), _known(dev.qrels, set(base_corpus.doc_ids)))
        index.save(args.heldback_index)
    if args.full_index is None:
        print(f"held-back index saved to {args.heldback_index}; rerun with --full-index to add and compare")
        return
    full = GenerativeIndex.load(args.full_index)
    t = time.perf_counter()
    index.add(new_docs)
    add_seconds = time.perf_counter() - t

    added = set(new_docs.doc_ids)
    rows = [i for i, d in enumerate(dev.qrels.table.column("doc_id").to_pylist()) if d in added]
    qrels_new = Qrels(dev.qrels.table.take(rows))
    judged = set(qrels_new.table.column("query_id").to_pylist())
    queries_new = Queries(dev.queries.table.filter(pa.compute.is_in(dev.queries.table.column("query_id"),
                                                                      value_set=pa.array(sorted(judged)))))
    reports = {name: evaluate_index(idx, queries_new, qrels_new, modes=MODES, dataset="scifact",
                                    split="dev (relevant docs added later)")
               for name, idx in (("incremental_add", index), ("full_build", full))}
    # the unseen-document rule of the gated hybrid (HybridConfig.unseen_second, genir.hybrid.gated), on and off,
    # on these queries and on all of dev
    rule = {}
    served = index.cfg
    sets = {"added_relevant": (queries_new, qrels_new), "all_dev": (dev.split_queries(), dev.qrels)}
    for name, on in (("with_rule", True), ("without_rule", False)):
        index.cfg = dataclasses.replace(served, hybrid=dataclasses.replace(served.hybrid, unseen_second=on))
        rule[name] = {}
        for split, (q, qr) in sets.items():
            rep = evaluate_index(index, q, qr, modes=["rrf", "hybrid"], measures=("nDCG@10", "R@10"),
                                 dataset="scifact", split=split)
            rule[name][split] = {r["mode"]: r["metrics"] for r in rep["results"]}
    index.cfg = served
    gen_new = index.search_arrays(queries_new.texts, 10, mode="generative").doc_idx
    new_rows = set(range(len(base_corpus), len(base_corpus) + len(new_docs)))
    report = {
        "dataset": "scifact", "split": "dev", "held_back_docs": len(new_docs), "base_docs": len(base_corpus),
        "queries_with_added_relevant": len(queries_new),
        "add_seconds": add_seconds, "add_seconds_per_1000_docs": 1000 * add_seconds / len(new_docs),
        "held_back_build_seconds": build_seconds,
        "generative_hits_on_added_docs": int(sum(d in new_rows for d in gen_new.ravel().tolist())),
        "results": {name: {r["mode"]: r["metrics"] for r in rep["results"]} for name, rep in reports.items()},
        "hybrid_unseen_rule_after_add": rule,
        "machine": machine(),
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python eval/bench_add.py " + " ".join(sys.argv[1:]),
    }
    atomic_write_json(args.out, report)
    for mode in MODES:
        a, b = report["results"]["incremental_add"][mode], report["results"]["full_build"][mode]
        print(f"{mode:>10} add: nDCG@10 {a['nDCG@10']:.4f} R@10 {a['R@10']:.4f} | full: nDCG@10 {b['nDCG@10']:.4f} R@10 {b['R@10']:.4f}")
    print(f"add: {report['add_seconds_per_1000_docs']:.1f} s per 1000 docs")
    print("unseen-document rule:", json.dumps(rule))


def _known(qrels, doc_ids: set):
    from genir.data import Qrels

    rows = [i for i, d in enumerate(qrels.table.column("doc_id").to_pylist()) if d in doc_ids]
    return Qrels(qrels.table.take(rows))


if __name__ == "__main__":
    main()
