"""Readers in other threads and processes during `add` never fail and see the old or the new version only."""
import json
import subprocess
import sys
import threading
import time

import pytest

from genir.cli import main
from genir.index import GenerativeIndex
from tests.test_reliability import _corpus

PROBE = ["zebras 3", "document number 4"]

READER = """
import json, sys, time
from genir.index import GenerativeIndex
seen, errors, deadline = [], [], time.time() + float(sys.argv[2])
while time.time() < deadline:
    try:
        idx = GenerativeIndex.load(sys.argv[1], device="cpu")
        seen.append([[h.doc_id for h in hits] for hits in idx.search(json.loads(sys.argv[3]), k=3, mode="bm25")])
    except Exception as exc:
        errors.append(repr(exc))
print(json.dumps({"seen": seen, "errors": errors}))
"""


def answer(path):
    idx = GenerativeIndex.load(path, device="cpu")
    return [[h.doc_id for h in hits] for hits in idx.search(PROBE, k=3, mode="bm25")]


def test_readers_during_add(tmp_path, capsys):
    index_dir = tmp_path / "idx"
    with pytest.raises(SystemExit):
        main(["index", str(_corpus(tmp_path / "a", range(30))), "--out", str(index_dir), "--no-generative",
              "--device", "cpu", "--no-verbose"])
    before = answer(index_dir)
    proc = subprocess.Popen([sys.executable, "-c", READER, str(index_dir), "25", json.dumps(PROBE)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen, errors, stop = [], [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                seen.append(answer(index_dir))
            except Exception as exc:  # noqa: BLE001 - any failure is what the test looks for
                errors.append(repr(exc))

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(2)
    versions = [json.dumps(before)]
    for batch in range(3):  # several versions switch while the readers run
        new = _corpus(tmp_path / f"new{batch}", range(100 + 10 * batch, 110 + 10 * batch), topic="zebras")
        with pytest.raises(SystemExit) as e:
            main(["add", str(index_dir), str(new), "--device", "cpu"])
        assert e.value.code == 0
        versions.append(json.dumps(answer(index_dir)))
    after = answer(index_dir)
    time.sleep(1)
    stop.set()
    for t in threads:
        t.join()
    out, err = proc.communicate(timeout=120)
    other = json.loads(out.strip().splitlines()[-1])
    capsys.readouterr()
    assert errors == [] and other["errors"] == []
    assert len(seen) > 0 and len(other["seen"]) > 0
    assert before != after
    # every answer is that of a complete version: one of the four the writes produced
    answers = [json.dumps(s) for s in seen + other["seen"]]
    assert set(answers) <= set(versions)
    assert versions[0] in answers


def _switch_current_after_manifest_read(monkeypatch, index_dir, to: str) -> list[dict]:
    """Make a writer switch CURRENT to version ``to`` right after a loader read (verified) the live manifest;
    -> the manifests read, so a test can check the loader loaded the version it verified."""
    from genir import store

    seen, read = [], store.read_manifest

    def read_then_switch(version):
        seen.append(read(version))
        (index_dir / store.CURRENT).write_text(to + "\n")
        return seen[-1]

    monkeypatch.setattr(store, "read_manifest", read_then_switch)
    return seen


def test_index_load_reads_the_version_it_verified(tmp_path, monkeypatch, capsys):
    index_dir = tmp_path / "idx"
    for argv in (["index", str(_corpus(tmp_path / "a", range(30))), "--out", str(index_dir), "--no-generative",
                  "--device", "cpu", "--no-verbose"],
                 ["add", str(index_dir), str(_corpus(tmp_path / "new", range(100, 110), topic="zebras")),
                  "--device", "cpu"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
    capsys.readouterr()
    live = answer(index_dir)  # v000002, with the zebra documents
    seen = _switch_current_after_manifest_read(monkeypatch, index_dir, "v000001")
    idx = GenerativeIndex.load(index_dir, device="cpu")
    assert [m["counts"]["documents"] for m in seen] == [40]
    assert len(idx) == 40  # before: the v000002 manifest verified, then v000001's 30 documents loaded
    assert [[h.doc_id for h in hits] for hits in idx.search(PROBE, k=3, mode="bm25")] == live


def test_recommender_load_reads_the_version_it_verified(tmp_path, monkeypatch):
    from genir.config import RecConfig
    from genir.rec.recommender import Recommender
    from genir.rec.synthetic import planted_sequences

    index_dir = tmp_path / "rec"
    for users in (40, 60):  # v000001, v000002
        Recommender.build(planted_sequences(num_users=users, num_items=12, seed=1), RecConfig(),
                          modes=["popular"]).save(index_dir)
    seen = _switch_current_after_manifest_read(monkeypatch, index_dir, "v000001")
    rec = Recommender.load(index_dir)
    assert [m["counts"]["users"] for m in seen] == [60]
    assert rec.data.num_users == 60  # before: the v000002 manifest verified, then v000001's 40 users loaded
