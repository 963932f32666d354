"""Progress bars (one kind, ``ProgressBar``): rich when the output is a terminal, silent otherwise or when
GENIR_PROGRESS=0."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress_enabled(flag: bool | None = None) -> bool:
    """Explicit flag wins; else GENIR_PROGRESS (0/1); else on only when stderr is a terminal."""
    if flag is not None:
        return flag
    env = os.environ.get("GENIR_PROGRESS")
    if env is not None:
        return env not in ("0", "false", "no", "")
    return sys.stderr.isatty()


class ProgressBar:
    """The one progress bar of genir (rich, transient): ``update(completed, **fields)``, then ``close()`` (or use
    it as a context manager). A no-op unless ``progress_enabled(enabled)``. ``fields`` (name -> initial text)
    are shown after the bar, e.g. the training loss."""

    def __init__(self, description: str, *, total: float | None, completed: float = 0, enabled: bool | None = None,
                 fields: dict[str, str] | None = None) -> None:
        self._progress = None
        if not progress_enabled(enabled):
            return
        from rich.progress import Progress, TextColumn

        columns = [*Progress.get_default_columns(), *(TextColumn(f"{name} {{task.fields[{name}]}}") for name in fields or {})]
        self._progress = Progress(*columns, transient=True)
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, completed=completed, **(fields or {}))

    @property
    def active(self) -> bool:
        """True when a bar is drawn."""
        return self._progress is not None

    def update(self, completed: float, **fields: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, **fields)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(items: Iterable[T], *, description: str, total: int | None = None, enabled: bool | None = None) -> Iterator[T]:
    """Iterate with a ``ProgressBar`` when enabled (``total`` defaults to ``len(items)`` where there is one)."""
    if not progress_enabled(enabled):
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with ProgressBar(description, total=total, enabled=True) as bar:
        for done, item in enumerate(items, 1):
            yield item
            bar.update(done)


@contextmanager
def quiet_transformers(progress: bool = False) -> Iterator[None]:
    """Load Hugging Face weights without the load report (e.g. the unused pooler) and, unless ``progress``,
    without transformers' "Loading weights" bar, which ignores GENIR_PROGRESS otherwise."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    if not progress:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if not progress:
            hf_logging.enable_progress_bar()
