"""Job files of `genir bench`: datasets x index configurations x splits x modes, metrics, expected scores.

    name = "scifact-baselines"       # optional; default: the file's stem
    task = "retrieve"                # retrieve | recommend
    out = "../results/jobs/scifact-baselines"    # cell results + summary (relative to this file; --out wins)
    work = "../../indexes/jobs/scifact-baselines" # indexes, checkpoints, caches (default OUT/work)
    splits = ["dev"]
    modes = ["bm25", "dense", "rrf"]
    metrics = ["nDCG@10", "RR@10", "R@10", "R@100"]   # ir-measures names (recommend: R@5 nDCG@5 R@10 nDCG@10)
    tolerance = 0.005                # default tolerance of [[expected]]
    [datasets]
    scifact = "scifact"              # a folder: absolute, or under this file's folder, $GENIR_DATA or ../shared/data
    [configs.baselines]              # IndexConfig fields over the defaults (RecConfig for recommend), nested
    generative = false               #   tables or dotted keys: codec.scheme = "rqkmeans", train.epochs = 2
    [reuse.sasrec-ids]               # recommend only: build config 'sasrec-ids' from config 'default''s index of
    from = "default"                 #   the same dataset, training only `train` (`genir index --reuse`: the
    train = ["generative"]           #   other models are copied; item IDs are refitted when their fields differ)
    [[expected]]                     # pyserini regression style
    dataset = "scifact"
    config = "baselines"
    split = "dev"
    mode = "bm25"
    metric = "nDCG@10"
    value = 0.744

Everything is checked here, before any work: one ValueError naming the fix per problem.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genir.config import IndexConfig, RecConfig, from_dict, to_dict
from genir.provenance import ROOT

TASKS = ("retrieve", "recommend")
REC_METRICS = ("R@5", "nDCG@5", "R@10", "nDCG@10")
SHARED_DATA = ROOT.parent / "shared" / "data"  # the project's data folder beside the checkout
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # names become file names
# top-level fields and their defaults (None: required)
TOP: dict[str, Any] = {
    "name": "", "task": "retrieve", "out": "", "work": "", "splits": None, "modes": None, "metrics": None,
    "rel_threshold": 1,  # lowest grade RR/R count relevant (TREC DL: 2); nDCG uses the grades
    "depth": 100,  # results retrieved per query
    "seed": 0,  # seed of the carved dev split
    "dev_fraction": 0.2,  # share of train queries carved out as 'dev'
    "train_split": "train-dev",  # queries the generative model trains on
    "tune_split": "dev",  # split the hybrid fusion is tuned on ('' = defaults); never test
    "tolerance": 0.005, "datasets": None, "configs": None, "expected": [],
    "reuse": {},  # recommend: config name -> {"from": another config, "train": [modes trained; the rest copied]}
}
EXPECTED_FIELDS = ("dataset", "config", "split", "mode", "metric", "value", "tolerance")


@dataclass(frozen=True)
class Build:
    """One index: a dataset under one configuration, built once for every cell that evaluates it."""

    key: str  # "<dataset>--<config>": folder name of the index, its checkpoints and its build record
    hash: str  # sha256 prefix of everything that shapes the index; a changed config rebuilds it
    task: str  # retrieve | recommend
    dataset: str  # the job's name for the dataset
    data: str  # absolute folder
    config_name: str
    config: dict  # the full IndexConfig / RecConfig as a dict (defaults filled in)
    modes: tuple[str, ...]  # recommend: the modes trained (retrieval builds every mode its config has)
    seed: int  # dev carve-out seed
    dev_fraction: float
    train_split: str
    tune_split: str
    reuse: "Build | None" = None  # recommend: the build whose index this one is built from (genir index --reuse)
    train_modes: tuple[str, ...] = ()  # with reuse: the modes trained (the others are copied)

    def cfg(self) -> IndexConfig | RecConfig:
        return from_dict(IndexConfig if self.task == "retrieve" else RecConfig, self.config)

    def seeds(self) -> dict:
        c = self.config
        if self.task == "retrieve":
            return {"dev_split": self.seed, "codec": c["codec"]["seed"], "train": c["train"]["seed"]}
        return {"model": c["seed"], "codec": c["codec"]["seed"]}


@dataclass(frozen=True)
class Cell:
    """One result: an index evaluated on one split in one mode."""

    key: str  # "<dataset>--<config>--<split>--<mode>": the result file's name
    hash: str  # sha256 prefix of the build hash and the evaluation settings; a finished cell with it is skipped
    build: Build
    split: str
    mode: str
    metrics: tuple[str, ...]
    rel_threshold: int
    depth: int


@dataclass(frozen=True)
class Expected:
    cell: str  # Cell.key
    metric: str
    value: float
    tolerance: float


@dataclass(frozen=True)
class Job:
    name: str
    path: Path  # the job file
    sha256: str  # of the job file's bytes
    task: str
    out: Path
    work: Path
    builds: tuple[Build, ...]
    cells: tuple[Cell, ...]
    metrics: tuple[str, ...]
    expected: tuple[Expected, ...]


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_job(path: str | Path, *, out: str | Path | None = None) -> Job:
    """Parse and check a job file; ``out`` overrides its ``out``. ValueError naming the fix on any problem."""
    path = Path(path).resolve()
    raw_bytes = path.read_bytes()  # FileNotFoundError: the CLI's one-line error
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path.name}: not a TOML file ({exc}); see the job format in genir/bench/job.py") from None
    where = path.name
    unknown = sorted(set(raw) - set(TOP))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; expected some of {sorted(TOP)}")
    missing = sorted(k for k, v in TOP.items() if v is None and k not in raw)
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}; a job names datasets, configs, splits, modes, metrics")
    job = {**TOP, **raw}
    for key, default in TOP.items():
        if default is not None and key not in ("expected",):
            _check_type(default, job[key], f"{where}: {key}")
    task = job["task"]
    if task not in TASKS:
        raise ValueError(f"{where}: unknown task {task!r}; expected one of {list(TASKS)}")
    name = job["name"] or path.stem
    splits, modes, metrics = (_names(job[k], f"{where}: {k}") for k in ("splits", "modes", "metrics"))
    _check_modes(modes, task, where)
    _check_metrics(metrics, task, job["rel_threshold"], where)
    if "test" in (job["train_split"], job["tune_split"]):
        raise ValueError(f"{where}: train_split/tune_split 'test' would train or tune on the test queries; use 'dev'")
    datasets = {n: _resolve_data(n, d, path.parent, where) for n, d in _table(job, "datasets", where).items()}
    configs = {n: _config(task, c, f"{where}: configs.{n}") for n, c in _table(job, "configs", where).items()}
    reuse = _reuse(job, task, configs, modes, where)
    builds, cells = [], []
    for dname, data in datasets.items():
        by_config: dict[str, Build] = {}
        for cname in sorted(configs, key=lambda c: c in reuse):  # a reused build before the builds from it
            config = configs[cname]
            _check_config_modes(task, config, modes, f"{where}: configs.{cname}")
            source = by_config[reuse[cname]["from"]] if cname in reuse else None
            identity = {"task": task, "data": data, "config": config, "modes": modes if task == "recommend" else [],
                        **{k: job[k] for k in ("seed", "dev_fraction", "train_split", "tune_split")}}
            if source is not None:
                identity["reuse"] = {"from": source.hash, "train": reuse[cname]["train"]}
            by_config[cname] = Build(
                key=f"{dname}--{cname}", hash=digest(identity), task=task, dataset=dname, data=data, config_name=cname,
                config=config, modes=tuple(modes), seed=job["seed"], dev_fraction=float(job["dev_fraction"]),
                train_split=job["train_split"], tune_split=job["tune_split"], reuse=source,
                train_modes=tuple(reuse[cname]["train"]) if source is not None else tuple(modes))
        for cname in configs:  # builds and cells in the job file's order
            build = by_config[cname]
            builds.append(build)
            for split in splits:
                for mode in modes:
                    settings = [build.hash, split, mode, metrics, job["rel_threshold"], job["depth"]]
                    cells.append(Cell(key=f"{build.key}--{split}--{mode}", hash=digest(settings), build=build,
                                      split=split, mode=mode, metrics=tuple(metrics),
                                      rel_threshold=job["rel_threshold"], depth=job["depth"]))
    expected = tuple(_expected(e, i, job, {c.key for c in cells}, metrics, where)
                     for i, e in enumerate(job["expected"]))
    out_dir = Path(out).resolve() if out else (path.parent / job["out"]).resolve() if job["out"] else None
    if out_dir is None:
        raise ValueError(f"{where}: no output folder; give `out = \"...\"` in the job or --out DIR")
    work = (path.parent / job["work"]).resolve() if job["work"] and not out else out_dir / "work"
    return Job(name=name, path=path, sha256=hashlib.sha256(raw_bytes).hexdigest(), task=task, out=out_dir,
               work=work, builds=tuple(builds), cells=tuple(cells), metrics=tuple(metrics), expected=expected)


def _reuse(job: dict, task: str, configs: dict, modes: list[str], where: str) -> dict[str, dict]:
    """The [reuse] table checked: config -> {"from": another config that reuses nothing, "train": modes}."""
    table = job["reuse"]
    if not table:
        return {}
    if task != "recommend":
        raise ValueError(f"{where}: [reuse] applies to task 'recommend' (genir index --reuse)")
    from genir.rec.recommender import MODELS

    out = {}
    for cname, entry in table.items():
        at = f"{where}: reuse.{cname}"
        if cname not in configs:
            raise ValueError(f"{at}: no config {cname!r} in [configs] ({sorted(configs)})")
        if not isinstance(entry, dict) or set(entry) != {"from", "train"}:
            raise ValueError(f"{at}: expected a table with `from` (a config) and `train` (the modes it trains)")
        source, train = entry["from"], entry["train"]
        if source not in configs or source == cname or source in table:
            raise ValueError(f"{at}: from = {source!r} must be another config of this job that reuses nothing")
        train = _names(train, f"{at}: train")
        bad = [m for m in train if m not in MODELS or m not in modes]
        if bad:
            raise ValueError(f"{at}: train {bad}: expected some of the job's modes with a model of their own "
                             f"{[m for m in MODELS if m in modes]}")
        out[cname] = {"from": source, "train": train}
    return out


def _check_type(default: Any, value: Any, where: str) -> None:
    """TOML values against the type of the default they replace (ints are accepted for floats)."""
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(default, bool) and isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float))
    elif isinstance(default, (tuple, list)):
        ok = isinstance(value, list)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ValueError(f"{where} = {value!r}: expected a {type(default).__name__} like {default!r}")


def _names(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where}: expected a non-empty list of names, e.g. [\"dev\"]")
    if len(set(value)) != len(value):
        raise ValueError(f"{where}: {value} repeats a name")
    return list(value)


def _table(job: dict, key: str, where: str) -> dict:
    table = job[key]
    if not isinstance(table, dict) or not table:
        raise ValueError(f"{where}: [{key}] must be a table with at least one entry, e.g. [{key}] name = ...")
    bad = [n for n in table if not _NAME.match(n) or "--" in n]
    if bad:
        raise ValueError(f"{where}: {key} names {bad} may use only letters, digits, '_', '.', single '-'")
    return table


def _check_modes(modes: list[str], task: str, where: str) -> None:
    if task == "retrieve":
        from genir.index import MODES
    else:
        from genir.rec.recommender import MODES
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"{where}: unknown mode(s) {unknown} for task {task!r}; expected some of {list(MODES)}")


def _check_config_modes(task: str, config: dict, modes: list[str], where: str) -> None:
    from genir.index import MODEL_MODES

    needs = [m for m in modes if m in MODEL_MODES]
    if task == "retrieve" and not config["generative"] and needs:
        raise ValueError(f"{where}: modes {needs} need the generative model; set generative = true or drop them "
                         "(a job's modes apply to every config: put other configs in another job)")


def _check_metrics(metrics: list[str], task: str, rel: int, where: str) -> None:
    if task == "recommend":
        unknown = [m for m in metrics if m not in REC_METRICS]
        if unknown:
            raise ValueError(f"{where}: unknown recommendation metric(s) {unknown}; expected some of {list(REC_METRICS)}")
        return
    from genir.metrics import parse_measures

    try:
        parse_measures(metrics, rel=rel)
    except ValueError as exc:
        raise ValueError(f"{where}: metrics: {exc}") from None


def _resolve_data(name: str, given: Any, here: Path, where: str) -> str:
    if not isinstance(given, str) or not given:
        raise ValueError(f"{where}: datasets.{name} must be a folder path (a string)")
    roots = [here] + ([Path(os.environ["GENIR_DATA"])] if os.environ.get("GENIR_DATA") else []) + [SHARED_DATA]
    candidates = [Path(given)] if Path(given).is_absolute() else [r / given for r in roots]
    for c in candidates:
        if c.is_dir():
            return str(c.resolve())
    looked = ", ".join(str(c) for c in candidates)
    raise ValueError(f"{where}: datasets.{name}: folder {given!r} not found (looked in {looked}); give an absolute "
                     "path or set GENIR_DATA to the folder that holds it")


def _config(task: str, given: Any, where: str) -> dict:
    """The full config dict: the defaults with ``given`` (nested tables) laid over them, checked by name and type."""
    if not isinstance(given, dict):
        raise ValueError(f"{where}: must be a table of config fields")
    cls = IndexConfig if task == "retrieve" else RecConfig
    merged = _merge(to_dict(cls()), given, where, cls.__name__)
    from_dict(cls, merged)  # the dataclasses accept it
    return json.loads(json.dumps(merged))  # tuples as lists: the same dict a saved config holds


def _merge(default: dict, given: dict, where: str, what: str) -> dict:
    out = dict(default)
    for key, value in given.items():
        if key not in default:
            raise ValueError(f"{where}: unknown {what} field {key!r}; expected one of {sorted(default)}")
        if isinstance(default[key], dict):
            if not isinstance(value, dict):
                raise ValueError(f"{where}: {key} is a table of fields, e.g. {key}.{next(iter(default[key]))} = ...")
            out[key] = _merge(default[key], value, f"{where}.{key}", key)
        else:
            _check_type(default[key], value, f"{where}.{key}")
            out[key] = float(value) if isinstance(default[key], float) else value
    return out


def _expected(entry: Any, i: int, job: dict, cells: set[str], metrics: list[str], where: str) -> Expected:
    where = f"{where}: expected[{i}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: each [[expected]] is a table with {list(EXPECTED_FIELDS)}")
    unknown = sorted(set(entry) - set(EXPECTED_FIELDS))
    missing = [k for k in EXPECTED_FIELDS[:-1] if k not in entry]
    if unknown or missing:
        raise ValueError(f"{where}: unknown {unknown} / missing {missing} fields; expected {list(EXPECTED_FIELDS)}")
    key = "--".join(str(entry[k]) for k in ("dataset", "config", "split", "mode"))
    if key not in cells:
        raise ValueError(f"{where}: no cell {key!r} in this job (dataset--config--split--mode); cells: {sorted(cells)}")
    if entry["metric"] not in metrics:
        raise ValueError(f"{where}: metric {entry['metric']!r} is not in the job's metrics {metrics}")
    tol = entry.get("tolerance", job["tolerance"])
    for k, v in (("value", entry["value"]), ("tolerance", tol)):
        _check_type(0.0, v, f"{where}: {k}")
    return Expected(cell=key, metric=entry["metric"], value=float(entry["value"]), tolerance=float(tol))


def describe(job: Job) -> dict:
    """The job as recorded in results: file, its sha256, and what it expands to."""
    return {"name": job.name, "file": str(job.path), "sha256": job.sha256, "task": job.task,
            "builds": [b.key for b in job.builds], "cells": [c.key for c in job.cells]}

