"""Parquet round trips (atomic writes) and duckdb SQL over in-memory arrow tables."""
from __future__ import annotations

import os

import pyarrow as pa
import pytest

from genir.data.store import read_parquet, sql, write_parquet
from genir.data.types import Corpus, Sequences


def corpus() -> Corpus:
    return Corpus.from_records(["d1", "d2", "d3"], ["Vitamin D", "Aspirin", ""],
                               ["bones", "heart ✓", "coffee"])


def test_round_trip_and_no_temp_files_left(tmp_path):
    path = write_parquet(corpus(), tmp_path / "sub" / "docs.parquet")
    assert read_parquet(path).equals(corpus().table)
    write_parquet(corpus().table.slice(0, 1), path)  # overwrite in place
    assert read_parquet(path).num_rows == 1
    assert os.listdir(path.parent) == ["docs.parquet"]


def test_failed_write_keeps_previous_file(tmp_path):
    path = write_parquet(corpus(), tmp_path / "docs.parquet")
    with pytest.raises(TypeError, match="write Sequences as its .table and .items"):
        write_parquet(Sequences(pa.table({"user_id": ["u"], "items": [["a"]]}),
                                pa.table({"item_id": ["a"], "text": [""]})), path)
    assert read_parquet(path).equals(corpus().table)  # the temp file was removed, the old file kept
    assert os.listdir(tmp_path) == ["docs.parquet"]


def test_lookup_by_id():
    out = sql("SELECT title, text FROM corpus WHERE doc_id = 'd2'", corpus=corpus())
    assert out.to_pylist() == [{"title": "Aspirin", "text": "heart ✓"}]


def test_join_run_with_titles():
    run = pa.table({"query_id": ["q1", "q1", "q2"], "doc_id": ["d3", "d1", "d2"], "rank": [1, 2, 1],
                    "score": [0.9, 0.5, 0.7]})
    out = sql("SELECT r.query_id, r.rank, c.title FROM run r JOIN corpus c USING (doc_id) "
              "ORDER BY r.query_id, r.rank", run=run, corpus=corpus())
    assert out.to_pylist() == [{"query_id": "q1", "rank": 1, "title": ""},
                               {"query_id": "q1", "rank": 2, "title": "Vitamin D"},
                               {"query_id": "q2", "rank": 1, "title": "Aspirin"}]
