"""Bad input through the CLI: one clear error line, a non-zero exit, and nothing on disk changes."""
import hashlib
import json
from pathlib import Path

import pytest

from genir.cli import main


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    data = root / "good"
    data.mkdir()
    docs = [{"_id": f"d{i}", "title": f"t{i}", "text": f"text about thing {i}"} for i in range(8)]
    (data / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    (data / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "thing 3"}) + "\n")
    (data / "qrels").mkdir()
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td3\t1\n")
    with pytest.raises(SystemExit) as e:
        main(["index", str(data), "--out", str(root / "idx"), "--no-generative", "--device", "cpu", "--no-verbose"])
    assert e.value.code == 0
    return root


def variant(root: Path, name: str, corpus: bytes | None = None, qrels: bytes | None = None,
            queries: bytes | None = None) -> Path:
    folder = root / name
    if not folder.exists():
        folder.mkdir()
        good = root / "good"
        (folder / "qrels").mkdir()
        (folder / "corpus.jsonl").write_bytes(corpus if corpus is not None else (good / "corpus.jsonl").read_bytes())
        (folder / "queries.jsonl").write_bytes(queries if queries is not None else (good / "queries.jsonl").read_bytes())
        (folder / "qrels" / "test.tsv").write_bytes(qrels if qrels is not None else (good / "qrels" / "test.tsv").read_bytes())
    return folder


DOC = b'{"_id": "d0", "title": "t", "text": "x"}\n'
CASES = {
    "malformed jsonl": (dict(corpus=DOC + b'{"_id": "d1", "text": \n'), "add", "corpus.jsonl:2"),
    "missing field": (dict(corpus=DOC + b'{"title": "no id", "text": "x"}\n'), "add", "corpus.jsonl:2"),
    "duplicate doc ids": (dict(corpus=DOC + DOC), "add", "duplicate"),
    "non-utf8": (dict(corpus=DOC + b'{"_id": "d9", "text": "caf\xe9"}\n'), "add", "corpus.jsonl:2"),
    "doc already indexed": (dict(corpus=b'{"_id": "d3", "title": "t", "text": "again"}\n'), "add", "already in the index"),
    "qrels unknown doc": (dict(qrels=b"query-id\tcorpus-id\tscore\nq1\tnope\t1\n"), "eval", "nope"),
    "qrels bad columns": (dict(qrels=b"query-id\tcorpus-id\tscore\nq1\td3\n"), "eval", "test.tsv:2"),
    "empty query": (dict(queries=b'{"_id": "q1", "text": ""}\n'), "eval", "queries.jsonl:1"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_dataset(built, case, capsys):
    files, command, expected = CASES[case]
    data = variant(built, case.replace(" ", "_"), **files)
    before = snapshot(built / "idx")
    argv = {"add": ["add", str(built / "idx"), str(data), "--device", "cpu"],
            "eval": ["eval", str(built / "idx"), "--data", str(data), "--split", "test", "--mode", "bm25"]}[command]
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert snapshot(built / "idx") == before


@pytest.mark.parametrize("argv,expected", [
    (["search", "{idx}", "", "--mode", "bm25"], "empty query"),
    (["search", "{idx}", "thing", "-k", "-3"], "k must be a positive integer"),
    (["search", "{idx}", "thing", "--mode", "psychic"], "unknown mode 'psychic'"),
    (["search", "{root}/nowhere", "thing"], "does not exist"),
    (["search", "{root}/good", "thing"], "not a genir index"),
    (["index", "{root}/good", "--out", "{root}/good", "--no-generative"], "not a genir index; refusing"),
    (["eval", "{idx}", "--data", "{root}/good", "--split", "nosuch"], "nosuch"),
    (["eval", "{idx}", "--data", "{root}/good", "--split", "test", "--measure", "bogus@1"], "unknown measure"),
    (["remove", "{idx}", "--ids", "{root}/ids.txt"], "not in the index"),
    (["verify", "{root}/good"], "not a genir index"),
    # --set over IndexConfig for retrieval (dotted for nested configs), type-checked; options are shortcuts
    (["index", "{root}/good", "--out", "{root}/new", "--set", "dropout=0.3"], "--set dropout: unknown IndexConfig field"),
    (["index", "{root}/good", "--out", "{root}/new", "--set", "train.bogus=1"], "unknown TrainConfig field"),
    (["index", "{root}/good", "--out", "{root}/new", "--set", "train.epochs=high"], "train.epochs=high: expected type float"),
    (["index", "{root}/good", "--out", "{root}/new", "--set", "train=3"], "set its fields as train.FIELD"),
    (["index", "{root}/good", "--out", "{root}/new", "--set", "train.epochs"], "expected FIELD=VALUE"),
    (["index", "{root}/good", "--out", "{root}/new", "--epochs", "2", "--set", "train.epochs=3"],
     "give --epochs or --set train.epochs=..., not both"),
    (["index", "{root}/good", "--out", "{root}/new", "--seed", "1", "--set", "codec.seed=2"], "not both"),
    (["index", "{root}/good", "--out", "{root}/new", "--model", "x", "--set", "model.encoder=y"], "not both"),
    (["index", "{root}/good", "--out", "{root}/new", "--set", "train.pseudo_mix=essay"], "unknown --pseudo-mix 'essay'"),
    (["index", "{root}/good", "--out", "{root}/new", "--task", "recommend", "--set", "bogus=1"], "unknown RecConfig"),
    (["index", "{root}/good", "--out", "{root}/new", "--task", "recommend", "--set", "dropout=high"],
     "dropout=high: expected type float"),
    (["index", "{root}/good", "--out", "{root}/new", "--task", "recommend", "--factory", "HNSW32"],
     "error: --factory applies to --task retrieve"),
    (["index", "{root}/good", "--out", "{root}/new", "--task", "recommend", "--metric", "l2", "--no-generative"],
     "error: --metric, --generative/--no-generative apply to --task retrieve"),
    (["index", "{root}/good", "--out", "{root}/new", "--task", "recommend", "--epochs", "2.5"], "whole number"),
    (["index", "{root}/good", "--out", "{root}/new", "--task", "recommend", "--epochs", "3", "--set", "max_epochs=4"],
     "give --epochs or --set max_epochs=..., not both"),
])
def test_bad_arguments(built, argv, expected, capsys):
    (built / "ids.txt").write_text("missing-doc\n")
    before = snapshot(built)
    fill = {"idx": built / "idx", "root": built}
    with pytest.raises(SystemExit) as e:
        main([a.format(**fill) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert snapshot(built) == before


def test_verify_flipped_byte(built, capsys, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(built / "idx", copy)
    version = copy / (copy / "CURRENT").read_text().strip()
    target = version / "dense.faiss"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 1
    target.write_bytes(bytes(data))
    with pytest.raises(SystemExit) as e:
        main(["verify", str(copy)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "checksum mismatch" in err and "dense.faiss" in err
    with pytest.raises(SystemExit) as e:
        main(["verify", str(built / "idx")])
    assert e.value.code == 0 and "ok:" in capsys.readouterr().out
