"""Amazon 5-core sequential recommendation folders (the S3-Rec / P5 / TIGER preprocessing).

Two equivalent sequence files exist: ``user_sequence.txt`` (``<reviewerID> <asin> ...`` per line)
and ``sequential_data.txt`` (P5 integer ids, CRLF) with ``datamaps.json`` mapping the integers back.
Both load to the same Sequences, with asin strings as item ids, so results never depend on which
file a folder happens to hold. Item text is the attribute list of ``item_attributes.derived.jsonl``
joined by ", " ("" when an item has none).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa

from genir.data.errors import DataFormatError
from genir.data.lines import id_field, iter_json_lines, iter_lines
from genir.data.types import Sequences

logger = logging.getLogger(__name__)

SOURCES = ("auto", "user_sequence", "sequential_data")
USER_SEQUENCE = "user_sequence.txt"
SEQUENTIAL_DATA = "sequential_data.txt"
DATAMAPS = "datamaps.json"
ATTRIBUTES = "item_attributes.derived.jsonl"
S3REC_GLOB = "s3rec_*_item2attributes.json"
LAYOUT = f"{USER_SEQUENCE}, or {SEQUENTIAL_DATA} + {DATAMAPS}; optionally {ATTRIBUTES}"


def _read_json(path: Path) -> Any:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataFormatError(f"invalid UTF-8 at byte {e.start}", path=path) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataFormatError(f"invalid JSON ({e.msg}, column {e.colno})", path=path, line=e.lineno) from None
    except (ValueError, RecursionError) as e:
        raise DataFormatError(f"invalid JSON ({e})", path=path) from None


def _id_map(maps: Any, key: str, path: Path) -> dict[str, str]:
    if not isinstance(maps, dict) or not isinstance(maps.get(key), dict):
        raise DataFormatError(f"expected a JSON object with a {key!r} mapping", path=path)
    return {str(k): str(v) for k, v in maps[key].items()}


def _read_lines(path: Path, decode) -> list[tuple[str, list[str]]]:
    """(user, items) per non-blank line; ``decode(token, field, line)`` maps raw tokens to ids."""
    rows: list[tuple[str, list[str]]] = []
    first_line: dict[str, int] = {}
    for lineno, line in iter_lines(path):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) < 2:
            raise DataFormatError(f"user {tokens[0]!r} has no items; expected '<user> <item> ...'",
                                  path=path, line=lineno)
        user = decode(tokens[0], "user", lineno)
        if user in first_line:
            raise DataFormatError(f"duplicate user {user!r}, first seen on line {first_line[user]}",
                                  path=path, line=lineno)
        first_line[user] = lineno
        rows.append((user, [decode(t, "item", lineno) for t in tokens[1:]]))
    return rows


def _sequential_rows(folder: Path) -> list[tuple[str, list[str]]]:
    maps_path = folder / DATAMAPS
    if not maps_path.is_file():
        raise FileNotFoundError(f"{maps_path}: missing; {SEQUENTIAL_DATA} needs it to map ids to asins")
    maps = _read_json(maps_path)
    lookup = {"user": _id_map(maps, "id2user", maps_path), "item": _id_map(maps, "id2item", maps_path)}
    path = folder / SEQUENTIAL_DATA

    def decode(token: str, field: str, line: int) -> str:
        value = lookup[field].get(token)
        if value is None:
            raise DataFormatError(f"{field} id {token!r} is not in {DATAMAPS} id2{field}", path=path, line=line)
        return value

    return _read_lines(path, decode)


def read_item_text(path: str | Path) -> dict[str, str]:
    """{asin: "attr1, attr2, ..."} from item_attributes.derived.jsonl."""
    path = Path(path)
    out: dict[str, str] = {}
    for lineno, obj in iter_json_lines(path):
        asin = id_field(obj, "asin", path=path, line=lineno)
        attributes = obj.get("attributes")
        if not isinstance(attributes, list) or not all(isinstance(a, str) for a in attributes):
            raise DataFormatError("'attributes' must be a list of strings", path=path, line=lineno)
        if asin in out:
            raise DataFormatError(f"duplicate asin {asin!r}", path=path, line=lineno)
        out[asin] = ", ".join(attributes)
    return out


def load_sequences(folder: str | Path, *, source: str = "auto") -> Sequences:
    """User sequences (time order, asin item ids) plus an items table of every item that occurs.

    ``source``: "user_sequence", "sequential_data", or "auto" (the first of the two that exists).
    Items are listed in order of first appearance; their text comes from ATTRIBUTES when present.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")
    folder = Path(folder)
    if source == "auto":
        if (folder / USER_SEQUENCE).is_file():
            source = "user_sequence"
        elif (folder / SEQUENTIAL_DATA).is_file():
            source = "sequential_data"
        else:
            raise FileNotFoundError(f"{folder}: no sequence file; an Amazon folder holds {LAYOUT}")
    if source == "user_sequence":
        rows = _read_lines(folder / USER_SEQUENCE, lambda token, field, line: token)
    else:
        rows = _sequential_rows(folder)
    item_ids = list(dict.fromkeys(item for _, items in rows for item in items))
    text = read_item_text(folder / ATTRIBUTES) if (folder / ATTRIBUTES).is_file() else {}
    table = pa.table({"user_id": pa.array([u for u, _ in rows], pa.string()),
                      "items": pa.array([items for _, items in rows], pa.list_(pa.string()))})
    items = pa.table({"item_id": pa.array(item_ids, pa.string()),
                      "text": pa.array([text.get(i, "") for i in item_ids], pa.string())})
    logger.info("%s: %d users, %d items, %d interactions", folder, len(rows), len(item_ids),
                sum(len(s) for _, s in rows))
    return Sequences(table, items)


def load_item_attribute_ids(folder: str | Path) -> dict[str, list[int]]:
    """{asin: [attribute id, ...]} from the folder's S3-Rec ``s3rec_*_item2attributes.json``.

    Its keys are P5 integer item ids (as strings), mapped to asins through datamaps.json id2item.
    The attribute ids are anonymous categorical features (Sports has no attribute names).
    """
    folder = Path(folder)
    candidates = sorted(folder.glob(S3REC_GLOB))
    if len(candidates) != 1:
        raise FileNotFoundError(f"{folder}: expected exactly one {S3REC_GLOB}, found "
                                f"{[p.name for p in candidates]}")
    path = candidates[0]
    id2item = _id_map(_read_json(folder / DATAMAPS), "id2item", folder / DATAMAPS)
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise DataFormatError("expected a JSON object {item id: [attribute ids]}", path=path)
    out: dict[str, list[int]] = {}
    for key, attrs in raw.items():
        if key not in id2item:
            raise DataFormatError(f"item id {key!r} is not in {DATAMAPS} id2item", path=path)
        if not isinstance(attrs, list) or not all(isinstance(a, int) and not isinstance(a, bool) for a in attrs):
            raise DataFormatError(f"item {key!r}: attributes must be a list of integers", path=path)
        out[id2item[key]] = attrs
    return out
