"""The one exception every loader raises for malformed input files."""
from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
    """A data file does not match its documented format.

    The message starts with ``path:line:`` (or ``path:`` when no single line is at fault) so that
    editors and terminals can jump to the offending place; ``path`` and ``line`` are kept as attributes.
    """

    def __init__(self, message: str, *, path: str | Path, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")
