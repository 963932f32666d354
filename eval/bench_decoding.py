"""Benchmark trie-constrained beam search: constraint cost, scaling with the number of IDs, validity.

Synthetic semantic IDs: 3 levels x 256 codes, Zipf-skewed with the popular codes rotating per prefix (as in
residual codes), plus the collision suffix from genir.ids.suffix. The decoder is the default retrieval
IdDecoder (d 384, 2 layers, 6 heads) with random weights, reading a random 32-token memory per query:
timing does not depend on training. Per size (10k / 100k / 1M IDs), for one batch of 64 queries x beam 20:

* decode time constrained (masked, and renormalised), unconstrained (same model, same batch), their ratio
  (runs alternate, medians), and the time inside the trie calls alone (allowed + step + docs) per batch;
* faiss flat inner-product search of the same 64 queries over as many random 384-d vectors (k = 10);
* valid-ID rate: share of returned IDs that exist in the trie (constrained must be 100 %), and of the
  unconstrained outputs for contrast.

    HF_HUB_OFFLINE=1 .venv/bin/python eval/bench_decoding.py [--sizes 10000 100000 1000000] [--repeats 7]
        [--device cpu|cuda]   (decoder, memory and trie on the device; faiss stays on the CPU)
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from genir.decoding import constrained_beam_search
from genir.ids.suffix import add_suffix
from genir.model import IdDecoder
from genir.provenance import provenance, write_result
from genir.trie import IdTrie

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "eval" / "results"
LEVELS, VOCAB, QUERIES, BEAM, K, MEM_TOKENS, DIM = 3, 256, 64, 20, 10, 32, 384
SYNC = False  # --device cuda: wait for the GPU before reading the clock (kernels run asynchronously)


def _sync() -> None:
    if SYNC:
        torch.cuda.synchronize()


def skewed_codes(n: int, *, seed: int = 0, exponent: float = 1.0) -> np.ndarray:
    """(n, LEVELS + 1) unique IDs: Zipf codes rotated by a hash of the prefix, then the collision suffix."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, VOCAB + 1) ** exponent
    p /= p.sum()
    codes = np.zeros((n, LEVELS), dtype=np.int64)
    prefix = np.zeros(n, dtype=np.int64)
    for level in range(LEVELS):
        codes[:, level] = (rng.choice(VOCAB, size=n, p=p) + ((prefix * 2654435761) >> 7)) % VOCAB
        prefix = prefix * VOCAB + codes[:, level]
    return add_suffix(codes)


