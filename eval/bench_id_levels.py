"""Where the generative retriever goes wrong: per ID level, how often each mode's top-1 document shares the first
l codes of a relevant document's semantic ID (for l = 1 .. levels + suffix), on an index's dev split.

A generative top-1 that misses the gold's first code chose the wrong cluster at the first decoding step; one
that shares the first code and misses later ones went wrong deeper. The dense top-1 over the same IDs is the
reference: how often the teacher-quality ranking lands in the gold's cluster. Nothing is tuned here.

    HF_HUB_OFFLINE=1 .venv/bin/python eval/bench_id_levels.py INDEX_DIR DATA_DIR --result NAME.json
    # e.g. the msmarco-10k default index: eval/results/msmarco-10k-id-levels.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genir.provenance import provenance, write_result  # noqa: E402


def shared_prefix(ids: np.ndarray, top: int, golds: list[int]) -> int:
    """The longest prefix (in codes) the ID of document ``top`` shares with the ID of any of ``golds``."""
    return max(int(np.cumprod(ids[top] == ids[g]).sum()) for g in golds)


def level_agreement(ids: np.ndarray, tops: np.ndarray, golds: list[list[int]]) -> list[float]:
    """Per l = 1 .. ids.shape[1]: the share of queries whose top-1 shares the first l codes with a gold document
    (a query with no result counts as sharing none)."""
    counts = np.zeros(ids.shape[1])
    for top, gold in zip(tops, golds):
        if top >= 0:
            counts[: shared_prefix(ids, int(top), gold)] += 1
    return (counts / max(len(golds), 1)).round(4).tolist()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--modes", nargs="+", default=["generative", "dense", "hybrid"])
    ap.add_argument("--result", required=True, help="file name under eval/results")
    args = ap.parse_args(argv)
    started = provenance()
    from genir.config import to_dict
    from genir.data import load_dataset
    from genir.index import GenerativeIndex

    index = GenerativeIndex.load(args.index, device="cpu")
    if index.semantic is None:
        print(f"error: {args.index} has no generative model (semantic IDs)", file=sys.stderr)
        return 2
    ds = load_dataset(args.data, split=args.split)
    queries = ds.split_queries()
    position = {d: i for i, d in enumerate(index.corpus.doc_ids)}
    relevant: dict[str, list[int]] = {}
    for row in ds.qrels.table.to_pylist():
        if row["relevance"] > 0 and row["doc_id"] in position:
            relevant.setdefault(row["query_id"], []).append(position[row["doc_id"]])
    qids, all_texts = queries.query_ids, queries.texts
    keep = [i for i, q in enumerate(qids) if q in relevant]
    texts = [all_texts[i] for i in keep]
    golds = [relevant[qids[i]] for i in keep]
    ids = index.semantic.ids
    modes = {}
    for mode in args.modes:
        tops = index.search_arrays(texts, 1, mode=mode).doc_idx[:, 0]
        modes[mode] = {"top1_shares_first_codes": level_agreement(ids, tops, golds),
                       "top1_relevant": round(float(np.mean([t in g for t, g in zip(tops, golds)])), 4)}
    write_result(ROOT / "eval" / "results" / args.result, {
        "what": "per ID level l, the share of queries whose top-1 document's semantic ID shares its first l codes "
                "with a relevant document's (the last level is the collision suffix); nothing tuned",
        "index": str(args.index), "index_built_by": index.meta.get("built_by"), "index_config": to_dict(index.cfg),
        "data": str(args.data), "split": args.split, "num_queries": len(golds), "id_levels": int(ids.shape[1]),
        "modes": modes,
    }, started=started)
    for mode, row in modes.items():
        print(mode, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
