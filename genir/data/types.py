"""In-memory dataset representations shared by every loader, index and evaluator.

Each is a thin frozen wrapper over a pyarrow Table with a fixed schema, so the same object can be
written to parquet, queried with duckdb and turned into numpy columns without copies.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

CORPUS_SCHEMA = pa.schema([("doc_id", pa.string()), ("title", pa.string()), ("text", pa.string())])
QUERIES_SCHEMA = pa.schema([("query_id", pa.string()), ("text", pa.string())])
QRELS_SCHEMA = pa.schema([("query_id", pa.string()), ("doc_id", pa.string()), ("relevance", pa.int32())])
# One row per user, items in time order (item ids as strings, as in the source data).
SEQUENCES_SCHEMA = pa.schema([("user_id", pa.string()), ("items", pa.list_(pa.string()))])
# Item side information for recommendation: text may be empty when the dataset has none.
ITEMS_SCHEMA = pa.schema([("item_id", pa.string()), ("text", pa.string())])


def _conform(table: pa.Table, schema: pa.Schema, what: str) -> pa.Table:
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise ValueError(f"{what} table lacks columns {missing}; expected {schema.names}")
    return table.select(schema.names).cast(schema)


@dataclass(frozen=True)
class Corpus:
    """Documents: doc_id (unique), title, text. Row order defines doc_idx (0..n-1)."""

    table: pa.Table

    def __post_init__(self) -> None:
        object.__setattr__(self, "table", _conform(self.table, CORPUS_SCHEMA, "corpus"))

    @classmethod
    def from_records(cls, doc_ids: list[str], titles: list[str], texts: list[str]) -> "Corpus":
        return cls(pa.table({"doc_id": doc_ids, "title": titles, "text": texts}))

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def doc_ids(self) -> list[str]:
        return self.table.column("doc_id").to_pylist()

    def passages(self) -> list[str]:
        """Title and text joined, the form embedded and indexed."""
        titles = self.table.column("title").to_pylist()
        texts = self.table.column("text").to_pylist()
        return [f"{t}. {x}" if t else x for t, x in zip(titles, texts)]


@dataclass(frozen=True)
class Queries:
    """Queries: query_id (unique), text."""

    table: pa.Table

    def __post_init__(self) -> None:
        object.__setattr__(self, "table", _conform(self.table, QUERIES_SCHEMA, "queries"))

    @classmethod
    def from_records(cls, query_ids: list[str], texts: list[str]) -> "Queries":
        return cls(pa.table({"query_id": query_ids, "text": texts}))

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def query_ids(self) -> list[str]:
        return self.table.column("query_id").to_pylist()

    @property
    def texts(self) -> list[str]:
        return self.table.column("text").to_pylist()


@dataclass(frozen=True)
class Qrels:
    """Relevance judgements: query_id, doc_id, relevance (int, > 0 is relevant)."""

    table: pa.Table

    def __post_init__(self) -> None:
        object.__setattr__(self, "table", _conform(self.table, QRELS_SCHEMA, "qrels"))

    def __len__(self) -> int:
        return self.table.num_rows

    def as_dict(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for q, d, r in zip(*(self.table.column(c).to_pylist() for c in QRELS_SCHEMA.names)):
            out.setdefault(q, {})[d] = r
        return out


@dataclass(frozen=True)
class Sequences:
    """User interaction sequences (time order) plus item side information."""

    table: pa.Table
    items: pa.Table

    def __post_init__(self) -> None:
        object.__setattr__(self, "table", _conform(self.table, SEQUENCES_SCHEMA, "sequences"))
        object.__setattr__(self, "items", _conform(self.items, ITEMS_SCHEMA, "items"))

    def __len__(self) -> int:
        return self.table.num_rows
