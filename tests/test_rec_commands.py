"""The functions behind `genir index --task recommend`, `genir recommend` and `genir eval` on a tiny
Amazon-format folder written here."""
from __future__ import annotations

import json
import re

import pytest

from genir.config import CodecConfig, RecConfig
from genir.rec import commands
from genir.rec.synthetic import planted_sequences

CFG = RecConfig(item_embedding="cooc", cooc_dim=8, codec=CodecConfig(scheme="rqkmeans", levels=2, codebook_size=8),
                d_model=16, encoder_layers=1, decoder_layers=1, heads=2, d_ff=32, max_epochs=2, beam_size=10,
                bf16=False, sasrec_dim=16, sasrec_layers=1,
                history_item_embedding=False, recency_embedding=False)  # the plain TIGER-style encoder path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    seqs = planted_sequences(num_users=80, num_items=30, seed=2)
    root = tmp_path_factory.mktemp("amazon")
    lines = [" ".join([u, *items]) for u, items in zip(seqs.table.column("user_id").to_pylist(),
                                                        seqs.table.column("items").to_pylist())]
    (root / "user_sequence.txt").write_text("\n".join(lines) + "\n")
    with open(root / "item_attributes.derived.jsonl", "w") as f:
        for n, (item, text) in enumerate(zip(seqs.items.column("item_id").to_pylist(), seqs.items.column("text").to_pylist())):
            f.write(json.dumps({"item_id": n + 1, "asin": item, "attributes": text.split(" item ")}) + "\n")
    return root


def test_index_recommend_evaluate(folder, tmp_path):
    summary = commands.index(folder, out=tmp_path / "idx", config=CFG)
    assert summary["users"] == 80 and summary["items"] == 30 and summary["modes"] == ["generative", "sasrec", "popular", "hybrid"]
    assert [p.name for p in (tmp_path / "idx.work" / "tiger").iterdir()] == ["epoch-00000002"]  # newest only
    from genir.index import build_record
    from genir.rec.recommender import Recommender

    built = build_record(tmp_path / "idx")  # the build's provenance is kept in the manifest and read back
    assert built["kind"] == "recommend" and "commit" in built["built_by"]["git"] and built["built_by"]["machine"]
    assert Recommender.load(tmp_path / "idx").built_by == built["built_by"]
    recs = commands.recommend(tmp_path / "idx", user="u1", k=10)
    assert len(recs) == 10 and recs[0]["rank"] == 1 and recs[0]["text"].startswith("group")
    assert len(commands.recommend(tmp_path / "idx", history=["i3", "i4"], k=5, mode="sasrec")) == 5
    report = commands.evaluate(tmp_path / "idx", data=folder, split="test", modes=["generative", "popular"],
                               out=tmp_path / "report.json")
    written = json.loads((tmp_path / "report.json").read_text())
    assert written.pop("provenance")["git"] and written == json.loads(json.dumps(report))
    assert set(report) == {"dataset", "split", "num_queries", "results", "genir_version", "config"}
    assert report["split"] == "test" and report["num_queries"] == 80 and report["dataset"] == folder.name
    assert [r["mode"] for r in report["results"]] == ["generative", "popular"]
    assert set(report["results"][0]["metrics"]) == {"R@5", "nDCG@5", "R@10", "nDCG@10"}
    assert report["results"][0]["queries_per_second"] > 0


