"""Retrieval evaluation with ir-measures, and TREC run files.

Queries with judgements but no retrieved documents count as 0 (ir-measures' providers silently skip
them, which would inflate scores of a system that returns nothing for hard queries).

Graded judgements: ``rel`` is the lowest grade that counts as relevant for the binary measures (RR, R, P,
AP, Success); nDCG always uses the grades themselves. TREC DL passage ranking counts grades >= 2.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import ir_measures
import numpy as np

from genir.data.types import Qrels

# MS MARCO / DSI reporting: MRR@10 is RR@10, Hits@1 is R@1 (one relevant passage per query)
DEFAULT_MEASURES = ("nDCG@10", "RR@10", "R@1", "R@10", "R@100")

Run = dict[str, dict[str, float]]  # query_id -> doc_id -> score


def parse_measures(names: Iterable[str], *, rel: int = 1) -> list:
    """ir-measures objects; binary measures count grades >= ``rel`` as relevant (unless the name sets rel)."""
    if rel < 1:
        raise ValueError(f"relevance threshold must be >= 1, got {rel}")
    out = []
    for name in names:
        try:
            measure = ir_measures.parse_measure(name)
        except (ValueError, NameError, SyntaxError, TypeError):
            raise ValueError(
                f"unknown measure {name!r}; use an ir-measures name such as {list(DEFAULT_MEASURES)} or 'P@5', 'AP'"
            ) from None
        if rel != 1 and "rel" in measure.SUPPORTED_PARAMS and "rel" not in measure.params:
            measure = measure(rel=rel)
        out.append(measure)
    return out


def evaluate_order(query_ids: Sequence[str], doc_idx: np.ndarray, doc_ids: Sequence[str], qrels: Qrels,
                   measures: Sequence[str] = DEFAULT_MEASURES, *, rel: int = 1) -> dict[str, float]:
    """Measures of the ranked rows as returned (position = rank). Scoring the raw scores instead would let
    trec_eval re-sort equal scores by doc id, and fusion ties often, so it would grade another order."""
    by_position = np.broadcast_to(-np.arange(doc_idx.shape[1], dtype=np.float64), doc_idx.shape)
    return evaluate(run_from_arrays(query_ids, doc_idx, by_position, doc_ids), qrels, measures, rel=rel)


def run_from_arrays(query_ids: Sequence[str], doc_idx: np.ndarray, scores: np.ndarray, doc_ids: Sequence[str]) -> Run:
    """(q, k) doc_idx/scores arrays (-1 = empty slot) -> Run dict."""
    run: Run = {}
    for qid, row_i, row_s in zip(query_ids, doc_idx, scores):
        hits = {}
        for i, s in zip(row_i.tolist(), row_s.tolist()):
            if i >= 0 and doc_ids[i] not in hits:
                hits[doc_ids[i]] = float(s)
        run[qid] = hits
    return run


def evaluate(run: Run, qrels: Qrels, measures: Sequence[str] = DEFAULT_MEASURES, *, rel: int = 1) -> dict[str, float]:
    """Mean of each measure over every judged query (missing from the run = 0); ``rel`` as in parse_measures."""
    parsed = parse_measures(measures, rel=rel)
    qrel_dict = qrels.as_dict()
    qids = sorted(qrel_dict)
    if not qids:
        raise ValueError("no judged queries to evaluate")
    # ir-measures drops empty rankings; a dummy doc that is never relevant keeps the query in.
    safe_run = {q: (run.get(q) or {"__genir_none__": 0.0}) for q in qids}
    per_query: dict[str, dict[str, float]] = {str(m): {} for m in parsed}
    for m in ir_measures.iter_calc(parsed, qrel_dict, safe_run):
        per_query[str(m.measure)][m.query_id] = float(m.value)
    return {name: float(np.mean([per_query[str(m)].get(q, 0.0) for q in qids])) for name, m in zip(measures, parsed)}


def write_trec_run(run: Run, path: Path, *, tag: str = "genir") -> None:
    """TREC format: qid Q0 docid rank score tag."""
    from genir.store import atomic_write

    def lines(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            for qid, hits in run.items():
                ranked = sorted(hits.items(), key=lambda kv: -kv[1])
                for rank, (doc, score) in enumerate(ranked, 1):
                    f.write(f"{qid} Q0 {doc} {rank} {score:.6f} {tag}\n")

    atomic_write(Path(path), lines)


def read_trec_run(path: Path) -> Run:
    run: Run = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise ValueError(f"{path}:{lineno}: expected 6 columns 'qid Q0 docid rank score tag', got {len(parts)}")
            try:
                score = float(parts[4])
            except ValueError:
                raise ValueError(f"{path}:{lineno}: score {parts[4]!r} is not a number") from None
            run.setdefault(parts[0], {})[parts[2]] = score
    return run
