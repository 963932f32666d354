"""Batch evaluation of an index over a whole query split: runs, metrics, throughput, REPORT dict."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np

import genir
from genir.config import to_dict
from genir.data.types import Qrels, Queries
from genir.metrics import DEFAULT_MEASURES, evaluate_order, run_from_arrays, write_trec_run
from genir.progress import track

logger = logging.getLogger(__name__)


def run_mode(index, queries: Queries, mode: str, *, k: int = 100, batch_size: int = 64,
             progress: bool | None = None) -> tuple[np.ndarray, np.ndarray, list[str], float]:
    """Search every query in batches. Returns doc_idx (q, k), scores (q, k), per-query path, seconds."""
    texts = queries.texts
    idx, scores, paths = [], [], []
    start = time.perf_counter()
    batches = range(0, len(texts), batch_size)
    for lo in track(batches, description=f"{mode:>10}", total=len(batches), enabled=progress):
        res = index.search_arrays(texts[lo:lo + batch_size], k, mode=mode)
        idx.append(res.doc_idx)
        scores.append(res.scores)
        paths.extend(res.path)
    seconds = time.perf_counter() - start
    return np.concatenate(idx), np.concatenate(scores), paths, seconds


def evaluate_index(index, queries: Queries, qrels: Qrels, *, modes: Sequence[str], dataset: str, split: str,
                   measures: Sequence[str] = DEFAULT_MEASURES, k: int = 100, run_dir: Path | None = None,
                   batch_size: int = 64, progress: bool | None = None, rel: int = 1) -> dict:
    """Evaluate each mode on the same queries; returns the REPORT dict (see README). ``rel``: lowest grade
    counted relevant by the binary measures (TREC DL: 2); nDCG uses the grades."""
    judged = set(qrels.table.column("query_id").to_pylist())
    keep = [i for i, q in enumerate(queries.query_ids) if q in judged]
    queries = Queries(queries.table.take(keep))
    if len(queries) == 0:
        raise ValueError(f"split {split!r} has no queries with judgements")
    doc_ids = index.corpus.doc_ids
    results = []
    for mode in modes:
        idx, scores, paths, seconds = run_mode(index, queries, mode, k=k, batch_size=batch_size, progress=progress)
        entry = {
            "mode": mode,
            "metrics": evaluate_order(queries.query_ids, idx, doc_ids, qrels, measures, rel=rel),
            "queries_per_second": len(queries) / max(seconds, 1e-9),
        }
        if any(p != mode for p in paths):
            entry["paths"] = {p: paths.count(p) for p in sorted(set(paths))}
        results.append(entry)
        if run_dir is not None:
            run = run_from_arrays(queries.query_ids, idx, scores, doc_ids)  # the real scores, for other tools
            write_trec_run(run, Path(run_dir) / f"{dataset}-{split}-{mode}.trec", tag=f"genir-{mode}")
        logger.info("%s: %s", mode, entry["metrics"])
    return {
        "dataset": dataset,
        "split": split,
        "num_queries": len(queries),
        "relevance_threshold": rel,
        "measures": list(measures),
        "results": results,
        "genir_version": genir.__version__,
        "config": to_dict(index.cfg),
    }
