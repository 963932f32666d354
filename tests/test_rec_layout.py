"""The recommendation index's layout (issue 14): old indexes still load and recommend what they did, a fresh
build recommends what the code before the per-stage layout did, and one stage can be rebuilt alone from a
saved index (`genir index --task recommend --reuse INDEX --mode M`).

The reference is tests/fixtures/rec-index-v1 with rec-index-v1.json, written by make_rec_index.py with the
code before the change (commit recorded in the JSON)."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from genir import store
from genir.config import rec_config_from_dict
from genir.rec.recommender import Recommender
from genir.rec.synthetic import planted_sequences

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXPECTED = json.loads((FIXTURES / "rec-index-v1.json").read_text())


def _fresh_build_expected() -> list[dict]:
    """The fixture's recommendations with every score as pytest.approx(rel=1e-5): the same items in the same
    order, scores equal up to float rounding (the shared decoder projects only real memory tokens since
    3d78c66, the same math in other matmul shapes: scores moved in the 7th digit, no rank changed)."""
    return [{**row, "items": [{**item, "score": pytest.approx(item["score"], rel=1e-5)} for item in row["items"]]}
            for row in EXPECTED["recommendations"]]


def _recommendations(rec: Recommender) -> list[dict]:
    """What ``rec`` recommends for every query recorded in the fixture, in the fixture's format."""
    out = []
    for row in EXPECTED["recommendations"]:
        query = {key: row[key] for key in ("user", "history") if key in row}
        out.append({"mode": row["mode"], **query, "items": rec.recommend(**query, k=EXPECTED["k"], mode=row["mode"])})
    return out


def test_index_of_the_old_layout_loads_and_recommends_what_it_did(tmp_path):
    shutil.copytree(FIXTURES / "rec-index-v1", tmp_path / "old")
    old = Recommender.load(tmp_path / "old", device="cpu")
    assert "layout" not in store.verify(tmp_path / "old")  # it is the old layout
    assert old.modes == ("generative", "sasrec", "popular", "hybrid") and old.generative.trained_items == 30
    assert _recommendations(old) == EXPECTED["recommendations"]
    # saved again it takes today's layout, and still recommends the same
    old.save(tmp_path / "old")
    manifest = store.verify(tmp_path / "old")
    assert manifest["layout"] == 2 and "generative/codes.npy" in manifest["files"]
    assert "sasrec/config.json" in manifest["files"] and "tiger.safetensors" not in manifest["files"]
    assert _recommendations(Recommender.load(tmp_path / "old", device="cpu")) == EXPECTED["recommendations"]


def test_fresh_build_recommends_what_the_code_before_the_layout_change_did(tmp_path):
    rec = Recommender.build(planted_sequences(**EXPECTED["data"]), rec_config_from_dict(EXPECTED["config"]),
                            dataset="planted", progress=False, device="cpu")
    assert _recommendations(rec) == _fresh_build_expected()
    rec.save(tmp_path / "idx")
    assert _recommendations(Recommender.load(tmp_path / "idx", device="cpu")) == _fresh_build_expected()


# ---------------------------------------------------------------------------------------------- one stage alone
SETS = [arg for s in ("item_embedding=cooc", "cooc_dim=8", "d_model=16", "encoder_layers=1", "decoder_layers=1",
                      "heads=2", "d_ff=32", "max_epochs=2", "beam_size=10", "bf16=False", "sasrec_dim=16",
                      "sasrec_layers=1", "user_buckets=50") for arg in ("--set", s)]
IDS = ["--ids", "rqkmeans", "--levels", "2", "--codebook-size", "8"]


def _genir(argv: list, capsys) -> tuple[int, str, list[str]]:
    from genir.cli import main

    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return e.value.code, out, err.strip().splitlines()


def _index(amazon: Path, out: Path, capsys, *extra) -> dict:
    code, stdout, err = _genir(["index", amazon, "--task", "recommend", "--out", out, "--device", "cpu",
                                "--no-verbose", *IDS, *SETS, *extra], capsys)
    assert code == 0, err
    return store.verify(out)


def _files(manifest: dict) -> dict[str, str]:
    return {name: entry["sha256"] for name, entry in manifest["files"].items()}


def test_one_model_retrained_alone_from_a_saved_index(planted_amazon, tmp_path, capsys):
    amazon = planted_amazon
    base = _index(amazon, tmp_path / "base", capsys)
    # SASRec alone, with another seed: the item IDs and the other models are the base index's, byte for byte
    sas = _index(amazon, tmp_path / "sas", capsys, "--reuse", tmp_path / "base", "--mode", "sasrec", "--set", "seed=1")
    before, after = _files(base), _files(sas)
    assert set(before) == set(after)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"sasrec/model.safetensors"}, changed
    assert sas["reused"]["stages"] == ["item_ids", "generative", "popular"]
    assert sas["reused"]["from"] == str(tmp_path / "base") and sas["reused"]["config"]["seed"] == 0
    assert sas["config"]["seed"] == 1 and sas["reports"]["generative"] == base["reports"]["generative"]
    assert sas["reports"]["sasrec"]["train"] != base["reports"]["sasrec"]["train"]
    # the generative model alone, on the reused IDs (their files unchanged), with another seed
    gen = _index(amazon, tmp_path / "gen", capsys, "--reuse", tmp_path / "sas", "--mode", "generative",
                 "--set", "seed=2")
    changed = {name for name, sha in _files(gen).items() if after[name] != sha}
    assert changed == {"generative/model.safetensors", "generative/generative.json"}, changed
    assert gen["reused"]["stages"] == ["item_ids", "sasrec", "popular"] and gen["reused"]["reused"] == sas["reused"]
    saved = json.loads((store.current_version(tmp_path / "gen") / "generative" / "generative.json").read_text())
    assert saved["config"]["seed"] == 2 and saved["ids"]["config"]["seed"] == 0  # model and IDs: their own seeds
    rec = Recommender.load(tmp_path / "gen", device="cpu")
    assert len(rec.recommend(user="u1", k=10)) == len(rec.recommend(user="u1", k=10, mode="sasrec")) == 10


