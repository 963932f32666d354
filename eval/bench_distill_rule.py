"""What the distillation rule (TrainConfig.distill_when = "dense_beats_bm25", genir.index.distill_choice) decides on
each corpus, as `genir index DATA_DIR` would apply it: the labelled queries the build trains on (the train split
minus the seeded dev carve-out), ranked by the dense index and by BM25 over the corpus, nDCG@10 each; distil when
dense is higher. A corpus without train queries (the DL pool) gets no distillation. Nothing is tuned here: the rule
reads train queries only and the dev and test splits are not opened.

    HF_HUB_OFFLINE=1 .venv/bin/python eval/bench_distill_rule.py ../shared/data/scifact ../shared/data/msmarco-10k \\
        ../shared/data/msmarco-dl-pool --cache indexes/distill-rule --result distill-rule.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genir.provenance import provenance, write_result  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, nargs="+", help="dataset folders (BEIR or MS MARCO layout)")
    ap.add_argument("--cache", type=Path, default=ROOT / "indexes" / "distill-rule",
                    help="passage-embedding cache, one folder per dataset (reused when the texts match)")
    ap.add_argument("--result", required=True, help="file name under eval/results")
    args = ap.parse_args(argv)
    started = provenance()
    from genir.bm25 import Bm25Index
    from genir.config import IndexConfig, to_dict
    from genir.data import load_training
    from genir.dense import DenseIndex
    from genir.embed import Embedder
    from genir.index import distill_choice

    cfg = IndexConfig()
    embedder = Embedder(cfg.embed, device="cpu")
    rows = []
    for folder in args.data:
        t = time.perf_counter()
        corpus, queries, qrels = load_training(folder)  # as `genir index` reads it
        dense = bm25 = None
        if queries is not None:  # without labelled queries the rule decides before ranking anything
            emb = embedder.encode_cached(corpus.passages(), args.cache / folder.name, progress=False)
            dense, bm25 = DenseIndex.build(emb, cfg.dense), Bm25Index.build(corpus.passages(), cfg.bm25)
        choice = distill_choice(cfg, embedder, dense, bm25, corpus, queries, qrels)
        rows.append({"data": str(folder), "documents": len(corpus), "seconds": round(time.perf_counter() - t, 1),
                     **choice})
        print(folder.name, choice, flush=True)
    write_result(ROOT / "eval" / "results" / args.result, {
        "what": "the distillation rule as `genir index` applies it with the default config: nDCG@10 of dense and "
                "BM25 on the build's labelled train queries (train minus the dev carve-out); 'distill' is the "
                "weight the model would train with; dev and test not read",
        "config": {"train": to_dict(cfg.train)}, "datasets": rows,
    }, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
