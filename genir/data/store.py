"""Parquet persistence (atomic writes) and SQL over in-memory arrow tables through duckdb."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from genir.data.types import Corpus, Qrels, Queries

TableLike = pa.Table | Corpus | Queries | Qrels


def _as_table(table: TableLike) -> pa.Table:
    if isinstance(table, pa.Table):
        return table
    if isinstance(table, (Corpus, Queries, Qrels)):
        return table.table
    raise TypeError(f"expected a pyarrow Table, Corpus, Queries or Qrels, got {type(table).__name__}; "
                    "write Sequences as its .table and .items separately")


def write_parquet(table: TableLike, path: str | Path) -> Path:
    """Write ``table`` to ``path`` atomically (``genir.store.atomic_write``).

    Readers never see a half-written file, and a crash leaves the previous version intact.
    """
    from genir.store import atomic_write

    arrow = _as_table(table)
    return atomic_write(Path(path), lambda tmp: pq.write_table(arrow, tmp))


def read_parquet(path: str | Path) -> pa.Table:
    """The whole parquet file as an arrow table."""
    return pq.read_table(Path(path))


def sql(query: str, **tables: TableLike) -> pa.Table:
    """Run duckdb ``query`` with each keyword argument visible as a table of that name.

    Example: ``sql("SELECT title FROM corpus WHERE doc_id = 'd1'", corpus=corpus)``.
    """
    con = duckdb.connect()
    try:
        for name, table in tables.items():
            con.register(name, _as_table(table))
        relation = con.sql(query)
        if relation is None:  # statements without a result (CREATE, INSERT, ...)
            return pa.table({})
        # duckdb 2 renamed fetch_arrow_table to to_arrow_table; pyproject allows duckdb>=1.0.
        fetch = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
        return fetch()
    finally:
        con.close()
