"""The hybrid recommendation mode: the generative beam fused with SASRec (and the item vectors), the
recommendation counterpart of genir.hybrid, whose fusion functions (``rrf``, ``interpolate``) do the fusing.

Per query the candidates are the generative beam (``beam_size`` items with their log-probabilities) and SASRec's
own top ``candidates`` items. SASRec scores all items, so it ranks every candidate, beam items included, by its
full-softmax log-probability; the item vectors rank them by cosine to the mean vector of the history. ``fuse``
combines these three rankings as a RecHybridConfig says: weighted reciprocal-rank fusion, or a weighted sum of
scores (``norm="prob"``: the two models' probabilities as they are, i.e. a mixture of their next-item
distributions; minmax / zscore: per-query normalised). ``tune`` picks the config on validation queries only
(``Recommender.build``, on the validation users RecConfig.hybrid_users names, by RecConfig.hybrid_objective);
the index serves it from its manifest's ``config.hybrid``.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from genir.config import RecHybridConfig
from genir.hybrid import NORMS, Ranking, interpolate, normalize, rrf
from genir.rec.metrics import rec_metrics
from genir.rec.sasrec import SASRecRecommender
from genir.rec.tiger import GenerativeRanker

METHODS = ("interpolate", "rrf")
SCALES = ("prob", *NORMS)  # RecHybridConfig.norm


@dataclass(frozen=True)
class Candidates:
    """What every fusion of one query set reads (Q rows; item -1 / score -inf padding; each ranking best first)."""

    beam: Ranking  # generative: items (Q, B) and their log-probabilities
    sasrec: Ranking  # the union of the beam and SASRec's top candidates (Q, U), by SASRec log-probability
    similarity: Ranking  # the same items by cosine of item vector to the history's mean vector (Q, U)


def gather(generative: GenerativeRanker, sasrec: SASRecRecommender, vectors: np.ndarray, histories: np.ndarray,
           lengths: np.ndarray, users: np.ndarray, *, candidates: int, batch_size: int = 256) -> Candidates:
    """Run both models once over the queries ((Q, L) right-padded histories, (Q,) lengths and user indices).

    vectors: (num_items, d) unit item vectors (the generative layer's). Items SASRec was not trained on (added
    later) come only through the beam: SASRec and the similarity leave them out of their rankings."""
    beam_items, beam_logp = generative.search(histories, lengths, users, k=generative.beam_size)
    n = len(lengths)
    known = min(sasrec.model.num_items, len(vectors))
    top_n = min(candidates, known)
    width = top_n + beam_items.shape[1]
    items = np.full((n, width), -1, dtype=np.int64)
    logp = np.full((n, width), -np.inf)
    cosine = np.full((n, width), -np.inf)
    for lo in range(0, n, batch_size):
        sl = slice(lo, lo + batch_size)
        scores = sasrec.scores(histories[sl], lengths[sl])[:, :known].astype(np.float64)
        peak = scores.max(axis=1, keepdims=True)
        scores -= peak + np.log(np.exp(scores - peak).sum(axis=1, keepdims=True))  # log-softmax over every item
        top = np.argpartition(-scores, top_n - 1, axis=1)[:, :top_n]
        beam = beam_items[sl]
        fresh = (beam >= 0) & (beam < known) & ~(beam[:, :, None] == top[:, None, :]).any(axis=2)
        union = np.hstack([top, np.where(fresh, beam, -1)])
        items[sl] = union
        logp[sl] = np.where(union >= 0, np.take_along_axis(scores, np.maximum(union, 0), axis=1), -np.inf)
        cosine[sl] = _cosine(vectors, histories[sl], lengths[sl], union)
    return Candidates(beam=(beam_items, beam_logp), sasrec=_best_first(items, logp),
                      similarity=_best_first(items, cosine))


def fuse(cfg: RecHybridConfig, cands: Candidates, *, k: int = 10) -> Ranking:
    """The fused ranking -> (items (Q, k) int64, scores (Q, k) float32), -1 / -inf padded, best first."""
    if cfg.method not in METHODS:
        raise ValueError(f"unknown hybrid method {cfg.method!r}; expected one of {METHODS}")
    if cfg.norm not in SCALES:
        raise ValueError(f"unknown hybrid norm {cfg.norm!r}; expected one of {SCALES}")
    parts = [(r, w) for r, w in ((cands.beam, cfg.weight_generative), (cands.sasrec, cfg.weight_sasrec),
                                 (cands.similarity, cfg.weight_similarity)) if w > 0]
    if not parts:
        raise ValueError("the hybrid fusion needs a positive weight (weight_generative, weight_sasrec or "
                         "weight_similarity)")
    weights = [w for _, w in parts]
    if cfg.method == "rrf":
        return rrf([r for r, _ in parts], k_rrf=cfg.k_rrf, weights=weights, k=k)
    if cfg.norm != "prob":
        return interpolate([r for r, _ in parts], weights=weights, norm=cfg.norm, k=k)
    rankings = []
    for ranking, _ in parts:
        items, scores = ranking
        if ranking is cands.similarity:  # a cosine is no probability: put it on [0, 1] per query
            scores = normalize(np.asarray(scores, dtype=np.float64), items >= 0, norm="minmax")
        else:
            scores = np.exp(np.asarray(scores, dtype=np.float64))
        rankings.append((items, scores))
    return interpolate(rankings, weights=weights, norm="none", k=k)


def grid(base: RecHybridConfig = RecHybridConfig()) -> list[RecHybridConfig]:
    """The configs ``tune`` tries: ``base`` first, then weighted RRF and interpolation over SCALES, each with
    and without the item-vector similarity (``base.candidates`` and ``base.k_rrf`` are kept)."""
    out = [base]
    for wg, ws in itertools.product((0.25, 0.5, 1.0, 2.0), (0.0, 0.5)):
        out.append(replace(base, method="rrf", weight_generative=wg, weight_sasrec=1.0, weight_similarity=ws))
    for alpha, norm, ws in itertools.product((0.1, 0.3, 0.5, 0.7, 0.9), SCALES, (0.0, 0.1, 0.3)):
        out.append(replace(base, method="interpolate", norm=norm, weight_generative=alpha, weight_sasrec=round(1 - alpha, 2),
                           weight_similarity=ws))
    return out


OBJECTIVES = ("min_gain", "metric")  # RecConfig.hybrid_objective
GAIN_METRICS = ("R@10",)  # min_gain: with the tuning metric, the metrics the fusion must not lose on to SASRec


def tune(cands: Candidates, targets: np.ndarray, *, metric: str = "nDCG@10", objective: str = "metric",
         base: RecHybridConfig = RecHybridConfig(), configs: Sequence[RecHybridConfig] | None = None,
         ) -> RecHybridConfig:
    """The config of ``configs`` (default ``grid(base)``) whose fusion of VALIDATION ``cands`` scores best against
    their (Q,) ``targets``; ties keep the earlier one. -> that config with its ``metric`` as ``valid_score``.

    objective "metric": the best ``metric``. "min_gain": the best worse-of-two ratio to SASRec alone (its own top
    10, ``cands.sasrec``) on ``metric`` and R@10, i.e. the fusion that gains most over SASRec on the metric where
    it gains least (a fusion that buys nDCG with recall scores below 1)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown hybrid objective {objective!r}; expected one of {OBJECTIVES}")
    reference = rec_metrics(cands.sasrec[0][:, :10], targets)
    if metric not in reference:
        raise ValueError(f"unknown metric {metric!r} to tune the hybrid fusion on; expected one of {sorted(reference)}")
    gains = tuple(dict.fromkeys((metric, *GAIN_METRICS)))
    best, best_score, best_value = base, -np.inf, 0.0
    for cfg in configs if configs is not None else grid(base):
        items, _ = fuse(cfg, cands, k=10)
        metrics = rec_metrics(items, targets)
        score = metrics[metric] if objective == "metric" else min(
            metrics[m] / max(reference[m], 1e-12) for m in gains)
        if score > best_score + 1e-12:
            best, best_score, best_value = cfg, score, metrics[metric]
    return replace(best, valid_score=float(best_value))