def test_resume_from_checkpoint_continues(folder, tmp_path):
    from dataclasses import replace

    first = commands.index(folder, out=tmp_path / "a", config=replace(CFG, patience=100), modes=["generative"],
                           checkpoint_dir=tmp_path / "ck")
    assert first["reports"]["generative"]["train"]["epochs"] == 2
    # a longer run over the same checkpoints continues after epoch 2 instead of starting again
    more = commands.index(folder, out=tmp_path / "b", config=replace(CFG, patience=100, max_epochs=3),
                          modes=["generative"], checkpoint_dir=tmp_path / "ck", resume=True)
    history = more["reports"]["generative"]["train"]["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[:2] == first["reports"]["generative"]["train"]["history"]


def test_unknown_mode_is_an_error(folder, tmp_path):
    with pytest.raises(ValueError, match="expected some of"):
        commands.index(folder, out=tmp_path / "x", config=CFG, modes=["bogus"])


def test_resume_refuses_a_different_run(folder, tmp_path):
    from dataclasses import replace

    commands.index(folder, out=tmp_path / "a", config=CFG, modes=["sasrec"], checkpoint_dir=tmp_path / "ck")
    with pytest.raises(ValueError, match=r"different run: training settings differ \(sasrec_dim: 16 -> 8\)"):
        commands.index(folder, out=tmp_path / "b", config=replace(CFG, sasrec_dim=8), modes=["sasrec"],
                       checkpoint_dir=tmp_path / "ck", resume=True)


def test_resume_with_more_patience_trains_on(folder, tmp_path):
    from dataclasses import replace

    # patience 0 stops after the first epoch; resuming with more patience continues from there
    first = commands.index(folder, out=tmp_path / "a", config=replace(CFG, patience=0), modes=["sasrec"],
                           checkpoint_dir=tmp_path / "ck")
    train = first["reports"]["sasrec"]["train"]
    assert train["epochs"] == 1 and train["stopped_early"]
    more = commands.index(folder, out=tmp_path / "b", config=replace(CFG, patience=100, max_epochs=2),
                          modes=["sasrec"], checkpoint_dir=tmp_path / "ck", resume=True)
    history = more["reports"]["sasrec"]["train"]["history"]
    assert [h["epoch"] for h in history] == [1, 2] and history[:1] == train["history"]
    assert not more["reports"]["sasrec"]["train"]["stopped_early"]


def test_cli_index_takes_rec_config_overrides(folder, tmp_path):
    from genir.cli import main
    from genir.config import to_dict
    from genir.rec.recommender import Recommender

    sets = ["item_embedding=cooc", "cooc_dim=8", "d_model=16", "encoder_layers=1", "decoder_layers=1", "heads=2",
            "d_ff=32", "max_epochs=1", "beam_size=10", "bf16=False", "sasrec_dim=16", "sasrec_layers=1",
            "recency_embedding=True", "lr_decay=0.9"]
    argv = ["index", str(folder), "--task", "recommend", "--out", str(tmp_path / "idx"), "--ids", "rqkmeans",
            "--levels", "2", "--codebook-size", "8", "--no-verbose"]
    with pytest.raises(SystemExit) as e:
        main(argv + [a for s in sets for a in ("--set", s)])
    assert e.value.code == 0
    cfg = to_dict(Recommender.load(tmp_path / "idx").cfg)
    assert cfg["recency_embedding"] is True and cfg["lr_decay"] == 0.9 and cfg["d_model"] == 16
    assert cfg["codec"]["codebook_size"] == 8


def test_with_overrides_parses_and_checks_types():
    from genir.config import with_overrides

    cfg = with_overrides(RecConfig(), ["dropout=1", "history_item_embedding=True", "item_embedding=cooc", "seed=3"])
    assert (cfg.dropout, cfg.history_item_embedding, cfg.item_embedding, cfg.seed) == (1.0, True, "cooc", 3)
    assert isinstance(cfg.dropout, float)
    for bad, msg in [("seed=1.5", "expected type int"), ("bf16=1", "expected type bool"), ("codec=x", "only scalar"),
                     ("nope=1", "unknown RecConfig field"), ("dropout", "expected FIELD=VALUE")]:
        with pytest.raises(ValueError, match=msg):
            with_overrides(RecConfig(), [bad])


def test_index_saved_before_newer_options_loads_with_their_old_behaviour(folder, tmp_path):
    from genir.rec.recommender import Recommender
    from genir.store import MANIFEST, current_version, sha256_file

    commands.index(folder, out=tmp_path / "idx", config=CFG, modes=("generative",))
    before = commands.recommend(tmp_path / "idx", user="u1", k=5)
    path = current_version(tmp_path / "idx") / MANIFEST
    manifest = json.loads(path.read_text())
    for key in ("history_item_embedding", "recency_embedding", "label_smoothing", "sasrec_lr_decay",
                "item_embedding_no_text"):
        del manifest["config"][key]  # as written before these options existed
    layer_meta = path.parent / "generative" / "generative.json"
    meta = json.loads(layer_meta.read_text())
    for part in (meta["config"], meta["ids"]["config"]):
        del part["item_embedding_no_text"]
    layer_meta.write_text(json.dumps(meta))
    manifest["files"]["generative/generative.json"].update(bytes=layer_meta.stat().st_size,
                                                            sha256=sha256_file(layer_meta))
    path.write_text(json.dumps(manifest))
    rec = Recommender.load(tmp_path / "idx")
    assert not rec.cfg.history_item_embedding and not rec.cfg.recency_embedding
    # auto meant co-occurrence IDs for items without text then: a reuse compares against that
    assert rec.cfg.item_embedding_no_text == "cooc" and rec.generative.ids["item_embedding_no_text"] == "cooc"
    assert rec.cfg.sasrec_lr_decay == rec.cfg.lr_decay
    assert rec.recommend(user="u1", k=5) == before


def _cli(argv: list[str], capsys) -> tuple[int, str, list[str]]:
    """Run `genir ARGV` -> (exit code, stdout, stderr lines)."""
    from genir.cli import main

    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return e.value.code, out, err.strip().splitlines()


def test_cli_recommendation_index_on_a_device_with_epochs_and_beam(folder, tmp_path, capsys):
    import torch

    from genir.config import to_dict
    from genir.rec.recommender import Recommender

    sets = ["item_embedding=cooc", "cooc_dim=8", "d_model=16", "encoder_layers=1", "decoder_layers=1", "heads=2",
            "d_ff=32", "bf16=False", "sasrec_dim=16", "sasrec_layers=1"]
    idx = tmp_path / "idx"
    argv = ["index", folder, "--task", "recommend", "--out", idx, "--ids", "rqkmeans", "--levels", "2",
            "--codebook-size", "8", "--no-verbose", "--device", "cpu", "--epochs", "1", "--beam-size", "12"]
    code, _, err = _cli(argv + [a for s in sets for a in ("--set", s)], capsys)
    assert code == 0, err
    rec = Recommender.load(idx)
    cfg = to_dict(rec.cfg)
    assert cfg["max_epochs"] == 1 and cfg["beam_size"] == 12  # --epochs -> max_epochs, --beam-size -> beam_size
    assert rec.reports["generative"]["train"]["epochs"] == rec.reports["sasrec"]["train"]["epochs"] == 1
    code, out, err = _cli(["recommend", idx, "--user", "u1", "-k", "5", "--json", "--device", "cpu"], capsys)
    assert code == 0 and len(json.loads(out)["items"]) == 5, err
    code, out, err = _cli(["eval", idx, "--data", folder, "--split", "test", "--mode", "sasrec", "--device", "cpu"],
                          capsys)
    assert code == 0 and "sasrec" in out, err
    # retrieval-only eval options are refused, not silently dropped
    code, _, err = _cli(["eval", idx, "--data", folder, "--split", "test", "--measure", "nDCG@10"], capsys)
    assert code == 2 and err == ["error: --measure applies to retrieval indexes"]
    if not torch.cuda.is_available():  # the device reaches the command: a GPU that is not there is an error
        for argv in (["index", folder, "--task", "recommend", "--out", tmp_path / "gpu", "--device", "cuda"],
                     ["recommend", idx, "--user", "u1", "--device", "cuda"],
                     ["eval", idx, "--data", folder, "--split", "test", "--device", "cuda"]):
            code, _, err = _cli(argv, capsys)
            assert code == 2 and len(err) == 1 and re.match(r"error: .*sees no (CUDA )?GPU", err[0]), err
        assert not (tmp_path / "gpu").exists()
