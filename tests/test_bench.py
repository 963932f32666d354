"""`genir bench JOB.toml` on tiny synthetic jobs: job-file errors, resume, failure isolation, provenance,
--check, a resumed generative build's lineage, a recommendation job, and the Ray backend against local."""
from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from genir.bench import load_job, run_job
from tests.synthetic import synthetic_corpus
from tests.test_cli import run_cli

# two dense + BM25 indexes over one corpus (they share its embedding), evaluated in two modes
BASE = """
task = "retrieve"
splits = {splits}
modes = ["bm25", "dense"]
metrics = ["nDCG@10", "R@10"]
[datasets]
syn = "{data}"
[configs.flat]
generative = false
[configs.hnsw]
generative = false
dense.factory = "HNSW16"
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A BEIR folder: 32 synthetic documents, one query per document (its first words) judged on it (train;
    the 'dev' split is carved from it)."""
    root = tmp_path_factory.mktemp("bench-data") / "syn"
    (root / "qrels").mkdir(parents=True)
    corpus = synthetic_corpus(per_topic=8)
    ids, titles = corpus.doc_ids, corpus.table.column("title").to_pylist()
    texts = corpus.table.column("text").to_pylist()
    with open(root / "corpus.jsonl", "w") as f:
        f.writelines(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in zip(ids, titles, texts))
    with open(root / "queries.jsonl", "w") as f:
        f.writelines(json.dumps({"_id": f"q{n}", "text": " ".join(x.split()[:5])}) + "\n" for n, x in enumerate(texts))
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                              + "".join(f"q{n}\t{i}\t1\n" for n, i in enumerate(ids)))
    return root


