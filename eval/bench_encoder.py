"""MiniLM encoder runtimes on this CPU, side by side in one run: speed and the retrieval quality they keep.

Variants of the same weights (all-MiniLM-L6-v2 from the offline package):
  torch-fp32   today's path before this benchmark: PyTorch, float32
  torch-bf16   PyTorch under bfloat16 autocast (genir's CPU default where the CPU has native bf16)
  torch-int8   torch.ao dynamic int8 quantisation of every Linear
  onnx-fp32    torch.onnx.export of the same forward, ONNX Runtime (graph optimisations on)
  onnx-int8    that ONNX model after onnxruntime.quantization.quantize_dynamic (int8, per channel)
The ONNX models are exported here, from the packaged weights (nothing is downloaded), into --cache.

Each variant embeds the whole SciFact corpus (passages/s, max 256 tokens) and the dev queries (queries/s), and
is scored on the SciFact development split (20 % of the train queries, seed 0: the split genir carves):
dense nDCG@10 (faiss flat inner product over that variant's vectors) and, with --index, the generative
nDCG@10 of that trained index with the variant computing the query encoder states. The issue's bar: within
0.005 nDCG@10 of torch-fp32 on both, and >= 2x its throughput.

    HF_HUB_OFFLINE=1 .venv/bin/python eval/bench_encoder.py --data ../shared/data/scifact --index indexes/scifact
    # -> eval/results/encoder-cpu.json + .png
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from genir.config import to_dict
from genir.data import load_dataset
from genir.embed import length_batches
from genir.metrics import evaluate_order
from genir.model import TextEncoder
from genir.provenance import provenance, write_result

ROOT = Path(__file__).resolve().parent
RESULT = ROOT / "results" / "encoder-cpu.json"
TOLERANCE = 0.005  # nDCG@10 a faster runtime may lose against torch-fp32 (issue: "within 0.005")
VARIANTS = ("torch-fp32", "torch-bf16", "torch-int8", "onnx-fp32", "onnx-int8")
# a variant: (texts, max_tokens) -> (states (B, S, D) float32 tensor, mask (B, S) bool tensor)
StatesFn = Callable[[list[str], int], tuple[torch.Tensor, torch.Tensor]]


def _torch_fn(te: TextEncoder) -> StatesFn:
    def run(texts: list[str], max_tokens: int):
        te.max_tokens = max_tokens
        return te.frozen_states(texts)
    return run


def _onnx_fns(te: TextEncoder, cache: Path, threads: int) -> dict[str, StatesFn]:
    """ONNX Runtime float32 and int8 (genir.onnx_encoder's export and quantisation, into ``cache``)."""
    from genir.onnx_encoder import OnnxEncoder, export, quantize

    cache.mkdir(parents=True, exist_ok=True)
    fp32, int8 = cache / "minilm-fp32.onnx", cache / "minilm-int8.onnx"
    if not fp32.exists():
        export(te.bert, te.tokenizer, fp32)
    if not int8.exists():
        quantize(fp32, int8)
    fns = {}
    for name, path in (("onnx-fp32", fp32), ("onnx-int8", int8)):
        session = OnnxEncoder(path, threads=threads)

        def run(texts: list[str], max_tokens: int, session=session):
            te.max_tokens = max_tokens
            ids, mask = te.tokenize(texts)
            return session.states(ids, mask), mask
        fns[name] = run
    return fns


def variants(cache: Path, threads: int) -> dict[str, StatesFn]:
    fp32 = TextEncoder(precision="fp32")
    fns = {"torch-fp32": _torch_fn(fp32)}
    try:
        fns["torch-bf16"] = _torch_fn(TextEncoder(precision="bf16"))
    except ValueError as exc:  # no native bf16 on this CPU: recorded as skipped
        print(f"torch-bf16 skipped: {exc}")
    q = TextEncoder(precision="fp32")
    q.bert = torch.ao.quantization.quantize_dynamic(copy.deepcopy(q.bert), {torch.nn.Linear}, dtype=torch.qint8)
    fns["torch-int8"] = _torch_fn(q)
    fns.update(_onnx_fns(fp32, cache, threads))
    return fns


def embed(fn: StatesFn, texts: list[str], max_tokens: int, batch: int = 64) -> tuple[np.ndarray, float]:
    """Mean-pooled unit vectors (sentence-transformers' MiniLM pipeline) of ``texts`` and the seconds it took."""
    out = np.zeros((len(texts), 384), dtype=np.float32)
    start = time.perf_counter()
    with torch.no_grad():
        for rows in length_batches(texts, batch):
            states, mask = fn([texts[i] for i in rows], max_tokens)
            m = mask[..., None].float()
            pooled = (states.float() * m).sum(1) / m.sum(1).clamp(min=1e-9)
            out[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out, time.perf_counter() - start


def dense_ndcg(doc_emb: np.ndarray, q_emb: np.ndarray, data) -> float:
    import faiss

    index = faiss.IndexFlatIP(doc_emb.shape[1])
    index.add(doc_emb)
    _, idx = index.search(q_emb, 100)
    return evaluate_order(data.queries.query_ids, idx, data.corpus.doc_ids, data.qrels, ["nDCG@10"])["nDCG@10"]


def generative_ndcg(index, fn: StatesFn, data) -> float:
    from genir.evaluate import evaluate_index

    encoder = index.semantic.retriever.model.encoder
    encoder.frozen_states = lambda texts, device=None: fn(list(texts), encoder.max_tokens)  # this variant's states
    try:
        report = evaluate_index(index, data.queries, data.qrels, modes=["generative"], dataset="scifact", split="dev",
                                measures=["nDCG@10"], progress=False)
    finally:
        del encoder.frozen_states
    return report["results"][0]["metrics"]["nDCG@10"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent.parent / "shared" / "data" / "scifact")
    ap.add_argument("--index", type=Path, default=None, help="a trained SciFact index (generative nDCG@10 per variant)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--docs", type=int, default=0, help="embed only the first N passages (0 = all; quality needs all)")
    ap.add_argument("--cache", type=Path, default=ROOT.parent / "indexes" / "onnx-cache")
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args()
    started = provenance()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.data, split="dev", dev_fraction=0.2, seed=0)
    passages = data.corpus.passages()[: args.docs or None]
    queries = data.queries.texts
    index = None
    if args.index is not None:
        from genir.index import GenerativeIndex

        index = GenerativeIndex.load(args.index, device="cpu")
    fns = variants(args.cache, args.threads)
    rows, ref_docs, ref_q = [], None, None
    for name, fn in fns.items():
        embed(fn, passages[:64], 256)  # warm-up: first-call allocations and graph optimisation
        docs, doc_s = embed(fn, passages, 256)
        qs, q_s = embed(fn, queries, 256)
        if ref_docs is None:
            ref_docs, ref_q = docs, qs
        cos = (docs * ref_docs).sum(1)
        row = {"variant": name, "passages": len(passages), "passages_per_s": len(passages) / doc_s,
               "queries": len(queries), "queries_per_s": len(queries) / q_s,
               "cosine_to_fp32_mean": float(cos.mean()), "cosine_to_fp32_min": float(cos.min())}
        if len(passages) == len(data.corpus):
            row["dense_ndcg10"] = dense_ndcg(docs, qs, data)
        if index is not None:
            row["generative_ndcg10"] = generative_ndcg(index, fn, data)
        rows.append(row)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    base = rows[0]
    for row in rows:
        row["speedup_passages"] = row["passages_per_s"] / base["passages_per_s"]
        row["speedup_queries"] = row["queries_per_s"] / base["queries_per_s"]
        for key in ("dense_ndcg10", "generative_ndcg10"):
            if key in row:
                row[f"{key}_delta"] = row[key] - base[key]
        row["equal_quality"] = all(abs(row.get(f"{k}_delta", 0.0)) <= TOLERANCE for k in ("dense_ndcg10", "generative_ndcg10"))
    result = {"dataset": str(args.data), "split": "dev", "num_queries": len(queries), "threads": args.threads,
              "tolerance": TOLERANCE, "index": str(args.index) if args.index else None,
              "index_config": to_dict(index.cfg) if index is not None else None, "rows": rows}
    write_result(args.out, result, started=started)
    plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out}")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    names = [r["variant"] for r in rows]
    x = np.arange(len(rows))
    a.bar(x - 0.2, [r["speedup_passages"] for r in rows], 0.4, label="passages/s")
    a.bar(x + 0.2, [r["speedup_queries"] for r in rows], 0.4, label="queries/s")
    a.axhline(2.0, color="grey", ls="--", lw=1)
    a.set_xticks(x, names, rotation=20)
    a.set_ylabel("throughput vs torch-fp32")
    a.legend()
    for i, key in enumerate(("dense_ndcg10_delta", "generative_ndcg10_delta")):
        b.bar(x + (i - 0.5) * 0.4, [r.get(key, 0.0) for r in rows], 0.4, label=key.split("_")[0] + " nDCG@10")
    b.axhline(-TOLERANCE, color="grey", ls="--", lw=1)
    b.axhline(TOLERANCE, color="grey", ls="--", lw=1)
    b.set_xticks(x, names, rotation=20)
    b.set_ylabel("nDCG@10 - torch-fp32 (SciFact dev)")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
