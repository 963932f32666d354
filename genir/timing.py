"""Seconds per search stage (query encoding, decoding, dense, BM25, fusion, ...), collected only on request.

The library marks its stages with ``with stage("dense"): ...``. Outside ``collect()`` a stage costs one
context-variable read, so the marks stay in the search path always. Inside ``collect()`` each stage's
*exclusive* wall time (stages nested in it are subtracted) is added to the collecting dict, so the stages of
one call never count a second twice and add up to at most the call's wall time; what no stage covers (input
checks, array copies) is the caller's "other". On CUDA, kernels run asynchronously: a stage's seconds are those
its Python code waited, so GPU work lands on the stage that copies results back (``.cpu()``).

    from genir.timing import collect
    with collect() as seconds:
        index.search(["what is dark matter"], 10, mode="hybrid")
    # seconds == {"encode": ..., "decode": ..., "dense": ..., "bm25": ..., "fusion": ...} (one shared MiniLM pass)
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

# The stage names the search path marks (genir.index, genir.generative, genir.semantic):
STAGES = (
    # query embedding (one MiniLM pass) for dense search, RRF, fusion and GDR; in hybrid search, where one pass can
    # serve both (genir.semantic.shares_query_pass), also the token states the ID decoder reads
    "encode",
    "encode_memory",  # MiniLM token states of the queries that the ID decoder reads, when it runs its own pass
    "decode",  # trie-constrained beam search (full IDs, and ID prefixes for GDR)
    "dense",  # FAISS search
    "bm25",  # BM25 search
    "prefix",  # GDR: gathering the documents under the generated prefixes
    "fusion",  # combining rankings (RRF, interpolation, gates, GDR) or the final top-k of one ranking
    "hits",  # Hit objects (ids, titles, snippets) from the arrays: GenerativeIndex.search only
)


class _Collector:
    __slots__ = ("seconds", "stack")

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds
        self.stack: list[list[float]] = []  # per open stage: [start, seconds of the stages nested in it]


_ACTIVE: ContextVar[_Collector | None] = ContextVar("genir_timing", default=None)


class stage:
    """Context manager marking one search stage ``name`` (one of STAGES); a no-op unless ``collect()`` is active."""

    __slots__ = ("name", "_collector")

    def __init__(self, name: str) -> None:
        self.name = name
        self._collector: _Collector | None = None

    def __enter__(self) -> "stage":
        self._collector = _ACTIVE.get()
        if self._collector is not None:
            self._collector.stack.append([time.perf_counter(), 0.0])
        return self

    def __exit__(self, *exc: object) -> None:
        c = self._collector
        if c is None:
            return
        start, nested = c.stack.pop()
        elapsed = time.perf_counter() - start
        c.seconds[self.name] = c.seconds.get(self.name, 0.0) + elapsed - nested
        if c.stack:
            c.stack[-1][1] += elapsed  # the enclosing stage does not count this time again


@contextmanager
def collect(into: dict[str, float] | None = None) -> Iterator[dict[str, float]]:
    """Add the seconds of every stage run inside the block to ``into`` (a new dict when None), which is yielded.

    Accumulates across calls: reuse one dict to sum many searches. A ``collect`` nested in another takes over
    for its block (the outer dict does not see those seconds)."""
    seconds = {} if into is None else into
    token = _ACTIVE.set(_Collector(seconds))
    try:
        yield seconds
    finally:
        _ACTIVE.reset(token)
