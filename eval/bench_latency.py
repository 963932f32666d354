"""Search latency per mode: p50 / p99 of single queries and batched queries/s, split into search stages.

For each index (an existing `genir index` folder) and its dataset's dev split as genir carves it (the queries
`genir eval --split dev` reads, judged ones only, in file order; the first ``--queries`` of them):

* single-query latency: every query searched alone with ``GenerativeIndex.search`` (k 10, Hit objects
  included), modes interleaved query by query so a load spike hits every mode alike, after ``--warmup``
  queries per mode that are not counted; p50, p90, p99 and mean wall ms, and the mean ms per stage
  (genir.timing.STAGES: encode, encode_memory, decode, dense, bm25, prefix, fusion, hits; "other" is the
  rest of the wall time: input checks, array copies);
* batched throughput: all the queries in batches of ``--batch-size`` through ``search_arrays`` (as `genir
  eval` runs them), queries/s and the seconds per stage;
* the issue-16 goal: hybrid single-query p50 <= 2x dense p50 of the same run (``hybrid_over_dense_p50``);
* decoder precision side by side (``--decode-precisions``, default ``auto fp32``: bf16 autocast where the CPU has
  native bf16, and float32): the decoding modes (generative, hybrid) are timed under each, interleaved with the
  rest, and evaluated on the whole dev split (nDCG@10, RR@10), the same trained model either way; the first
  precision is the one the top-level numbers (and the goal) use. Indexes saved before DecodeConfig.precision
  existed load as float32; the bench sets the precision itself;
* ``--profile MODE``: cProfile of one more single query in MODE per dataset, the top functions by cumulative
  time in the JSON (where the time goes when a mode is slow).

Threads: single queries are tiny tensors; with torch's default 2 intra-op threads on this 2-core machine while
other jobs ran, one MiniLM query encoding took 40-700 ms instead of the ~14 ms of ``--threads 1`` (smoke run,
SciFact), so ``--threads`` is recorded in the settings and 1 is the robust choice on a shared machine.

Results go to eval/results/latency-cpu.json (+ .png: p50 per mode per dataset, split by each stage's share of
the mean time), written whole with genir.provenance. Each finished dataset is kept in OUT.partial.json, and a
rerun with the same settings skips it (``--fresh`` starts over); the partial file goes when the JSON is written.

    HF_HUB_OFFLINE=1 .venv/bin/python eval/bench_latency.py \\
        --index scifact=indexes/scifact --data scifact=/work/shared/data/scifact \\
        --index msmarco-10k=indexes/msmarco-10k --data msmarco-10k=/work/shared/data/msmarco-10k \\
        [--queries 200] [--warmup 10] [--batch-size 64] [--threads 2] [--profile hybrid] [--out PATH]
"""
from __future__ import annotations

import argparse
import cProfile
import dataclasses
import logging
import pstats
import time
from pathlib import Path

import numpy as np

from genir.data import BeirDataset, load_dataset
from genir.data.types import Queries
from genir.device import resolve_decoder_precision
from genir.evaluate import evaluate_index
from genir.index import MODES, GenerativeIndex
from genir.provenance import measure_resumably, partial_path, provenance, write_result
from genir.store import current_version
from genir.timing import STAGES, collect

ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("bench_latency")
RESULTS = ROOT / "eval" / "results"
K = 10  # hits per query, as `genir search` shows
GOAL_RATIO = 2.0  # issue 16: hybrid single-query p50 <= 2x dense p50
DECODING = ("generative", "hybrid")  # the modes the decoder's precision changes


def load_dev(data: Path) -> BeirDataset:
    """The carved dev split at `genir eval --split dev`'s defaults (read once: the queries timed and judged)."""
    return load_dataset(data, split="dev", dev_fraction=0.2, seed=0)


