"""Property tests: arbitrary bytes or JSON either load or raise DataFormatError, never anything else;
valid random corpora and qrels round-trip exactly."""
from __future__ import annotations

import gzip
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from genir.data.beir import read_corpus, read_queries
from genir.data.errors import DataFormatError
from genir.data.msmarco import read_collection
from genir.data.qrels import read_qrels

FUZZ = settings(max_examples=50, deadline=None)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8)
# Objects biased towards the real field names so the interesting branches are reached.
json_objects = st.dictionaries(st.sampled_from(["_id", "title", "text", "metadata", "x"]) | st.text(max_size=4),
                               json_values, max_size=4)
json_lines = st.lists(st.one_of(json_objects.map(json.dumps), json_values.map(json.dumps),
                                st.text(max_size=30)), max_size=6).map("\n".join)


def load_or_format_error(data: bytes, name: str, reader: Callable[[Path], object]) -> None:
    """Write ``data`` to ``name`` in a fresh folder and read it; only DataFormatError may escape."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            reader(path)
        except DataFormatError as e:
            assert str(e).startswith(str(path))


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_corpus(data):
    load_or_format_error(data, "corpus.jsonl", read_corpus)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_behind_gzip_magic(data):
    load_or_format_error(b"\x1f\x8b" + data, "corpus.jsonl.gz", read_corpus)


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(["beir", "trec"]))
def test_random_bytes_qrels(data, fmt):
    load_or_format_error(data, "qrels.tsv", lambda p: read_qrels(p, fmt=fmt))


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_collection(data):
    load_or_format_error(data, "collection.tsv", read_collection)


@FUZZ
@given(json_lines, st.booleans())
def test_random_json_lines(text, gz):
    data = text.encode("utf-8", errors="surrogatepass")
    load_or_format_error(gzip.compress(data) if gz else data, "corpus.jsonl", read_corpus)
    load_or_format_error(data, "queries.jsonl", read_queries)


@FUZZ
@given(st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8),
                          st.integers() | st.text(max_size=4) | st.floats()), max_size=6),
       st.sampled_from(["\n", "\r\n"]))
def test_random_qrels_rows(rows, newline):
    data = newline.join("\t".join(map(str, r)) for r in rows).encode("utf-8", errors="surrogatepass")
    load_or_format_error(data, "test.tsv", read_qrels)


non_blank = st.text(min_size=1, max_size=12).filter(lambda s: s.strip())
docs = st.lists(st.tuples(non_blank | st.integers(min_value=0, max_value=10**6).map(str),
                          st.text(max_size=20), non_blank),
                min_size=1, max_size=12, unique_by=lambda d: d[0])


@FUZZ
@given(docs, st.booleans(), st.booleans())
def test_valid_corpus_round_trips(rows, gz, ascii_only):
    lines = [json.dumps({"_id": i, "title": t, "text": x, "metadata": {}}, ensure_ascii=ascii_only)
             for i, t, x in rows]
    data = "\n".join(lines).encode("utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.jsonl"
        path.write_bytes(gzip.compress(data) if gz else data)
        corpus, skipped = read_corpus(path)
    assert skipped == []
    assert corpus.doc_ids == [r[0] for r in rows]
    assert corpus.table.column("title").to_pylist() == [r[1] for r in rows]
    assert corpus.table.column("text").to_pylist() == [r[2] for r in rows]


token = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")),
                min_size=1, max_size=8)


@FUZZ
@given(st.dictionaries(st.tuples(token, token), st.integers(min_value=-(2**31), max_value=2**31 - 1),
                       min_size=1, max_size=10))
def test_valid_qrels_round_trip(judgements):
    data = "query-id\tcorpus-id\tscore\r\n" + "".join(f"{q}\t{d}\t{s}\r\n" for (q, d), s in judgements.items())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "test.tsv"
        path.write_bytes(data.encode("utf-8"))
        qrels = read_qrels(path)
    table = qrels.table
    got = {(q, d): s for q, d, s in zip(*(table.column(c).to_pylist() for c in ("query_id", "doc_id", "relevance")))}
    assert got == judgements
