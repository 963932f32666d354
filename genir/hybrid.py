"""Fusion of rankings (generative, dense, BM25): reciprocal rank, score interpolation, confidence gating, GDR.

Pure numpy, no model: every fusion and its tuning live here; the index gathers the rankings (and, for GDR,
the documents under the generated ID prefixes, ``Prefixes``) and calls ``apply`` / ``tune``. A ranking is
``(doc_idx (n, k) int64, scores (n, k) float)`` with -1 padding, best first. Every function returns the same
form, -1 / -inf padded, sorted by score descending; equal scores order by smaller doc_idx. Fusion parameters
are tuned on the development split only (``tune``).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from genir.config import HybridConfig

Ranking = tuple[np.ndarray, np.ndarray]
NORMS = ("minmax", "zscore")  # the per-query normalisations ``tune`` tries; ``normalize`` also takes "none"
SIGNALS = ("prob", "margin")
PATHS = ("generative", "fused", "dense")
TUNABLE = ("rrf", "interpolate", "gated")
NEVER = 1.01  # a gate threshold no confidence (a probability or a gap of two) reaches: the fallback serves every row
PREFIX_BONUSES = (0.1, 3.0)  # GDR grid: a nudge inside the dense ranking; prefix documents strictly first (hard GDR)


@dataclass(frozen=True)
class Prefixes:
    """GDR inputs gathered by the index: per ID prefix level, per query, the doc_idx under the query's
    generated prefixes (``docs[level][i]`` int64 array); query_emb (n, d) and doc_emb (N, d) for dense scores."""

    docs: dict[int, list[np.ndarray]]
    query_emb: np.ndarray
    doc_emb: np.ndarray


def rrf(rankings: Sequence[Ranking], *, k_rrf: int = 60, weights: Sequence[float] | None = None, k: int = 10) -> Ranking:
    """Reciprocal-rank fusion: score(d) = sum_i weights[i] / (k_rrf + rank_i(d)), rank 1-based."""
    weights = _weights(weights, len(rankings))
    docs, contrib = [], []
    for (d, _), w in zip(rankings, weights):
        d = _docs(d)
        docs.append(d)
        contrib.append(np.broadcast_to(w / (k_rrf + np.arange(1, d.shape[1] + 1)), d.shape))
    return _aggregate(np.hstack(docs), np.hstack(contrib), k)


def interpolate(
    rankings: Sequence[Ranking], *, weights: Sequence[float] | None = None, alpha: float | None = None, norm: str = "minmax", k: int = 10
) -> Ranking:
    """Weighted sum of per-query normalised scores; a document missing from a ranking gets that ranking's
    lowest normalised score for the query. ``alpha`` (two rankings) is shorthand for weights (alpha, 1 - alpha).
    Normalise what you pass: generative log-probs and cosine scores both work, in their own scale."""
    if alpha is not None:
        if len(rankings) != 2:
            raise ValueError(f"alpha needs exactly 2 rankings; got {len(rankings)} (pass weights instead)")
        weights = (alpha, 1.0 - alpha)
    weights = _weights(weights, len(rankings))
    docs, contrib = [], []
    base = np.zeros(len(rankings[0][0]))
    for (d, s), w in zip(rankings, weights):
        d = _docs(d)
        z = normalize(np.asarray(s, dtype=np.float64), d >= 0, norm=norm)
        floor = np.where(d >= 0, z, np.inf).min(axis=1)
        floor = np.where(np.isfinite(floor), floor, 0.0)
        docs.append(d)
        contrib.append(w * (z - floor[:, None]))  # above-floor part; the floor is shared by every candidate
        base += w * floor
    fused_docs, fused = _aggregate(np.hstack(docs), np.hstack(contrib), k)
    return fused_docs, np.where(fused_docs >= 0, fused + base[:, None], -np.inf).astype(np.float32)


def normalize(scores: np.ndarray, valid: np.ndarray, *, norm: str = "minmax") -> np.ndarray:
    """Per-row normalisation over valid entries: minmax -> [0, 1] (constant rows -> 1), zscore -> mean 0, sd 1,
    none -> the scores as they are (already on one scale across queries, e.g. probabilities)."""
    if norm not in (*NORMS, "none"):
        raise ValueError(f"unknown norm {norm!r}; expected one of {(*NORMS, 'none')}")
    if norm == "none":
        return np.where(valid, scores, 0.0)
    s = np.where(valid, scores, np.nan)
    with np.errstate(all="ignore"):
        if norm == "minmax":
            lo, hi = np.nanmin(s, axis=1, keepdims=True), np.nanmax(s, axis=1, keepdims=True)
            out = np.where(hi > lo, (s - lo) / (hi - lo), 1.0)
        else:
            mu, sd = np.nanmean(s, axis=1, keepdims=True), np.nanstd(s, axis=1, keepdims=True)
            out = np.where(sd > 0, (s - mu) / sd, 0.0)
    return np.where(valid, out, 0.0)


def confidence(generative: Ranking, *, signal: str = "prob") -> np.ndarray:
    """(n,) confidence of the generative top beam: its probability, or the gap to the second's (0 if none)."""
    if signal not in SIGNALS:
        raise ValueError(f"unknown gate signal {signal!r}; expected one of {SIGNALS}")
    d, s = _docs(generative[0]), np.asarray(generative[1], dtype=np.float64)
    p = np.where(d >= 0, np.exp(s), 0.0)
    if signal == "prob":
        return p[:, 0]
    return p[:, 0] - (p[:, 1] if p.shape[1] > 1 else 0.0)


