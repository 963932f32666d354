"""Sequential recommendation on Amazon 5-core (Beauty, Sports): generative (TIGER-style) vs SASRec vs
most-popular, trained and evaluated in one run on the same leave-one-out split.

    HF_HUB_OFFLINE=1 .venv/bin/python eval/bench_rec.py --dataset amazon-beauty --threads 2 \
        [--data ../shared/data] [--set history_tokens=items ...] [--modes generative sasrec popular]

Per dataset writes eval/results/rec-<dataset>.json: the REPORT (genir eval format) for the validation and
the test split, training time and epochs per model, codec statistics, the config and genir.provenance
(commit, machine, command). The built index is kept under indexes/rec-<dataset> (git-ignored) for
`genir recommend`. Only what this run measured goes into the file: published numbers to compare with are
quoted, with their source, in the README. The README's table comes from the jobs eval/jobs/amazon-*.toml
(`genir bench`), which run the same protocol with the default RecConfig.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("amazon-beauty", "amazon-sports")


def training_summary(reports: dict) -> dict:
    """Per mode: epochs, best epoch, training seconds summed over every epoch (a run resumed from a checkpoint
    counts the epochs before the resume too; `seconds_this_run` is only this process's share) and the
    validation curve with each epoch's seconds."""
    training = {}
    for mode, rep in reports.items():
        train = rep["train"]
        training[mode] = {"train_seconds": round(train["seconds"], 1), "seconds_this_run": round(rep["seconds"], 1),
                          "epochs": train["epochs"], "best_epoch": train["best_epoch"],
                          "stopped_early": train["stopped_early"],
                          "valid_curve": [{"epoch": h["epoch"], "seconds": h.get("seconds"), **h["valid"]}
                                          for h in train["history"]]}
        if mode == "generative":
            training[mode].update({"item_embedding": rep["item_embedding"], "codec": rep["codec"],
                                   "embed_seconds": round(rep["embed_seconds"], 1),
                                   "codec_seconds": round(rep["codec_seconds"], 1)})
    return training


def plot(doc: dict, path: Path) -> None:
    """Validation nDCG@10 per epoch for each trained model, and test R@10 / nDCG@10 per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curve, bars) = plt.subplots(1, 2, figsize=(11, 4))
    for mode, train in doc["training"].items():
        epochs = [h["epoch"] for h in train["valid_curve"]]
        sample = doc["config"]["valid_users"] if mode == "generative" else 0
        label = f"{mode} ({sample:,}-user sample)" if sample else f"{mode} (all users)"
        curve.plot(epochs, [h["nDCG@10"] for h in train["valid_curve"]], marker=".", label=label)
    curve.set(xlabel="epoch", ylabel="validation nDCG@10", title=f"{doc['dataset']}: early-stopping curve")
    curve.legend()
    rows = doc["test"]["results"]
    test_bars(bars, [r["mode"] for r in rows], [r["metrics"] for r in rows], f"{doc['dataset']}: test split, same run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def test_bars(ax, labels: list[str], metrics: list[dict], title: str) -> None:
    """R@10 and nDCG@10 bars side by side per label."""
    for j, metric in enumerate(("R@10", "nDCG@10")):
        ax.bar([i + 0.4 * j for i in range(len(metrics))], [m[metric] for m in metrics], width=0.4, label=metric)
    ax.set_xticks([i + 0.2 for i in range(len(metrics))], labels)
    ax.set(title=title)
    ax.legend(fontsize=8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--dataset", default="amazon-beauty", choices=DATASETS)
    ap.add_argument("--modes", nargs="+", default=["generative", "sasrec", "popular"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--index", type=Path, default=None)
    ap.add_argument("--plot-only", action="store_true", help="redraw the plot of an existing --out JSON")
    args = ap.parse_args()
    if args.plot_only:
        out = args.out or ROOT / "eval" / "results" / f"rec-{args.dataset}.json"
        plot(json.loads(out.read_text()), out.with_suffix(".png"))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from genir.provenance import provenance, write_result

    started = provenance()
    from genir.config import RecConfig, to_dict, with_overrides
    from genir.data.amazon import load_sequences
    from genir.rec.recommender import Recommender

    try:
        cfg = with_overrides(RecConfig(threads=args.threads), args.overrides)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    out = args.out or ROOT / "eval" / "results" / f"rec-{args.dataset}.json"
    index = args.index or ROOT / "indexes" / f"rec-{args.dataset}"
    t0 = time.perf_counter()
    rec = Recommender.build(load_sequences(args.data / args.dataset), cfg, modes=args.modes, dataset=args.dataset,
                            checkpoint_dir=index.with_name(index.name + ".checkpoints"))
    build_seconds = time.perf_counter() - t0
    rec.save(index)
    import torch

    torch.set_num_threads(args.threads)
    reports = {split: rec.evaluate(split) for split in ("valid", "test")}
    training = training_summary(rec.reports)
    doc = {"dataset": args.dataset, "protocol": "leave-one-out, full ranking, no filtering of seen items, "
           "history capped at max_history", "test": reports["test"], "valid": reports["valid"], "training": training,
           "build_seconds": round(build_seconds, 1), "config": to_dict(cfg), "torch_threads": args.threads}
    write_result(out, doc, started=started)
    plot(doc, out.with_suffix(".png"))
    for split in ("valid", "test"):
        for row in reports[split]["results"]:
            print(split, row["mode"], {k: round(v, 4) for k, v in row["metrics"].items()},
                  f"{row['queries_per_second']:.0f} q/s")
    print("wrote", out)


if __name__ == "__main__":
    main()
