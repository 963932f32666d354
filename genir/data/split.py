"""Seeded development splits carved out of training queries.

Tuning (fusion weights, beam sizes, thresholds) may only look at the carve-out of the *train*
judgements: ``"dev"`` is the held-out ``fraction`` of the train queries, ``"train-dev"`` the rest.
The ``"test"`` qrels are never read by the carve-out, so reporting on test stays clean. A folder that
ships its own ``qrels/dev.tsv`` (BEIR) or ``qrels.dev.tsv`` (MS MARCO) uses that file for ``"dev"``.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from genir.data.types import Qrels, Queries

# Split names that mean "carve from train" when the folder has no file of that name.
CARVED_SPLITS = ("dev", "train-dev")
CARVE_SOURCE = "train"


def _restrict(queries: Queries, qrels: Qrels, ids: list[str]) -> tuple[Queries, Qrels]:
    keep = pa.array(ids, pa.string())
    q = queries.table.filter(pc.is_in(queries.table.column("query_id"), value_set=keep))
    r = qrels.table.filter(pc.is_in(qrels.table.column("query_id"), value_set=keep))
    return Queries(q), Qrels(r)


def dev_split(queries: Queries, qrels: Qrels, *, fraction: float = 0.2,
              seed: int = 0) -> tuple[tuple[Queries, Qrels], tuple[Queries, Qrels]]:
    """Split the judged queries into ((train_q, train_qrels), (dev_q, dev_qrels)).

    Only queries that have both a text in ``queries`` and at least one judgement in ``qrels`` take
    part. The ids are sorted before a numpy ``default_rng(seed)`` permutation, so the result depends
    only on (the set of ids, fraction, seed), not on row order; each side keeps the input row order.
    The dev side gets ``round(fraction * n)`` queries, clamped to [1, n - 1].
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}; 0.2 is the usual dev share")
    judged = set(qrels.table.column("query_id").to_pylist())
    ids = sorted(judged.intersection(queries.query_ids))
    if len(ids) < 2:
        raise ValueError(f"need at least 2 judged queries to carve a dev split, got {len(ids)}")
    n_dev = min(max(round(fraction * len(ids)), 1), len(ids) - 1)
    order = np.random.default_rng(seed).permutation(len(ids))
    dev_ids = [ids[i] for i in order[:n_dev]]
    train_ids = [ids[i] for i in order[n_dev:]]
    return _restrict(queries, qrels, train_ids), _restrict(queries, qrels, dev_ids)


def carve(queries: Queries, train_qrels: Qrels, split: str, *, fraction: float,
          seed: int) -> tuple[Queries, Qrels]:
    """The ``"dev"`` or ``"train-dev"`` side of ``dev_split`` over the train judgements."""
    if split not in CARVED_SPLITS:
        raise ValueError(f"unknown carved split {split!r}; expected one of {CARVED_SPLITS}")
    train, dev = dev_split(queries, train_qrels, fraction=fraction, seed=seed)
    return dev if split == "dev" else train


def with_carved(real: Iterable[str]) -> list[str]:
    """Real split names, sorted, plus the carve-outs they allow (CARVED_SPLITS need a train split)."""
    real = sorted(real)
    return real + [s for s in CARVED_SPLITS if CARVE_SOURCE in real and s not in real]


def source_split(split: str, real: Collection[str], *, folder: str | Path) -> str:
    """The qrels file that serves ``split``: its own file, else the train file for a carved split."""
    if split in real:
        return split
    if split in CARVED_SPLITS and CARVE_SOURCE in real:
        return CARVE_SOURCE
    raise ValueError(f"{folder}: unknown split {split!r}; expected one of {with_carved(real)}")


def resolve_split(folder: str | Path, split: str, *, dev_fraction: float = 0.2,
                  seed: int = 0) -> tuple[Queries, Qrels]:
    """(queries judged in ``split``, their qrels) for a BEIR or MS MARCO folder.

    ``split`` is any qrels file name the folder has (``"test"``, ``"train"``, ...) or one of
    CARVED_SPLITS, which carve ``dev_fraction`` of the train queries with ``seed`` when the folder
    has no file of that name. Loads the corpus too, because qrels are checked against it.
    """
    from genir.data import load_dataset  # deferred: the loaders themselves build on this module

    ds = load_dataset(folder, split=split, dev_fraction=dev_fraction, seed=seed)
    if ds.qrels is None:  # unreachable with a split given; keeps the return type honest
        raise ValueError(f"{folder}: split {split!r} loaded no qrels")
    return ds.split_queries(), ds.qrels