def dev_queries(ds: BeirDataset, n: int) -> list[str]:
    """The first ``n`` judged queries of the dev split."""
    queries, judged = ds.split_queries(), set(ds.qrels.table.column("query_id").to_pylist())
    keep = [i for i, q in enumerate(queries.query_ids) if q in judged][:n]
    return Queries(queries.table.take(keep)).texts


def _ms(seconds) -> float:
    return round(1e3 * float(seconds), 3)


def _split(stage_seconds: dict[str, float], wall: float, count: int) -> dict[str, float]:
    """Mean ms per query per stage (STAGES order, only those seen) plus "other" (wall not in any stage)."""
    out = {s: _ms(stage_seconds[s] / count) for s in STAGES if s in stage_seconds}
    out["other"] = _ms(max(wall - sum(stage_seconds.values()), 0.0) / count)
    return out


def decode_in(index: GenerativeIndex, precision: str) -> GenerativeIndex:
    """Serve ``index`` with the decoder in ``precision`` from now on (DecodeConfig.precision); -> index."""
    index.cfg = dataclasses.replace(index.cfg, decode=dataclasses.replace(index.cfg.decode, precision=precision))
    return index


def variants(modes: list[str], precisions: list[str]) -> dict[str, tuple[str, str]]:
    """{label: (mode, decoder precision)}: every mode under the first precision (label = the mode), the decoding
    modes again under each other precision (label "mode@precision")."""
    out = {m: (m, precisions[0]) for m in modes}
    out.update({f"{m}@{p}": (m, p) for p in precisions[1:] for m in modes if m in DECODING})
    return out


def single_query(index: GenerativeIndex, queries: list[str], runs: dict[str, tuple[str, str]], *, warmup: int) -> dict:
    """Each query alone, the runs ({label: (mode, precision)}) interleaved; per label: wall percentiles and mean
    ms per stage."""
    for q in queries[:warmup]:
        for mode, precision in runs.values():
            decode_in(index, precision).search([q], K, mode=mode)
    walls = {label: [] for label in runs}
    stages: dict[str, dict[str, float]] = {label: {} for label in runs}
    for q in queries:
        for label, (mode, precision) in runs.items():
            decode_in(index, precision)
            with collect(stages[label]):
                t = time.perf_counter()
                index.search([q], K, mode=mode)
                walls[label].append(time.perf_counter() - t)
    out = {}
    for label in runs:
        w = np.array(walls[label])
        out[label] = {"queries": len(w), "p50_ms": _ms(np.percentile(w, 50)), "p90_ms": _ms(np.percentile(w, 90)),
                      "p99_ms": _ms(np.percentile(w, 99)), "mean_ms": _ms(w.mean()),
                      "stage_mean_ms": _split(stages[label], float(w.sum()), len(w))}
    return out


def batched(index: GenerativeIndex, queries: list[str], runs: dict[str, tuple[str, str]], *, batch_size: int) -> dict:
    """All queries in batches of ``batch_size`` per run: queries/s and ms per query per stage."""
    out = {}
    for label, (mode, precision) in runs.items():
        decode_in(index, precision).search_arrays(queries[:batch_size], K, mode=mode)  # warm-up at the batch shape
        seconds: dict[str, float] = {}
        t = time.perf_counter()
        for lo in range(0, len(queries), batch_size):
            index.search_arrays(queries[lo:lo + batch_size], K, mode=mode, timings=seconds)
        wall = time.perf_counter() - t
        out[label] = {"queries_per_second": round(len(queries) / wall, 2), "seconds": round(wall, 3),
                      "stage_mean_ms": _split(seconds, wall, len(queries))}
    return out


def dev_quality(index: GenerativeIndex, ds: BeirDataset, modes: list[str], precisions: list[str]) -> dict:
    """{precision: {mode: {nDCG@10, RR@10}}} of the decoding modes on the whole dev split (`genir eval`'s)."""
    out = {}
    for precision in precisions:
        report = evaluate_index(decode_in(index, precision), ds.split_queries(), ds.qrels, modes=modes,
                                measures=("nDCG@10", "RR@10"), dataset=ds.name, split="dev")
        out[precision] = {r["mode"]: r["metrics"] for r in report["results"]}
    return out


