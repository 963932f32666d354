"""On-disk index format: versioned directories switched by one atomic rename.

    INDEX_DIR/
      CURRENT            name of the live version, replaced atomically (os.replace)
      v000001/           one complete version: manifest.json + its files
      v000002/ ...

Every write builds a whole new version in a temporary folder beside the old one, writes manifest.json
(sha256 of every file) last, fsyncs, renames the folder into place and only then swaps CURRENT. A crash at
any point leaves CURRENT naming a complete, checksummed version; a reader that already loaded the old
version keeps working because nothing it read is modified in place. (A single top-level manifest, as first
sketched in DESIGN.md, cannot be replaced together with the files it describes in one rename; the
CURRENT pointer can.)
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import genir

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CURRENT = "CURRENT"
KEEP_VERSIONS = 2  # the live one and its predecessor (for readers still holding it open)


class IndexFormatError(ValueError):
    """The directory is not a loadable genir index; the message names the file and the fix."""


def crash_point(name: str) -> None:
    """Test hook for the kill suite: with GENIR_CRASH_AT=N the N-th point reached dies by SIGKILL, and
    GENIR_CRASH_LOG=FILE appends each point's name, so a test can enumerate every point of a write."""
    log = os.environ.get("GENIR_CRASH_LOG")
    at = os.environ.get("GENIR_CRASH_AT")
    if log is None and at is None:
        return
    global _crash_count
    _crash_count += 1
    if log:
        with open(log, "a") as f:
            f.write(f"{_crash_count} {name}\n")
    if at is not None and int(at) == _crash_count:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


_crash_count = 0


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], Any], *, directory: bool = False,
                 before_replace: Callable[[], None] | None = None) -> Path:
    """Create or replace ``path`` so that readers see the old content or the new, never a part.

    ``write(tmp)`` fills a temp path in the same folder (a file named like ``path``, same suffix, so writers
    such as ``np.save`` keep the name; with ``directory=True`` an empty folder). The temp is fsynced (every
    file inside a folder), renamed over ``path`` and the folder fsynced; on any failure the temp is removed
    and ``path`` is untouched. ``before_replace()`` runs between the fsync and the rename (a kill-test
    ``crash_point``; moving an existing folder ``path`` away, as a rename cannot replace a non-empty folder).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = temp_dir(path.parent, prefix=f".tmp-{path.name}-")
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.tmp-", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it 0600; the result gets the mode open() would give
    try:
        write(tmp)
        for f in sorted(tmp.rglob("*")) if directory else [tmp]:
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def _read_umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it: done once, at import, before any thread writes
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def temp_dir(parent: Path, *, prefix: str) -> Path:
    """A new empty folder in ``parent`` (tempfile.mkdtemp) with the mode mkdir would give it, not mkdtemp's 0700:
    an index or result written through it stays readable by whoever may read ``parent``."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    return tmp


