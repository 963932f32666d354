"""Training pairs (input text -> document) for the generative retriever, mixed from three sources.

(a) indexing (DSI): title + leading words of the document;
(b) pseudo-queries ("document as query", NCI / DSI-QG): whole sentences and random word spans of the document;
(c) labelled train queries, each repeated ``query_upsample`` times so they are not drowned by (a) and (b).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from genir.config import TrainConfig

INDEXING, PSEUDO, LABELLED = 0, 1, 2
KINDS = ("indexing", "pseudo", "labelled")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MIN_SENTENCE_WORDS = 4


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
    if cfg.span_words[0] < 1 or cfg.span_words[1] < cfg.span_words[0]:
        raise ValueError(f"span_words must be (min, max) with 1 <= min <= max; got {cfg.span_words}")
    rng = np.random.default_rng(cfg.seed)
    pool = _TextPool()
    rows: list[tuple[int, int, int]] = []  # (text, doc, kind)
    n_sent = int(round(cfg.pseudo_per_doc * cfg.sentence_share))
    for doc, (title, text) in enumerate(zip(titles, texts)):
        words = text.split()
        head = " ".join(words[: cfg.index_words])
        rows.append((pool.add(f"{title}. {head}" if title else head), doc, INDEXING))
        for pseudo in _pseudo_queries(text, words, n_sent, cfg.pseudo_per_doc, cfg.span_words, rng):
            rows.append((pool.add(pseudo), doc, PSEUDO))
    for query, docs in zip(train_queries, relevant):
        t = pool.add(query)
        rows.extend((t, d, LABELLED) for d in docs for _ in range(cfg.query_upsample))
    table = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return TrainingPairs(pool.texts, table[:, 0].copy(), table[:, 1].copy(), table[:, 2].astype(np.int8))


def _pseudo_queries(
    text: str, words: list[str], n_sent: int, total: int, span_words: tuple[int, int], rng: np.random.Generator
) -> list[str]:
    """Up to ``n_sent`` distinct sentences, then random spans up to ``total`` queries (fewer for short docs)."""
    sentences = [s for s in _SENTENCE_END.split(text.strip()) if len(s.split()) >= MIN_SENTENCE_WORDS]
    picked = [sentences[i] for i in sorted(rng.permutation(len(sentences))[:n_sent])]
    seen = set(picked)
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