def profile_one(index: GenerativeIndex, query: str, mode: str, *, top: int = 25) -> list[dict]:
    """cProfile of one single-query search: the ``top`` functions by cumulative time."""
    prof = cProfile.Profile()
    prof.runcall(index.search, [query], K, mode=mode)
    stats = pstats.Stats(prof)
    rows = []
    for (file, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(file).name}:{line}({name})", "calls": calls, "tottime_ms": _ms(tottime),
                     "cumtime_ms": _ms(cumtime)})
    return sorted(rows, key=lambda r: -r["cumtime_ms"])[:top]


def bench_dataset(name: str, index_dir: Path, data: Path, args: argparse.Namespace) -> dict:
    t = time.perf_counter()
    index = GenerativeIndex.load(index_dir, device=args.device)
    load_s = time.perf_counter() - t
    modes = [m for m in args.modes if m in index.modes]
    dev = load_dev(data)
    queries = dev_queries(dev, args.queries)
    if len(queries) <= args.warmup:
        raise ValueError(f"{data}: {len(queries)} dev queries, not more than --warmup {args.warmup}")
    precisions = list(dict.fromkeys(resolve_decoder_precision(p, index.device) for p in args.decode_precisions))
    runs = variants(modes, precisions)
    logger.info("%s: %d queries, runs %s", name, len(queries), list(runs))
    single = single_query(index, queries, runs, warmup=args.warmup)
    batch = batched(index, queries, runs, batch_size=args.batch_size)
    decoding = [m for m in modes if m in DECODING]
    by_precision = {}
    quality = dev_quality(index, dev, decoding, precisions) if decoding else {}
    for p in precisions:
        labels = {m: (m if p == precisions[0] else f"{m}@{p}") for m in decoding}
        row = {"single_query": {m: single[label] for m, label in labels.items()},
               "batched": {m: batch[label] for m, label in labels.items()}, "dev": quality.get(p, {})}
        if "hybrid" in decoding and "dense" in single:
            row["hybrid_over_dense_p50"] = round(single[labels["hybrid"]]["p50_ms"] / single["dense"]["p50_ms"], 3)
        by_precision[p] = row
    entry = {
        "dataset": name, "index": str(index_dir), "data": str(data), "documents": len(index),
        "index_version": current_version(index_dir).name, "load_seconds": round(load_s, 2),
        "index_built_by": index.meta.get("built_by"),
        "encoder_precision": index.embedder.precision,  # the query encoder's (the index's EmbedConfig.precision)
        "fusion": index.cfg.hybrid.method if "hybrid" in modes else None,
        "decode": {"beam_size": index.cfg.decode.beam_size, "batch_size": index.cfg.decode.batch_size,
                   "precision": precisions[0]},
        "index_build_seconds": index.meta.get("build_seconds"),
        "single_query": {m: single[m] for m in modes}, "batched": {m: batch[m] for m in modes},
        "decode_precisions": by_precision,
    }
    if "hybrid" in single and "dense" in single:
        ratio = single["hybrid"]["p50_ms"] / single["dense"]["p50_ms"]
        entry["hybrid_over_dense_p50"] = round(ratio, 3)
        entry["goal_hybrid_within_2x_dense"] = bool(ratio <= GOAL_RATIO)
    if args.profile in modes:
        entry["profile"] = {args.profile: profile_one(decode_in(index, precisions[0]), queries[0], args.profile)}
    return entry


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = result["datasets"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(max(6.5, 5.5 * len(datasets)), 4.6), squeeze=False)
    colors = dict(zip([*STAGES, "other"], plt.get_cmap("tab10").colors))
    for ax, entry in zip(axes[0], datasets):
        single = entry["single_query"]
        modes = list(single)
        for x, mode in enumerate(modes):
            split = single[mode]["stage_mean_ms"]
            total = sum(split.values()) or 1.0
            bottom = 0.0
            for stage, ms in split.items():  # p50 split by each stage's share of the mean time
                height = single[mode]["p50_ms"] * ms / total
                ax.bar(x, height, bottom=bottom, color=colors[stage], label=stage)
                bottom += height
            ax.text(x, bottom, f"{single[mode]['p50_ms']:.1f}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(modes)), modes)
        ratio = entry.get("hybrid_over_dense_p50")
        ax.set_title(f"{entry['dataset']} ({entry['documents']} docs)" + (f": hybrid/dense p50 {ratio:.2f}x" if ratio else ""),
                     fontsize=10)
        ax.set_ylabel("single-query p50 (ms)")
    handles = {}
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    order = [s for s in [*STAGES, "other"] if s in handles]
    fig.legend([handles[s] for s in order], order, loc="upper center", ncol=min(len(handles), 5), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.86))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _pairs(values: list[str], flag: str) -> dict[str, Path]:
    out = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"error: {flag} takes NAME=PATH, got {v!r}")
        out[name] = Path(path)
    return out


