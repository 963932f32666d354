"""Line-by-line reading of plain or gzipped text with errors located at file and line.

Every loader reads through here so that bad bytes, broken gzip and bad JSON all surface as a
DataFormatError naming the file and the 1-based line number, never as a bare UnicodeDecodeError.
"""
from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from genir.data.errors import DataFormatError
from genir.progress import ProgressBar

GZIP_MAGIC = b"\x1f\x8b"
_PROGRESS_MIN_BYTES = 64 << 20  # smaller files read in about a second: no bar
_PROGRESS_EVERY = 1 << 16  # lines between bar updates, so the bar costs nothing per line


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield (line_number, text) for each line, without the trailing CRLF / LF.

    Gzip is detected by its magic bytes (not the suffix). Each line is decoded as strict UTF-8 on its
    own, so the error names the line; a leading byte-order mark is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    gz = _is_gzip(path)
    lineno = 0
    try:
        size = path.stat().st_size
        with open(path, "rb") as file, ProgressBar(f"reading {path.name}", total=size,
                                                   enabled=None if size >= _PROGRESS_MIN_BYTES else False) as bar:
            f = gzip.GzipFile(fileobj=file, mode="rb") if gz else file
            for lineno, raw in enumerate(f, start=1):
                if lineno % _PROGRESS_EVERY == 0:
                    bar.update(file.tell())  # compressed bytes for gzip: the bar tracks the disk file
                try:
                    text = raw.decode("utf-8", errors="strict")
                except UnicodeDecodeError as e:
                    raise DataFormatError(
                        f"invalid UTF-8 at byte {e.start} of the line ({raw[e.start:e.start + 4]!r}); "
                        "re-encode the file as UTF-8", path=path, line=lineno) from None
                if lineno == 1 and text.startswith("\ufeff"):
                    text = text[1:]
                yield lineno, text.rstrip("\r\n")
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataFormatError(f"corrupt gzip data after line {lineno} ({e}); re-download or re-compress "
                              "the file", path=path) from None


def iter_json_lines(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line_number, object) for each non-blank line of a JSON Lines file.

    Every line must hold one JSON object; anything else is a DataFormatError naming the line.
    """
    for lineno, text in iter_lines(path):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as e:  # ValueError covers JSONDecodeError and huge ints
            raise DataFormatError(f"invalid JSON ({e})", path=path, line=lineno) from None
        if not isinstance(obj, dict):
            raise DataFormatError(f"expected a JSON object, got {type(obj).__name__}",
                                  path=path, line=lineno)
        yield lineno, obj


def id_field(obj: dict[str, Any], key: str, *, path: str | Path, line: int) -> str:
    """A required identifier: strings kept, integers converted with str() (BEIR files mix both)."""
    if key not in obj or obj[key] is None:
        raise DataFormatError(f"missing required field {key!r}; fields present: {sorted(obj)[:10]}",
                              path=path, line=line)
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataFormatError(f"field {key!r} must be a string or integer id, got {type(value).__name__}",
                              path=path, line=line)
    value = str(value)
    if not value.strip():
        raise DataFormatError(f"field {key!r} is an empty id", path=path, line=line)
    return value


def text_field(obj: dict[str, Any], key: str, *, path: str | Path, line: int, required: bool) -> str:
    """A text field; null counts as empty. Optional fields default to ""."""
    if key not in obj:
        if required:
            raise DataFormatError(f"missing required field {key!r}; fields present: {sorted(obj)[:10]}",
                                  path=path, line=line)
        return ""
    value = obj[key]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataFormatError(f"field {key!r} must be a string, got {type(value).__name__}",
                              path=path, line=line)
    return value


def string_table(columns: dict[str, list[str]], lines: list[int], *, path: str | Path) -> pa.Table:
    """Build an all-string arrow table; a string UTF-8 cannot hold becomes a located DataFormatError.

    JSON escapes such as "\\ud800" decode to lone surrogates that arrow refuses; the (rare) failure is
    traced back to its line by a second pass, so the common path stays one fast conversion.
    """
    try:
        return pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})
    except UnicodeEncodeError:
        for name, values in columns.items():
            for value, line in zip(values, lines):
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise DataFormatError(f"field {name!r} holds an unpaired surrogate escape (e.g. "
                                          "\\ud800) that UTF-8 cannot represent", path=path, line=line) from None
        raise
