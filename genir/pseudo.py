"""Training pairs (input text -> document) for the generative retriever, mixed from three sources.

(a) indexing (DSI): title + leading words of the document (an untitled passage: its leading words);
(b) pseudo-queries ("document as query", NCI / DSI-QG): whole sentences, random word spans and keyword
    queries (the document's rarest words in reading order, like MS MARCO's terse web queries);
(c) labelled train queries, each repeated ``query_upsample`` times so they are not drowned by (a) and (b).

Two pseudo-query mixes: "document" (titled abstracts, e.g. SciFact: half sentences, half 6-20-word spans) and
"passage" (short untitled passages, e.g. MS MARCO: a third each of sentences, 3-10-word spans and keyword
queries). "document" is the default for every corpus: on msmarco-10k dev it trained the better generative
model than "passage" at every budget measured (README, MS MARCO); "passage" stays a choice.
"""
from __future__ import annotations

import dataclasses
import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from genir.config import TrainConfig

INDEXING, PSEUDO, LABELLED = 0, 1, 2
KINDS = ("indexing", "pseudo", "labelled")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MIN_SENTENCE_WORDS = 4
_WORD = re.compile(r"[^\W_]+")
MIXES = ("document", "passage")
# Short untitled passages: MS MARCO queries are ~6 words, many of them bare keywords ("60x40 slab cost"),
# and a 50-word passage has only 2-3 sentences, so a third each of sentences, short spans and keyword queries.
PASSAGE_MIX = {"sentence_share": 1 / 3, "keyword_share": 1 / 3, "span_words": (3, 10), "keyword_words": (3, 6)}


