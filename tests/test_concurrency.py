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