def atomic_write_text(path: Path, text: str, *, before_replace: Callable[[], None] | None = None) -> Path:
    """``atomic_write`` of UTF-8 text."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), before_replace=before_replace)


def atomic_write_json(path: Path, obj: Any) -> Path:
    """``atomic_write`` of ``obj`` as indented JSON."""
    return atomic_write_text(path, json.dumps(obj, indent=2))


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def _finish_version(folder: Path, manifest: dict[str, Any]) -> None:
    """Checksum every file, write manifest.json last, fsync all of it."""
    files = {}
    for p in _files(folder):
        crash_point(f"fsync {p.name}")
        with open(p, "rb") as f:
            os.fsync(f.fileno())
        files[p.relative_to(folder).as_posix()] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    crash_point("write manifest")
    manifest = {
        "format_version": FORMAT_VERSION,
        "genir_version": genir.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **manifest,
        "files": files,
    }
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=False), 
                      before_replace=lambda: crash_point("rename manifest"))
    for sub in {p.parent for p in _files(folder)} | {folder}:
        fsync_dir(sub)


@contextlib.contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Exclusive lock for read-modify-write updates (add, remove) of an existing index, so two writers
    cannot both start from version N and lose one's change. Readers never take it."""
    import fcntl

    path = Path(path)
    current_version(path)  # a clear error when `path` is not an index
    with open(path / ".lock", "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


_NPY_LOCK = threading.Lock()


def load_array(path: Path):
    """``np.load(path, allow_pickle=False)``, one thread at a time. numpy parses the .npy header with
    ``ast.literal_eval``, and CPython 3.11's AST constructor keeps its recursion depth in interpreter-wide state
    (python/cpython#106905): two threads loading indexes at once failed here with "SystemError: AST constructor
    recursion depth mismatch" (tests/test_concurrency.py, one CI run in many). Every .npy genir reads goes
    through this."""
    import numpy as np

    with _NPY_LOCK:
        return np.load(path, allow_pickle=False)


def is_index(path: Path) -> bool:
    return (Path(path) / CURRENT).is_file()


def current_version(path: Path) -> Path:
    """The live version folder of an index directory, or IndexFormatError saying what is wrong."""
    path = Path(path)
    if not path.exists():
        raise IndexFormatError(f"index directory {path} does not exist; build one with `genir index DATA --out {path}`")
    if not path.is_dir():
        raise IndexFormatError(f"{path} is a file, not an index directory")
    pointer = path / CURRENT
    if not pointer.is_file():
        raise IndexFormatError(f"{path} is not a genir index (no {CURRENT} file); build one with `genir index`")
    name = pointer.read_text().strip()
    version = path / name
    if not name or "/" in name or not version.is_dir():
        raise IndexFormatError(f"{pointer} names version {name!r}, which is missing from {path}")
    return version


def read_manifest(version: Path) -> dict[str, Any]:
    mpath = version / MANIFEST
    if not mpath.is_file():
        raise IndexFormatError(f"missing file {mpath}: the index version is incomplete")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexFormatError(f"corrupt {mpath}: {exc}") from None
    fmt = manifest.get("format_version")
    if not isinstance(fmt, int):
        raise IndexFormatError(f"{mpath} has no integer format_version")
    if fmt > FORMAT_VERSION:
        raise IndexFormatError(
            f"{mpath} has format_version {fmt}, newer than this genir ({genir.__version__}) reads "
            f"({FORMAT_VERSION}); upgrade genir"
        )
    return manifest


def verify(path: Path, *, checksums: bool = True) -> dict[str, Any]:
    """Check the live version's manifest and every file (presence, size, sha256). Returns the manifest."""
    return open_version(path, checksums=checksums)[1]


def open_version(path: Path, *, checksums: bool = True) -> tuple[Path, dict[str, Any]]:
    """Resolve CURRENT once and verify that version -> (version folder, manifest).

    Loaders read their files from the returned folder, never from CURRENT again: a writer may switch CURRENT
    at any moment, and a second read could load another version than the one verified.
    """
    version = current_version(path)
    manifest = read_manifest(version)
    for rel, meta in manifest.get("files", {}).items():
        f = version / rel
        if not f.is_file():
            raise IndexFormatError(f"missing file {f} listed in {version / MANIFEST}")
        if f.stat().st_size != meta["bytes"]:
            raise IndexFormatError(f"size mismatch for {f}: {f.stat().st_size} bytes, manifest says {meta['bytes']}")
        if checksums and sha256_file(f) != meta["sha256"]:
            raise IndexFormatError(f"checksum mismatch for {f}: the file changed after the index was written")
    return version, manifest


def check_writable(path: Path) -> None:
    """IndexFormatError unless `path` is absent, an empty folder or a genir index (checked before any work)."""
    path = Path(path)
    if path.exists() and not is_index(path):
        if not path.is_dir() or any(path.iterdir()):
            raise IndexFormatError(f"{path} exists and is not a genir index; refusing to overwrite it")


def write_version(path: Path, write: Callable[[Path], dict[str, Any]]) -> Path:
    """Build a new version of index `path` with `write(folder) -> manifest fields` and switch to it.

    Creates the index directory when missing; refuses a non-empty directory that is not a genir index.
    Returns the new version folder.
    """
    path = Path(path)
    check_writable(path)
    fresh = not path.exists()
    parent = path.parent if fresh else path
    parent.mkdir(parents=True, exist_ok=True)
    # A first build happens entirely in a sibling folder renamed into place at the end, so a crash
    # never leaves a half-made INDEX_DIR behind.
    root = temp_dir(parent, prefix=f".{path.name}.tmp-") if fresh else path
    try:
        existing = sorted(p.name for p in root.glob("v[0-9]*") if p.is_dir())
        number = int(existing[-1][1:]) + 1 if existing else 1
        name = f"v{number:06d}"
        staging = temp_dir(root, prefix=f".{name}.tmp-")
        crash_point("write files")
        manifest = write(staging)
        _finish_version(staging, manifest)
        crash_point("rename version")
        os.replace(staging, root / name)
        crash_point("write pointer")
        atomic_write_text(root / CURRENT, name + "\n", before_replace=lambda: crash_point("switch pointer"))
        if fresh:
            (root / ".lock").touch()  # created with the index, so a failed update leaves the folder as it was
            crash_point("rename index")
            os.replace(root, path)
            fsync_dir(parent)
        crash_point("collect garbage")
    except BaseException:
        if fresh:
            shutil.rmtree(root, ignore_errors=True)
        elif "staging" in locals() and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        raise
    _collect_garbage(path)
    return path / name


def _collect_garbage(path: Path) -> None:
    """Drop versions older than the last KEEP_VERSIONS and leftovers of interrupted writes."""
    live = current_version(path).name
    versions = sorted(p.name for p in path.glob("v[0-9]*") if p.is_dir())
    keep = set(versions[-KEEP_VERSIONS:]) | {live}
    for name in versions:
        if name not in keep:
            shutil.rmtree(path / name, ignore_errors=True)
    for tmp in path.glob(".*.tmp-*"):
        # Only stale leftovers: a concurrent writer's staging folder is younger than a minute.
        if time.time() - tmp.stat().st_mtime > 60:
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
