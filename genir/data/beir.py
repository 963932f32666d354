"""BEIR folders: corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv.

NQ320k is read through this loader too: export it in the BEIR layout (as BEIR's own ``nq`` is), and
``load_dataset`` treats it like any other BEIR folder.

Documents with an empty title *and* an empty text carry nothing to index: they are skipped, counted
in ``BeirDataset.skipped_docs`` and reported by one warning. Every other defect is a DataFormatError
naming the file and line.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc

from genir.data.errors import DataFormatError
from genir.data.lines import id_field, iter_json_lines, string_table, text_field
from genir.data.qrels import drop_docs, read_qrels
from genir.data.split import carve, source_split, with_carved
from genir.data.types import Corpus, Qrels, Queries

logger = logging.getLogger(__name__)

CORPUS_FILES = ("corpus.jsonl", "corpus.jsonl.gz")
QUERIES_FILES = ("queries.jsonl", "queries.jsonl.gz")
LAYOUT = "corpus.jsonl[.gz], queries.jsonl and qrels/<split>.tsv"


@dataclass(frozen=True)
class BeirDataset:
    """One retrieval dataset, whatever its on-disk format (BEIR, MS MARCO)."""

    name: str  # folder name, e.g. "scifact"
    corpus: Corpus  # every document, in file order (row = doc_idx)
    queries: Queries  # every query in the folder, of all splits
    qrels: Qrels | None  # judgements of `split`; None when no split was asked for
    split: str | None  # split name as asked, e.g. "test" or the carved "dev"
    skipped_docs: int = 0  # documents dropped because both title and text were empty

    def split_queries(self) -> Queries:
        """The queries judged in ``qrels``, in ``queries`` order."""
        if self.qrels is None:
            raise ValueError(f"{self.name}: no split loaded; pass split=... (one of the qrels names)")
        judged = self.qrels.table.column("query_id").unique()
        return Queries(self.queries.table.filter(pc.is_in(self.queries.table.column("query_id"),
                                                          value_set=judged)))


def find_file(folder: str | Path, names: tuple[str, ...]) -> Path | None:
    """The first of ``names`` that exists in ``folder``."""
    for name in names:
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


def _require(folder: Path, names: tuple[str, ...]) -> Path:
    path = find_file(folder, names)
    if path is None:
        raise FileNotFoundError(f"{folder}: none of {list(names)} found; a BEIR folder holds {LAYOUT}")
    return path


def read_corpus(path: str | Path) -> tuple[Corpus, list[str]]:
    """(corpus, ids of the skipped empty documents) from a BEIR corpus.jsonl[.gz].

    Each line: ``{"_id", "title"?, "text", ...}``; ids may be integers (kept as their str()).
    """
    ids: list[str] = []
    titles: list[str] = []
    texts: list[str] = []
    lines: list[int] = []
    first_line: dict[str, int] = {}
    skipped: list[str] = []
    for lineno, obj in iter_json_lines(path):
        doc_id = id_field(obj, "_id", path=path, line=lineno)
        title = text_field(obj, "title", path=path, line=lineno, required=False)
        text = text_field(obj, "text", path=path, line=lineno, required=True)
        if doc_id in first_line:
            raise DataFormatError(f"duplicate document id {doc_id!r}, first seen on line "
                                  f"{first_line[doc_id]}", path=path, line=lineno)
        first_line[doc_id] = lineno
        if not title.strip() and not text.strip():
            skipped.append(doc_id)
            continue
        ids.append(doc_id)
        titles.append(title)
        texts.append(text)
        lines.append(lineno)
    if skipped:
        logger.warning("%s: skipped %d documents with empty title and text", path, len(skipped))
    return Corpus(string_table({"doc_id": ids, "title": titles, "text": texts}, lines, path=path)), skipped


def read_queries(path: str | Path) -> Queries:
    """Queries from a BEIR queries.jsonl: ``{"_id", "text", ...}``; empty text is an error."""
    ids: list[str] = []
    texts: list[str] = []
    lines: list[int] = []
    first_line: dict[str, int] = {}
    for lineno, obj in iter_json_lines(path):
        query_id = id_field(obj, "_id", path=path, line=lineno)
        text = text_field(obj, "text", path=path, line=lineno, required=True)
        if not text.strip():
            raise DataFormatError(f"query {query_id!r} has empty text", path=path, line=lineno)
        if query_id in first_line:
            raise DataFormatError(f"duplicate query id {query_id!r}, first seen on line "
                                  f"{first_line[query_id]}", path=path, line=lineno)
        first_line[query_id] = lineno
        ids.append(query_id)
        texts.append(text)
        lines.append(lineno)
    return Queries(string_table({"query_id": ids, "text": texts}, lines, path=path))


def _qrels_files(folder: Path) -> dict[str, Path]:
    qrels_dir = folder / "qrels"
    if not qrels_dir.is_dir():
        return {}
    return {p.name[: -len(".tsv")]: p for p in sorted(qrels_dir.glob("*.tsv")) if p.is_file()}


def available_splits(folder: str | Path, *, carved: bool = True) -> list[str]:
    """Split names of ``folder/qrels/*.tsv``, sorted; with ``carved``, plus "dev"/"train-dev" when a
    train split exists and the folder has no file of that name (see genir.data.split)."""
    real = list(_qrels_files(Path(folder)))
    return with_carved(real) if carved else sorted(real)


def load_beir(folder: str | Path, *, split: str | None = None, dev_fraction: float = 0.2,
              seed: int = 0) -> BeirDataset:
    """Load a BEIR folder; with ``split``, also its qrels, checked against corpus and queries.

    Without ``split``, queries.jsonl may be absent (``queries`` is then empty).

    ``split`` is a qrels file name or a carved split ("dev", "train-dev": ``dev_fraction`` of the
    train queries with ``seed``, see genir.data.split) when the folder has no file of that name.
    """
    folder = Path(folder)
    files = _qrels_files(folder)
    source = None if split is None else source_split(split, files, folder=folder)  # fail before parsing
    corpus, skipped = read_corpus(_require(folder, CORPUS_FILES))
    if split is None and find_file(folder, QUERIES_FILES) is None:
        queries = Queries.from_records([], [])  # a bare corpus folder is enough to build an index
    else:
        queries = read_queries(_require(folder, QUERIES_FILES))
    return assemble(folder, corpus, skipped, queries, split=split,
                    qrels_path=None if source is None else files[source], fmt="beir",
                    carved=source != split, dev_fraction=dev_fraction, seed=seed)


def assemble(folder: Path, corpus: Corpus, skipped: list[str], queries: Queries, *, split: str | None,
             qrels_path: Path | None, fmt: str, carved: bool, dev_fraction: float,
             seed: int) -> BeirDataset:
    """The dataset with the qrels of ``split`` read from ``qrels_path`` (the train file when ``carved``).

    Judgements are checked against corpus and queries; those of skipped empty documents are dropped.
    """
    qrels = None
    if split is not None and qrels_path is not None:
        qrels = read_qrels(qrels_path, fmt=fmt, doc_ids=set(corpus.doc_ids).union(skipped),
                           query_ids=set(queries.query_ids))
        qrels = drop_docs(qrels, skipped, path=qrels_path)
        if carved:
            qrels = carve(queries, qrels, split, fraction=dev_fraction, seed=seed)[1]
    return BeirDataset(name=folder.resolve().name, corpus=corpus, queries=queries, qrels=qrels,
                       split=split, skipped_docs=len(skipped))
