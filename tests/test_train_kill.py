"""Training resume after SIGKILL: `genir index` (retrieval and --task recommend) killed mid-training (inside a
checkpoint write, or at a random moment), then `genir index --resume`, ends with the same steps, bit-identical
weights and the same metrics as an uninterrupted run with the same seed; a checkpoint from other settings is
refused."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from genir import checkpoint, store
from genir.rec.recommender import Recommender
from genir.train import latest_checkpoint
from tests.synthetic import synthetic_corpus

# a small generative index: 2 x 4 codes, 10 training steps, a checkpoint every 3 steps
TINY = ["--ids", "rqkmeans", "--levels", "2", "--codebook-size", "4", "--epochs", "1", "--train-batch-size", "32",
        "--checkpoint-every", "3", "--device", "cpu", "--tune-split", "", "--no-verbose"]


def _dataset(write_beir) -> Path:
    """A BEIR folder: the synthetic corpus, one query per document (its first words) judged on it."""
    corpus = synthetic_corpus(per_topic=8)
    ids = corpus.doc_ids
    titles, texts = corpus.table.column("title").to_pylist(), corpus.table.column("text").to_pylist()
    return write_beir("data", corpus=[{"_id": i, "title": t, "text": x} for i, t, x in zip(ids, titles, texts)],
                      queries=[{"_id": f"q{n}", "text": " ".join(x.split()[:5])} for n, x in enumerate(texts)],
                      qrels={"train": [(f"q{n}", i, 1) for n, i in enumerate(ids)]})


def _genir(args: list[str], **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "HF_HUB_OFFLINE": "1", "GENIR_PROGRESS": "0", "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, "-m", "genir", *args], capture_output=True, text=True, env=environ,
                          timeout=600)


def _train_meta(index_dir: Path) -> tuple[dict, dict]:
    """(manifest, training report) of an index; verify checks every sha256 on the way."""
    manifest = store.verify(index_dir)
    folder = Path(index_dir) / (Path(index_dir) / "CURRENT").read_text().strip()
    return manifest, json.loads((folder / "semantic" / "semantic.json").read_text())["train"]


def _model_hashes(manifest: dict) -> dict:
    return {name: entry for name, entry in manifest["files"].items() if name.startswith("semantic/model")}


def _metrics(index_dir: Path, data: Path, out: Path) -> list:
    done = _genir(["eval", str(index_dir), "--data", str(data), "--split", "dev", "--mode", "generative",
                   "--mode", "hybrid", "--out", str(out), "--device", "cpu"])
    assert done.returncode == 0, done.stderr[-2000:]
    return [(row["mode"], row["metrics"]) for row in json.loads(out.read_text())["results"]]


def test_sigkill_mid_training_then_resume_matches_uninterrupted_run(tmp_path, write_beir):
    data = _dataset(write_beir)
    log = tmp_path / "points.log"
    a = _genir(["index", str(data), "--out", str(tmp_path / "a"), "--workdir", str(tmp_path / "wa"), *TINY],
               GENIR_CRASH_LOG=str(log))
    assert a.returncode == 0, a.stderr[-2000:]
    points = [line.split(maxsplit=1) for line in log.read_text().splitlines()]
    written = [int(n) for n, name in points if name == "checkpoint.written"]
    assert len(written) >= 3, points  # checkpoints at steps 3, 6, ... and at the end

    # SIGKILL while the second checkpoint (step 6) sits complete under its temp name, before the rename
    b_out, b_work = tmp_path / "b", tmp_path / "wb"
    killed = _genir(["index", str(data), "--out", str(b_out), "--workdir", str(b_work), *TINY],
                    GENIR_CRASH_AT=str(written[1]))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert latest_checkpoint(b_work / "checkpoints").name == "step-00000003"
    assert any(p.name.startswith(".tmp-step-00000006") for p in (b_work / "checkpoints").iterdir())
    assert not (b_out / "CURRENT").exists()  # no index was published by the killed run

    resumed = _genir(["index", str(data), "--out", str(b_out), "--workdir", str(b_work), *TINY, "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    manifest_a, train_a = _train_meta(tmp_path / "a")
    manifest_b, train_b = _train_meta(b_out)
    assert train_b["resumed_from"] == 3 and train_a["resumed_from"] == 0
    assert train_b["steps"] == train_a["steps"] >= 9
    assert train_b["final_loss"] == train_a["final_loss"]
    model_a, model_b = _model_hashes(manifest_a), _model_hashes(manifest_b)
    assert model_a and model_a == model_b  # bit-identical weights (same sha256 per file)
    metrics_a = _metrics(tmp_path / "a", data, tmp_path / "ra.json")
    assert metrics_a == _metrics(b_out, data, tmp_path / "rb.json")
    assert any(m["nDCG@10"] > 0 for _, m in metrics_a)


def test_resume_refuses_checkpoints_of_other_settings(tmp_path, write_beir):
    data = _dataset(write_beir)
    first = _genir(["index", str(data), "--out", str(tmp_path / "a"), "--workdir", str(tmp_path / "w"), *TINY])
    assert first.returncode == 0, first.stderr[-2000:]
    before = store.verify(tmp_path / "a")
    other = [*TINY[:TINY.index("--train-batch-size") + 1], "16", *TINY[TINY.index("--train-batch-size") + 2:]]
    again = _genir(["index", str(data), "--out", str(tmp_path / "a"), "--workdir", str(tmp_path / "w"), *other,
                    "--resume"])
    assert again.returncode == 2
    lines = again.stderr.strip().splitlines()
    assert lines[-1].startswith("error: cannot resume from") and "batch_size: 32 -> 16" in lines[-1]
    assert store.verify(tmp_path / "a") == before  # the published index is untouched


# ---------------------------------------------------------------------------------------------- recommendation
# `genir index --task recommend` with tiny models: SASRec, then the generative model, 6 epochs each
REC = ["--task", "recommend", "--ids", "rqkmeans", "--levels", "2", "--codebook-size", "8", "--no-verbose",
       *[arg for s in ("item_embedding=cooc", "cooc_dim=8", "d_model=16", "encoder_layers=1", "decoder_layers=1",
                       "heads=2", "d_ff=32", "max_epochs=6", "patience=3", "beam_size=10", "bf16=False",
                       "sasrec_dim=16", "sasrec_layers=1", "threads=1") for arg in ("--set", s)]]


def _rec_outcome(index_dir: Path) -> tuple[dict, dict, list]:
    """(sha256 of every file, training reports without timings, test metrics) of a recommendation index."""
    manifest = store.verify(index_dir)
    files = {name: entry["sha256"] for name, entry in manifest["files"].items()
             if not name.endswith("codec/codec.json")}  # it records the codec's fit seconds; arrays: codec.safetensors
    reports = {mode: {**r["train"], "seconds": None, "history": [{**h, "seconds": None} for h in r["train"]["history"]]}
               if "train" in r else {**r, "seconds": None}  # the hybrid fusion's tuning: no training report
               for mode, r in manifest["reports"].items()}
    metrics = [(r["mode"], r["metrics"]) for r in Recommender.load(index_dir).evaluate("test")["results"]]
    return files, reports, metrics


def _killed_while_training(args: list[str], workdir: Path, delay: float) -> int:
    """Run `genir ARGS`, SIGKILL it ``delay`` seconds after its first checkpoint appears; -> exit code."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GENIR_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "genir", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while proc.poll() is None and not checkpoint.checkpoints(workdir / "sasrec") and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    return proc.wait(timeout=60)


