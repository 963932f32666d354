"""The recommendation index's layout (issue 14): old indexes still load and recommend what they did, a fresh
build recommends what the code before the per-stage layout did.

The reference is tests/fixtures/rec-index-v1 with rec-index-v1.json, written by make_rec_index.py with the
code before the change (commit recorded in the JSON)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from genir import store
from genir.config import rec_config_from_dict
from genir.rec.recommender import Recommender
from genir.rec.synthetic import planted_sequences

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXPECTED = json.loads((FIXTURES / "rec-index-v1.json").read_text())


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
    assert old.modes == ("generative", "sasrec", "popular") and old.generative.trained_items == 30
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
    assert _recommendations(rec) == EXPECTED["recommendations"]
    rec.save(tmp_path / "idx")
    assert _recommendations(Recommender.load(tmp_path / "idx", device="cpu")) == EXPECTED["recommendations"]
