"""Benchmark IdTrie against Python dict tries on synthetic skewed semantic IDs.

At 10k / 100k / 1M IDs (4 levels x 256, Zipf-skewed codes whose popular values rotate per prefix, as in
real residual codes): build time, table memory, save/load time, and the cost of one constrained decoding
step for a 64 queries x 20 beams batch (``allowed`` mask + ``step`` transition), averaged over the levels.
Baselines, in the same run on the same beams: a dict-of-dicts trie walked per beam from the root (what an
HF ``prefix_allowed_tokens_fn`` does) and the same trie with each beam's current dict cached.

    .venv/bin/python eval/bench_trie.py [--sizes 10000 100000 1000000] [--repeats 20]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from genir.provenance import provenance, write_result
from genir.trie import IdTrie

ROOT = Path(__file__).resolve().parents[1]
LEVELS, VOCAB, QUERIES, BEAMS = 4, 256, 64, 20


def skewed_ids(n: int, *, seed: int = 0, exponent: float = 1.0) -> np.ndarray:
    """(n, LEVELS) unique codes; each level Zipf(exponent) over VOCAB values, rotated by a hash of the prefix."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, VOCAB + 1) ** exponent
    p /= p.sum()
    out = np.zeros((0, LEVELS), dtype=np.int64)
    while len(out) < n:
        m = int((n - len(out)) * 1.3) + 1000
        codes = np.zeros((m, LEVELS), dtype=np.int64)
        prefix = np.zeros(m, dtype=np.int64)
        for level in range(LEVELS):
            rotate = (prefix * 2654435761) >> 7  # popular codes differ per prefix, as in real residual codes
            codes[:, level] = (rng.choice(VOCAB, size=m, p=p) + rotate) % VOCAB
            prefix = prefix * VOCAB + codes[:, level]
        keys = np.concatenate([out @ (VOCAB ** np.arange(LEVELS)[::-1]), prefix])
        _, first = np.unique(keys, return_index=True)
        merged = np.concatenate([out, codes])[np.sort(first)]
        out = merged[:n]
    return rng.permutation(out)


def perplexity(column: np.ndarray) -> float:
    p = np.bincount(column, minlength=VOCAB) / len(column)
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def dict_trie(codes: np.ndarray) -> dict:
    root: dict = {}
    for doc, row in enumerate(codes.tolist()):
        node = root
        for c in row[:-1]:
            node = node.setdefault(c, {})
        node[row[-1]] = doc
    return root


def bench_tensor(trie: IdTrie, beams: np.ndarray, repeats: int) -> float:
    """Seconds per (allowed + step) call on a batch, averaged over levels and repeats."""
    codes = torch.from_numpy(beams)
    start = time.perf_counter()
    for _ in range(repeats):
        node = torch.zeros(len(beams), dtype=torch.long)
        for level in range(LEVELS):
            mask = trie.allowed(node, level)
            node = trie.step(node, level, codes[:, level])
    elapsed = time.perf_counter() - start
    if not bool(mask.any()) or bool((node < 0).any()):
        raise RuntimeError("beams follow existing IDs; every step must succeed")
    return elapsed / (repeats * LEVELS)


def bench_dict(root: dict, beams: np.ndarray, repeats: int, *, cached: bool) -> float:
    """Same work with the dict trie: per beam, find the prefix node and list its children; one scatter."""
    rows = beams.tolist()
    start = time.perf_counter()
    for _ in range(repeats):
        current = [root] * len(rows)
        for level in range(LEVELS):
            mask = torch.zeros(len(rows), VOCAB, dtype=torch.bool)
            hit_rows: list[int] = []
            hit_codes: list[int] = []
            for b, row in enumerate(rows):
                if cached:
                    node = current[b]
                else:  # walk from the root with the prefix, as prefix_allowed_tokens_fn does
                    node = root
                    for c in row[:level]:
                        node = node[c]
                hit_codes.extend(node)
                hit_rows.extend([b] * len(node))
                if cached:
                    current[b] = node[row[level]]
            mask[hit_rows, hit_codes] = True  # one scatter per batch: the fastest way to get a dict into a mask
    elapsed = time.perf_counter() - start
    if not bool(mask.any()):
        raise RuntimeError("dict trie produced an empty mask")
    return elapsed / (repeats * LEVELS)