def timed(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Median seconds per function over ``repeats`` rounds after one warm-up, and each one's last result.

    The functions alternate within each round, so load from other processes on a shared machine hits
    them alike and their ratio stays meaningful.
    """
    out = {name: fn() for name, fn in fns.items()}
    times: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync()
            t = time.perf_counter()
            out[name] = fn()
            _sync()
            times[name].append(time.perf_counter() - t)
    return {name: float(np.median(v)) for name, v in times.items()}, out


class TimedTrie:
    """Forwards to an IdTrie and adds up the seconds spent in the constraint calls (allowed, step, docs)."""

    def __init__(self, trie: IdTrie) -> None:
        self.trie, self.seconds = trie, 0.0
        self.num_levels, self.vocab_sizes = trie.num_levels, trie.vocab_sizes

    def _timed(self, name: str, *args):
        _sync()
        t = time.perf_counter()
        out = getattr(self.trie, name)(*args)
        _sync()
        self.seconds += time.perf_counter() - t
        return out

    def allowed(self, *args):
        return self._timed("allowed", *args)

    def step(self, *args):
        return self._timed("step", *args)

    def docs(self, *args):
        return self._timed("docs", *args)


def valid_rate(trie: IdTrie, codes: torch.Tensor, docs: torch.Tensor | None) -> float:
    """Share of returned IDs (non-padding) whose codes exist in the trie (and map to the returned doc)."""
    flat = codes.reshape(-1, codes.shape[-1]).cpu().numpy()
    keep = (flat >= 0).all(axis=1)
    found = trie.lookup(flat[keep])
    ok = found >= 0 if docs is None else (found >= 0) & (found == docs.reshape(-1).cpu().numpy()[keep])
    return float(ok.mean()) if len(ok) else float("nan")


def bench_size(n: int, dec: IdDecoder, memory: torch.Tensor, mask: torch.Tensor, repeats: int) -> dict:
    import faiss

    t = time.perf_counter()
    codes = skewed_codes(n, seed=n)
    trie = IdTrie.from_codes(codes, vocab_sizes=dec.vocab_sizes[: codes.shape[1]]).to(memory.device)
    build = time.perf_counter() - t
    search = lambda tr, renorm: constrained_beam_search(dec, memory, mask, tr, beam_size=BEAM, num_return=K, renormalize=renorm)  # noqa: E731
    probe = TimedTrie(trie)
    t, out = timed({"con": lambda: search(trie, False), "ren": lambda: search(trie, True),
                    "free": lambda: search(None, False), "probe": lambda: search(probe, False)}, repeats)
    t_con, t_ren, t_free = t["con"], t["ren"], t["free"]
    res, res_ren, free = out["con"], out["ren"], out["free"]
    trie_ms = 1e3 * probe.seconds / (repeats + 1)
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((n, DIM), dtype=np.float32)
    index = faiss.IndexFlatIP(DIM)
    index.add(vectors)
    del vectors
    queries = rng.standard_normal((QUERIES, DIM), dtype=np.float32)
    t_faiss = timed({"faiss": lambda: index.search(queries, K)}, repeats)[0]["faiss"]
    filled = float((res.doc_idx >= 0).float().mean())
    row = {
        "ids": n,
        "suffix_vocab": int(codes[:, -1].max()) + 1,
        "trie_build_s": round(build, 3),
        "trie_mb": round(trie.memory_bytes() / 2**20, 2),
        "constrained_ms": round(1e3 * t_con, 2),
        "constrained_renormalized_ms": round(1e3 * t_ren, 2),
        "unconstrained_ms": round(1e3 * t_free, 2),
        "constraint_cost_ratio": round(t_con / t_free, 3),
        "renormalized_cost_ratio": round(t_ren / t_free, 3),
        "trie_calls_ms": round(trie_ms, 2),
        "trie_calls_share_of_unconstrained": round(trie_ms / (1e3 * t_free), 4),
        "faiss_flat_ip_ms": round(1e3 * t_faiss, 2),
        "valid_id_rate_constrained": valid_rate(trie, res.codes, res.doc_idx),
        "valid_id_rate_renormalized": valid_rate(trie, res_ren.codes, res_ren.doc_idx),
        "valid_id_rate_unconstrained": valid_rate(trie, free.codes, None),
        "slots_filled_constrained": filled,
        "distinct_per_query": bool(all(len(set(r)) == len(r) for r in res.doc_idx.tolist())),
    }
    print(json.dumps(row), flush=True)
    return row


def plot(rows: list[dict], path: Path, device: torch.device) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["ids"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("constrained_ms", "constrained beam search"), ("constrained_renormalized_ms", "constrained, renormalised"),
                       ("unconstrained_ms", "unconstrained beam search"), ("faiss_flat_ip_ms", "faiss flat IP (384-d)")):
        ax.plot(n, [r[key] for r in rows], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number of IDs / vectors")
    ax.set_ylabel(f"ms per batch ({QUERIES} queries, beam {BEAM}, k {K})")
    where = "CPU, 1 thread" if device.type == "cpu" else f"{device.type.upper()}; faiss on CPU"
    ax.set_title(f"Decoding cost vs corpus size ({where})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS / "decoding-cpu.json")
    ap.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N: decoder, memory and trie")
    args = ap.parse_args()
    started = provenance()
    from genir.train import resolve_device

    global SYNC
    device = resolve_device(args.device)
    SYNC = device.type == "cuda"
    torch.set_num_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    torch.manual_seed(0)
    # suffix vocabulary: large enough for the biggest size's collision groups (checked per size below)
    suffix_vocab = max(int(skewed_codes(n, seed=n)[:, -1].max()) + 1 for n in args.sizes)
    dec = IdDecoder((VOCAB,) * LEVELS + (suffix_vocab,), d_model=384, n_layers=2, n_heads=6, d_mem=DIM).eval()
    memory = torch.randn(QUERIES, MEM_TOKENS, DIM)  # drawn on the CPU: the same inputs on every device
    mask = torch.ones(QUERIES, MEM_TOKENS, dtype=torch.bool)
    dec, memory, mask = dec.to(device), memory.to(device), mask.to(device)
    rows = [bench_size(n, dec, memory, mask, args.repeats) for n in args.sizes]
    report = {
        "benchmark": "decoding",
        "device": str(device), "torch_threads": torch.get_num_threads(),
        "setup": {"levels": LEVELS, "codebook": VOCAB, "queries": QUERIES, "beam": BEAM, "k": K, "memory_tokens": MEM_TOKENS,
                  "decoder": "IdDecoder d384 x2 layers x6 heads, random weights", "repeats": args.repeats, "timing": "median"},
        "results": rows,
    }
    write_result(args.out, report, started=started)
    plot(rows, args.out.with_suffix(".png"), device)
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
