"""Dataset loaders and the shared Corpus / Queries / Qrels / Sequences representation.

Retrieval folders come in two layouts, told apart by ``load_dataset``: BEIR (``corpus.jsonl[.gz]``,
``queries.jsonl``, ``qrels/<split>.tsv``; NQ320k is read through this layout) and MS MARCO passage
(``collection.tsv``, ``queries.<split>.tsv``, ``qrels.<split>.tsv``). Recommendation data (Amazon
5-core) loads with ``load_sequences``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pyarrow as pa

from genir.data import beir, msmarco
from genir.data.amazon import load_item_attribute_ids, load_sequences
from genir.data.beir import BeirDataset, load_beir
from genir.data.errors import DataFormatError
from genir.data.msmarco import load_msmarco
from genir.data.split import CARVED_SPLITS, dev_split, resolve_split
from genir.data.store import read_parquet, sql, write_parquet
from genir.data.types import Corpus, Qrels, Queries, Sequences

FORMATS = ("beir", "msmarco")

__all__ = ["CARVED_SPLITS", "FORMATS", "BeirDataset", "Corpus", "DataFormatError", "Qrels", "Queries",
           "Sequences", "available_splits", "detect_format", "dev_split", "load_beir", "load_corpus", "load_dataset",
           "load_item_attribute_ids", "load_msmarco", "load_training", "merge_corpora", "load_sequences", "read_parquet",
           "resolve_split", "sql", "write_parquet"]


def detect_format(folder: str | Path) -> str:
    """"beir" or "msmarco", from the files present; a FileNotFoundError naming both layouts otherwise."""
    folder = Path(folder)
    if beir.find_file(folder, beir.CORPUS_FILES) is not None:
        return "beir"
    if beir.find_file(folder, msmarco.COLLECTION_FILES) is not None:
        return "msmarco"
    raise FileNotFoundError(f"{folder}: not a retrieval dataset folder; expected either BEIR "
                            f"({beir.LAYOUT}) or MS MARCO passage ({msmarco.LAYOUT})")


def available_splits(folder: str | Path, *, carved: bool = True) -> list[str]:
    """Split names of a BEIR or MS MARCO folder (with the dev/train-dev carve-outs when ``carved``)."""
    module = beir if detect_format(folder) == "beir" else msmarco
    return module.available_splits(folder, carved=carved)


def load_corpus(folder: str | Path) -> Corpus:
    """Only the documents of a BEIR or MS MARCO folder (what `genir index` and `genir add` need)."""
    folder = Path(folder)
    if detect_format(folder) == "beir":
        return beir.read_corpus(beir.find_file(folder, beir.CORPUS_FILES))[0]
    return msmarco.read_collection(beir.find_file(folder, msmarco.COLLECTION_FILES))[0]


def load_training(folder: str | Path, split: str = "train-dev", *, dev_fraction: float = 0.2,
                  seed: int = 0) -> tuple[Corpus, Queries | None, Qrels | None]:
    """What an index build reads: the documents and, when the folder has ``split`` (default: train minus the
    seeded dev carve-out), its labelled queries and qrels; (corpus, None, None) for a documents-only folder
    (the model then trains on documents and pseudo-queries). `genir index`, the bench runner and the benchmarks
    share this choice."""
    if split not in available_splits(folder):
        return load_corpus(folder), None, None
    ds = load_dataset(folder, split=split, dev_fraction=dev_fraction, seed=seed)
    return ds.corpus, ds.split_queries(), ds.qrels


def merge_corpora(primary: Corpus, extras: Sequence[tuple[str, Corpus]]) -> Corpus:
    """One corpus from several: ``primary`` keeps its ids (its qrels evaluate unchanged); each extra corpus
    ``(name, corpus)`` joins with ids namespaced as ``name:id`` (MS MARCO folders reuse small integers, so
    bare ids from different folders can clash). A namespaced id that still clashes is an error."""
    tables = [primary.table]
    seen = set(primary.doc_ids)
    for name, corpus in extras:
        if not name or ":" in name:
            raise ValueError(f"extra corpus name {name!r} must be non-empty and contain no ':'")
        ids = [f"{name}:{d}" for d in corpus.doc_ids]
        clash = seen.intersection(ids)
        if clash:
            raise ValueError(f"extra corpus {name!r} clashes with documents already indexed "
                             f"(e.g. {sorted(clash)[:3]}); give the folders distinct names")
        seen.update(ids)
        tables.append(corpus.table.set_column(0, "doc_id", pa.array(ids, pa.string())))
    return Corpus(pa.concat_tables(tables))


def load_dataset(folder: str | Path, *, split: str | None = None, dev_fraction: float = 0.2,
                 seed: int = 0) -> BeirDataset:
    """Load a BEIR or MS MARCO folder (detected from its files); see load_beir / load_msmarco.

    MS MARCO keeps queries per split, so it needs ``split``.
    """
    if detect_format(folder) == "beir":
        return load_beir(folder, split=split, dev_fraction=dev_fraction, seed=seed)
    if split is None:
        raise ValueError(f"{folder}: an MS MARCO folder needs split=...; expected one of "
                         f"{msmarco.available_splits(folder)}")
    return load_msmarco(folder, split=split, dev_fraction=dev_fraction, seed=seed)