def test_rec_sigkill_in_checkpoint_write_and_at_random_time_then_resume_matches(tmp_path, planted_amazon):
    data = planted_amazon
    log = tmp_path / "points.log"
    start = time.monotonic()
    a = _genir(["index", str(data), "--out", str(tmp_path / "a"), "--workdir", str(tmp_path / "wa"), *REC],
               GENIR_CRASH_LOG=str(log))
    full_seconds = time.monotonic() - start
    assert a.returncode == 0, a.stderr[-2000:]
    written = [int(n) for n, name in (line.split(maxsplit=1) for line in log.read_text().splitlines())
               if name == "checkpoint.written"]
    sasrec_epochs = len(json.loads(json.dumps(store.verify(tmp_path / "a")["reports"]["sasrec"]["train"]["history"])))
    assert len(written) >= sasrec_epochs + 2, written  # one checkpoint per epoch of each model
    expected = _rec_outcome(tmp_path / "a")

    # SIGKILL while the generative model's second checkpoint sits complete under its temp name
    b_out, b_work = tmp_path / "b", tmp_path / "wb"
    args = ["index", str(data), "--out", str(b_out), "--workdir", str(b_work), *REC]
    killed = _genir(args, GENIR_CRASH_AT=str(written[sasrec_epochs + 1]))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert [p.name for p in checkpoint.checkpoints(b_work / "tiger")] == ["epoch-00000001"]
    assert any(p.name.startswith(".tmp-epoch-00000002-") for p in (b_work / "tiger").iterdir())
    assert [p.name for p in checkpoint.checkpoints(b_work / "sasrec")] == [f"epoch-{sasrec_epochs:08d}"]
    assert not (b_out / "CURRENT").exists()  # no index was published by the killed run
    resumed_log = tmp_path / "resumed.log"
    resumed = _genir([*args, "--resume"], GENIR_CRASH_LOG=str(resumed_log))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # SASRec was done, the generative model went on from epoch 1: only its later epochs were trained again
    assert resumed_log.read_text().count("checkpoint.written") == len(written) - sasrec_epochs - 1
    assert _rec_outcome(b_out) == expected

    # SIGKILL at a (seeded) random moment after training began, then resume
    c_out, c_work = tmp_path / "c", tmp_path / "wc"
    args = ["index", str(data), "--out", str(c_out), "--workdir", str(c_work), *REC]
    delay = random.Random(13).uniform(0.0, 0.25) * full_seconds
    assert _killed_while_training(args, c_work, delay) == -signal.SIGKILL, f"finished within {delay:.2f}s"
    resumed = _genir([*args, "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _rec_outcome(c_out) == expected

