"""SciFact development split, every retrieval mode side by side in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python eval/bench_scifact.py [--data ../shared/data/scifact] [--epochs 10]

Builds the full index (embeddings, semantic IDs, seq2seq trained on the train-dev queries + pseudo-queries),
tunes the hybrid on the dev split (20 % of train, seed 0) as the index does, evaluates bm25 / dense / rrf /
generative / hybrid on the same dev queries, and adds an honest check of the tuning: 2-fold cross-validation
on dev (tune on one half, score the other). Writes eval/results/scifact-dev-generative.json (with
genir.provenance: commit, machine, command) and a plot. The index is always built by this command (a killed
run continues with --resume; the training record says from which step), never loaded from elsewhere.
The README's SciFact table comes from eval/jobs/scifact-generative.toml (`genir bench`), the same defaults.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

MODES = ["bm25", "dense", "rrf", "generative", "hybrid"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    ap.add_argument("--epochs", type=float, default=None, help="override TrainConfig.epochs")
    ap.add_argument("--scheme", default="rqvae")
    ap.add_argument("--workdir", type=Path, default=ROOT / "data" / "cache" / "scifact-work")
    ap.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "scifact-dev-generative.json")
    ap.add_argument("--save-index", type=Path, default=None)
    ap.add_argument("--resume", action="store_true", help="continue training from the workdir's newest checkpoint")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = ap.parse_args()
    import logging

    from genir.provenance import provenance, write_result

    started = provenance()

    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("faiss", "sentence_transformers", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    from genir.config import CodecConfig, IndexConfig
    from genir.data import dev_split, load_dataset
    from genir.evaluate import evaluate_index
    from genir.index import GenerativeIndex
    from genir.semantic import check_decoded_ids

    train = load_dataset(args.data, split="train-dev", dev_fraction=0.2, seed=0)
    dev = load_dataset(args.data, split="dev", dev_fraction=0.2, seed=0)
    cfg = IndexConfig(codec=CodecConfig(scheme=args.scheme))
    if args.epochs is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=args.epochs))
    t = time.perf_counter()
    index = GenerativeIndex.build(train.corpus, cfg, train_queries=train.split_queries(), train_qrels=train.qrels,
                                  device="auto", workdir=args.workdir, resume=args.resume)
    build_total = time.perf_counter() - t
    dev_q, dev_qrels = dev.split_queries(), dev.qrels

    # 2-fold cross-validation of the tuning: never scores a query with weights chosen on it
    (qa, ra), (qb, rb) = dev_split(dev_q, dev_qrels, fraction=0.5, seed=1)
    folds = []
    for (tq, tr), (eq, er) in (((qa, ra), (qb, rb)), ((qb, rb), (qa, ra))):
        tuned = index.tune(tq, tr)
        rep = evaluate_index(index, eq, er, modes=["rrf", "hybrid"], dataset="scifact", split="dev-fold")
        folds.append({"chosen": tuned["chosen"], "held_out": {r["mode"]: r["metrics"] for r in rep["results"]},
                      "num_queries": rep["num_queries"]})
    cv = {m: {k: float(np.mean([f["held_out"][m][k] for f in folds])) for k in folds[0]["held_out"][m]}
          for m in ("rrf", "hybrid")}

    t = time.perf_counter()
    tuned = index.tune(dev_q, dev_qrels)  # what `genir index` stores: tuned on all of dev
    tune_seconds = time.perf_counter() - t
    report = evaluate_index(index, dev_q, dev_qrels, modes=MODES, dataset=args.data.name, split="dev")
    # every returned document is a live row of the corpus table whose semantic ID is the decoded code tuple
    # (checked against the ID array, not the trie that decoded it); mode="generative" returns these doc_idx
    dc = index.cfg.decode
    decoded = index.semantic.retriever.decode(dev_q.texts, k=dc.beam_size, beam_size=dc.beam_size,
                                              renormalize=dc.renormalize, batch_size=dc.batch_size)
    id_check = check_decoded_ids(decoded.codes, decoded.doc_idx, index.semantic.ids, num_docs=len(index.corpus),
                                 deleted=index.deleted)
    report.update({
        "build_seconds": {**index.meta["build_seconds"], "total": build_total, "tune": tune_seconds},
        "codec_stats": index.semantic.meta.get("codec_stats"),
        "train": index.semantic.meta.get("train"),
        "train_config": dataclasses.asdict(index.cfg.train),
        "hybrid_tuned_on_dev": tuned,
        "hybrid_2fold_cv_on_dev": {"mean_held_out": cv, "folds": folds},
        "valid_id_rate": id_check.share if id_check.outputs else None,
        "generative_outputs_checked": id_check.outputs,
        "dev_split": {"fraction": 0.2, "seed": 0, "source": "train", "train_queries": len(train.split_queries())},
        "torch_threads": torch.get_num_threads(),
    })
    write_result(args.out, report, started=started)
    if args.save_index is not None:
        index.save(args.save_index)
    plot(report, args.out.with_suffix(".png"))
    for r in report["results"]:
        print(f"{r['mode']:>10}", {k: round(v, 4) for k, v in r["metrics"].items()}, f"{r['queries_per_second']:.1f} q/s")
    print("2-fold CV on dev (held-out mean nDCG@10): rrf %.4f hybrid %.4f" % (cv["rrf"]["nDCG@10"], cv["hybrid"]["nDCG@10"]))
    print("valid-ID rate", report["valid_id_rate"], "build seconds", report["build_seconds"])


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [r["mode"] for r in report["results"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("nDCG@10", "R@100")):
        vals = [r["metrics"][metric] for r in report["results"]]
        ax.bar(modes, vals, color=["#888", "#4a7", "#47a", "#c63", "#a4c"][: len(modes)])
        ax.set_title(f"SciFact dev ({report['num_queries']} queries): {metric}")
        for i, v in enumerate(vals):
            ax.text(i, v + 0.005, f"{v:.3f}", ha="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
