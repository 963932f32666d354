"""The CLI end to end on tiny BEIR and MS MARCO folders written by the tests."""
import json

import pytest

from genir.cli import main

REPORT_KEYS = {"dataset", "split", "num_queries", "results", "genir_version", "config"}


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


def test_index_search_eval_beir_test_split(write_beir, tmp_path, capsys):
    data = write_beir()
    index_dir = tmp_path / "idx"
    code, out, err = run_cli(["index", data, "--out", index_dir, "--no-generative", "--device", "cpu"], capsys)
    assert code == 0, err
    assert "indexed 4 documents" in out

    code, out, err = run_cli(["search", index_dir, "vitamin d fractures", "-k", "2", "--mode", "bm25", "--json"], capsys)
    assert code == 0, err
    hits = json.loads(out)["hits"]
    assert hits[0]["doc_id"] == "d1" and hits[0]["rank"] == 1 and hits[0]["title"] == "Vitamin D"

    report_path = tmp_path / "report.json"
    code, out, err = run_cli(["eval", index_dir, "--data", data, "--split", "test", "--mode", "dense",
                              "--mode", "bm25", "--out", report_path, "--run-dir", tmp_path / "runs"], capsys)
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert REPORT_KEYS <= set(report)
    assert report["provenance"]["command"].split()[1:3] == ["eval", str(index_dir)]  # written with its provenance
    assert "commit" in report["provenance"]["git"] and report["provenance"]["machine"]
    # and the index's own build: which command, code and machine built the version it evaluated
    built = report["index"]
    assert built["path"] == str(index_dir) and built["version"] == (index_dir / "CURRENT").read_text().strip()
    assert built["built_by"]["command"].split()[1:3] == ["index", str(data)] and "commit" in built["built_by"]["git"]
    assert built["kind"] == "retrieval" and built["build_seconds"]["embed"] >= 0
    assert report["split"] == "test" and report["num_queries"] == 2
    assert [r["mode"] for r in report["results"]] == ["dense", "bm25"]
    bm25 = report["results"][1]
    assert set(bm25["metrics"]) == {"nDCG@10", "RR@10", "R@1", "R@10", "R@100"}
    assert bm25["metrics"]["RR@10"] == pytest.approx(1.0)  # both test queries share words with their doc
    assert bm25["queries_per_second"] > 0
    assert (tmp_path / "runs" / f"{data.name}-test-bm25.trec").read_text().startswith("q1 Q0 d1 1 ")


def test_eval_msmarco_folder(write_msmarco, tmp_path, capsys):
    data = write_msmarco()
    index_dir = tmp_path / "ms"
    code, _, err = run_cli(["index", data, "--out", index_dir, "--no-generative", "--device", "cpu"], capsys)
    assert code == 0, err
    out_path = tmp_path / "ms.json"
    splits = sorted(p.name.split(".")[1] for p in data.glob("qrels.*.tsv"))
    code, _, err = run_cli(["eval", index_dir, "--data", data, "--split", splits[0], "--mode", "bm25",
                            "--out", out_path], capsys)
    assert code == 0, err
    report = json.loads(out_path.read_text())
    assert REPORT_KEYS <= set(report) and report["num_queries"] >= 1
    assert 0.0 <= report["results"][0]["metrics"]["nDCG@10"] <= 1.0


@pytest.mark.parametrize("args,match", [
    (["search", "{missing}", "q"], "does not exist"),
    (["search", "{index}", "q", "-k", "0", "--mode", "dense"], "k must be a positive integer"),
    (["search", "{index}", "q", "--mode", "nope"], "unknown mode 'nope'"),
    (["search", "{index}", " ", "--mode", "dense"], "empty query"),
    (["index", "{empty}", "--out", "{tmp}/x", "--no-generative"], "{empty}"),
])
def test_bad_input_one_line_exit_2(write_beir, tmp_path, capsys, args, match):
    index_dir = tmp_path / "idx"
    run_cli(["index", write_beir(), "--out", index_dir, "--no-generative", "--device", "cpu"], capsys)
    (tmp_path / "empty").mkdir()
    fill = {"missing": tmp_path / "missing", "index": index_dir, "empty": tmp_path / "empty", "tmp": tmp_path}
    code, _, err = run_cli([a.format(**fill) for a in args], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert match.format(**fill) in lines[0]


def test_index_set_overrides_reach_the_manifest(write_beir, tmp_path, capsys):
    """--set FIELD=VALUE for retrieval, dotted for nested configs, beside shortcut options for other fields."""
    from genir.index import manifest_of

    index_dir = tmp_path / "idx"
    code, _, err = run_cli(["index", write_beir(), "--out", index_dir, "--device", "cpu", "--factory", "HNSW8",
                            "--set", "generative=False", "--set", "dense.hnsw_ef_search=32", "--set", "bm25.k1=1.2",
                            "--set", "train.epochs=2", "--set", "codec.scheme=rqkmeans", "--set", "hybrid.k_rrf=30"],
                           capsys)
    assert code == 0, err
    cfg = manifest_of(index_dir)["config"]
    assert (cfg["generative"], cfg["dense"]["factory"], cfg["dense"]["hnsw_ef_search"], cfg["bm25"]["k1"]) == \
        (False, "HNSW8", 32, 1.2)
    assert (cfg["train"]["epochs"], cfg["codec"]["scheme"], cfg["hybrid"]["k_rrf"]) == (2.0, "rqkmeans", 30)
    assert cfg["embed"]["model"] == cfg["model"]["encoder"]  # one text encoder
