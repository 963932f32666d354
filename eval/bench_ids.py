"""Benchmark the semantic-ID codecs on real embeddings (SciFact documents, Amazon Beauty items).

Per scheme: utilisation and perplexity per level, share of documents colliding before the suffix, the
largest collision group, reconstruction MSE and fit time. Embeddings (MiniLM, float32, genir.embed.Embedder)
are cached under data/cache/ so reruns skip the encoding.

    HF_HUB_OFFLINE=1 .venv/bin/python eval/bench_ids.py [--data ../shared/data] [--embed-only]
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "data" / "cache"
RESULTS = ROOT / "eval" / "results"
SCHEMES = ("rqvae", "rqkmeans", "hkmeans", "atomic")
logger = logging.getLogger("bench_ids")


def _cached(name: str, texts: list[str]) -> np.ndarray:
    """MiniLM embeddings (n, 384) float32, unit norm, through genir's Embedder in float32 (the codecs are compared
    on the reference vectors) and its cache under data/cache/<name>/ (keyed by model, settings and texts)."""
    from genir.config import EmbedConfig
    from genir.embed import Embedder

    t0 = time.perf_counter()
    emb = Embedder(EmbedConfig(precision="fp32"), device="cpu").encode_cached(texts, CACHE / name)
    logger.info("embeddings of %s: %s in %.0f s", name, emb.shape, time.perf_counter() - t0)
    return emb


def _scifact_texts(folder: Path) -> list[str]:
    from genir.data.beir import load_beir

    return load_beir(folder).corpus.passages()  # what `genir index` embeds: title + ". " + text


def _beauty_texts(folder: Path) -> list[str]:
    from genir.data.amazon import ATTRIBUTES, read_item_text

    return list(read_item_text(folder / ATTRIBUTES).values())  # the recommender's item text: attributes joined


def datasets(data: Path) -> dict[str, tuple[np.ndarray, list[str]]]:
    """name -> (embeddings (n, 384) float32, texts (n,))."""
    sci = _scifact_texts(data / "scifact")
    beauty = _beauty_texts(data / "amazon-beauty")
    return {
        "scifact": (_cached("scifact", sci), sci),
        "amazon-beauty": (_cached("amazon-beauty", beauty), beauty),
    }


def run_scheme(scheme: str, emb: np.ndarray, *, seed: int) -> dict:
    from genir.config import CodecConfig
    from genir.ids import add_suffix, make_codec

    cpu0 = time.process_time()
    codec = make_codec(CodecConfig(scheme=scheme, seed=seed)).fit(emb)
    cpu = time.process_time() - cpu0
    codes = codec.encode(emb)
    ids = add_suffix(codes)
    if len(np.unique(ids, axis=0)) != len(emb):
        raise RuntimeError(f"{scheme}: IDs not unique after the suffix")
    row = {"scheme": scheme, **codec.stats().to_dict(), "fit_cpu_seconds": round(cpu, 2)}
    row["id_depth_with_suffix"] = ids.shape[1]
    logger.info("%s: %s", scheme, json.dumps(row))
    return row


def dataset_info(emb: np.ndarray, texts: list[str]) -> dict:
    """Documents with identical text get (nearly) identical embeddings, so content-based IDs collide there."""
    _, counts = np.unique(np.array(texts, dtype=object), return_counts=True)
    return {
        "num_docs": len(emb),
        "dim": emb.shape[1],
        "distinct_texts": len(counts),
        "duplicate_text_share": float(counts[counts > 1].sum() / len(emb)),
        "largest_duplicate_group": int(counts.max()),
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(len(names), 3, figsize=(13, 3.6 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        rows = results[name]["schemes"]
        schemes = [x["scheme"] for x in rows]
        ax = axes[r][0]
        width = 0.25
        for level in range(3):
            vals = [x["utilization"][level] if level < len(x["utilization"]) else 0 for x in rows]
            ax.bar(np.arange(len(rows)) + (level - 1) * width, vals, width, label=f"level {level}")
        ax.set(xticks=range(len(rows)), xticklabels=schemes, ylim=(0, 1.05), title=f"{name}: code utilisation")
        ax.legend(fontsize=7)
        ax = axes[r][1]
        ax.bar(schemes, [x["collision_share"] for x in rows], color="tab:red")
        floor = results[name]["dataset"]["duplicate_text_share"]
        ax.axhline(floor, ls="--", c="k", lw=1, label=f"docs sharing their text {floor:.3f}")
        ax.set(title=f"{name}: share of docs colliding before suffix", ylim=(0, 1))
        ax.legend(fontsize=7)
        ax = axes[r][2]
        ax.bar(schemes, [x["fit_seconds"] for x in rows], color="tab:green", label="wall")
        ax.bar(schemes, [x["fit_cpu_seconds"] for x in rows], color="tab:olive", alpha=0.7, width=0.4, label="CPU")
        ax.set(title=f"{name}: fit time (s)", yscale="log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=SCHEMES)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--embed-only", action="store_true", help="only compute and cache the embeddings")
    ap.add_argument("--out", type=Path, default=RESULTS / "ids-bench.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from genir.provenance import provenance, write_result

    started = provenance()
    import torch

    torch.set_num_threads(1)
    embs = datasets(args.data)
    if args.embed_only:
        return
    results = {}
    for name, (emb, texts) in embs.items():
        info = dataset_info(emb, texts)
        logger.info("%s: %s", name, info)
        results[name] = {"dataset": info, "schemes": [run_scheme(s, emb, seed=args.seed) for s in args.schemes]}
    from genir.config import CodecConfig, to_dict

    doc = {
        "torch_threads": torch.get_num_threads(),
        "embedding": "all-MiniLM-L6-v2 (unit norm); SciFact: title + '. ' + text; Beauty: attributes joined by ', '",
        "codec_config_defaults": to_dict(CodecConfig()),
        "results": results,
    }
    write_result(args.out, doc, started=started)
    plot(results, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
