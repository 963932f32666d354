"""BEIR loader: layout variants, splits, and every malformed-input case (file + line in the message)."""
from __future__ import annotations

import gzip
import json
import time
from contextlib import contextmanager

import pytest
from tests.conftest import TINY_CORPUS, TINY_QUERIES

from genir.data.beir import available_splits, load_beir
from genir.data.errors import DataFormatError


@contextmanager
def raises_at(path, line, match=None):
    """Expect a DataFormatError whose message starts with ``path:line:`` (``path:`` when line is None)."""
    with pytest.raises(DataFormatError, match=match) as info:
        yield info
    where = f"{path}:{line}:" if line is not None else f"{path}:"
    assert str(info.value).startswith(where), str(info.value)
    assert info.value.line == line


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("crlf", [False, True])
def test_load_exact_contents(write_beir, gz, crlf):
    ds = load_beir(write_beir(gz=gz, crlf=crlf), split="test")
    assert ds.name == "tiny" and ds.split == "test" and ds.skipped_docs == 0
    assert ds.corpus.doc_ids == [d["_id"] for d in TINY_CORPUS]
    assert ds.corpus.table.column("title").to_pylist() == [d["title"] for d in TINY_CORPUS]
    assert ds.corpus.table.column("text").to_pylist() == [d["text"] for d in TINY_CORPUS]
    assert ds.queries.query_ids == ["q1", "q2", "q3", "q4"]
    assert ds.qrels.as_dict() == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    assert ds.split_queries().query_ids == ["q1", "q2"]


def test_no_split_gives_no_qrels(write_beir):
    ds = load_beir(write_beir())
    assert ds.qrels is None and len(ds.queries) == 4
    with pytest.raises(ValueError, match="no split loaded"):
        ds.split_queries()


def test_corpus_only_folder(write_beir):
    folder = write_beir(qrels={})
    (folder / "queries.jsonl").unlink()
    ds = load_beir(folder)
    assert len(ds.corpus) == len(TINY_CORPUS) and len(ds.queries) == 0 and available_splits(folder) == []
    with pytest.raises(ValueError, match=r"unknown split 'test'; expected one of \[\]"):
        load_beir(folder, split="test")


def test_available_splits_and_unknown_split(write_beir):
    folder = write_beir()
    assert available_splits(folder, carved=False) == ["test", "train"]
    assert available_splits(folder) == ["test", "train", "dev", "train-dev"]
    with pytest.raises(ValueError, match=r"unknown split 'validation'.*\['test', 'train', 'dev', 'train-dev'\]"):
        load_beir(folder, split="validation")
    no_train = write_beir("only_test", qrels={"test": [("q1", "d1", 1)]})
    assert available_splits(no_train) == ["test"]
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        load_beir(no_train, split="dev")


def test_integer_ids_and_missing_title(write_beir):
    folder = write_beir(corpus=[{"_id": 7, "text": "seven"}, {"_id": "8", "title": None, "text": "eight"}],
                        queries=[{"_id": 1, "text": "seven?"}], qrels={"test": [(1, 7, 1)]})
    ds = load_beir(folder, split="test")
    assert ds.corpus.doc_ids == ["7", "8"] and ds.corpus.table.column("title").to_pylist() == ["", ""]
    assert ds.qrels.as_dict() == {"1": {"7": 1}}


def test_empty_documents_are_skipped_and_counted(write_beir, caplog):
    corpus = [*TINY_CORPUS, {"_id": "e1", "title": "", "text": "  "}, {"_id": "e2", "text": ""}]
    folder = write_beir(corpus=corpus, qrels={"test": [("q1", "d1", 1), ("q2", "e1", 1)]})
    ds = load_beir(folder, split="test")
    assert ds.skipped_docs == 2 and "e1" not in ds.corpus.doc_ids and len(ds.corpus) == 4
    assert ds.qrels.as_dict() == {"q1": {"d1": 1}}  # the judgement of a skipped doc is dropped
    assert "skipped 2 documents" in caplog.text


def test_qrels_header_optional_blank_lines_and_duplicates(write_beir, caplog):
    folder = write_beir(qrels={"test": []})
    (folder / "qrels" / "test.tsv").write_text("q1\td1\t1\n\nq1\td1\t1\nq2 d2 2.0\n")
    ds = load_beir(folder, split="test")
    assert ds.qrels.as_dict() == {"q1": {"d1": 1}, "q2": {"d2": 2}}
    assert "1 duplicate" in caplog.text


# --- malformed input ------------------------------------------------------------------------------
def test_bad_json_names_line(write_beir):
    folder = write_beir(corpus=[TINY_CORPUS[0], '{"_id": "x", "text": ', TINY_CORPUS[1]])
    with raises_at(folder / "corpus.jsonl", 2, match="invalid JSON"):
        load_beir(folder)


def test_non_object_json_line(write_beir):
    folder = write_beir(queries=[TINY_QUERIES[0], "[1, 2]"])
    with raises_at(folder / "queries.jsonl", 2, match="expected a JSON object"):
        load_beir(folder)


@pytest.mark.parametrize("field", ["_id", "text"])
def test_missing_required_field(write_beir, field):
    doc = {k: v for k, v in TINY_CORPUS[1].items() if k != field}
    folder = write_beir(corpus=[TINY_CORPUS[0], doc])
    with raises_at(folder / "corpus.jsonl", 2, match=f"missing required field '{field}'"):
        load_beir(folder)