def main(argv: list[str] | None = None) -> None:
    started = provenance()  # the code that ran is the code at the start
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--index", action="append", required=True, help="NAME=INDEX_DIR (repeat per dataset)")
    p.add_argument("--data", action="append", required=True, help="NAME=DATA_DIR, the dataset the index was built from")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--queries", type=int, default=200, help="dev queries per dataset (at most; first in file order)")
    p.add_argument("--warmup", type=int, default=10, help="single-query warm-up searches per mode, not counted")
    p.add_argument("--batch-size", type=int, default=64, help="queries per batch for the throughput runs")
    p.add_argument("--threads", type=int, default=0, help="torch and faiss threads (0 = leave the default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--profile", choices=MODES, default="hybrid", help="cProfile one query in this mode")
    p.add_argument("--decode-precisions", nargs="+", default=["auto", "fp32"], choices=["auto", "fp32", "bf16"],
                   help="decoder precisions compared (the first is the one the top-level numbers use)")
    p.add_argument("--out", type=Path, default=RESULTS / "latency-cpu.json")
    p.add_argument("--fresh", action="store_true", help="ignore OUT.partial.json from an interrupted run")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    indexes, datas = _pairs(args.index, "--index"), _pairs(args.data, "--data")
    if set(indexes) != set(datas):
        raise SystemExit(f"error: every --index NAME needs a --data NAME and back; got {sorted(indexes)} vs {sorted(datas)}")
    import torch

    if args.threads > 0:
        import faiss

        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    settings = {"queries": args.queries, "warmup": args.warmup, "batch_size": args.batch_size, "k": K,
                "modes": args.modes, "device": args.device, "torch_threads": torch.get_num_threads(),
                "profile": args.profile, "dev_split": {"fraction": 0.2, "seed": 0},
                "decode_precisions": args.decode_precisions}
    keys = [f"{name}={path}" for name, path in indexes.items()]

    def measure(key: str) -> dict:
        name = key.split("=", 1)[0]
        return bench_dataset(name, indexes[name], datas[name], args)

    done = measure_resumably(args.out, settings, keys, measure, fresh=args.fresh)
    result = {"benchmark": "search latency per mode (issue 16)", "settings": settings,
              "datasets": [done[key] for key in keys]}
    write_result(args.out, result, started=started)
    plot(result, args.out.with_suffix(".png"))
    partial_path(args.out).unlink(missing_ok=True)
    for entry in result["datasets"]:
        s = entry["single_query"]
        logger.info("%s: p50 ms %s; hybrid/dense p50 %s", entry["dataset"],
                    {m: v["p50_ms"] for m, v in s.items()}, entry.get("hybrid_over_dense_p50"))
    logger.info("wrote %s and %s", args.out, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
