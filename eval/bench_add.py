"""Incremental add on SciFact: build with 10 % of the documents held back, `add` them, compare with the
full build that had them from the start, on the dev queries whose relevant documents are among the added.

    HF_HUB_OFFLINE=1 .venv/bin/python eval/bench_add.py [--epochs 10] [--threads 1] [--full-index PATH]

One command builds both indexes: the held-back one (saved to --heldback-index, reused by a rerun) and the full
one (in this process; or loaded from --full-index PATH, an index of the whole corpus built with the same
settings, e.g. eval/bench_scifact.py --save-index PATH). Which index was built here and which was loaded, with
its settings and build seconds, is recorded in the result by code; an index built with other settings is
refused. Writes eval/results/scifact-add.json with genir.provenance.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]

MODES = ["bm25", "dense", "rrf", "generative", "hybrid"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    ap.add_argument("--full-index", type=Path, default=None, help="load this full build (default: build it here)")
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
    from genir.provenance import provenance, write_result

    started = provenance()
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

    # the full corpus's embeddings (cached, shared with bench_scifact); the held-back build takes the kept rows
    emb = Embedder(cfg.embed).encode_cached(train.corpus.passages(), ROOT / "data" / "cache" / "scifact-work" / "embeddings")
    built_here = not args.heldback_index.exists()
    if not built_here:
        index = _load_same(args.heldback_index, cfg)
        build_seconds = index.meta["build_seconds"]
    else:
        t = time.perf_counter()
        index = GenerativeIndex.build(base_corpus, cfg, train_queries=train.split_queries(), train_qrels=train.qrels,
                                      device="auto", workdir=args.workdir, embeddings=emb[keep])
        build_seconds = time.perf_counter() - t
        # tuning sees only the documents present at build time, as a deployed index would
        index.tune(dev.split_queries(), _known(dev.qrels, set(base_corpus.doc_ids)))
        index.save(args.heldback_index)
    indexes = {"held_back": _facts(index, args.heldback_index, built_here=built_here)}
    if args.full_index is not None:
        full = _load_same(args.full_index, cfg)
    else:
        full = GenerativeIndex.build(train.corpus, cfg, train_queries=train.split_queries(), train_qrels=train.qrels,
                                     device="auto", workdir=args.workdir.with_name(args.workdir.name + "-full"),
                                     embeddings=emb)
        full.tune(dev.split_queries(), dev.qrels)  # as `genir index` and bench_scifact do
    indexes["full"] = _facts(full, args.full_index, built_here=args.full_index is None)
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
        "indexes": indexes, "config": dataclasses.asdict(cfg), "torch_threads": torch.get_num_threads(),
    }
    write_result(args.out, report, started=started)
    for mode in MODES:
        a, b = report["results"]["incremental_add"][mode], report["results"]["full_build"][mode]
        print(f"{mode:>10} add: nDCG@10 {a['nDCG@10']:.4f} R@10 {a['R@10']:.4f} | full: nDCG@10 {b['nDCG@10']:.4f} R@10 {b['R@10']:.4f}")
    print(f"add: {report['add_seconds_per_1000_docs']:.1f} s per 1000 docs")
    print("unseen-document rule:", json.dumps(rule))


def _load_same(path: Path, cfg):
    """An index built earlier, refused when its model settings differ from this run's (``cfg``); it decodes with
    this run's search-time settings (``cfg.decode``: an index saved before DecodeConfig.precision loads as float32)."""
    from genir.index import GenerativeIndex

    index = GenerativeIndex.load(path)
    for part in ("embed", "codec", "model", "train"):
        if getattr(index.cfg, part) != getattr(cfg, part):
            raise SystemExit(f"{path} was built with other {part} settings than this run's; delete it or pass "
                             "the same --epochs")
    index.cfg = dataclasses.replace(index.cfg, decode=cfg.decode)
    return index


def _facts(index, path: Path | None, *, built_here: bool) -> dict:
    """Where an index came from (built by this process, or loaded from ``path``), its build seconds and training."""
    return {"built_in_this_run": built_here, "path": None if path is None else str(path),
            "built_by": index.meta.get("built_by"), "build_seconds": index.meta.get("build_seconds"),
            "train": index.semantic.meta.get("train")}


def _known(qrels, doc_ids: set):
    from genir.data import Qrels

    rows = [i for i, d in enumerate(qrels.table.column("doc_id").to_pylist()) if d in doc_ids]
    return Qrels(qrels.table.take(rows))


if __name__ == "__main__":
    main()