def apply_mix(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with its ``pseudo_mix`` applied: "passage" sets PASSAGE_MIX's fields, "document" keeps them."""
    if cfg.pseudo_mix not in MIXES:
        raise ValueError(f"unknown pseudo_mix {cfg.pseudo_mix!r}; expected one of {MIXES}")
    return dataclasses.replace(cfg, **(PASSAGE_MIX if cfg.pseudo_mix == "passage" else {}))


@dataclass(frozen=True)
class TrainingPairs:
    """Examples as indices: example i reads ``texts[text_idx[i]]`` and targets document ``doc_idx[i]``.

    texts: unique input strings (each is encoded once); text_idx, doc_idx (m,) int64; kind (m,) int8 in
    INDEXING / PSEUDO / LABELLED.
    """

    texts: list[str]
    text_idx: np.ndarray
    doc_idx: np.ndarray
    kind: np.ndarray

    def __len__(self) -> int:
        return len(self.doc_idx)

    def counts(self) -> dict[str, int]:
        """Examples per source, e.g. {"indexing": 5183, "pseudo": 31098, "labelled": 2600}."""
        return {name: int((self.kind == i).sum()) for i, name in enumerate(KINDS)}


def make_pairs(
    texts: Sequence[str],
    titles: Sequence[str],
    train_queries: Sequence[str],
    train_doc_idx: Sequence[Sequence[int]] | np.ndarray,
    *,
    cfg: TrainConfig,
) -> TrainingPairs:
    """Build the seeded training mix for documents ``texts``/``titles`` (n,).

    ``train_queries`` must come from the TRAIN split only (the caller carves the dev split out first):
    dev queries are never passed in, so they are never trained on. ``train_doc_idx`` gives the relevant
    doc_idx per query: a list of lists, an (q,) array, or a (q, r) array padded with -1.
    """
    if len(texts) != len(titles):
        raise ValueError(f"{len(texts)} texts but {len(titles)} titles; pass one title per document ('' if none)")
    relevant = _relevant_lists(train_doc_idx, len(train_queries), len(texts))
    cfg = apply_mix(cfg)
    for name in ("span_words", "keyword_words"):
        lo, hi = getattr(cfg, name)
        if lo < 1 or hi < lo:
            raise ValueError(f"{name} must be (min, max) with 1 <= min <= max; got {(lo, hi)}")
    rng = np.random.default_rng(cfg.seed)
    pool = _TextPool()
    rows: list[tuple[int, int, int]] = []  # (text, doc, kind)
    n_sent = int(round(cfg.pseudo_per_doc * cfg.sentence_share))
    n_key = int(round(cfg.pseudo_per_doc * cfg.keyword_share)) if cfg.keyword_share > 0 else 0
    rarity = _idf(texts) if n_key else {}
    for doc, (title, text) in enumerate(zip(titles, texts)):
        words = text.split()
        head = " ".join(words[: cfg.index_words])
        rows.append((pool.add(f"{title}. {head}" if title else head), doc, INDEXING))
        queries = _keyword_queries(text, n_key, cfg.keyword_words, rarity, rng) if n_key else []
        queries += _pseudo_queries(text, words, n_sent, cfg.pseudo_per_doc - len(queries), cfg.span_words, rng,
                                   seen=set(queries))
        for pseudo in queries:
            rows.append((pool.add(pseudo), doc, PSEUDO))
    for query, docs in zip(train_queries, relevant):
        t = pool.add(query)
        rows.extend((t, d, LABELLED) for d in docs for _ in range(cfg.query_upsample))
    table = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return TrainingPairs(pool.texts, table[:, 0].copy(), table[:, 1].copy(), table[:, 2].astype(np.int8))


def _idf(texts: Sequence[str]) -> dict[str, float]:
    """log(n / document frequency) of every lower-cased word of ``texts``."""
    df = Counter(w for t in texts for w in set(_WORD.findall(t.lower())))
    n = len(texts)
    return {w: float(np.log(n / c)) for w, c in df.items()}


def _keyword_queries(text: str, count: int, size: tuple[int, int], idf: dict[str, float],
                     rng: np.random.Generator) -> list[str]:
    """Up to ``count`` distinct keyword queries: ``size`` words drawn from the document's rarer half of its
    distinct words (weighted by idf), kept in reading order."""
    words = list(dict.fromkeys(_WORD.findall(text.lower())))  # distinct, in order of first use
    if len(words) < size[0]:
        return []
    weight = np.array([idf.get(w, 0.0) for w in words])
    pool = np.argsort(-weight, kind="stable")[: max(size[1], (len(words) + 1) // 2)]
    p = weight[pool] + 1e-6
    out: list[str] = []
    for _ in range(2 * count):  # bounded retries: short passages have few distinct keyword sets
        if len(out) >= count:
            break
        m = int(rng.integers(size[0], min(size[1], len(pool)) + 1))
        pick = np.sort(rng.choice(pool, size=m, replace=False, p=p / p.sum()))
        query = " ".join(words[i] for i in pick)
        if query not in out:
            out.append(query)
    return out


def _pseudo_queries(
    text: str, words: list[str], n_sent: int, total: int, span_words: tuple[int, int], rng: np.random.Generator,
    *, seen: set[str] | None = None,
) -> list[str]:
    """Up to ``n_sent`` distinct sentences, then random spans up to ``total`` queries (fewer for short docs);
    none of them in ``seen``."""
    seen = set(seen or ())
    sentences = [s for s in _SENTENCE_END.split(text.strip()) if len(s.split()) >= MIN_SENTENCE_WORDS and s not in seen]
    picked = [sentences[i] for i in sorted(rng.permutation(len(sentences))[:n_sent])]
    seen |= set(picked)
    if len(words) < span_words[0]:
        return picked
    for _ in range(2 * (total - len(picked))):  # bounded retries: short documents have few distinct spans
        if len(picked) >= total:
            break
        length = int(rng.integers(span_words[0], min(span_words[1], len(words)) + 1))
        start = int(rng.integers(0, len(words) - length + 1))
        span = " ".join(words[start : start + length])
        if span not in seen:
            seen.add(span)
            picked.append(span)
    return picked


def _relevant_lists(train_doc_idx: Sequence[Sequence[int]] | np.ndarray, n_queries: int, n_docs: int) -> list[list[int]]:
    if isinstance(train_doc_idx, np.ndarray):
        arr = train_doc_idx.reshape(len(train_doc_idx), -1)
        lists = [[int(d) for d in row if d >= 0] for row in arr]
    else:
        lists = [[int(d) for d in row] for row in train_doc_idx]
    if len(lists) != n_queries:
        raise ValueError(f"{n_queries} train queries but {len(lists)} rows of relevant doc_idx; pass one row per query")
    bad = [d for row in lists for d in row if not 0 <= d < n_docs]
    if bad:
        raise ValueError(f"relevant doc_idx out of range 0..{n_docs - 1}: {bad[:5]}")
    return lists


class _TextPool:
    """Deduplicates input strings so each is encoded (and cached) once."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._index: dict[str, int] = {}

    def add(self, text: str) -> int:
        idx = self._index.get(text)
        if idx is None:
            idx = self._index[text] = len(self.texts)
            self.texts.append(text)
        return idx