def test_the_no_text_rule_does_not_block_reusing_ids_of_items_with_text(planted_amazon, tmp_path, capsys):
    """item_embedding_no_text shapes no ID when items have text: an index built under the other rule (as every
    index saved before the field reads) still gives its IDs and models to a build under today's default."""
    _index(planted_amazon, tmp_path / "base", capsys, "--set", "item_embedding_no_text=cooc")
    sas = _index(planted_amazon, tmp_path / "sas", capsys, "--reuse", tmp_path / "base", "--mode", "sasrec")
    assert sas["reused"]["stages"] == ["item_ids", "generative", "popular"]


def test_generative_retrained_on_ids_from_the_reused_sasrec_item_table(planted_amazon, tmp_path, capsys):
    """Other ID settings with --mode generative: the IDs are fitted anew (here over the reused SASRec's item
    table), the reused SASRec and popularity are copied, and the manifest says that the IDs were not taken."""
    from genir.rec.items import ItemVectors

    _index(planted_amazon, tmp_path / "base", capsys)
    sets = [a if a != "item_embedding=cooc" else "item_embedding=sasrec" for a in SETS]
    code, _, err = _genir(["index", planted_amazon, "--task", "recommend", "--out", tmp_path / "sas-ids", "--device",
                           "cpu", "--no-verbose", *IDS, *sets, "--reuse", tmp_path / "base", "--mode", "generative"],
                          capsys)
    assert code == 0, err
    manifest = store.verify(tmp_path / "sas-ids")
    assert manifest["reused"]["stages"] == ["sasrec", "popular"]
    base, new = (Recommender.load(tmp_path / p, device="cpu") for p in ("base", "sas-ids"))
    vectors = ItemVectors.load(store.current_version(tmp_path / "sas-ids") / "generative" / "item_vectors.safetensors")
    table = base.sasrec.item_table()
    assert vectors.source == "sasrec" and vectors.sasrec.shape == table.shape
    seen = np.linalg.norm(vectors.sasrec - table / np.linalg.norm(table, axis=1, keepdims=True), axis=1) < 1e-5
    assert seen.mean() > 0.9  # the table itself (rows of items absent from training are imputed, when text exists)
    assert new.generative.ids["item_embedding"] == "sasrec" and base.generative.ids["item_embedding"] == "cooc"
    assert len(new.recommend(user="u1", k=10, mode="hybrid")) == 10


def test_reuse_refuses_other_data_other_ids_and_retrieval(planted_amazon, tmp_path, capsys, write_amazon, write_beir):
    amazon = planted_amazon
    _index(amazon, tmp_path / "base", capsys)
    common = ["index", amazon, "--task", "recommend", "--device", "cpu", "--no-verbose", *IDS, *SETS]
    cases = [  # (extra arguments, what the one error line says)
        (["--reuse", tmp_path / "base", "--mode", "sasrec", "--set", "cooc_dim=4"],
         r"its item IDs came from other settings \(cooc_dim: 8 -> 4\)"),
        (["--reuse", tmp_path / "base", "--mode", "sasrec", "--seed", "1"],
         r"its item IDs came from other settings \(codec\.seed: 0 -> 1\)"),
        (["--reuse", tmp_path / "base", "--mode", "sasrec", "--set", "d_model=32"],
         r"its generative model came from other settings \(d_model: 16 -> 32\).*--mode generative"),
        (["--reuse", tmp_path / "base", "--mode", "generative", "--set", "sasrec_dim=8"],
         r"its SASRec model came from other settings \(sasrec_dim: 16 -> 8\)"),
    ]
    for extra, message in cases:
        code, _, err = _genir([*common, "--out", tmp_path / "x", *extra], capsys)
        assert code == 2 and len(err) == 1 and err[0].startswith(f"error: cannot reuse {tmp_path / 'base'}"), err
        assert re.search(message, err[0]), err
    other = write_amazon("other", sequences={f"u{n}": ["a", "b", "c", "d", "a"][n % 2:] for n in range(6)},
                         sequential=False)
    code, _, err = _genir(["index", other, "--task", "recommend", "--out", tmp_path / "x", "--device", "cpu",
                           "--reuse", tmp_path / "base"], capsys)
    assert code == 2 and "it was built from other data" in err[0], err
    code, _, err = _genir(["index", write_beir("beir"), "--out", tmp_path / "x", "--reuse", tmp_path / "base"], capsys)
    assert code == 2 and err == ["error: --reuse applies to --task recommend"], err
    assert not (tmp_path / "x").exists()  # refused before anything was written
