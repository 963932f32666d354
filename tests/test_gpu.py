"""GPU check (marker ``gpu``; run by eval/gpu_check.sh): a tiny retrieval index and a tiny recommendation index
are built on CUDA, every mode is served, and the top 10 of each saved index served on the CPU and on CUDA are
compared on seeded data (same weights, so differences are numerics only).

Skipped unless torch sees a CUDA GPU. ``GENIR_GPU_CHECK_ALLOW_CPU=1`` runs the same tests on the CPU (a dry
run that tests the check itself: both sides are then CPU and must agree exactly). With
``GENIR_GPU_CHECK_OUT=DIR`` each test writes its numbers to DIR/<part>.json.
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.synthetic import synthetic_corpus

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not CUDA and os.environ.get("GENIR_GPU_CHECK_ALLOW_CPU") != "1",
                       reason="needs a CUDA GPU (GENIR_GPU_CHECK_ALLOW_CPU=1 runs it on the CPU as a dry run)"),
]
K = 10
# mean share of a CPU top-10 found in the device's top-10: the same weights on both sides, so only float
# rounding (near-ties swapping around rank 10) may differ
MIN_OVERLAP = 0.9


def _write(part: str, result: dict) -> None:
    result = {"part": part, "device": DEVICE, "dry_run_on_cpu": not CUDA,
              "gpu": torch.cuda.get_device_name(0) if CUDA else None, "torch": torch.__version__,
              "cuda": torch.version.cuda, "platform": platform.platform(), **result}
    out = os.environ.get("GENIR_GPU_CHECK_OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"{part}.json").write_text(json.dumps(result, indent=2))


def _agreement(cpu: list[list], dev: list[list]) -> dict:
    """Top-k lists per query on both devices -> exact-row and overlap agreement."""
    exact = float(np.mean([a == b for a, b in zip(cpu, dev)]))
    overlap = float(np.mean([len(set(a) & set(b)) / max(len(a), 1) for a, b in zip(cpu, dev)]))
    return {"rows": len(cpu), "identical_rows": exact, f"mean_overlap_at_{K}": overlap}


def test_retrieval_index_on_the_device_every_mode(tmp_path):
    from genir.config import CodecConfig, IndexConfig, TrainConfig
    from genir.data.types import Qrels, Queries
    from genir.index import MODES, GenerativeIndex
    import pyarrow as pa

    corpus = synthetic_corpus(8)
    queries = Queries.from_records(["q1", "q2"], ["telescope galaxy", "flour butter"])
    qrels = Qrels(pa.table({"query_id": ["q1", "q2"], "doc_id": ["astronomy-0", "cooking-1"], "relevance": [1, 1]}))
    cfg = IndexConfig(codec=CodecConfig(scheme="rqkmeans", levels=2, codebook_size=4),
                      train=replace(TrainConfig(), max_steps=30, batch_size=32, pseudo_per_doc=1, checkpoint_every=0))
    t0 = time.perf_counter()
    built = GenerativeIndex.build(corpus, cfg, train_queries=queries, train_qrels=qrels, device=DEVICE,
                                  workdir=tmp_path / "work", progress=False)
    build_seconds = time.perf_counter() - t0
    assert built.semantic.retriever.device.type == DEVICE  # the model trained on the device
    built.save(tmp_path / "idx")
    served = {d: GenerativeIndex.load(tmp_path / "idx", device=d) for d in ("cpu", DEVICE)}
    texts = [f"{w} {v}" for w, v in zip(("telescope", "oven", "bond", "vaccine") * 3, ("orbit", "sugar", "rate",
                                                                                         "trial", "star", "bake"))]
    modes = {}
    for mode in MODES:
        ranked = {d: [[h.doc_id for h in row] for row in idx.search(texts, K, mode=mode)] for d, idx in served.items()}
        assert all(0 < len(row) <= K and set(row) <= set(corpus.doc_ids) for row in ranked[DEVICE]), mode
        modes[mode] = _agreement(ranked["cpu"], ranked[DEVICE])
    _write("retrieval", {"documents": len(corpus), "queries": len(texts), "build_seconds": round(build_seconds, 2),
                         "modes": modes})
    for mode, agree in modes.items():
        assert agree[f"mean_overlap_at_{K}"] >= (MIN_OVERLAP if CUDA else 1.0), (mode, agree)


def test_recommendation_index_on_the_device_every_mode(tmp_path):
    from genir.config import CodecConfig, RecConfig
    from genir.rec.protocol import eval_queries
    from genir.rec.recommender import MODES, Recommender
    from genir.rec.synthetic import planted_sequences

    cfg = RecConfig(item_embedding="cooc", cooc_dim=16, codec=CodecConfig(scheme="rqkmeans", levels=2, codebook_size=8),
                    d_model=32, encoder_layers=1, decoder_layers=1, heads=2, d_ff=64, dropout=0.0, lr=3e-3,
                    batch_size=64, max_epochs=8, patience=3, beam_size=10, bf16=True,  # the autocast path too
                    sasrec_dim=16, sasrec_layers=1, sasrec_dropout=0.0, sasrec_lr=1e-2, sasrec_batch_size=64)
    t0 = time.perf_counter()
    rec = Recommender.build(planted_sequences(num_users=300, seed=0), cfg, dataset="planted", device=DEVICE,
                            checkpoint_dir=tmp_path / "ck")
    build_seconds = time.perf_counter() - t0
    assert {p.device.type for m in (rec.generative.model, rec.sasrec) for p in m.parameters()} == {DEVICE}
    report = rec.evaluate("test")
    recall = {r["mode"]: r["metrics"]["R@10"] for r in report["results"]}
    rec.save(tmp_path / "idx")
    served = {d: Recommender.load(tmp_path / "idx", device=d) for d in ("cpu", DEVICE)}
    q = eval_queries(served["cpu"].data, "test")
    modes = {}
    for mode in MODES:
        ranked = {d: r.ranker(mode).rank(q.histories, q.lengths, q.users, k=K).tolist() for d, r in served.items()}
        modes[mode] = _agreement(ranked["cpu"], ranked[DEVICE])
    top = {d: [x["item_id"] for x in r.recommend(history=["i6", "i7"], k=K)] for d, r in served.items()}
    _write("recommendation", {"users": rec.data.num_users, "items": rec.data.num_items,
                              "build_seconds": round(build_seconds, 2), "test_recall_at_10_trained_on_device": recall,
                              "epochs": {m: rec.reports[m]["train"]["epochs"] for m in ("generative", "sasrec")},
                              "modes": modes})
    # trained on the device, it still learns the planted chain (next item follows the last with p = 0.9)
    assert recall["generative"] > recall["popular"] + 0.3 and recall["sasrec"] > recall["popular"] + 0.3, recall
    assert "i8" in top[DEVICE][:3]
    for mode, agree in modes.items():
        assert agree[f"mean_overlap_at_{K}"] >= (MIN_OVERLAP if CUDA else 1.0), (mode, agree)
