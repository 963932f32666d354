"""Progress bars: rich when the output is a terminal, silent otherwise or when GENIR_PROGRESS=0."""
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


def track(items: Iterable[T], *, description: str, total: int | None = None, enabled: bool | None = None) -> Iterator[T]:
    """Iterate with a rich progress bar when enabled."""
    if not progress_enabled(enabled):
        yield from items
        return
    from rich.progress import track as rich_track

    yield from rich_track(items, description=description, total=total, transient=True)


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
