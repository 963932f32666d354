"""MS MARCO passage folders: collection.tsv, queries.<split>.tsv and TREC qrels.<split>.tsv.

``collection.tsv[.gz]`` holds ``pid<TAB>passage``; ``queries.<split>.tsv`` holds ``qid<TAB>text``;
``qrels.<split>.tsv`` holds ``qid 0 pid rel`` (tab or space separated). Passages have no title, so
the title column is "". Empty passages are skipped and counted, as in the BEIR loader.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from genir.data.beir import BeirDataset, assemble, find_file
from genir.data.errors import DataFormatError
from genir.data.lines import iter_lines, string_table
from genir.data.split import source_split, with_carved
from genir.data.types import Corpus, Queries

logger = logging.getLogger(__name__)

COLLECTION_FILES = ("collection.tsv", "collection.tsv.gz")
LAYOUT = "collection.tsv[.gz], queries.<split>.tsv and qrels.<split>.tsv (TREC: qid 0 pid rel)"


def _pairs(path: Path, what: str) -> Iterator[tuple[int, str, str]]:
    """(line, id, text) from an ``id<TAB>text`` file, rejecting duplicate ids."""
    first_line: dict[str, int] = {}
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        key, sep, text = line.partition("\t")
        key = key.strip()
        if not sep or not key:
            raise DataFormatError(f"expected '{what}-id<TAB>text'", path=path, line=lineno)
        if key in first_line:
            raise DataFormatError(f"duplicate {what} id {key!r}, first seen on line {first_line[key]}",
                                  path=path, line=lineno)
        first_line[key] = lineno
        yield lineno, key, text


def read_collection(path: str | Path) -> tuple[Corpus, list[str]]:
    """(corpus with empty titles, ids of skipped empty passages) from collection.tsv[.gz]."""
    path = Path(path)
    ids: list[str] = []
    texts: list[str] = []
    lines: list[int] = []
    skipped: list[str] = []
    for lineno, pid, text in _pairs(path, "passage"):
        if not text.strip():
            skipped.append(pid)
            continue
        ids.append(pid)
        texts.append(text)
        lines.append(lineno)
    if skipped:
        logger.warning("%s: skipped %d empty passages", path, len(skipped))
    table = string_table({"doc_id": ids, "title": [""] * len(ids), "text": texts}, lines, path=path)
    return Corpus(table), skipped


def read_query_tsv(path: str | Path) -> Queries:
    """Queries from ``qid<TAB>text`` lines; empty text is an error."""
    path = Path(path)
    ids: list[str] = []
    texts: list[str] = []
    lines: list[int] = []
    for lineno, qid, text in _pairs(path, "query"):
        if not text.strip():
            raise DataFormatError(f"query {qid!r} has empty text", path=path, line=lineno)
        ids.append(qid)
        texts.append(text)
        lines.append(lineno)
    return Queries(string_table({"query_id": ids, "text": texts}, lines, path=path))


def _qrels_files(folder: Path) -> dict[str, Path]:
    return {p.name[len("qrels."): -len(".tsv")]: p for p in sorted(folder.glob("qrels.*.tsv")) if p.is_file()}


def available_splits(folder: str | Path, *, carved: bool = True) -> list[str]:
    """Split names of ``folder/qrels.<split>.tsv``, sorted; with ``carved``, plus the carve-outs."""
    real = list(_qrels_files(Path(folder)))
    return with_carved(real) if carved else sorted(real)


def load_msmarco(folder: str | Path, *, split: str, dev_fraction: float = 0.2,
                 seed: int = 0) -> BeirDataset:
    """Load the collection plus the queries and qrels of ``split`` (checked against each other).

    ``split`` is a qrels file name ("train", "dev", "dev.small", ...) or a carved split of the
    train queries (see genir.data.split) when the folder has no file of that name.
    """
    folder = Path(folder)
    collection = find_file(folder, COLLECTION_FILES)
    if collection is None:
        raise FileNotFoundError(f"{folder}: no collection.tsv[.gz]; an MS MARCO folder holds {LAYOUT}")
    files = _qrels_files(folder)
    source = source_split(split, files, folder=folder)
    queries_path = folder / f"queries.{source}.tsv"
    if not queries_path.is_file():
        raise FileNotFoundError(f"{queries_path}: missing; qrels.{source}.tsv needs its queries file")
    corpus, skipped = read_collection(collection)
    queries = read_query_tsv(queries_path)
    return assemble(folder, corpus, skipped, queries, split=split, qrels_path=files[source], fmt="trec",
                    carved=source != split, dev_fraction=dev_fraction, seed=seed)