class HybridRanker:
    """Serves the hybrid mode: ``search`` / ``rank`` like the generative ranker, over ``gather`` + ``fuse``."""

    def __init__(self, generative: GenerativeRanker, sasrec: SASRecRecommender, vectors: np.ndarray,
                 cfg: RecHybridConfig) -> None:
        self.generative, self.sasrec, self.vectors, self.cfg = generative, sasrec, vectors, cfg

    def candidates(self, histories: np.ndarray, lengths: np.ndarray, users: np.ndarray, *, k: int = 10) -> Candidates:
        return gather(self.generative, self.sasrec, self.vectors, histories, lengths, users,
                      candidates=max(self.cfg.candidates, k))

    def search(self, histories: np.ndarray, lengths: np.ndarray, users: np.ndarray, *,
               k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, k) item indices (-1 padded) and (Q, k) fused scores (their scale is the method's)."""
        return fuse(self.cfg, self.candidates(histories, lengths, users, k=k), k=k)

    def rank(self, histories: np.ndarray, lengths: np.ndarray, users: np.ndarray, *, k: int) -> np.ndarray:
        """(Q, k) int64 item indices, best first."""
        return self.search(histories, lengths, users, k=k)[0]


# ---------------------------------------------------------------------------------------------- helpers
def _best_first(items: np.ndarray, scores: np.ndarray) -> Ranking:
    """Each row sorted by score descending (padding, -inf, last; equal scores keep their column order)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(items, order, axis=1), np.take_along_axis(scores, order, axis=1)


def _cosine(vectors: np.ndarray, histories: np.ndarray, lengths: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(B, U) cosine of each of ``items`` (B, U) to the mean unit vector of its row's history; -inf at padding."""
    known = len(vectors)
    inside = (np.arange(histories.shape[1])[None, :] < lengths[:, None]) & (histories >= 0) & (histories < known)
    mean = (vectors[np.where(inside, histories, 0)] * inside[..., None]).sum(axis=1)
    mean /= np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
    valid = (items >= 0) & (items < known)
    cos = np.einsum("bud,bd->bu", vectors[np.where(valid, items, 0)], mean)
    return np.where(valid, cos, -np.inf)
