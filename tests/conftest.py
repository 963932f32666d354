"""Shared pytest fixtures. Add new fixtures in their own section, with a one-line docstring."""
from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import pytest

# --- real data -----------------------------------------------------------------------------------
# ../shared/data relative to the repository root; never copied into the repo.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The real benchmark data folder; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA


# --- tiny data folders written by the tests ------------------------------------------------------
TINY_CORPUS = [
    {"_id": "d1", "title": "Vitamin D", "text": "Vitamin D deficiency raises fracture risk."},
    {"_id": "d2", "title": "Aspirin", "text": "Aspirin lowers the risk of heart attack."},
    {"_id": "d3", "title": "", "text": "Coffee and sleep: an observational study."},
    {"_id": "d4", "title": "Überblick", "text": "Ünïcödé text — with dashes ✓"},
]
TINY_QUERIES = [
    {"_id": "q1", "text": "does vitamin d prevent fractures"},
    {"_id": "q2", "text": "aspirin heart"},
    {"_id": "q3", "text": "coffee sleep"},
    {"_id": "q4", "text": "unicode"},
]
TINY_QRELS = {"test": [("q1", "d1", 1), ("q2", "d2", 1)], "train": [("q3", "d3", 1), ("q4", "d4", 2)]}


def _write_text(path: Path, lines: list[str], *, newline: str = "\n", gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(line + newline for line in lines).encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _jsonl(rows: list[dict | str]) -> list[str]:
    """Rows may be dicts (dumped as JSON) or raw strings (written as they are, for error tests)."""
    return [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]


@pytest.fixture
def write_beir(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write a BEIR folder (defaults: the TINY_* data) and return its path."""

    def write(name: str = "tiny", *, corpus: list[dict | str] | None = None,
              queries: list[dict | str] | None = None,
              qrels: dict[str, list[tuple | str]] | None = None, gz: bool = False,
              crlf: bool = True) -> Path:
        folder = tmp_path / name
        corpus_name = "corpus.jsonl.gz" if gz else "corpus.jsonl"
        _write_text(folder / corpus_name, _jsonl(TINY_CORPUS if corpus is None else corpus), gz=gz)
        _write_text(folder / "queries.jsonl", _jsonl(TINY_QUERIES if queries is None else queries))
        for split, rows in (TINY_QRELS if qrels is None else qrels).items():
            lines = ["query-id\tcorpus-id\tscore"]
            lines += [r if isinstance(r, str) else "\t".join(map(str, r)) for r in rows]
            _write_text(folder / "qrels" / f"{split}.tsv", lines, newline="\r\n" if crlf else "\n")
        return folder

    return write


@pytest.fixture
def write_msmarco(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write an MS MARCO passage folder (collection.tsv, queries.<split>.tsv, TREC qrels)."""

    def write(name: str = "msmarco", *, collection: list[tuple | str] | None = None,
              queries: dict[str, list[tuple | str]] | None = None,
              qrels: dict[str, list[tuple | str]] | None = None, sep: str = "\t") -> Path:
        folder = tmp_path / name
        docs = [(d["_id"], d["text"]) for d in TINY_CORPUS] if collection is None else collection
        _write_text(folder / "collection.tsv", [r if isinstance(r, str) else "\t".join(r) for r in docs])
        by_split = {"dev": [(q["_id"], q["text"]) for q in TINY_QUERIES]} if queries is None else queries
        for split, rows in by_split.items():
            _write_text(folder / f"queries.{split}.tsv",
                        [r if isinstance(r, str) else "\t".join(r) for r in rows])
        judged = {"dev": [("q1", "d1", 1), ("q2", "d2", 1)]} if qrels is None else qrels
        for split, rows in judged.items():
            _write_text(folder / f"qrels.{split}.tsv",
                        [r if isinstance(r, str) else sep.join(map(str, (r[0], 0, r[1], r[2]))) for r in rows])
        return folder

    return write


TINY_SEQUENCES = {
    "U1": ["A1", "A2", "A3"],
    "U2": ["A2", "A4", "A1", "A5"],
    "U3": ["A5", "A3"],
}
TINY_ATTRIBUTES = {"A1": ["OPI", "Nails"], "A2": ["Maybelline", "Makeup", "Lips"], "A4": []}


@pytest.fixture
def write_amazon(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write an Amazon 5-core folder in both the text and the P5 integer formats."""

    def write(name: str = "amazon", *, sequences: dict[str, list[str]] | None = None,
              attributes: dict[str, list[str]] | None = None, user_sequence: bool = True,
              sequential: bool = True) -> Path:
        folder = tmp_path / name
        seqs = TINY_SEQUENCES if sequences is None else sequences
        attrs = TINY_ATTRIBUTES if attributes is None else attributes
        if user_sequence:
            _write_text(folder / "user_sequence.txt", [" ".join([u, *items]) for u, items in seqs.items()])
        # P5 numbering: users and items by first appearance, from 1.
        user2id = {u: str(i) for i, u in enumerate(seqs, start=1)}
        item2id: dict[str, str] = {}
        for items in seqs.values():
            for a in items:
                item2id.setdefault(a, str(len(item2id) + 1))
        if sequential:
            _write_text(folder / "sequential_data.txt",
                        [" ".join([user2id[u], *(item2id[a] for a in items)]) for u, items in seqs.items()],
                        newline="\r\n")
            maps = {"user2id": user2id, "item2id": item2id,
                    "id2user": {v: k for k, v in user2id.items()}, "id2item": {v: k for k, v in item2id.items()}}
            (folder / "datamaps.json").write_text(json.dumps(maps))
        if attrs:
            _write_text(folder / "item_attributes.derived.jsonl",
                        [json.dumps({"item_id": int(item2id[a]), "asin": a, "attributes": v})
                         for a, v in attrs.items() if a in item2id])
        return folder

    return write


# --- recommendation data -------------------------------------------------------------------------
@pytest.fixture
def planted_amazon(write_amazon: Callable[..., Path]) -> Path:
    """An Amazon folder of planted_sequences(num_users=80, num_items=30, seed=2), item text as attributes."""
    from genir.rec.synthetic import planted_sequences

    seqs = planted_sequences(num_users=80, num_items=30, seed=2)
    users, histories = seqs.table.column("user_id").to_pylist(), seqs.table.column("items").to_pylist()
    items, texts = seqs.items.column("item_id").to_pylist(), seqs.items.column("text").to_pylist()
    return write_amazon(sequences=dict(zip(users, histories)), sequential=False,
                        attributes={i: t.split(" item ") for i, t in zip(items, texts)})
