"""Index directory format: versions, atomic switch, manifest checks."""
import json

import pytest

from genir import store
from genir.store import FORMAT_VERSION, IndexFormatError, current_version, verify, write_version


def _writer(payload: bytes):
    def write(folder):
        (folder / "a.bin").write_bytes(payload)
        (folder / "sub").mkdir()
        (folder / "sub" / "b.txt").write_text("hello")
        return {"kind": "test", "counts": {"n": 1}}
    return write


def test_first_write_creates_version_and_manifest(tmp_path):
    path = tmp_path / "idx"
    version = write_version(path, _writer(b"x" * 10))
    assert version == current_version(path)
    manifest = verify(path)
    assert manifest["format_version"] == FORMAT_VERSION
    assert set(manifest["files"]) == {"a.bin", "sub/b.txt"}
    assert manifest["counts"] == {"n": 1}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temp folder left behind"


def test_second_write_switches_and_keeps_predecessor(tmp_path):
    path = tmp_path / "idx"
    v1 = write_version(path, _writer(b"one"))
    v2 = write_version(path, _writer(b"two"))
    v3 = write_version(path, _writer(b"three"))
    assert current_version(path) == v3
    assert (v3 / "a.bin").read_bytes() == b"three"
    assert v2.exists() and not v1.exists()


def test_failed_write_leaves_old_version_live(tmp_path):
    path = tmp_path / "idx"
    v1 = write_version(path, _writer(b"one"))

    def broken(folder):
        (folder / "a.bin").write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_version(path, broken)
    assert current_version(path) == v1
    verify(path)
    assert not list(path.glob(".*tmp*"))


def test_failed_first_write_leaves_nothing(tmp_path):
    def broken(folder):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_version(tmp_path / "idx", broken)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", ["flip", "missing", "newer", "no_pointer"])
def test_verify_names_the_problem(tmp_path, damage):
    path = tmp_path / "idx"
    version = write_version(path, _writer(b"abcdef"))
    if damage == "flip":
        data = bytearray((version / "a.bin").read_bytes())
        data[2] ^= 0xFF
        (version / "a.bin").write_bytes(bytes(data))
        expected = "checksum mismatch for .*a.bin"
    elif damage == "missing":
        (version / "sub" / "b.txt").unlink()
        expected = "missing file .*b.txt"
    elif damage == "newer":
        m = json.loads((version / "manifest.json").read_text())
        m["format_version"] = FORMAT_VERSION + 1
        (version / "manifest.json").write_text(json.dumps(m))
        expected = "newer than this genir"
    else:
        (path / "CURRENT").unlink()
        expected = "not a genir index"
    with pytest.raises(IndexFormatError, match=expected):
        verify(path)


def test_refuses_foreign_directory(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(IndexFormatError, match="not a genir index"):
        write_version(foreign, _writer(b"x"))
    assert (foreign / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in foreign.iterdir()) == ["precious.txt"]


def test_missing_index_dir(tmp_path):
    with pytest.raises(IndexFormatError, match="does not exist"):
        verify(tmp_path / "nope")


# ---------------------------------------------------------------------------------------------- atomic_write
def test_atomic_write_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    from genir.store import atomic_write, atomic_write_text

    target = tmp_path / "report.json"
    atomic_write_text(target, "old")

    def half_then_fail(tmp):
        tmp.write_text("half of the new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"], "no temp file left behind"
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_atomic_write_keeps_the_suffix_for_numpy_and_writes_folders(tmp_path):
    import numpy as np

    from genir.store import atomic_write

    arr = np.arange(6).reshape(2, 3)
    atomic_write(tmp_path / "x.npy", lambda tmp: np.save(tmp, arr, allow_pickle=False))  # np.save adds .npy otherwise
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), arr)

    def fill(tmp):
        (tmp / "a.txt").write_text("a")
        raise KeyboardInterrupt  # a kill-like interruption mid-folder

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "ckpt", fill, directory=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]
    atomic_write(tmp_path / "ckpt", lambda tmp: (tmp / "a.txt").write_text("a"), directory=True)
    assert (tmp_path / "ckpt" / "a.txt").read_text() == "a"


def test_every_writer_goes_through_atomic_write(tmp_path, monkeypatch):
    """TREC runs, parquet, reports: a failing write leaves the previous file and no temp behind."""
    import pyarrow as pa

    from genir import store
    from genir.data.store import write_parquet
    from genir.metrics import write_trec_run
    from genir.provenance import write_result  # genir eval --out's report writer

    write_trec_run({"q": {"d": 1.0}}, tmp_path / "run.trec")
    write_parquet(pa.table({"a": [1]}), tmp_path / "t.parquet")
    write_result(tmp_path / "r.json", {"a": 1})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real = store.atomic_write

    def failing(path, write, **kw):
        def broken(tmp):
            write(tmp)
            raise OSError("no space left on device")
        return real(path, broken, **kw)

    monkeypatch.setattr(store, "atomic_write", failing)
    for call in (lambda: write_trec_run({"q": {"e": 2.0}}, tmp_path / "run.trec"),
                 lambda: write_parquet(pa.table({"a": [2]}), tmp_path / "t.parquet"),
                 lambda: write_result(tmp_path / "r.json", {"a": 2})):
        with pytest.raises(OSError, match="no space"):
            call()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_written_index_and_files_get_the_modes_of_a_plain_mkdir_and_open(tmp_path, monkeypatch):
    # mkdtemp / mkstemp make 0700 / 0600: an index served by another account would be unreadable
    import stat

    from genir import store
    from genir.store import atomic_write_json

    monkeypatch.setattr(store, "_UMASK", 0o022)  # the process umask, read once at import
    path = tmp_path / "idx"
    version = write_version(path, _writer(b"x"))
    report = atomic_write_json(tmp_path / "r.json", {"a": 1})
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (path, version, version / "manifest.json",
                                                                path / "CURRENT", report)}
    assert modes == {path.name: 0o755, version.name: 0o755, "manifest.json": 0o644, "CURRENT": 0o644, "r.json": 0o644}


def test_load_array_lets_one_thread_parse_a_header_at_a_time(tmp_path, monkeypatch):
    """numpy parses .npy headers with ast.literal_eval, which CPython 3.11 does not run safely from two threads
    at once (python/cpython#106905): genir's loads are serialised."""
    import threading
    import time

    import numpy as np

    np.save(tmp_path / "a.npy", np.arange(6).reshape(2, 3))
    real_load, inside, most = np.load, [0], [0]

    def slow_load(*args, **kwargs):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.01)  # a thread switch here would let a second load in, without the lock
        try:
            return real_load(*args, **kwargs)
        finally:
            inside[0] -= 1

    monkeypatch.setattr(np, "load", slow_load)
    out = []
    threads = [threading.Thread(target=lambda: out.append(store.load_array(tmp_path / "a.npy"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1 and len(out) == 4 and all((a == np.arange(6).reshape(2, 3)).all() for a in out)