def run_size(n: int, repeats: int, seed: int) -> dict:
    codes = skewed_ids(n, seed=seed)
    t0 = time.perf_counter()
    trie = IdTrie.from_codes(codes)
    build = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        trie.save(Path(tmp))
        save = time.perf_counter() - t0
        t0 = time.perf_counter()
        back = IdTrie.load(Path(tmp))
        load = time.perf_counter() - t0
        disk = sum(f.stat().st_size for f in Path(tmp).iterdir())
    if back.level_sizes != trie.level_sizes:
        raise RuntimeError("save/load changed the trie")
    rng = np.random.default_rng(seed + 1)
    beams = codes[rng.integers(0, n, size=QUERIES * BEAMS)]
    tensor_s = bench_tensor(trie, beams, repeats)
    csr = IdTrie.from_codes(codes, dense_limit=0)
    csr_s = bench_tensor(csr, beams, repeats)
    t0 = time.perf_counter()
    root = dict_trie(codes)
    dict_build = time.perf_counter() - t0
    dict_repeats = max(1, repeats // 10)
    walk_s = bench_dict(root, beams, dict_repeats, cached=False)
    cached_s = bench_dict(root, beams, dict_repeats, cached=True)
    row = {
        "num_ids": n,
        "level_sizes": trie.level_sizes,
        "dense_levels": [r is not None for r in trie._rank],
        "perplexity_per_level": [round(perplexity(codes[:, lv]), 1) for lv in range(LEVELS)],
        "build_seconds": round(build, 3),
        "table_bytes": trie.memory_bytes(),
        "table_mb": round(trie.memory_bytes() / 2**20, 1),
        "save_seconds": round(save, 3),
        "load_seconds": round(load, 3),
        "disk_mb": round(disk / 2**20, 1),
        "tensor_ms_per_step": round(tensor_s * 1e3, 4),
        "tensor_csr_only_ms_per_step": round(csr_s * 1e3, 4),
        "dict_build_seconds": round(dict_build, 3),
        "dict_walk_ms_per_step": round(walk_s * 1e3, 3),
        "dict_cached_ms_per_step": round(cached_s * 1e3, 3),
        "masks_per_second_tensor": round(QUERIES * BEAMS / tensor_s),
        "masks_per_second_dict_walk": round(QUERIES * BEAMS / walk_s),
        "speedup_vs_dict_walk": round(walk_s / tensor_s, 1),
        "speedup_vs_dict_cached": round(cached_s / tensor_s, 1),
    }
    print(json.dumps(row), flush=True)
    return row


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["num_ids"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in [
        ("tensor_ms_per_step", "IdTrie (dense+CSR)"),
        ("tensor_csr_only_ms_per_step", "IdTrie (CSR only)"),
        ("dict_cached_ms_per_step", "dict trie, cached node"),
        ("dict_walk_ms_per_step", "dict trie, walk from root"),
    ]:
        a.plot(n, [r[key] for r in rows], marker="o", label=label)
    a.set(xscale="log", yscale="log", xlabel="IDs in trie", ylabel="ms per step (allowed + step)",
          title=f"one decoding step, {QUERIES}x{BEAMS} beams")
    a.legend(fontsize=8)
    b.bar([str(x) for x in n], [r["table_mb"] for r in rows], label="tables (MB)")
    b.plot([str(x) for x in n], [r["build_seconds"] for r in rows], "ro-", label="build (s)")
    b.set(xlabel="IDs in trie", title="IdTrie memory (MB) and build time (s)")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "trie-bench.json")
    args = ap.parse_args()
    started = provenance()
    torch.set_num_threads(1)
    rows = [run_size(n, args.repeats, args.seed) for n in args.sizes]
    result = {
        "torch_threads": torch.get_num_threads(),
        "workload": {"levels": LEVELS, "vocab": VOCAB, "queries": QUERIES, "beams": BEAMS, "zipf_exponent": 1.0},
        "targets": {"build_seconds_at_1M": 20, "table_mb_at_1M": 100},
        "results": rows,
    }
    write_result(args.out, result, started=started)
    plot(rows, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
