"""Relevance judgement files: BEIR TSV (query-id, corpus-id, score) and TREC (qid, 0, docid, rel).

Both are read line by line so a bad score or a wrong column count names its file and line, and
both are checked against the corpus and queries they judge before anyone evaluates with them.
"""
from __future__ import annotations

import logging
from collections.abc import Container
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from genir.data.errors import DataFormatError
from genir.data.lines import iter_lines, string_table
from genir.data.types import Qrels

logger = logging.getLogger(__name__)

QREL_FORMATS = ("beir", "trec")
_INT32 = (-(2**31), 2**31 - 1)
_MAX_LISTED = 5


def _score(field: str, *, path: Path, line: int) -> int:
    try:
        value = float(field) if any(c in field for c in ".eE") else int(field)
    except ValueError:
        raise DataFormatError(f"relevance score {field!r} is not a number", path=path, line=line) from None
    if isinstance(value, float):
        if not value.is_integer():
            raise DataFormatError(f"relevance score {field!r} is not an integer", path=path, line=line)
        value = int(value)
    if not _INT32[0] <= value <= _INT32[1]:
        raise DataFormatError(f"relevance score {field!r} is outside the int32 range", path=path, line=line)
    return value


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _fields(text: str) -> list[str]:
    # Tabs are the documented separator; some TREC files use single spaces instead.
    return text.split("\t") if "\t" in text else text.split()


def read_qrels(path: str | Path, *, fmt: str = "beir", doc_ids: Container[str] | None = None,
               query_ids: Container[str] | None = None) -> Qrels:
    """Read a qrels file. ``fmt="beir"``: 3 columns with a header line; ``"trec"``: 4, no header.

    A BEIR header is recognised as a first line whose score column is not a number. Exact duplicate
    judgements are dropped with a warning; the same pair judged twice with different scores is an error.
    With ``doc_ids`` / ``query_ids`` given, judgements naming ids outside them are an error that
    lists up to five (with their lines) and the count.
    """
    if fmt not in QREL_FORMATS:
        raise ValueError(f"unknown qrels format {fmt!r}; expected one of {QREL_FORMATS}")
    path = Path(path)
    n_cols, q_col, d_col = (3, 0, 1) if fmt == "beir" else (4, 0, 2)
    qids: list[str] = []
    dids: list[str] = []
    scores: list[int] = []
    lines: list[int] = []
    seen: dict[tuple[str, str], int] = {}
    duplicates = 0
    header_allowed = True
    unknown_docs: dict[str, int] = {}
    unknown_queries: dict[str, int] = {}
    for lineno, text in iter_lines(path):
        if not text.strip():
            continue
        fields = [f.strip() for f in _fields(text)]
        if len(fields) != n_cols:
            raise DataFormatError(f"expected {n_cols} {fmt} qrels columns "
                                  f"({'query-id corpus-id score' if fmt == 'beir' else 'qid 0 docid rel'}), "
                                  f"got {len(fields)}", path=path, line=lineno)
        first, header_allowed = header_allowed, False
        if first and fmt == "beir" and not _is_number(fields[-1]):
            continue  # the header line, e.g. "query-id<TAB>corpus-id<TAB>score"
        qid, did = fields[q_col], fields[d_col]
        if not qid or not did:
            raise DataFormatError("empty query or document id", path=path, line=lineno)
        score = _score(fields[-1], path=path, line=lineno)
        if doc_ids is not None and did not in doc_ids:
            unknown_docs.setdefault(did, lineno)
        if query_ids is not None and qid not in query_ids:
            unknown_queries.setdefault(qid, lineno)
        previous = seen.get((qid, did))
        if previous is not None:
            if scores[previous] != score:
                raise DataFormatError(f"query {qid!r} / document {did!r} judged {scores[previous]} on line "
                                      f"{lines[previous]} and {score} here", path=path, line=lineno)
            duplicates += 1
            continue
        seen[(qid, did)] = len(qids)
        qids.append(qid)
        dids.append(did)
        scores.append(score)
        lines.append(lineno)
    if unknown_docs:
        _raise_unknown(unknown_docs, "document", "the corpus", path=path)
    if unknown_queries:
        _raise_unknown(unknown_queries, "query", "the queries file", path=path)
    if duplicates:
        logger.warning("%s: dropped %d duplicate judgement lines", path, duplicates)
    table = string_table({"query_id": qids, "doc_id": dids}, lines, path=path)
    return Qrels(table.append_column("relevance", pa.array(scores, pa.int32())))


def _raise_unknown(unknown: dict[str, int], what: str, source: str, *, path: Path) -> None:
    ids = list(unknown)
    shown = ", ".join(f"{u!r} (line {unknown[u]})" for u in ids[:_MAX_LISTED])
    more = f" and {len(ids) - _MAX_LISTED} more" if len(ids) > _MAX_LISTED else ""
    raise DataFormatError(f"{len(ids)} {what} ids are not in {source}: {shown}{more}; the qrels and "
                          f"{source} probably come from different dataset versions",
                          path=path, line=unknown[ids[0]])


def drop_docs(qrels: Qrels, doc_ids: list[str], *, path: str | Path) -> Qrels:
    """Qrels without judgements of ``doc_ids`` (documents the loader skipped as empty), with a warning."""
    if not doc_ids:
        return qrels
    keep = pc.invert(pc.is_in(qrels.table.column("doc_id"), value_set=pa.array(doc_ids, pa.string())))
    kept = qrels.table.filter(keep)
    if kept.num_rows < qrels.table.num_rows:
        logger.warning("%s: dropped %d judgements of skipped empty documents", path,
                       qrels.table.num_rows - kept.num_rows)
    return Qrels(kept)