def gated(
    generative: Ranking,
    fallback: Ranking,
    *,
    low: float,
    high: float,
    signal: str = "prob",
    k: int = 10,
    k_rrf: int = 60,
    weights: Sequence[float] = (1.0, 1.0),
    unseen: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confidence-gated fusion -> (doc_idx (n, k), scores (n, k), path (n,) str).

    Per query, with c = ``confidence(generative, signal)``:
    c < low -> "dense": the fallback ranking (dense, or an RRF of dense + BM25) alone;
    low <= c < high -> "fused": RRF of generative (weights[0]) and fallback (weights[1]);
    c >= high -> "generative": the confident generative documents first (with ``prob``, every beam whose
    probability is >= high; with ``margin``, the top beam), then the fused ranking.
    Scores order each row; their scale is the fallback's on "dense" rows and RRF's (plus 1 + probability
    for the leading documents) otherwise.
    ``unseen`` (bool per doc_idx): documents added after training, which the model cannot generate. Where the
    fallback ranks one of them first, it goes second in a "fused" or "generative" row (after the top document).
    """
    if low > high:
        raise ValueError(f"gate thresholds need low <= high; got low={low}, high={high}")
    conf = confidence(generative, signal=signal)
    fb_docs, fb_scores = _topk(fallback, k)
    fu_docs, fu_scores = rrf([generative, fallback], k_rrf=k_rrf, weights=weights, k=k)
    gd, gs = _docs(generative[0]), np.asarray(generative[1], dtype=np.float64)
    prob = np.where(gd >= 0, np.exp(gs), 0.0)
    lead = (prob >= high) if signal == "prob" else (np.arange(gd.shape[1]) == 0) & (gd >= 0)
    lead_docs = np.where(lead, gd, -1)
    lead_scores = np.where(lead, 1.0 + fu_scores.max(axis=1, initial=0.0)[:, None] + prob, -np.inf)
    # leading docs first (distinct, score > any fused score); fused docs follow without repeats
    gen_docs, gen_scores = _aggregate(np.hstack([lead_docs, fu_docs]), np.hstack([lead_scores, fu_scores]), k, reduce="max")
    path = np.where(conf < low, "dense", np.where(conf < high, "fused", "generative"))
    conds = [(path == "dense")[:, None], (path == "fused")[:, None]]
    docs = np.select(conds, [fb_docs, fu_docs], gen_docs)
    scores = np.select(conds, [fb_scores, fu_scores], gen_scores)
    if unseen is not None and unseen.any() and k > 1:
        _second_for_unseen(docs, scores, fb_docs[:, 0], unseen, path != "dense")
    return docs, scores.astype(np.float32), path


def _second_for_unseen(docs: np.ndarray, scores: np.ndarray, top: np.ndarray, unseen: np.ndarray,
                       rows: np.ndarray) -> None:
    """In place: for each row in ``rows`` whose fallback top document is unseen by the model and absent
    from positions 0-1, move it to position 1 (score halfway between positions 0 and 1)."""
    hit = rows & (top >= 0) & unseen[np.maximum(top, 0)] & (docs[:, 0] != top) & (docs[:, 1] != top)
    if not hit.any():
        return
    d, s, t = docs[hit], scores[hit], top[hit]
    # the tail (positions 1..) without t, in order; its last column is t or the old last entry, both dropped
    order = np.argsort(d[:, 1:] == t[:, None], axis=1, kind="stable")
    tail_d = np.take_along_axis(d[:, 1:], order, axis=1)[:, :-1]
    tail_s = np.take_along_axis(s[:, 1:], order, axis=1)[:, :-1]
    mid = np.where(np.isfinite(s[:, 1]), (s[:, 0] + s[:, 1]) / 2, s[:, 0] - 1.0)
    docs[hit, 1:] = np.column_stack([t, tail_d])
    scores[hit, 1:] = np.column_stack([mid, tail_s])


def prefix_then_dense(
    prefix_docs: Sequence[np.ndarray],
    query_emb: np.ndarray,
    doc_emb: np.ndarray,
    *,
    dense: Ranking | None = None,
    bonus: float = 3.0,
    k: int = 10,
) -> Ranking:
    """GDR: documents under the generated ID prefixes, ranked by dense score, ahead of the dense ranking.

    prefix_docs: per query, the doc_idx under its generated prefixes (``trie.docs_under``); query_emb (n, d),
    doc_emb (N, d) (unit-norm for cosine). Score = query . doc + ``bonus`` for prefix documents; with unit
    vectors a bonus > 2 puts every prefix document first (hard GDR), a small one only nudges. ``dense``
    (optional ranking) supplies the documents outside the prefixes.
    """
    n = len(query_emb)
    if len(prefix_docs) != n:
        raise ValueError(f"{len(prefix_docs)} prefix document lists for {n} queries")
    width = max([len(p) for p in prefix_docs] + [0])
    docs = np.full((n, width), -1, dtype=np.int64)
    scores = np.zeros((n, width))
    for i, cand in enumerate(prefix_docs):
        cand = np.asarray(cand, dtype=np.int64)
        docs[i, : len(cand)] = cand
        scores[i, : len(cand)] = doc_emb[cand] @ query_emb[i] + bonus
    if dense is not None:
        dd = _docs(dense[0])
        docs = np.hstack([docs, dd])
        scores = np.hstack([scores, np.where(dd >= 0, np.asarray(dense[1], dtype=np.float64), 0.0)])
    return _aggregate(docs, scores, k, reduce="max")


def apply(cfg: HybridConfig, rankings: dict[str, Ranking], *, k: int = 10, unseen: np.ndarray | None = None,
          prefixes: Prefixes | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fuse ``rankings`` ("generative", "dense", optional "bm25") as ``cfg`` says -> (doc_idx, scores, path);
    ``unseen`` marks documents added after training (see ``gated``; used when ``cfg.unseen_second``).
    ``prefix_dense`` needs ``prefixes`` holding ``cfg.prefix_level``."""
    gen, dense, bm25 = rankings["generative"], rankings["dense"], rankings.get("bm25")
    n = len(gen[0])
    if cfg.method == "prefix_dense":
        if prefixes is None or cfg.prefix_level not in prefixes.docs:
            raise ValueError(f"prefix_dense needs the documents under the generated prefixes of level {cfg.prefix_level} "
                             "(Prefixes, gathered by the index)")
        d, s = prefix_then_dense(prefixes.docs[cfg.prefix_level], prefixes.query_emb, prefixes.doc_emb, dense=dense,
                                 bonus=cfg.prefix_bonus, k=k)
        return d, s, np.full(n, "prefix_dense")
    if cfg.method == "rrf":
        parts = [(gen, cfg.weight_generative), (dense, cfg.weight_dense)] + ([(bm25, cfg.weight_bm25)] if bm25 is not None else [])
        d, s = rrf([r for r, _ in parts], k_rrf=cfg.k_rrf, weights=[w for _, w in parts], k=k)
        return d, s, np.full(n, "fused")
    if cfg.method == "interpolate":
        d, s = interpolate([gen, dense], alpha=cfg.alpha, norm=cfg.norm, k=k)
        return d, s, np.full(n, "fused")
    if cfg.method == "gated":
        fallback = dense if bm25 is None or cfg.weight_bm25 == 0 else rrf(
            [dense, bm25], k_rrf=cfg.k_rrf, weights=[cfg.weight_dense, cfg.weight_bm25], k=max(k, dense[0].shape[1])
        )
        return gated(gen, fallback, low=cfg.gate_low, high=cfg.gate_high, signal=cfg.gate_signal, k=k, k_rrf=cfg.k_rrf,
                     weights=(cfg.weight_generative, 1.0), unseen=unseen if cfg.unseen_second else None)
    raise ValueError(f"unknown fusion method {cfg.method!r}; expected one of {(*TUNABLE, 'prefix_dense')}")


def tune(
    rankings: dict[str, Ranking],
    qrels,
    query_ids: Sequence[str],
    doc_ids: Sequence[str],
    *,
    methods: Sequence[str] = TUNABLE,
    k: int = 10,
    base: HybridConfig = HybridConfig(),
    unseen: np.ndarray | None = None,
    prefixes: Prefixes | None = None,
    report: dict[str, float] | None = None,
) -> HybridConfig:
    """Grid-search method, weights and thresholds for nDCG@10 on DEV rankings + qrels (genir Qrels).

    ``rankings``, ``unseen`` and ``prefixes`` as in ``apply``, computed on the development split only. The grid
    starts with the fallback alone (a gate no confidence reaches: dense, or RRF(dense, BM25) at each BM25
    weight), so a fusion is served only where it beats its own fallback on dev; then ``methods``; then, with
    ``prefixes``, GDR (every level it holds x ``PREFIX_BONUSES``). Returns ``base`` with the best settings and
    their ``dev_ndcg10``; ties keep the earlier (simpler) candidate. ``report``, when given, receives the dev
    nDCG@10 per candidate family: "fallback alone (best of grid)", "{method} (best of grid)" for the best of
    ``methods`` and "prefix_dense level L bonus B" for each GDR setting.
    """
    from genir.metrics import evaluate_order

    unknown = sorted(set(methods) - set(TUNABLE))
    if unknown:
        raise ValueError(f"cannot tune methods {unknown}; expected some of {TUNABLE}")
    has_bm25 = "bm25" in rankings
    bm25_w = (0.0, 0.5, 1.0) if has_bm25 else (0.0,)
    fallback = [replace(base, method="gated", gate_signal="prob", gate_low=NEVER, gate_high=NEVER, weight_bm25=wb)
                for wb in bm25_w]
    grid: list[HybridConfig] = []
    for method in methods:
        if method == "rrf":
            for wg, wb in itertools.product((0.25, 0.5, 1.0, 2.0), bm25_w):
                grid.append(replace(base, method="rrf", weight_generative=wg, weight_dense=1.0, weight_bm25=wb))
        elif method == "interpolate":
            for alpha, norm in itertools.product((0.05, 0.1, 0.2, 0.3, 0.5, 0.7), NORMS):
                grid.append(replace(base, method="interpolate", alpha=alpha, norm=norm))
        else:
            for signal, low, high, wg, wb in itertools.product(
                SIGNALS, (0.0, 0.1, 0.3), (0.5, 0.7, 0.9, NEVER), (0.5, 1.0), bm25_w
            ):
                if low <= high:
                    grid.append(replace(base, method="gated", gate_signal=signal, gate_low=low, gate_high=high,
                                        weight_generative=wg, weight_bm25=wb))
    gdr = [replace(base, method="prefix_dense", prefix_level=level, prefix_bonus=bonus)
           for level, bonus in itertools.product(sorted(prefixes.docs) if prefixes else (), PREFIX_BONUSES)]
    best, best_score = base, -1.0
    candidates: dict[str, float] = {}

    def score(cfg: HybridConfig) -> float:
        nonlocal best, best_score
        d, _, _ = apply(cfg, rankings, k=k, unseen=unseen, prefixes=prefixes)
        value = evaluate_order(query_ids, d, doc_ids, qrels, ("nDCG@10",))["nDCG@10"]
        if value > best_score + 1e-12:
            best, best_score = cfg, value
        return value

    candidates["fallback alone (best of grid)"] = max(score(cfg) for cfg in fallback)
    if grid:
        candidates[f"{'/'.join(methods)} (best of grid)"] = max(score(cfg) for cfg in grid)
    for cfg in gdr:
        candidates[f"prefix_dense level {cfg.prefix_level} bonus {cfg.prefix_bonus}"] = score(cfg)
    if report is not None:
        report.update(candidates)
    return replace(best, dev_ndcg10=float(best_score))


# ---------------------------------------------------------------------------------------------- helpers
def _weights(weights: Sequence[float] | None, n: int) -> list[float]:
    if n == 0:
        raise ValueError("need at least one ranking")
    if weights is None:
        return [1.0] * n
    if len(weights) != n:
        raise ValueError(f"{len(weights)} weights for {n} rankings; pass one weight per ranking")
    return [float(w) for w in weights]


def _docs(d: np.ndarray) -> np.ndarray:
    d = np.asarray(d)
    if d.ndim != 2:
        raise ValueError(f"a ranking's doc_idx must be (n, k); got shape {d.shape}")
    return d.astype(np.int64, copy=False)


def _topk(ranking: Ranking, k: int) -> Ranking:
    d, s = _docs(ranking[0]), np.asarray(ranking[1], dtype=np.float64)
    d, s = d[:, :k], np.where(d[:, :k] >= 0, s[:, :k], -np.inf)
    pad = k - d.shape[1]
    return np.pad(d, ((0, 0), (0, pad)), constant_values=-1), np.pad(s, ((0, 0), (0, pad)), constant_values=-np.inf)


def _aggregate(docs: np.ndarray, values: np.ndarray, k: int, *, reduce: str = "sum") -> Ranking:
    """Per row, combine the values of each doc (sum or max) and keep the k best: (doc_idx (n, k), scores (n, k))."""
    n = len(docs)
    out_d = np.full((n, k), -1, dtype=np.int64)
    out_s = np.full((n, k), -np.inf, dtype=np.float32)
    keep = docs >= 0
    if not keep.any():
        return out_d, out_s
    rows = np.broadcast_to(np.arange(n)[:, None], docs.shape)[keep]
    d, v = docs[keep], np.asarray(values, dtype=np.float64)[keep]
    stride = int(d.max()) + 1
    uniq, inv = np.unique(rows * stride + d, return_inverse=True)
    if reduce == "sum":
        total = np.bincount(inv, weights=v, minlength=len(uniq))
    else:
        total = np.full(len(uniq), -np.inf)
        np.maximum.at(total, inv, v)
    urow, udoc = uniq // stride, uniq % stride
    order = np.lexsort((udoc, -total, urow))  # row, then score descending, then doc_idx
    urow, udoc, total = urow[order], udoc[order], total[order]
    pos = np.arange(len(urow)) - np.searchsorted(urow, urow, side="left")
    sel = pos < k
    out_d[urow[sel], pos[sel]] = udoc[sel]
    out_s[urow[sel], pos[sel]] = total[sel]
    return out_d, out_s