def test_wrong_field_type(write_beir):
    folder = write_beir(corpus=[{"_id": ["a"], "text": "x"}])
    with raises_at(folder / "corpus.jsonl", 1, match="string or integer id"):
        load_beir(folder)
    folder = write_beir("t2", corpus=[{"_id": "a", "text": 3}])
    with raises_at(folder / "corpus.jsonl", 1, match="'text' must be a string"):
        load_beir(folder)


def test_duplicate_doc_id_names_both_lines(write_beir):
    folder = write_beir(corpus=[*TINY_CORPUS, {"_id": "d2", "title": "again", "text": "dup"}])
    with raises_at(folder / "corpus.jsonl", 5, match=r"duplicate document id 'd2', first seen on line 2"):
        load_beir(folder)


def test_duplicate_query_id(write_beir):
    folder = write_beir(queries=[*TINY_QUERIES, {"_id": "q1", "text": "again"}])
    with raises_at(folder / "queries.jsonl", 5, match="duplicate query id 'q1', first seen on line 1"):
        load_beir(folder)


@pytest.mark.parametrize("gz", [False, True])
def test_non_utf8_names_line(write_beir, gz):
    folder = write_beir(gz=gz)
    name = "corpus.jsonl.gz" if gz else "corpus.jsonl"
    raw = (json.dumps(TINY_CORPUS[0]) + "\n").encode() + b'{"_id": "x", "text": "caf\xe9"}\n'
    (folder / name).write_bytes(gzip.compress(raw) if gz else raw)
    with raises_at(folder / name, 2, match="invalid UTF-8"):
        load_beir(folder)


def test_lone_surrogate_escape(write_beir):
    folder = write_beir(corpus=[TINY_CORPUS[0], '{"_id": "x", "text": "bad \\ud800 escape"}'])
    with raises_at(folder / "corpus.jsonl", 2, match="surrogate"):
        load_beir(folder)


def test_empty_query_text_is_an_error(write_beir):
    folder = write_beir(queries=[TINY_QUERIES[0], {"_id": "q9", "text": "   "}])
    with raises_at(folder / "queries.jsonl", 2, match="query 'q9' has empty text"):
        load_beir(folder)


def test_qrels_unknown_docs_listed_with_count(write_beir):
    rows = [("q1", f"missing{i}", 1) for i in range(7)]
    folder = write_beir(qrels={"test": [("q1", "d1", 1), *rows]})
    with raises_at(folder / "qrels" / "test.tsv", 3,
                   match=r"7 document ids are not in the corpus: 'missing0' \(line 3\).*'missing4'.* and 2 more"):
        load_beir(folder, split="test")


def test_qrels_unknown_query(write_beir):
    folder = write_beir(qrels={"test": [("q1", "d1", 1), ("nope", "d2", 1)]})
    with raises_at(folder / "qrels" / "test.tsv", 3, match="1 query ids are not in the queries file: 'nope'"):
        load_beir(folder, split="test")


@pytest.mark.parametrize("row, match", [("q1\td1\tx", "not a number"), ("q1\td1\t1.5", "not an integer"),
                                        ("q1\td1", "expected 3 beir qrels columns"),
                                        ("q1\td1\t1\textra", "got 4"), ("q1\td1\t99999999999", "int32")])
def test_qrels_bad_rows(write_beir, row, match):
    folder = write_beir(qrels={"test": [("q1", "d1", 1), row]})
    with raises_at(folder / "qrels" / "test.tsv", 3, match=match):
        load_beir(folder, split="test")


def test_conflicting_duplicate_judgement(write_beir):
    folder = write_beir(qrels={"test": [("q1", "d1", 1), ("q1", "d1", 2)]})
    with raises_at(folder / "qrels" / "test.tsv", 3, match="judged 1 on line 2 and 2 here"):
        load_beir(folder, split="test")


def test_malformed_gzip(write_beir):
    folder = write_beir(gz=True)
    data = (folder / "corpus.jsonl.gz").read_bytes()
    (folder / "corpus.jsonl.gz").write_bytes(data[: len(data) // 2])
    with raises_at(folder / "corpus.jsonl.gz", None, match="corrupt gzip"):
        load_beir(folder)
    (folder / "corpus.jsonl.gz").write_bytes(b"\x1f\x8bnot really gzip at all")
    with raises_at(folder / "corpus.jsonl.gz", None, match="corrupt gzip"):
        load_beir(folder)


def test_missing_corpus_names_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"corpus.jsonl\[.gz\], queries.jsonl and qrels/<split>.tsv"):
        load_beir(tmp_path)


# --- real data ------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_scifact_counts_and_speed(shared_data):
    start = time.perf_counter()
    ds = load_beir(shared_data / "scifact", split="train")
    elapsed = time.perf_counter() - start
    assert (len(ds.corpus), len(ds.queries), len(ds.qrels)) == (5183, 809, 919)
    assert ds.skipped_docs == 0 and len(set(ds.corpus.doc_ids)) == 5183
    assert set(ds.qrels.table.column("relevance").to_pylist()) == {1}
    assert elapsed < 1.0, f"SciFact took {elapsed:.2f} s to load"


@pytest.mark.parametrize("gz", [False, True])
def test_progress_bar_does_not_change_results(write_beir, monkeypatch, gz):
    from genir.data import lines

    folder = write_beir(gz=gz)
    quiet = load_beir(folder, split="test")
    monkeypatch.setenv("GENIR_PROGRESS", "1")
    monkeypatch.setattr(lines, "_PROGRESS_MIN_BYTES", 0)
    monkeypatch.setattr(lines, "_PROGRESS_EVERY", 1)
    loud = load_beir(folder, split="test")
    assert loud.corpus.table.equals(quiet.corpus.table) and loud.qrels.table.equals(quiet.qrels.table)
