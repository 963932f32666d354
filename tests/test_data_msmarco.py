"""MS MARCO passage loader, format detection by load_dataset, and NQ read through the BEIR layout."""
from __future__ import annotations

import pytest
from tests.conftest import TINY_CORPUS, TINY_QUERIES

from genir.data import available_splits, detect_format, load_dataset, load_training
from genir.data.errors import DataFormatError
from genir.data.msmarco import load_msmarco


def test_exact_contents(write_msmarco):
    ds = load_msmarco(write_msmarco(), split="dev")
    assert ds.corpus.doc_ids == [d["_id"] for d in TINY_CORPUS]
    assert ds.corpus.table.column("text").to_pylist() == [d["text"] for d in TINY_CORPUS]
    assert set(ds.corpus.table.column("title").to_pylist()) == {""}
    assert ds.queries.texts == [q["text"] for q in TINY_QUERIES]
    assert ds.qrels.as_dict() == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    assert ds.split_queries().query_ids == ["q1", "q2"] and ds.split == "dev"


def test_space_separated_trec_qrels_and_dotted_split(write_msmarco):
    folder = write_msmarco(queries={"dev.small": [("q1", "vitamin d")]},
                           qrels={"dev.small": [("q1", "d1", 1), ("q1", "d3", 0)]}, sep=" ")
    assert available_splits(folder) == ["dev.small"]
    ds = load_dataset(folder, split="dev.small")
    assert ds.qrels.as_dict() == {"q1": {"d1": 1, "d3": 0}}


def test_carved_dev_from_train(write_msmarco):
    queries = {"train": [(f"q{i}", f"query {i}") for i in range(10)]}
    qrels = {"train": [(f"q{i}", "d1", 1) for i in range(10)]}
    folder = write_msmarco(queries=queries, qrels=qrels)
    assert available_splits(folder) == ["train", "dev", "train-dev"]
    dev = load_msmarco(folder, split="dev")
    rest = load_msmarco(folder, split="train-dev")
    assert len(dev.split_queries()) == 2 and len(rest.split_queries()) == 8
    assert not set(dev.split_queries().query_ids) & set(rest.split_queries().query_ids)


def test_load_training_reads_train_minus_dev_or_documents_only(write_msmarco):
    queries = {"train": [(f"q{i}", f"query {i}") for i in range(10)]}
    qrels = {"train": [(f"q{i}", "d1", 1) for i in range(10)]}
    folder = write_msmarco(queries=queries, qrels=qrels)
    corpus, train_q, train_qrels = load_training(folder)
    dev = load_msmarco(folder, split="dev").split_queries().query_ids
    assert len(train_q) == 8 and not set(train_q.query_ids) & set(dev)
    assert set(train_qrels.as_dict()) == set(train_q.query_ids)
    assert corpus.doc_ids == [d["_id"] for d in TINY_CORPUS]
    # a folder without the split (here only 'dev' judgements, so no 'train-dev'): documents only
    corpus, train_q, train_qrels = load_training(write_msmarco("judged-dev-only"))
    assert train_q is None and train_qrels is None and len(corpus) == len(TINY_CORPUS)


def test_empty_passage_skipped(write_msmarco):
    folder = write_msmarco(collection=[("d1", "text one"), ("d2", "  "), "d3\t", ("d4", "four")],
                           qrels={"dev": [("q1", "d1", 1), ("q2", "d2", 1)]})
    ds = load_msmarco(folder, split="dev")
    assert ds.corpus.doc_ids == ["d1", "d4"] and ds.skipped_docs == 2
    assert ds.qrels.as_dict() == {"q1": {"d1": 1}}  # the judgement of the skipped d2 is dropped


@pytest.mark.parametrize("kind, rows, line, match", [
    ("collection", ["d1\tone", "no tab here"], 2, "expected 'passage-id<TAB>text'"),
    ("collection", ["d1\tone", "d1\tagain"], 2, "duplicate passage id 'd1', first seen on line 1"),
    ("queries", ["q1\tfine", "q2\t "], 2, "query 'q2' has empty text"),
    ("qrels", ["q1 0 d1 1", "q1 0 d1"], 2, "expected 4 trec qrels columns"),
    ("qrels", ["q1 0 d1 1", "q2 0 d2 high"], 2, "not a number"),
    ("qrels", ["q1 0 d1 1", "q2 0 nope 1"], 2, "1 document ids are not in the corpus: 'nope'"),
])
def test_errors_name_file_and_line(write_msmarco, kind, rows, line, match):
    folder = write_msmarco()
    path = {"collection": folder / "collection.tsv", "queries": folder / "queries.dev.tsv",
            "qrels": folder / "qrels.dev.tsv"}[kind]
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataFormatError, match=match) as info:
        load_msmarco(folder, split="dev")
    assert str(info.value).startswith(f"{path}:{line}:")


def test_missing_queries_file_and_unknown_split(write_msmarco):
    folder = write_msmarco()
    with pytest.raises(ValueError, match=r"unknown split 'test'; expected one of \['dev'\]"):
        load_msmarco(folder, split="test")
    (folder / "queries.dev.tsv").unlink()
    with pytest.raises(FileNotFoundError, match="queries.dev.tsv: missing"):
        load_msmarco(folder, split="dev")


def test_detection(write_beir, write_msmarco, tmp_path):
    assert detect_format(write_beir()) == "beir" and detect_format(write_msmarco()) == "msmarco"
    with pytest.raises(ValueError, match=r"MS MARCO folder needs split=...; expected one of \['dev'\]"):
        load_dataset(write_msmarco("m3"))
    assert len(load_dataset(write_beir("b2")).corpus) == len(TINY_CORPUS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"BEIR \(corpus.jsonl.*MS MARCO passage \(collection.tsv"):
        load_dataset(tmp_path / "empty")


def test_nq_is_read_through_the_beir_layout(write_beir):
    # NQ320k exported BEIR-style: integer-like ids, titles, a train/test split.
    corpus = [{"_id": str(i), "title": f"Wiki page {i}", "text": f"passage {i}"} for i in range(4)]
    queries = [{"_id": "1000", "text": "who wrote page 0"}, {"_id": "1001", "text": "page 3?"}]
    folder = write_beir("nq320k", corpus=corpus, queries=queries,
                        qrels={"test": [("1000", "0", 1)], "train": [("1001", "3", 1)]})
    ds = load_dataset(folder, split="test")
    assert ds.name == "nq320k" and ds.qrels.as_dict() == {"1000": {"0": 1}}
