"""Building a recommendation index from the stages of a saved one (``Recommender.build(..., reuse=INDEX)``,
``genir index --task recommend --reuse INDEX --mode M``): retrain one model without recomputing the rest.

The stages an index holds: ``item_ids`` (item vectors and the IDs fitted on them: genir.rec.generative), the
``generative`` model trained on those IDs, ``sasrec`` and ``popular``. A build with ``reuse`` takes
``item_ids`` from the reused index whenever it has them and the build asks for the same ID settings (a generative
model in ``modes`` trains on them; with other ID settings it trains on IDs fitted anew, e.g. ``--set
item_embedding=sasrec`` over the reused SASRec), and copies every mode it does not train. What is taken must fit the build: the same data (the same users,
sequences and item table), and the config fields that shaped each taken stage equal to the build's, so the new
index's config describes what it holds. Two kinds of fields may differ: ``seed`` (a retrained model may draw a
new seed; a taken stage keeps its own) and the fields that only say how long to train (genir.rec.training
.RESUMABLE). The new manifest's ``reused`` records the source, the stages taken and the config they were built
with (``lineage``).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from genir.config import RecConfig, to_dict
from genir.rec.generative import ID_FIELDS, ids_config
from genir.rec.items import has_text
from genir.rec.protocol import Interactions
from genir.rec.training import fingerprint_of

if TYPE_CHECKING:
    from genir.rec.recommender import Recommender

STAGES = ("item_ids", "generative", "sasrec", "popular")
SHARED = ("seed",)  # fields a taken stage may have had other values of: it keeps its own (recorded in lineage)


def carried_stages(path: Path, old: "Recommender", data: Interactions, cfg: RecConfig,
                   modes: Sequence[str]) -> list[str]:
    """The STAGES a build of ``modes`` under ``cfg`` on ``data`` takes from ``old`` (loaded from ``path``).

    ValueError, naming what differs, when ``old`` was built from other data or a stage it would take was
    built with other settings."""
    if not same_data(old.data, data):
        raise ValueError(f"cannot reuse {path}: it was built from other data ({old.data.num_users} users and "
                         f"{old.data.num_items} items there, {data.num_users} and {data.num_items} here, or other "
                         "sequences or item texts); reuse an index built from this data folder")
    stages = []
    # the rule for items without text shapes no ID (and so no model) of a dataset whose items have text
    moot = {"item_embedding_no_text"} if has_text(data.item_text) else set()
    if old.generative is not None:
        id_changes = _diff(old.generative.ids, ids_config(cfg), [n for n in ID_FIELDS if n not in moot])
        if not id_changes:
            stages.append("item_ids")
        elif "generative" not in modes:
            _refuse_changes(path, "item IDs", id_changes, "or retrain the generative model on new ones (--mode "
                            "generative)")
        # else: the generative model retrains on item vectors and IDs fitted anew under this build's settings
        if "generative" not in modes:
            stages.append("generative")
            _refuse_changes(path, "generative model", _model_diff(old.generative.cfg, cfg, "generative", moot),
                            "or retrain it too (--mode generative)")
    if old.sasrec is not None and "sasrec" not in modes:
        stages.append("sasrec")
        _refuse_changes(path, "SASRec model", _model_diff(old.cfg, cfg, "sasrec"), "or retrain it too (--mode sasrec)")
    if old.popular is not None and "popular" not in modes:
        stages.append("popular")
    return stages


def carry(old: "Recommender", rec: "Recommender", stages: Sequence[str], path: Path) -> None:
    """Put the taken model stages of ``old`` into ``rec`` (item_ids went in with rec's generative training) with
    their training reports, and record the lineage."""
    for mode in ("generative", "sasrec", "popular"):
        if mode in stages:
            setattr(rec, mode, getattr(old, mode))
            if mode in old.reports:
                rec.reports[mode] = old.reports[mode]
    rec.reused = lineage(old, stages, path)


def lineage(old: "Recommender", stages: Sequence[str], path: Path) -> dict[str, Any]:
    """Manifest ``reused``: the index taken from, its version, the stages taken and the config they were built
    with (and, when that index reused another one, its own ``reused``)."""
    out: dict[str, Any] = {"from": str(path), "version": old.version, "stages": list(stages),
                           "config": to_dict(old.cfg)}
    if old.reused:
        out["reused"] = old.reused
    return out


def same_data(a: Interactions, b: Interactions) -> bool:
    """The same users, sequences and item table (ids and texts), in the same order."""
    return (a.user_ids == b.user_ids and a.item_ids == b.item_ids and a.item_text == b.item_text
            and len(a.seqs) == len(b.seqs) and all(np.array_equal(x, y) for x, y in zip(a.seqs, b.seqs)))


def _model_diff(old: RecConfig, new: RecConfig, model: str, moot: set[str] = frozenset()) -> list[str]:
    """Fields that shape ``model``'s training (its checkpoint fingerprint's) whose values differ, SHARED and
    ``moot`` (fields without effect on this data) aside."""
    before, now = (fingerprint_of(c, model=model).settings for c in (old, new))
    return _diff(before, now, [name for name in now if name not in SHARED and name not in moot])


def _diff(before: dict[str, Any], now: dict[str, Any], names: Sequence[str], prefix: str = "") -> list[str]:
    """"name: before -> now" for each of ``names`` whose JSON values differ; nested configs by dotted field."""
    out = []
    for name in names:
        a, b = before.get(name), now.get(name)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, sorted(set(a) | set(b)), f"{prefix}{name}.")
        elif a != b:
            out.append(f"{prefix}{name}: {a!r} -> {b!r}")
    return out


def _refuse_changes(path: Path, what: str, changes: list[str], other_fix: str) -> None:
    if changes:
        raise ValueError(f"cannot reuse {path}: its {what} came from other settings ({', '.join(changes[:4])}); "
                         f"give the reused values, {other_fix}")
