"""Side by side: generative-recommender variants from several bench_rec.py runs on one dataset.

    python eval/compare_rec.py --dataset amazon-beauty --out eval/results/rec-amazon-beauty-variants.json \
        eval/results/rec-amazon-beauty-lrdecay0.5.json eval/results/rec-amazon-beauty-lrdecay0.8.json ...

Each input is a bench_rec.py result JSON. A variant is named by the config fields it sets apart from the
first input. Writes one JSON (per variant: the fields that differ, epochs, best epoch, training seconds, the
validation curve on the early-stopping sample, validation and test metrics on all users) and a plot of the
validation curves beside the test R@10 / nDCG@10 bars. Choosing among variants is done on validation; the
test column is reported, never used to choose.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("R@5", "nDCG@5", "R@10", "nDCG@10")


def _metrics(report: dict, mode: str) -> dict:
    return next(r["metrics"] for r in report["results"] if r["mode"] == mode)


def _flat(cfg: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


# how long / with how many threads, not what is trained (sasrec_* fields do not shape the generative model)
IGNORED = {"threads", "max_epochs", "patience"}


def _config(doc: dict) -> dict:
    """The run's config, flattened, with fields added since filled in as they behaved then."""
    from genir.config import rec_config_from_dict, to_dict

    return _flat(json.loads(json.dumps(to_dict(rec_config_from_dict(doc["config"])))))


def variants(docs: list[tuple[str, dict]]) -> list[dict]:
    base = _config(docs[0][1])
    rows = []
    for path, doc in docs:
        cfg = _config(doc)
        diff = {k: cfg.get(k) for k in sorted(set(cfg) | set(base)) if cfg.get(k) != base.get(k) and k not in IGNORED
                and not k.startswith("sasrec_")}
        train = doc["training"]["generative"]
        rows.append({
            "file": path, "name": ", ".join(f"{k}={v}" for k, v in diff.items()) or "reference (first input)",
            "differs_from_reference": diff, "epochs": train["epochs"], "best_epoch": train["best_epoch"],
            "train_seconds": train["train_seconds"],
            "valid_curve_ndcg10": [round(h["nDCG@10"], 5) for h in train["valid_curve"]],
            "valid": _metrics(doc["valid"], "generative"), "test": _metrics(doc["test"], "generative"),
            "command": doc["command"]})
    return rows


def plot(rows: list[dict], dataset: str, sample: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from bench_rec import test_bars

    fig, (curve, bars) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, row in enumerate(rows):
        ys = row["valid_curve_ndcg10"]
        curve.plot(range(1, len(ys) + 1), ys, marker=".", label=f"[{i}] {row['name']}")
    curve.set(xlabel="epoch", ylabel=f"validation nDCG@10 ({sample:,}-user sample)",
              title=f"{dataset}: generative variants")
    curve.legend(fontsize=7)
    test_bars(bars, [f"[{i}]" for i in range(len(rows))], [r["test"] for r in rows],
              f"{dataset}: test split (reported, not used to choose)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", type=Path, help="bench_rec.py result JSONs; the first is the reference")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    docs = []
    for path in args.inputs:
        doc = json.loads(path.read_text())
        if doc["dataset"] != args.dataset:
            raise SystemExit(f"error: {path} is a {doc['dataset']} run, not {args.dataset}")
        if "generative" not in doc["training"]:
            raise SystemExit(f"error: {path} has no generative model")
        rel = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
        docs.append((str(rel), doc))
    rows = variants(docs)
    best = max(range(len(rows)), key=lambda i: rows[i]["valid"]["nDCG@10"])
    out = {"dataset": args.dataset, "chosen_on": "validation nDCG@10, all users",
           "best_on_validation": best, "variants": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    plot(rows, args.dataset, docs[0][1]["config"]["valid_users"], args.out.with_suffix(".png"))
    for i, row in enumerate(rows):
        print(f"[{i}] {row['name']}: epochs {row['epochs']} (best {row['best_epoch']}), valid "
              + " ".join(f"{m} {row['valid'][m]:.4f}" for m in METRICS) + " | test "
              + " ".join(f"{m} {row['test'][m]:.4f}" for m in METRICS))
    print("best on validation:", best, "wrote", args.out)


if __name__ == "__main__":
    main()
