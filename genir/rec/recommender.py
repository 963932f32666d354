"""The recommendation index: a generative layer (genir.rec.generative: item vectors -> item IDs -> TIGER model)
and the baselines beside it (SASRec, popularity), composed over one item table and its users' sequences.
``build`` trains, ``save``/``load`` persist, ``recommend`` serves one user or history, ``evaluate`` returns the
REPORT dict, ``add_items`` extends the catalogue.

Everything learned (item vectors, codec, TIGER, SASRec, popularity) sees only the leave-one-out training
parts, so ``evaluate`` on the validation and test splits is honest; ``recommend(user=...)`` serves from the
user's whole stored sequence.

An index version (genir.store: written atomically, manifest.json with the config and a sha256 per file):

    items.parquet       item_id, text (row = item index)
    sequences.parquet   user_id, items (every user's whole sequence as item indices)
    generative/         item_vectors.safetensors, codec/, codes.npy, trie/, model.safetensors, generative.json
    sasrec/             model.safetensors, config.json
    popular/            popular.safetensors

With both the generative model and SASRec, the index also serves the ``hybrid`` mode (genir.rec.hybrid): their
fusion, tuned at build time on validation users (by default those outside the generative model's early-stopping
sample) and kept in the manifest's ``config.hybrid``.

``build(..., reuse=INDEX)`` takes the item vectors and IDs, and every mode it does not train, from a saved index
(genir.rec.reuse). Indexes written before this layout are read by genir.rec.legacy.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import torch

import genir
from genir.config import RecConfig, rec_config_from_dict, to_dict
from genir.data.store import read_parquet, write_parquet
from genir.data.types import Sequences
from genir.rec.device import resolve_device
from genir.rec.evaluate import timed_evaluation
from genir.rec.generative import GenerativeRecLayer
from genir.rec.popular import PopularRecommender
from genir.rec.protocol import Examples, Interactions, eval_queries, pack_histories, train_parts
from genir.rec.sasrec import SASRec, SASRecRecommender
from genir.rec.tiger import ANONYMOUS

logger = logging.getLogger(__name__)

MODELS = ("generative", "sasrec", "popular")  # the modes with a model of their own, trained by ``build``
HYBRID_PARTS = ("generative", "sasrec")  # what the hybrid mode fuses: an index with both serves it
MODES = (*MODELS, "hybrid")
KIND = "recommend"  # manifest "kind" (genir.cli dispatches on it)
LAYOUT = 2  # manifest "layout": one folder per component (above); absent: the layout genir.rec.legacy reads


def _check_modes(modes: Sequence[str]) -> tuple[str, ...]:
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"unknown or no modes {list(bad)}; expected some of {MODES}")
    return tuple(dict.fromkeys(modes))


HYBRID_USERS = ("held_out", "sample")  # RecConfig.hybrid_users


def _sample_rows(total: int, n: int, seed: int) -> np.ndarray:
    """Sorted rows of the seeded validation sample of ``n`` users out of ``total`` (every row when n <= 0 or >= total)."""
    if n <= 0 or n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, n, replace=False))


def _sample(queries: Examples, n: int, seed: int) -> Examples:
    """The validation users early stopping watches (RecConfig.valid_users, seeded)."""
    rows = _sample_rows(len(queries), n, seed)
    return queries if len(rows) == len(queries) else queries.subset(rows)


def _hybrid_users(queries: Examples, cfg: RecConfig) -> Examples:
    """The validation users the hybrid fusion is tuned on (RecConfig.hybrid_users): those outside the
    early-stopping sample, or the sample itself; every user when the sample holds them all."""
    rows = _sample_rows(len(queries), cfg.valid_users, cfg.seed)
    if cfg.hybrid_users == "held_out" and len(rows) < len(queries):
        rows = np.setdiff1d(np.arange(len(queries)), rows)
    return queries if len(rows) == len(queries) else queries.subset(rows)


@dataclass
class Recommender:
    """A recommendation index: item table, sequences, and whichever of the MODES were built."""

    cfg: RecConfig  # the config of the build that wrote this index (a reused component keeps its own: ``reused``)
    data: Interactions  # every user's full sequence + the item table (row = item index)
    dataset: str = ""
    generative: GenerativeRecLayer | None = None  # item vectors, IDs, trie and the TIGER model
    sasrec: SASRec | None = None
    popular: PopularRecommender | None = None
    reports: dict[str, dict] = field(default_factory=dict)  # per mode: training report, codec stats, seconds
    reused: dict | None = None  # what a build with reuse= took from which index (genir.rec.reuse.lineage)
    built_by: dict | None = None  # genir.provenance of the build (commit, command, machine); None: an older index
    version: str = ""  # the index version this was loaded from ("" when built in this process)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where models and trie live (to())

    @property
    def modes(self) -> tuple[str, ...]:
        have = {"generative": self.generative, "sasrec": self.sasrec, "popular": self.popular}
        models = tuple(m for m in MODELS if have[m] is not None)
        return (*models, "hybrid") if all(m in models for m in HYBRID_PARTS) else models

    # ------------------------------------------------------------------------------------------ build
    @classmethod
    def build(cls, sequences: Sequences, cfg: RecConfig = RecConfig(), *, modes: Sequence[str] = MODES,
              dataset: str = "", checkpoint_dir: Path | None = None, resume: bool | str = True,
              progress: bool | None = None, device: str = "auto", reuse: Path | None = None) -> "Recommender":
        """Train the requested modes on the training parts; early stopping on (a sample of) validation.

        Per-epoch checkpoints go to ``checkpoint_dir``; ``resume`` continues from them (they are fingerprinted,
        so another run's are refused; ``resume=genir.checkpoint.IF_FITS`` starts such a model over instead),
        ``resume=False`` starts over and removes them. ``device`` (auto | cpu |
        cuda | cuda:N) is where item text is embedded and the models train and serve. ``reuse`` (an index
        directory built from the same data): its item vectors and IDs feed the generative model, and the modes
        not in ``modes`` are copied from it (genir.rec.reuse says what must match). Whenever the result holds
        both the generative model and SASRec, their ``hybrid`` fusion is tuned on validation users
        (RecConfig.hybrid_users: by default those the generative model's early stopping did not see; ``hybrid`` in
        ``modes`` asks for it: an error when one of the two would be missing)."""
        from genir.provenance import provenance
        from genir.rec import reuse as reusing

        built_by = provenance()  # the code at the start of the build is the code that built it
        modes = _check_modes(modes)
        if cfg.hybrid_users not in HYBRID_USERS:  # before any work
            raise ValueError(f"unknown hybrid_users {cfg.hybrid_users!r}; expected one of {HYBRID_USERS}")
        from genir.rec.hybrid import OBJECTIVES
        if cfg.hybrid_objective not in OBJECTIVES:
            raise ValueError(f"unknown hybrid_objective {cfg.hybrid_objective!r}; expected one of {OBJECTIVES}")
        from genir.rec.items import check_no_text
        check_no_text(cfg.item_embedding_no_text)
        dev = resolve_device(device)  # before any work: a bad device costs nothing
        data = Interactions.from_sequences(sequences)
        old = cls.load(Path(reuse), device=str(dev)) if reuse is not None else None
        missing = [m for m in HYBRID_PARTS if m not in modes and (old is None or m not in old.modes)]
        if "hybrid" in modes and missing:
            raise ValueError(f"mode 'hybrid' fuses the generative model with SASRec and this build would have no "
                             f"{' or '.join(missing)}; add --mode {' --mode '.join(missing)}, or --reuse an index "
                             "that has it")
        carried = reusing.carried_stages(Path(reuse), old, data, cfg, modes) if old is not None else []
        threads = torch.get_num_threads()
        torch.set_num_threads(cfg.threads)
        try:
            rec = cls(cfg=cfg, data=data, dataset=dataset, device=dev, built_by=built_by)
            valid = eval_queries(rec.data, "valid", max_history=cfg.max_history)
            ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
            if "popular" in modes:
                rec.popular = PopularRecommender.fit(train_parts(rec.data), num_items=rec.data.num_items)
            if "sasrec" in modes:
                t0 = time.perf_counter()
                ranker, report = SASRecRecommender.train(rec.data, valid, cfg=cfg, progress=progress,
                                                         checkpoint_dir=ckpt / "sasrec" if ckpt else None,
                                                         resume=resume, device=dev)
                rec.sasrec = ranker.model
                rec.reports["sasrec"] = {"train": report.to_dict(), "seconds": time.perf_counter() - t0}
            if "generative" in modes:
                ids_from = old.generative if "item_ids" in carried else None
                sasrec = rec.sasrec if rec.sasrec is not None else (old.sasrec if "sasrec" in carried else None)
                rec._train_generative(ids_from, _sample(valid, cfg.valid_users, cfg.seed),
                                      ckpt / "tiger" if ckpt else None, resume, progress, sasrec=sasrec)
            if old is not None:
                reusing.carry(old, rec, carried, Path(reuse))
            if "hybrid" in rec.modes:
                rec._tune_hybrid(_hybrid_users(valid, cfg))
        finally:
            torch.set_num_threads(threads)
        return rec

    def _train_generative(self, ids_from: GenerativeRecLayer | None, valid: Examples, ckpt: Path | None,
                          resume: bool | str, progress: bool | None, *, sasrec: SASRec | None = None) -> None:
        """Item vectors and IDs (fitted here, or those of ``ids_from``), then the model trained on them. ``sasrec``:
        the trained SASRec whose item table the sasrec item_embedding sources read."""
        t0 = time.perf_counter()
        if ids_from is None:
            table = sasrec.item_table() if sasrec is not None else None
            layer, seconds = GenerativeRecLayer.fit_ids(self.data, self.cfg, device=self.device, progress=progress,
                                                        sasrec_table=table)
        else:
            layer, seconds = ids_from.untrained(self.cfg), {"embed_seconds": 0.0, "codec_seconds": 0.0}
        train = layer.train(self.data, valid, checkpoint_dir=ckpt, resume=resume, progress=progress)
        self.generative = layer
        self.reports["generative"] = {"train": train, "item_embedding": layer.vectors.source, "codec": layer.stats(),
                                      **seconds, "seconds": time.perf_counter() - t0}

    def _tune_hybrid(self, valid: Examples) -> None:
        """Tune the hybrid fusion on validation queries ``valid`` (never test) and serve it (``cfg.hybrid``)."""
        from genir.rec import hybrid

        t0 = time.perf_counter()
        cands = self.ranker("hybrid").candidates(valid.histories, valid.lengths, valid.users)
        tuned = hybrid.tune(cands, valid.targets, metric=self.cfg.early_stop_metric,
                            objective=self.cfg.hybrid_objective, base=self.cfg.hybrid)
        logger.info("hybrid fusion tuned (%s) on %d validation users: %s, %s %.4f", self.cfg.hybrid_objective,
                    len(valid), tuned.method, self.cfg.early_stop_metric, tuned.valid_score)
        self.cfg = replace(self.cfg, hybrid=tuned)
        self.reports["hybrid"] = {"tuned_on": "valid", "users": len(valid), "which_users": self.cfg.hybrid_users,
                                  "objective": self.cfg.hybrid_objective, "metric": self.cfg.early_stop_metric,
                                  "seconds": time.perf_counter() - t0}

    def ranker(self, mode: str, user_ids: Sequence[str] | None = None):
        """The object whose ``rank(histories, lengths, users, *, k)`` serves ``mode``; users index ``user_ids``."""
        if mode not in self.modes:
            if mode == "hybrid":
                raise ValueError(f"mode 'hybrid' fuses the generative model with SASRec; this index holds "
                                 f"{self.modes}: build the missing one with `genir index DATA --task recommend "
                                 "--reuse THIS_INDEX --mode generative|sasrec`")
            raise ValueError(f"mode {mode!r} is not in this index; it holds {self.modes} (rebuild with it)")
        users = self.data.user_ids if user_ids is None else user_ids
        if mode == "hybrid":
            from genir.rec.hybrid import HybridRanker

            return HybridRanker(self.generative.ranker(users), SASRecRecommender(self.sasrec),
                                self.generative.vectors.combined(), self.cfg.hybrid)
        if mode == "generative":
            return self.generative.ranker(users)
        return SASRecRecommender(self.sasrec) if mode == "sasrec" else self.popular

    # ------------------------------------------------------------------------------------------ serve
    def recommend(self, *, user: str | None = None, history: Sequence[str] | None = None, k: int = 10,
                  mode: str = "generative") -> list[dict]:
        """Top-k next items for a known user (their whole sequence) or an explicit history of item ids.

        -> [{"rank", "item_id", "text", "score"}] best first (score: log-probability for generative,
        model score for sasrec, interaction count for popular, the fused score for hybrid).
        """
        if (user is None) == (history is None):
            raise ValueError("give exactly one of user= (a user id) or history= (item ids, oldest first)")
        users = [ANONYMOUS]
        if user is not None:
            try:
                u = self.data.user_ids.index(user)
            except ValueError:
                raise ValueError(f"unknown user {user!r}; pass history= item ids instead, or one of e.g. "
                                 f"{self.data.user_ids[:3]}") from None
            hist, users = self.data.seqs[u], [u]
        else:
            index = {item: i for i, item in enumerate(self.data.item_ids)}
            unknown = [h for h in history if h not in index]
            if unknown or not history:
                raise ValueError(f"unknown item ids {unknown[:5]} (or empty history); items look like "
                                 f"{self.data.item_ids[:3]}")
            hist = np.asarray([index[h] for h in history], dtype=np.int64)
        histories, lengths = pack_histories([hist], max_history=self.cfg.max_history)
        ranker = self.ranker(mode)
        users_arr = np.asarray(users, dtype=np.int64)
        if mode in ("generative", "hybrid"):
            items, scores = ranker.search(histories, lengths, users_arr, k=k)
            items, scores = items[0], scores[0]
        else:
            items = ranker.rank(histories, lengths, users_arr, k=k)[0]
            scores = (SASRecRecommender(self.sasrec).scores(histories, lengths)[0][items]
                      if mode == "sasrec" else self.popular.counts[items].astype(np.float64))
        return [{"rank": r + 1, "item_id": self.data.item_ids[i], "text": self.data.item_text[i], "score": float(s)}
                for r, (i, s) in enumerate(zip(items, scores)) if i >= 0]

    def evaluate(self, split: str = "test", *, modes: Sequence[str] | None = None,
                 sequences: Sequences | None = None) -> dict:
        """The REPORT dict: leave-one-out ``split`` ("valid" | "test") of ``sequences`` (default: the build data)."""
        modes = _check_modes(modes or self.modes)
        data = self.data if sequences is None else self._align(sequences)
        queries = eval_queries(data, split, max_history=self.cfg.max_history)
        results = []
        for mode in modes:
            metrics, qps = timed_evaluation(self.ranker(mode, data.user_ids), queries)
            results.append({"mode": mode, "metrics": metrics, "queries_per_second": qps})
        return {"dataset": self.dataset, "split": split, "num_queries": len(queries), "results": results,
                "genir_version": genir.__version__, "config": to_dict(self.cfg)}

    def _align(self, sequences: Sequences) -> Interactions:
        """Map another Sequences onto this index's item table (items unknown to the index are an error)."""
        other = Interactions.from_sequences(sequences)
        index = {item: i for i, item in enumerate(self.data.item_ids)}
        unknown = [i for i in other.item_ids if i not in index]
        if unknown:
            raise ValueError(f"{len(unknown)} items of the evaluation data are not in the index (e.g. {unknown[:3]}); "
                             "evaluate on the data the index was built from, or add_items them first")
        remap = np.asarray([index[i] for i in other.item_ids], dtype=np.int64)
        return replace(self.data, user_ids=other.user_ids, seqs=[remap[s] for s in other.seqs])

    # ------------------------------------------------------------------------------------------ new items
    def add_items(self, item_ids: Sequence[str], *, texts: Sequence[str] | None = None,
                  embeddings: np.ndarray | None = None) -> np.ndarray:
        """Give new items semantic IDs from the frozen codec and make them recommendable (no retraining).

        Needs their ``texts`` (embedded like the catalogue; interaction vectors imputed from textual
        neighbours) or ready ``embeddings`` (n, d) in the space the codec was fitted on. -> (n, depth) IDs.
        Popularity ranks them last (no interactions yet); SASRec cannot score them.
        """
        if self.generative is None:
            raise ValueError("this index has no generative mode; rebuild with mode 'generative' to add items")
        known = set(self.data.item_ids)
        dup = [i for i in item_ids if i in known]
        if dup or len(set(item_ids)) != len(item_ids):
            raise ValueError(f"item ids already present or repeated: {dup[:5]}; new items need new ids")
        if embeddings is None and (texts is None or len(texts) != len(item_ids)):
            raise ValueError("give texts= (one per item) or embeddings= (n, d) for the new items")
        codes = self.generative.add_items(texts=texts, embeddings=embeddings)
        self.data.item_ids.extend(item_ids)
        self.data.item_text.extend(texts if texts is not None else [""] * len(item_ids))
        if self.popular is not None:
            self.popular.add_items(len(item_ids))
        return codes

    # ------------------------------------------------------------------------------------------ persistence
    def save(self, path: Path) -> Path:
        """Write a new version of index directory ``path`` (genir.store: atomic, checksummed). -> version folder."""
        from genir.store import write_version

        return write_version(Path(path), self._write)

    def _write(self, folder: Path) -> dict:
        write_parquet(pa.table({"item_id": self.data.item_ids, "text": self.data.item_text}), folder / "items.parquet")
        write_parquet(pa.table({"user_id": self.data.user_ids,
                                "items": pa.array([s.tolist() for s in self.data.seqs], pa.list_(pa.int64()))}),
                      folder / "sequences.parquet")
        if self.generative is not None:
            self.generative.save(folder / "generative")
        if self.sasrec is not None:
            self.sasrec.save(folder / "sasrec")
        if self.popular is not None:
            self.popular.save(folder / "popular")
        return {"kind": KIND, "layout": LAYOUT, "dataset": self.dataset, "config": to_dict(self.cfg),
                "modes": list(self.modes), "counts": {"users": self.data.num_users, "items": self.data.num_items},
                "reports": self.reports, **({"reused": self.reused} if self.reused else {}),
                **({"built_by": self.built_by} if self.built_by else {})}

    def to(self, device: str) -> "Recommender":
        """Move the models and the item trie to ``device`` (auto | cpu | cuda | cuda:N); returns self."""
        self.device = resolve_device(device)
        if self.generative is not None:
            self.generative.to(self.device)
        if self.sasrec is not None:
            self.sasrec.to(self.device)
        return self

    @classmethod
    def load(cls, path: Path, *, checksums: bool = True, device: str = "auto") -> "Recommender":
        """Open an index directory written by ``save`` (checks the manifest and, by default, every sha256) with
        its models on ``device``."""
        from genir.store import open_version

        folder, manifest = open_version(Path(path), checksums=checksums)  # CURRENT read once: load what was verified
        if manifest.get("kind") != KIND:
            raise ValueError(f"{path} is a {manifest.get('kind', 'retrieval')!r} index, not a recommendation index; "
                             "build one with `genir index DATA --task recommend`")
        cfg = rec_config_from_dict(manifest["config"])
        items = read_parquet(folder / "items.parquet")
        seqs = read_parquet(folder / "sequences.parquet")
        data = Interactions(user_ids=seqs.column("user_id").to_pylist(),
                            seqs=[np.asarray(s, dtype=np.int64) for s in seqs.column("items").to_pylist()],
                            item_ids=items.column("item_id").to_pylist(), item_text=items.column("text").to_pylist())
        layout = manifest.get("layout")
        if layout is None:
            from genir.rec.legacy import load_layout1

            generative, sasrec, popular = load_layout1(folder, manifest, cfg, items)
        elif layout == LAYOUT:
            generative = GenerativeRecLayer.load(folder / "generative") if (folder / "generative").is_dir() else None
            sasrec = SASRec.load(folder / "sasrec") if (folder / "sasrec").is_dir() else None
            popular = PopularRecommender.load(folder / "popular") if (folder / "popular").is_dir() else None
        else:
            raise ValueError(f"{path}: recommendation index layout {layout!r} is newer than this genir reads "
                             f"({LAYOUT}); upgrade genir")
        rec = cls(cfg=cfg, data=data, dataset=manifest.get("dataset", ""), generative=generative, sasrec=sasrec,
                  popular=popular, reports=manifest.get("reports", {}), reused=manifest.get("reused"),
                  built_by=manifest.get("built_by"),
                  version=folder.name)
        return rec.to(device)