def write_job(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def expected(cell: str, metric: str, value: float, tolerance: float = 0.005) -> str:
    dataset, config, split, mode = cell.split("--")
    return (f'\n[[expected]]\ndataset = "{dataset}"\nconfig = "{config}"\nsplit = "{split}"\nmode = "{mode}"\n'
            f'metric = "{metric}"\nvalue = {value!r}\ntolerance = {tolerance!r}\n')


@pytest.mark.parametrize("change, message", [
    (("dense.factory", "dense.facotry"), "unknown dense field 'facotry'"),
    (('task = "retrieve"', 'task = "retrieve"\nepochs = 3'), "unknown field(s) ['epochs']"),
    (('"bm25", "dense"', '"bm25", "sparse"'), "unknown mode(s) ['sparse']"),
    (('syn = "', 'syn = "no-such-folder/'), "folder 'no-such-folder/"),
    (("generative = false\n[configs.hnsw]", "generative = 1\n[configs.hnsw]"), "expected a bool"),
    (('"bm25", "dense"', '"bm25", "generative"'), "need the generative model"),
    (('metrics = ["nDCG@10", "R@10"]', 'metrics = ["nDCG@10", "Recall@ten"]'), "unknown measure 'Recall@ten'"),
])
def test_job_file_errors_are_one_line_exit_2_before_any_work(tmp_path, data, capsys, change, message):
    text = BASE.format(splits='["dev"]', data=data)
    assert change[0] in text
    job = write_job(tmp_path / "job.toml", text.replace(change[0], change[1]))
    code, out, err = run_cli(["bench", job, "--out", tmp_path / "out", "--no-verbose"], capsys)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: job.toml") and message in lines[0], lines
    assert not (tmp_path / "out").exists()  # nothing built, nothing written


def test_expected_must_name_a_cell_of_the_job(tmp_path, data):
    text = BASE.format(splits='["dev"]', data=data) + expected("syn--flat--test--bm25", "nDCG@10", 0.5)
    with pytest.raises(ValueError, match="no cell 'syn--flat--test--bm25' in this job"):
        load_job(write_job(tmp_path / "job.toml", text), out=tmp_path / "out")


def test_run_isolates_failures_records_provenance_resumes_and_checks(tmp_path, data, capsys):
    out = tmp_path / "out"
    job = write_job(tmp_path / "job.toml", BASE.format(splits='["dev", "nosuch"]', data=data))
    code, stdout, err = run_cli(["bench", job, "--out", out, "--device", "cpu", "--no-verbose"], capsys)
    assert code == 1, err  # the 'nosuch' cells failed ...
    summary = json.loads((out / "summary.json").read_text())
    status = {r["cell"]: r["status"] for r in summary["cells"]}
    assert len(status) == 8 and summary["counts"]["built"] == 2
    assert all(s == ("failed" if "--nosuch--" in c else "ok") for c, s in status.items()), status  # ... alone
    md = (out / "summary.md").read_text()
    assert "syn--flat--nosuch--bm25: " in md and "nosuch" in md.split("Failed cells:")[1] and md in stdout
    assert (out / "summary.png").is_file()
    # the two configs share one embedding of the corpus
    assert len(list((out / "work" / "cache" / "embeddings").glob("*.npy"))) == 1

    cell = json.loads((out / "cells" / "syn--hnsw--dev--dense.json").read_text())
    assert cell["status"] == "ok" and set(cell["metrics"]) == {"nDCG@10", "R@10"} and cell["num_queries"] == 6
    assert cell["metrics"]["R@10"] > 0.5  # the queries are the documents' own first words
    prov = cell["provenance"]
    assert len(prov["git"]["commit"]) == 40 and isinstance(prov["git"]["dirty"], bool)
    assert prov["versions"]["genir"] and prov["machine"]["cpus"] and prov["command"] and prov["utc"]
    assert cell["config"]["dense"]["factory"] == "HNSW16" and cell["config"]["bm25"]["k1"] == 1.5  # full config
    assert cell["seeds"] == {"dev_split": 0, "codec": 0, "train": 0}
    assert {"embed", "dense", "bm25", "load", "save", "total"} <= set(cell["index"]["build_seconds"])
    assert cell["lineage"]["pid"] == os.getpid() and cell["lineage"]["started"] <= cell["lineage"]["ended"]
    [attempt] = cell["index"]["lineage"]
    assert attempt["status"] == "ok" and attempt["pid"] == os.getpid() and attempt["resume"] is False
    assert cell["job"]["sha256"] and cell["cell"]["hash"]

    # again: finished cells are skipped (files untouched, no index built), the failed ones run again
    before = {p.name: p.read_bytes() for p in (out / "cells").glob("*--dev--*.json")}
    outcome = run_job(job, out=out, device="cpu")
    assert outcome.exit_code == 1
    c = outcome.summary["counts"]
    assert (c["skipped"], c["evaluated"], c["built"], c["reused"]) == (4, 4, 0, 2)
    assert {p.name: p.read_bytes() for p in (out / "cells").glob("*--dev--*.json")} == before

    # --check: the same cells (same hashes: nothing runs) against expected scores
    measured = cell["metrics"]["nDCG@10"]
    good = BASE.format(splits='["dev"]', data=data) + expected("syn--hnsw--dev--dense", "nDCG@10", measured + 0.004)
    code, stdout, err = run_cli(["bench", write_job(tmp_path / "good.toml", good), "--out", out, "--check",
                                 "--no-verbose"], capsys)
    assert code == 0, stdout + err
    assert "check: 1 of 1 expected scores within tolerance" in stdout and "4 finished earlier (skipped)" in stdout
    planted = BASE.format(splits='["dev"]', data=data) + expected("syn--hnsw--dev--dense", "nDCG@10", measured + 0.006) \
        + expected("syn--flat--dev--bm25", "R@10", 0.01, 0.05)
    code, stdout, err = run_cli(["bench", write_job(tmp_path / "bad.toml", planted), "--out", out, "--check",
                                 "--no-verbose"], capsys)
    assert code == 1
    assert "check: 0 of 2 expected scores within tolerance; 2 moved:" in stdout
    assert stdout.count("MOVED") == 2 and "-0.0060" in stdout
    code, stdout, err = run_cli(["bench", tmp_path / "bad.toml", "--out", out, "--no-verbose"], capsys)
    assert code == 0 and "MOVED" not in stdout  # without --check the scores are reported, not judged
    # --dry-run sees which cells are finished
    code, stdout, err = run_cli(["bench", job, "--out", out, "--dry-run", "--no-verbose"], capsys)
    assert code == 0 and "8 cells (4 finished earlier)" in stdout
    assert "syn--flat--dev--bm25  finished" in stdout and "syn--flat--nosuch--bm25  to run" in stdout


def test_dry_run_lists_builds_and_cells_and_runs_nothing(tmp_path, data, capsys):
    job = write_job(tmp_path / "job.toml", BASE.format(splits='["dev"]', data=data)
                    + expected("syn--flat--dev--bm25", "nDCG@10", 0.5))
    code, stdout, err = run_cli(["bench", job, "--out", tmp_path / "out", "--dry-run", "--no-verbose"], capsys)
    assert code == 0, err
    assert stdout.startswith("job (retrieve): 2 builds, 4 cells (0 finished earlier), 1 expected scores")
    assert "  syn--flat  hash " in stdout and "  syn--hnsw  hash " in stdout
    assert stdout.count("  to run") == 4 and "syn--hnsw--dev--dense  to run" in stdout
    assert not (tmp_path / "out").exists()  # nothing built, nothing written
    bad = write_job(tmp_path / "bad.toml", BASE.format(splits='["dev"]', data=data).replace("nDCG@10", "nDCG@ten"))
    code, stdout, err = run_cli(["bench", bad, "--out", tmp_path / "out", "--dry-run", "--no-verbose"], capsys)
    assert code == 2 and err.startswith("error: bad.toml") and len(err.strip().splitlines()) == 1


def test_generative_build_resumes_from_its_checkpoint_and_records_lineage(tmp_path, data, monkeypatch):
    from genir import checkpoint

    job = write_job(tmp_path / "job.toml", f"""
task = "retrieve"
splits = ["dev"]
modes = ["generative"]
metrics = ["nDCG@10"]
tune_split = ""
[datasets]
syn = "{data}"
[configs.tiny]
codec = {{scheme = "rqkmeans", levels = 2, codebook_size = 4}}
train = {{epochs = 1, batch_size = 32, checkpoint_every = 3}}
""")
    write, calls = checkpoint.write, []

    def dies_at_second_checkpoint(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise RuntimeError("planted: process lost during training")
        return write(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "write", dies_at_second_checkpoint)
    first = run_job(job, out=tmp_path / "out", device="cpu")
    assert first.exit_code == 1
    [row] = first.summary["cells"]
    assert row["status"] == "failed" and "planted: process lost" in row["error"]
    monkeypatch.setattr(checkpoint, "write", write)

    second = run_job(job, out=tmp_path / "out", device="cpu")
    assert second.exit_code == 0 and second.summary["counts"]["built"] == 1
    cell = json.loads((tmp_path / "out" / "cells" / "syn--tiny--dev--generative.json").read_text())
    failed, resumed = cell["index"]["lineage"]
    assert failed["status"] == "failed" and "planted" in failed["error"] and failed["resume"] is False
    assert resumed["status"] == "ok" and resumed["resume"] is True
    assert resumed["checkpoints_found"] == {"checkpoints": "step-00000003"} and resumed["resumed_from"] == 3
    assert cell["index"]["training"]["resumed_from"] == 3 and cell["index"]["training"]["steps"] > 3
    assert {"ids", "trie", "train"} <= set(cell["index"]["build_seconds"])


REC_JOB = """
task = "recommend"
out = "results"
splits = {splits}
modes = ["sasrec", "popular"]
metrics = ["R@10", "nDCG@10"]
[datasets]
amazon = "amazon"
"""


def write_sequences(folder: Path, seqs) -> None:
    """An Amazon-format folder (user_sequence.txt) holding ``seqs`` (genir.data.types.Sequences)."""
    folder.mkdir()
    users, items = seqs.table.column("user_id").to_pylist(), seqs.table.column("items").to_pylist()
    (folder / "user_sequence.txt").write_text("".join(" ".join([u, *h]) + "\n" for u, h in zip(users, items)))


def test_recommendation_job(tmp_path):
    from genir.rec.synthetic import planted_sequences

    write_sequences(tmp_path / "amazon", planted_sequences(num_users=60, num_items=24, seed=1))
    job = write_job(tmp_path / "rec.toml", REC_JOB.format(splits='["valid", "test"]') + """
[configs.small]
sasrec_dim = 16
sasrec_layers = 1
max_epochs = 2
item_embedding = "cooc"
""")
    outcome = run_job(job, device="cpu")
    assert outcome.exit_code == 0, outcome.text
    cells = {r["cell"]: r for r in outcome.summary["cells"]}
    assert len(cells) == 4 and all(r["status"] == "ok" for r in cells.values())
    result = json.loads((tmp_path / "results" / "cells" / "amazon--small--test--sasrec.json").read_text())
    assert result["num_queries"] == 60 and result["config"]["sasrec_dim"] == 16
    assert result["index"]["training"]["sasrec"]["epochs"] == 2 and result["seeds"] == {"model": 0, "codec": 0}
    assert result["report"]["results"][0]["mode"] == "sasrec"


def test_recommendation_build_of_a_new_hash_resumes_checkpoints_its_models_accept(tmp_path, caplog):
    """A changed serving field (the hybrid's tuning users) rebuilds the index from the finished checkpoints
    without training again; a changed model field makes that model's checkpoint unfit: it trains from scratch."""
    from genir.rec.synthetic import planted_sequences

    write_sequences(tmp_path / "amazon", planted_sequences(num_users=40, num_items=24, seed=3))
    small = '\n[configs.small]\nsasrec_dim = 16\nsasrec_layers = 1\nmax_epochs = 2\n'
    job = write_job(tmp_path / "rec.toml", REC_JOB.format(splits='["test"]') + small)
    first = run_job(job, device="cpu")
    assert first.exit_code == 0, first.text
    train = tmp_path / "results" / "work" / "train" / "amazon--small"
    epochs = json.loads((train / "lineage.json").read_text())["attempts"][0]["epochs"]["sasrec"]

    def rerun(extra: str) -> tuple[dict, dict]:
        caplog.clear()
        outcome = run_job(write_job(tmp_path / "rec.toml", REC_JOB.format(splits='["test"]') + small + extra),
                          device="cpu")
        assert outcome.exit_code == 0, outcome.text
        cell = json.loads((tmp_path / "results" / "cells" / "amazon--small--test--sasrec.json").read_text())
        return json.loads((train / "lineage.json").read_text()), cell

    with caplog.at_level("INFO", logger="genir.rec.training"):
        lineage, cell = rerun('hybrid_users = "sample"\n')
        assert f"resumed after epoch {epochs}" in caplog.text and "from scratch" not in caplog.text
        attempt = lineage["attempts"][-1]
        assert attempt["resume"] is True and attempt["checkpoints_found"] == {"sasrec": f"epoch-{epochs:08d}"}
        assert attempt["git"]["commit"] and lineage["earlier"]["attempts"][0]["git"] == attempt["git"]  # each says its code
        assert attempt["epochs"]["sasrec"] == epochs
        assert lineage["earlier"]["hash"] != lineage["hash"] and cell["config"]["hybrid_users"] == "sample"
        # the result says which earlier builds' checkpoints it resumed (a stitched run records its lineage)
        assert cell["index"]["earlier_lineage"] == lineage["earlier"] and cell["index"]["lineage"][-1]["resume"]
        lineage, cell = rerun('hybrid_users = "sample"\nsasrec_dropout = 0.1\n')  # shapes SASRec's training
        assert "training from scratch" in caplog.text and "sasrec_dropout" in caplog.text
        assert "resumed after" not in caplog.text and cell["config"]["sasrec_dropout"] == 0.1


def test_recommendation_job_builds_a_config_from_another_ones_index(tmp_path):
    """[reuse]: config 'again' trains popularity only and copies the SASRec of config 'base' (built first, whatever
    the file's order), so their SASRec cells score the same; bad [reuse] tables are refused before any work."""
    from genir import store
    from genir.rec.synthetic import planted_sequences

    write_sequences(tmp_path / "amazon", planted_sequences(num_users=40, num_items=24, seed=2))
    text = REC_JOB.format(splits='["test"]') + """
[configs.again]
sasrec_dim = 16
sasrec_layers = 1
max_epochs = 2
seed = 1
[configs.base]
sasrec_dim = 16
sasrec_layers = 1
max_epochs = 2
[reuse.again]
from = "base"
train = ["popular"]
"""
    job = write_job(tmp_path / "rec.toml", text)
    outcome = run_job(job, device="cpu")
    assert outcome.exit_code == 0, outcome.text
    cells = {r["cell"]: r["metrics"] for r in outcome.summary["cells"]}
    assert cells["amazon--again--test--sasrec"] == cells["amazon--base--test--sasrec"]
    manifest = store.verify(tmp_path / "results" / "work" / "indexes" / "amazon--again")
    assert manifest["reused"]["stages"] == ["sasrec"] and manifest["reused"]["config"]["seed"] == 0
    assert outcome.summary["counts"]["built"] == 2
    for bad, message in ((text.replace('train = ["popular"]', 'train = ["generative"]'), "expected some of the job's"),
                         (text.replace('from = "base"', 'from = "again"'), "another config of this job"),
                         (text.replace("[reuse.again]", "[reuse.other]"), "no config 'other'")):
        with pytest.raises(ValueError, match=message):
            load_job(write_job(tmp_path / "bad.toml", bad))


def test_ray_backend_missing_is_one_line(tmp_path, data, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    job = write_job(tmp_path / "job.toml", BASE.format(splits='["dev"]', data=data))
    code, out, err = run_cli(["bench", job, "--out", tmp_path / "out", "--backend", "ray", "--no-verbose"], capsys)
    assert code == 2 and err.strip() == "error: the Ray backend needs ray: pip install 'genir[ray]'"
    assert not (tmp_path / "out").exists()


@contextmanager
def hard_deadline(seconds: int, what: str):
    """Fail (not hang) when the block outlives ``seconds``: SIGALRM raises pytest's failure in the main thread
    (ray.get and ray.init wait in Python-visible slices); if even that cannot run, faulthandler dumps every
    thread's stack and ends the process a minute later, so CI sees why instead of waiting for its own limit."""
    def fail(signum, frame):
        pytest.fail(f"{what} did not finish within {seconds} s: Ray is stuck or the machine is starved of CPUs "
                    "(the job itself gives up on its tasks after --timeout)", pytrace=False)

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    faulthandler.dump_traceback_later(seconds + 60, exit=True)
    try:
        yield
    finally:
        signal.alarm(0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)


def test_ray_backend_gives_the_local_metrics_and_gives_up_after_its_timeout(tmp_path, data):
    ray = pytest.importorskip("ray")
    text = BASE.format(splits='["dev"]', data=data).replace("[configs.hnsw]\ngenerative = false\n"
                                                            'dense.factory = "HNSW16"\n', "")
    job = write_job(tmp_path / "job.toml", text)
    local = run_job(job, out=tmp_path / "local", device="cpu")
    with hard_deadline(360, "the Ray backend test"):
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            remote = run_job(job, out=tmp_path / "ray", backend="ray", device="cpu", timeout=240)
            # a cluster that cannot finish in time: every cell fails with the reason, and the call returns
            t = time.monotonic()
            starved = run_job(job, out=tmp_path / "starved", backend="ray", device="cpu", timeout=0.01)
            waited = time.monotonic() - t
        finally:
            ray.shutdown()
    assert local.exit_code == remote.exit_code == 0, remote.text
    metrics = [{r["cell"]: r["metrics"] for r in o.summary["cells"]} for o in (local, remote)]
    assert metrics[0] == metrics[1] and len(metrics[0]) == 2
    cell = json.loads((tmp_path / "ray" / "cells" / "syn--flat--dev--bm25.json").read_text())
    assert cell["lineage"]["backend"] == "ray" and cell["lineage"]["pid"] != os.getpid()  # a Ray worker did it
    assert starved.exit_code == 1 and waited < 60, starved.text
    errors = [r["error"] for r in starved.summary["cells"]]
    assert len(errors) == 2 and all("not finished within --timeout 0.01 s" in e for e in errors), errors


def test_timeout_is_for_the_ray_backend(tmp_path, data):
    job = write_job(tmp_path / "job.toml", BASE.format(splits='["dev"]', data=data))
    with pytest.raises(ValueError, match="--timeout SECONDS"):
        run_job(job, out=tmp_path / "out", timeout=10)


def test_every_file_of_a_job_records_the_git_state_of_its_start(tmp_path, data, capsys, monkeypatch):
    """A job writes its committed results into the checkout, so git reads "dirty" after its first file: every
    cell, build record and summary keeps the state taken when the job started."""
    import genir.bench.runner as runner
    import genir.provenance as prov

    start = {"commit": "5" * 40, "dirty": False}
    monkeypatch.setattr(runner, "git_state", lambda: dict(start))
    monkeypatch.setattr(prov, "git_state", lambda root=None: {"commit": "5" * 40, "dirty": True})  # as read later
    job = write_job(tmp_path / "job.toml", BASE.format(splits='["dev"]', data=data).replace(', "dense"]', ']'))
    code, _, err = run_cli(["bench", job, "--out", tmp_path / "out", "--device", "cpu", "--no-verbose"], capsys)
    assert code == 0, err
    files = [*(tmp_path / "out" / "cells").glob("*.json"), tmp_path / "out" / "summary.json",
             *(tmp_path / "out" / "work").rglob("*.build.json")]
    assert len(files) == 5 and all(json.loads(f.read_text())["provenance"]["git"] == start for f in files)


def test_scripts_write_results_whole_with_the_provenance_of_their_start(tmp_path, monkeypatch):
    from genir.provenance import provenance, write_result

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    started = provenance(["eval/bench_x.py", "--sizes", "10"])
    path = write_result(tmp_path / "sub" / "x.json", {"rows": [1, 2]}, started=started)
    doc = json.loads(path.read_text())
    assert list(doc) == ["provenance", "rows"] and doc["rows"] == [1, 2]
    assert doc["provenance"]["command"] == "eval/bench_x.py --sizes 10" and doc["provenance"]["env"]["OMP_NUM_THREADS"] == "1"
    assert {"git", "versions", "machine", "utc"} <= set(doc["provenance"]) and "commit" in doc["provenance"]["git"]
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temp file left beside it


def test_measure_resumably_keeps_finished_entries_with_their_lineage(tmp_path):
    from genir.provenance import measure_resumably, partial_path

    out, calls = tmp_path / "r.json", []

    def measure(key):
        calls.append(key)
        if key == "b" and len(calls) == 2:
            raise RuntimeError("killed")  # the first run dies on its second entry
        return {"value": key.upper()}

    with pytest.raises(RuntimeError):
        measure_resumably(out, {"n": 1}, ["a", "b"], measure)
    assert list(json.loads(partial_path(out).read_text())["entries"]) == ["a"]
    done = measure_resumably(out, {"n": 1}, ["a", "b"], measure)  # the rerun skips "a"
    assert calls == ["a", "b", "b"] and [done[k]["value"] for k in ("a", "b")] == ["A", "B"]
    assert all("commit" in done[k]["measured_by"]["git"] for k in done)
    measure_resumably(out, {"n": 2}, ["a"], measure)  # other settings: nothing reused
    assert calls[-1] == "a"
    assert measure_resumably(out, {"n": 2}, ["a"], measure, fresh=True) and calls.count("a") == 3


def _eval_script(name: str):
    """eval/NAME.py as a module (eval/ is scripts, not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "eval" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _readme_tables():
    """eval/readme_tables.py, the one generator of README's result tables."""
    return _eval_script("readme_tables")


def test_id_level_agreement_counts_the_prefix_shared_with_the_nearest_gold():
    levels = _eval_script("bench_id_levels")
    ids = np.array([[1, 2, 3, 0], [1, 2, 4, 0], [1, 5, 3, 0], [7, 2, 3, 0], [1, 2, 3, 1]])
    assert levels.shared_prefix(ids, 4, [0]) == 3 and levels.shared_prefix(ids, 2, [1, 3]) == 1
    # top-1 per query: doc 1 (gold 0: 2 codes), doc 3 (gold 0: none), no result, doc 4 (golds 2 and 0: 3 codes)
    shares = levels.level_agreement(ids, np.array([1, 3, -1, 4]), [[0], [0], [0], [2, 0]])
    assert shares == [0.5, 0.5, 0.25, 0.0]


def test_readme_tables_rewrite_only_the_marked_block_and_refuse_a_missing_marker(tmp_path, capsys):
    tables = _readme_tables()
    summary = {"job": {"file": "/x/eval/jobs/scifact-baselines.toml"}, "metrics": ["nDCG@10", "R@100"],
               "counts": {"ok": 2, "cells": 3},
               "provenance": {"git": {"commit": "0123456789abcdef", "dirty": False}},
               "cells": [{"dataset": "sf", "config": "base", "split": "dev", "mode": m, "status": s,
                          "metrics": {"nDCG@10": v, "R@100": 0.9}} for m, s, v in
                         (("bm25", "ok", 0.74391), ("dense", "ok", 0.6333), ("rrf", "failed", 0.1))]}
    (tmp_path / "results" / "jobs" / "scifact-baselines").mkdir(parents=True)
    (tmp_path / "results" / "jobs" / "scifact-baselines" / "summary.json").write_text(json.dumps(summary))
    head, tail = "# T\n\nprose  with  odd spacing\t\n\n", "\n\nmore prose\n| a | b |\n<!-- table:amazon -->\nx\n"
    readme = tmp_path / "README.md"
    readme.write_text(head + "<!-- table:scifact-baselines -->\nold | typed | table\n<!-- /table:scifact-baselines -->" + tail)
    args = ["--readme", str(readme), "--results", str(tmp_path / "results"), "--block", "scifact-baselines"]
    assert tables.main(args) == 0
    text = readme.read_text()
    assert text.startswith(head + "<!-- table:scifact-baselines -->\n") and text.endswith("<!-- /table:scifact-baselines -->" + tail)
    block = text[len(head):-len(tail)]
    assert "old | typed" not in block and "`genir bench eval/jobs/scifact-baselines.toml` (commit 0123456, 2 of 3 cells ok)" in block
    assert "| sf | base | dev | bm25 | 0.7439 | 0.9000 |" in block and "| dense |" in block and "rrf" not in block
    assert tables.main(args) == 0 and readme.read_text() == text  # a second run changes nothing

    # a block whose job has not run is left as it is; a missing end marker: one error line, README untouched
    assert tables.main(args[:4] + ["--block", "amazon"]) == 2  # amazon has no end marker in this README
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "<!-- /table:amazon -->" in err
    assert readme.read_text() == text
    readme.write_text(text + "<!-- /table:amazon -->\n")
    assert tables.main(args[:4] + ["--block", "amazon"]) == 0 and "amazon: left as is" in capsys.readouterr().out
    assert readme.read_text() == text + "<!-- /table:amazon -->\n"
    # one of a block's two jobs ran: its rows, and the other job's command
    beauty = {**summary, "job": {"file": "/x/eval/jobs/amazon-beauty.toml"}}
    (tmp_path / "results" / "jobs" / "amazon-beauty").mkdir(parents=True)
    (tmp_path / "results" / "jobs" / "amazon-beauty" / "summary.json").write_text(json.dumps(beauty))
    assert tables.main(args[:4] + ["--block", "amazon"]) == 0
    block = readme.read_text().split("<!-- table:amazon -->")[1]
    assert "`genir bench eval/jobs/amazon-beauty.toml`" in block and "| sf | base | dev | bm25 |" in block
    assert "Not run yet: `genir bench eval/jobs/amazon-sports.toml`." in block


def test_distill_rule_script_records_the_rule_per_corpus(tmp_path, data):
    no_queries = tmp_path / "docs-only"
    no_queries.mkdir()
    (no_queries / "corpus.jsonl").write_text((data / "corpus.jsonl").read_text())
    result = tmp_path / "rule.json"
    assert _eval_script("bench_distill_rule").main([str(data), str(no_queries), "--cache", str(tmp_path / "cache"),
                                                    "--result", str(result)]) == 0
    rows = json.loads(result.read_text())["datasets"]
    labelled, zero_shot = rows
    # the train queries minus the dev carve-out (20 %) are ranked by both; the decision follows the two scores
    assert 0 < labelled["queries"] < 32 and {"dense_ndcg10", "bm25_ndcg10"} <= set(labelled)
    assert labelled["distill"] == (0.5 if labelled["dense_ndcg10"] > labelled["bm25_ndcg10"] else 0.0)
    assert zero_shot["distill"] == 0.0 and "no labelled" in zero_shot["reason"] and zero_shot["documents"] == 32


def test_readme_says_when_an_arch_run_stopped_part_way():
    variant = {"variant": "a", "set": [], "train": {"epochs": 10.0}, "build_seconds": {"train": 600},
               "results": {"generative": {"RR@10": .7, "R@1": .6, "R@10": .8, "nDCG@10": .7}, "hybrid": {"RR@10": .93}}}
    run = {"provenance": {"git": {"commit": "abcdef0123", "dirty": False}}, "variants": [variant]}
    tables = _readme_tables()
    stopped = tables._variants_table("x.json", {**run, "finished": False, "variants_planned": ["a", "b"]})
    assert "stopped after 1 of 2 variants" in stopped[1] and stopped[-1].startswith("| a |")
    assert "stopped" not in tables._variants_table("x.json", {**run, "finished": True, "variants_planned": ["a"]})[1]
    assert "stopped" not in tables._variants_table("x.json", run)[1]  # files from before the field
