"""GenerativeIndex: the user-facing index that owns every retrieval structure over one corpus.

Dense (FAISS) and BM25 are always built; the semantic-ID codec, ID trie and seq2seq model are added when
`IndexConfig.generative` is on. `search` dispatches on mode; every mode returns the same Hit lists.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pyarrow as pa

from genir.bm25 import Bm25Index
from genir.config import HybridConfig, IndexConfig, from_dict, to_dict
from genir.data.store import read_parquet, write_parquet
from genir.data.types import Corpus, Qrels, Queries
from genir.dense import DenseIndex
from genir.embed import Embedder, same_model, weights_sha256
from genir.ranking import finalize
from genir.store import load_array, open_version, read_manifest, write_version
from genir.timing import collect, stage

if TYPE_CHECKING:
    from genir.generative import Memories

logger = logging.getLogger(__name__)

BASE_MODES = ("dense", "bm25", "rrf")
MODEL_MODES = ("generative", "hybrid")
MODES = BASE_MODES + MODEL_MODES
# build facts kept across add/remove and save/load; built_by: genir.provenance of the build (commit, command, machine)
META_KEYS = ("build_seconds", "embedding_dim", "sources", "fusion_source", "built_by")


@dataclass(frozen=True)
class Hit:
    rank: int  # 1-based
    doc_id: str
    score: float
    title: str
    path: str  # which component answered this query (dense, bm25, rrf, generative, fused, ...)
    snippet: str = ""  # the start of the document's text (untitled passages, e.g. MS MARCO, show only this)


SNIPPET_CHARS = 200


@dataclass(frozen=True)
class SearchResult:
    """doc_idx, scores: (q, k), -1 / -inf padded; path: (q,) which component answered each query."""

    doc_idx: np.ndarray
    scores: np.ndarray
    path: list[str]


def check_mode(mode: str, available: Sequence[str] = MODES) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {list(MODES)}")
    if mode not in available:
        raise ValueError(
            f"mode {mode!r} needs the generative model, which this index does not have; "
            f"available: {list(available)} (rebuild without --no-generative)"
        )
    return mode


class GenerativeIndex:
    """All retrieval structures over one corpus. Build with `build`, persist with `save`/`load`."""

    def __init__(self, cfg: IndexConfig, corpus: Corpus, embeddings: np.ndarray, dense: DenseIndex,
                 bm25: Bm25Index, *, semantic=None, meta: dict | None = None, device: str = "auto") -> None:
        self.cfg = cfg
        self.corpus = corpus
        self.embeddings = embeddings
        self.dense = dense
        self.bm25 = bm25
        self.meta = dict(meta or {})
        self.semantic = semantic  # SemanticLayer when the index has the generative model
        self.device = device
        self.embedder = Embedder(cfg.embed, device=device)
        self._doc_ids = corpus.doc_ids
        self._titles = corpus.table.column("title").to_pylist()

    # ---------------------------------------------------------------- build
    @classmethod
    def build(cls, corpus: Corpus, cfg: IndexConfig = IndexConfig(), *, train_queries: Queries | None = None,
              train_qrels: Qrels | None = None, device: str = "auto", workdir: Path | None = None,
              resume: bool = False, embeddings: np.ndarray | None = None,
              progress: bool | None = None) -> "GenerativeIndex | None":
        """Embed the corpus and build every structure. train_queries/qrels (train split only, never the
        split you report on) feed the generative model when cfg.generative is on. `embeddings` (n, d), when
        given, must come from cfg.embed's model over corpus.passages(); they skip the embedding step.

        Under torchrun every process calls build with the same arguments: they embed a share of the corpus
        each and train the model together (DDP); rank 0 fits the codec and sends its IDs to the others. Then
        rank 0 alone builds dense and BM25 and returns the index; the other ranks return None (the caller
        then leaves the process group: genir.device.shutdown_distributed). Single process: never None."""
        from genir.device import setup_distributed
        from genir.provenance import provenance

        built_by = provenance()  # the code at the start of the build is the code that built it
        if len(corpus) == 0:
            raise ValueError("the corpus is empty; nothing to index")
        if cfg.generative and not same_model(cfg.model.encoder, cfg.embed.model):
            raise ValueError(f"ModelConfig.encoder {cfg.model.encoder!r} differs from EmbedConfig.model {cfg.embed.model!r}: "
                             "the seq2seq reads the embedding model's tokens and weights; set both to one model "
                             "(genir index --model sets both)")
        check_train_config(cfg)
        info = setup_distributed(device)
        timings: dict[str, float] = {}
        t = time.perf_counter()
        embedder = Embedder(cfg.embed, device=device)
        logger.info("embedding %d documents with %s", len(corpus), cfg.embed.model)
        if embeddings is not None:
            if embeddings.shape[0] != len(corpus):
                raise ValueError(f"embeddings has {embeddings.shape[0]} rows for {len(corpus)} documents")
            emb = np.ascontiguousarray(embeddings, dtype=np.float32)
        else:  # rank 0 gets every row; other torchrun ranks none (they only need the IDs rank 0 sends)
            emb = embedder.encode_cached(corpus.passages(), None if workdir is None else Path(workdir) / "embeddings",
                                         progress=progress, info=info)
        timings["embed"] = time.perf_counter() - t
        dense = bm25 = None
        if info.rank == 0:  # before the model: the distillation rule reads both
            t = time.perf_counter()
            dense = DenseIndex.build(emb, cfg.dense)
            timings["dense"] = time.perf_counter() - t
            t = time.perf_counter()
            bm25 = Bm25Index.build(corpus.passages(), cfg.bm25)
            timings["bm25"] = time.perf_counter() - t
        semantic = None
        if cfg.generative:  # while every torchrun process still takes part
            from genir.device import broadcast_array
            from genir.semantic import SemanticLayer

            choice = distill_choice(cfg, embedder, dense, bm25, corpus, train_queries, train_qrels) if info.rank == 0 else {}
            weight = float(broadcast_array(np.array([choice.get("distill", 0.0)]), info, dtype=np.float64)[0])
            semantic = SemanticLayer.build(corpus, emb, cfg, train_queries=train_queries, train_qrels=train_qrels,
                                           device=device, workdir=workdir, resume=resume, progress=progress,
                                           distill=weight, distill_choice=choice)
            timings.update(semantic.meta["build_seconds"])
        if info.rank > 0:
            return None
        meta = {"build_seconds": timings, "embedding_dim": int(emb.shape[1]), "built_by": built_by}
        return cls(cfg, corpus, emb, dense, bm25, semantic=semantic, meta=meta, device=device)

    @property
    def modes(self) -> tuple[str, ...]:
        return MODES if self.semantic is not None else BASE_MODES

    @property
    def deleted(self) -> np.ndarray:
        """(n,) bool: documents removed from every structure (doc_idx stays stable)."""
        return self.dense.deleted

    def __len__(self) -> int:
        """Live (not removed) documents."""
        return len(self.corpus) - int(self.deleted.sum())

    # ---------------------------------------------------------------- updates
    def add(self, docs: Corpus, *, progress: bool | None = None) -> np.ndarray:
        """Add documents without retraining; returns their doc_idx (m,). Doc ids must be new."""
        if len(docs) == 0:
            return np.zeros(0, dtype=np.int64)
        live = {d for d, gone in zip(self._doc_ids, self.deleted.tolist()) if not gone}
        clash = [d for d in docs.doc_ids if d in live]
        if clash:
            raise ValueError(f"{len(clash)} document ids already in the index (e.g. {clash[:3]}); remove them first")
        new_idx = np.arange(len(self.corpus), len(self.corpus) + len(docs), dtype=np.int64)
        emb = self.embedder.encode(docs.passages(), progress=progress)
        self._add_generative(emb, docs, new_idx)
        self.dense.add(emb)
        self.embeddings = np.concatenate([self.embeddings, emb])
        self.corpus = Corpus(pa.concat_tables([self.corpus.table, docs.table]))
        self.bm25 = Bm25Index.build(self.corpus.passages(), self.cfg.bm25)  # bm25s has no incremental add
        self._doc_ids = self.corpus.doc_ids
        self._titles = self.corpus.table.column("title").to_pylist()
        return new_idx

    def remove(self, doc_ids: Sequence[str]) -> np.ndarray:
        """Remove documents by id from every structure; returns their doc_idx. Unknown ids are an error."""
        position = {d: i for i, d in enumerate(self._doc_ids) if not self.deleted[i]}
        unknown = [d for d in doc_ids if d not in position]
        if unknown:
            raise ValueError(f"{len(unknown)} document ids are not in the index (e.g. {unknown[:3]})")
        idx = np.array(sorted({position[d] for d in doc_ids}), dtype=np.int64)
        self._remove_generative(idx)
        self.dense.remove(idx)
        return idx

    def _add_generative(self, emb: np.ndarray, docs: Corpus, new_idx: np.ndarray) -> None:
        if self.semantic is not None:
            self.semantic.add(emb, new_idx)

    def _remove_generative(self, idx: np.ndarray) -> None:
        if self.semantic is not None:
            self.semantic.remove(idx)

    # ---------------------------------------------------------------- search
    def search(self, queries: Sequence[str], k: int = 10, *, mode: str = "dense") -> list[list[Hit]]:
        """Top-k hits per query, best first."""
        res = self.search_arrays(queries, k, mode=mode)
        out = []
        with stage("hits"):
            for row_i, row_s, path in zip(res.doc_idx, res.scores, res.path):
                hits = [Hit(r, self._doc_ids[i], float(s), self._titles[i], path, self._snippet(i))
                        for r, (i, s) in enumerate(((i, s) for i, s in zip(row_i.tolist(), row_s.tolist()) if i >= 0), 1)]
                out.append(hits)
        return out

    def _snippet(self, i: int) -> str:
        return str(self.corpus.table.column("text")[i])[:SNIPPET_CHARS]

    def search_arrays(self, queries: Sequence[str], k: int = 10, *, mode: str = "dense",
                      timings: dict[str, float] | None = None) -> SearchResult:
        """Like search, as arrays: doc_idx/scores (q, k). ``timings``, when given, gets the seconds of each
        search stage added (genir.timing.STAGES: encode, decode, dense, bm25, fusion, ...); results are the same."""
        if timings is not None:
            with collect(timings):
                return self.search_arrays(queries, k, mode=mode)
        check_mode(mode, self.modes)
        if k <= 0:
            raise ValueError(f"k must be a positive integer, got {k}")
        queries = list(queries)
        if any(not q or not q.strip() for q in queries):
            raise ValueError("empty query text; every query needs at least one non-space character")
        if mode == "dense":
            q_emb = self._encode(queries)
            with stage("dense"):
                scores, idx = self.dense.search(q_emb, k)
        elif mode == "bm25":
            with stage("bm25"):
                scores, idx = self.bm25.search(queries, k, deleted=self.deleted)
        elif mode == "rrf":  # dense + BM25 only, with the fusion's reciprocal-rank constant
            from genir.hybrid import rrf

            base = self._base_rankings(queries, self._encode(queries), k)
            with stage("fusion"):
                idx, scores = rrf([base["dense"], base["bm25"]], k=k, k_rrf=self.cfg.hybrid.k_rrf)
        else:
            return self._search_model(queries, k, mode=mode)
        return SearchResult(idx, scores, [mode] * len(queries))

    def _search_model(self, queries: list[str], k: int, *, mode: str) -> SearchResult:
        from genir import hybrid

        if mode == "generative":
            gen = self._generate(queries)
            with stage("fusion"):
                scores, idx = finalize(gen[1], gen[0], k, self.deleted)
            return SearchResult(idx, scores, ["generative"] * len(queries))
        cfg = self.cfg.hybrid
        q_emb, memories = self.semantic.encode_queries(queries, self.embedder, batch_size=self.cfg.decode.batch_size)
        gen = self._generate(queries, memories)
        prefixes = self._prefixes(queries, q_emb, (cfg.prefix_level,), memories) if cfg.method == "prefix_dense" else None
        base = self._base_rankings(queries, q_emb, k)
        with stage("fusion"):
            idx, scores, path = hybrid.apply(cfg, {"generative": gen, **base}, k=k, unseen=self.semantic.unseen(),
                                             prefixes=prefixes)
        return SearchResult(idx, scores, [str(p) for p in path])

    def _encode(self, queries: list[str]) -> np.ndarray:
        """Query embeddings (q, d) float32, timed as the "encode" stage."""
        with stage("encode"):
            return self.embedder.encode(queries)

    def _generate(self, queries: list[str], memories: Memories | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Constrained beam search: (doc_idx (q, beam), log-probs (q, beam)); memories from SemanticLayer.encode_queries."""
        dc = self.cfg.decode
        return self.semantic.retriever.search(queries, k=dc.beam_size, beam_size=dc.beam_size, renormalize=dc.renormalize,
                                              batch_size=dc.batch_size, memories=memories, precision=dc.precision)

    def _base_rankings(self, queries: list[str], q_emb: np.ndarray, k: int, *, depth: int = 100) -> dict:
        """The fallback rankings every fusion reads: {"dense", "bm25"}, ``max(depth, k)`` deep."""
        depth = max(depth, k)
        with stage("dense"):
            ds, di = self.dense.search(q_emb, depth)
        with stage("bm25"):
            bs, bi = self.bm25.search(queries, depth, deleted=self.deleted)
        return {"dense": (di, ds), "bm25": (bi, bs)}

    def _prefixes(self, queries: list[str], q_emb: np.ndarray, levels: Sequence[int], memories: Memories | None = None):
        """GDR inputs (genir.hybrid.Prefixes): the documents under each query's generated prefixes per level."""
        from genir.hybrid import Prefixes

        dc = self.cfg.decode
        docs = {lv: self.semantic.prefix_docs(queries, level=lv, beam_size=dc.beam_size, batch_size=dc.batch_size,
                                              memories=memories, precision=dc.precision) for lv in levels}
        return Prefixes(docs, q_emb, self.embeddings)

    def tune(self, queries: Queries, qrels: Qrels, *, k: int = 10) -> dict:
        """Choose the hybrid fusion on DEVELOPMENT queries (never test) and serve it (``cfg.hybrid``).

        Gathers the rankings and GDR prefix documents (every prefix level); genir.hybrid.tune grid-searches
        RRF weights, score interpolation, confidence gates and GDR. Returns {"chosen": HybridConfig dict,
        "candidates": {name: dev nDCG@10}}."""
        from genir import hybrid

        check_mode("hybrid", self.modes)
        started = time.perf_counter()
        texts, qids = queries.texts, queries.query_ids
        q_emb, memories = self.semantic.encode_queries(texts, self.embedder, batch_size=self.cfg.decode.batch_size)
        rankings = {"generative": self._generate(texts, memories), **self._base_rankings(texts, q_emb, k)}
        prefixes = self._prefixes(texts, q_emb, range(1, self.semantic.trie.num_levels), memories)
        candidates: dict[str, float] = {}
        best = hybrid.tune(rankings, qrels, qids, self._doc_ids, k=k, base=self.cfg.hybrid,
                           unseen=self.semantic.unseen(), prefixes=prefixes, report=candidates)
        self.cfg = dataclasses.replace(self.cfg, hybrid=best)
        self.meta.setdefault("build_seconds", {})["tune"] = time.perf_counter() - started
        self.meta["fusion_source"] = {"tuned_on_queries": len(qids)}
        return {"chosen": to_dict(best), "candidates": candidates}

    def use_fusion(self, hybrid: dict, *, source: str) -> None:
        """Serve the fusion ``hybrid`` (a HybridConfig dict, e.g. tuned in another index's dev split) instead of
        tuning here; ``source`` is recorded in the manifest."""
        check_mode("hybrid", self.modes)
        self.cfg = dataclasses.replace(self.cfg, hybrid=from_dict(HybridConfig, hybrid))
        self.meta["fusion_source"] = {"carried_from": source}

    # ---------------------------------------------------------------- persistence
    def save(self, path: Path, *, started: float | None = None) -> Path:
        """Write a new version of the index directory atomically; returns the version folder. ``started``
        (a time.perf_counter() value) records the build's total seconds up to the save in the manifest."""
        return write_version(Path(path), lambda folder: self._write(folder, started))

    def _write(self, folder: Path, started: float | None = None) -> dict:
        t = time.perf_counter()
        docs = self.corpus.table.add_column(0, "doc_idx", pa.array(np.arange(len(self.corpus), dtype=np.int64)))
        write_parquet(docs, folder / "docs.parquet")
        np.save(folder / "embeddings.npy", self.embeddings, allow_pickle=False)
        self.dense.save(folder / "dense.faiss")
        np.save(folder / "deleted.npy", self.dense.deleted, allow_pickle=False)
        self.bm25.save(folder / "bm25")
        extra = {}
        if self.semantic is not None:
            (folder / "semantic").mkdir()
            extra = self.semantic.save(folder / "semantic")
        seconds = self.meta.setdefault("build_seconds", {})
        seconds["save"] = time.perf_counter() - t  # every file but the manifest and its checksums
        if started is not None:
            seconds["total"] = time.perf_counter() - started
        self.meta["peak_rss_mb"] = peak_rss_mb()
        return {**extra,
            "kind": "retrieval",
            "config": to_dict(self.cfg),  # with the fusion this index serves (tuned or carried over)
            "counts": {"documents": len(self), "rows": len(self.corpus), "deleted": int(self.deleted.sum())},
            "encoder": self.cfg.embed.model,
            "encoder_sha256": weights_sha256(self.cfg.embed.model, self.embedder.device),  # checked at load
            "modes": list(self.modes),
            **self.meta,
        }

    @classmethod
    def load(cls, path: Path, *, device: str = "auto", checksums: bool = True) -> "GenerativeIndex":
        """Open an index directory; checks the manifest and (by default) every file's sha256."""
        folder, manifest = open_version(Path(path), checksums=checksums)  # CURRENT read once: load what was verified
        if manifest.get("kind", "retrieval") != "retrieval":
            raise ValueError(f"{path} is a {manifest['kind']!r} index, not a retrieval index; use `genir recommend`")
        cfg = from_dict(IndexConfig, manifest["config"])
        docs = read_parquet(folder / "docs.parquet")
        corpus = Corpus(docs.drop(["doc_idx"]))
        emb = load_array(folder / "embeddings.npy")
        deleted = load_array(folder / "deleted.npy")
        dense = DenseIndex.load(folder / "dense.faiss", cfg.dense, deleted)
        bm25 = Bm25Index.load(folder / "bm25", cfg.bm25)
        _check_encoder_weights(path, manifest, cfg, device)
        meta = {k: manifest[k] for k in META_KEYS if k in manifest}
        semantic = None
        if (folder / "semantic").is_dir():
            from genir.semantic import SemanticLayer

            semantic = SemanticLayer.load(folder / "semantic", device=device)
            old_copy = SemanticLayer.saved_hybrid(folder / "semantic")
            cfg = dataclasses.replace(cfg, hybrid=served_fusion(cfg.hybrid, old_copy))
        return cls(cfg, corpus, emb, dense, bm25, semantic=semantic, meta=meta, device=device)


def _check_encoder_weights(path: Path, manifest: dict, cfg: IndexConfig, device: str) -> None:
    """ValueError when the installed text encoder's weights differ from the build's (manifest ``encoder_sha256``;
    indexes written before it carry none and are not checked). An error, not a warning: the dense vectors, the
    semantic IDs and the decoder were all made with the old weights, so every query would be encoded by another
    model and the index would answer worse without a sign of it."""
    saved = manifest.get("encoder_sha256")
    if saved is None:
        return
    from genir.device import resolve_device

    now = weights_sha256(cfg.embed.model, str(resolve_device(device)))
    if now != saved:
        raise ValueError(f"{path}: the installed text encoder {cfg.embed.model!r} has other weights (sha256 {now[:12]}) "
                         f"than this index was built with ({saved[:12]}); install the encoder package version it was "
                         "built with, or rebuild the index")


DISTILL_RULE_QUERIES = 2000  # the most labelled train queries the distillation rule ranks (a seeded sample)


def check_train_config(cfg: IndexConfig) -> None:
    """TrainConfig.distill / distill_when / precision checked before any work (GenerativeIndex.build)."""
    from genir.config import DISTILL_WHEN
    from genir.device import DECODER_PRECISIONS

    if cfg.train.precision not in DECODER_PRECISIONS:
        raise ValueError(f"unknown train.precision {cfg.train.precision!r}; expected one of {DECODER_PRECISIONS}")
    if cfg.train.distill_when not in DISTILL_WHEN:
        raise ValueError(f"unknown train.distill_when {cfg.train.distill_when!r}; expected one of {DISTILL_WHEN}")
    if not 0.0 <= cfg.train.distill <= 1.0:
        raise ValueError(f"train.distill is a loss weight in [0, 1]; got {cfg.train.distill:g}")


def distill_choice(cfg: IndexConfig, embedder: Embedder, dense: DenseIndex, bm25: Bm25Index, corpus: Corpus,
                   queries: Queries | None, qrels: Qrels | None) -> dict:
    """TrainConfig.distill_when applied -> {"distill": the weight the model trains with, "reason": why, ...}.

    "dense_beats_bm25": distil (with ``train.distill``) only if the dense index ranks the build's labelled TRAIN
    queries better than BM25 does (nDCG@10 over at most DISTILL_RULE_QUERIES of them, a seeded sample; both scores
    recorded). A teacher weaker than the lexical baseline pulled the student down where it was measured (SciFact);
    without labelled queries, or with trained encoder layers (the teacher pools the frozen states), it does not
    distil. "always": ``train.distill`` as set."""
    train = cfg.train
    if train.distill <= 0:
        return {"distill": 0.0, "reason": "train.distill is 0"}
    if train.distill_when == "always":
        return {"distill": train.distill, "reason": "train.distill_when is 'always'"}
    if cfg.model.trainable_encoder_layers:
        return {"distill": 0.0, "reason": "trainable encoder layers: the teacher pools the frozen encoder's states"}
    import pyarrow.compute as pc

    from genir.metrics import evaluate_order

    rows: list[int] = []
    if queries is not None and qrels is not None:
        docs = set(corpus.doc_ids)
        judged = {q for q, d, r in zip(*(qrels.table.column(c).to_pylist() for c in ("query_id", "doc_id", "relevance")))
                  if r > 0 and d in docs}
        rows = [i for i, q in enumerate(queries.query_ids) if q in judged]
    if not rows:
        return {"distill": 0.0, "reason": "no labelled train queries to rank with dense and BM25"}
    if len(rows) > DISTILL_RULE_QUERIES:
        rows = sorted(np.random.default_rng(train.seed).choice(rows, DISTILL_RULE_QUERIES, replace=False).tolist())
    qids, texts = [queries.query_ids[i] for i in rows], [queries.texts[i] for i in rows]
    keep = pa.array(sorted(set(qids)))
    sample = Qrels(qrels.table.filter(pc.is_in(qrels.table.column("query_id"), value_set=keep)))
    _, dense_idx = dense.search(embedder.encode(texts), 10)
    _, bm25_idx = bm25.search(texts, 10)
    ndcg = {name: evaluate_order(qids, idx, corpus.doc_ids, sample, ["nDCG@10"])["nDCG@10"]
            for name, idx in (("dense", dense_idx), ("bm25", bm25_idx))}
    wins = ndcg["dense"] > ndcg["bm25"]
    logger.info("distillation rule: dense nDCG@10 %.4f vs BM25 %.4f on %d train queries -> %s", ndcg["dense"],
                ndcg["bm25"], len(rows), f"distil with weight {train.distill:g}" if wins else "no distillation")
    return {"distill": train.distill if wins else 0.0, "queries": len(rows), "dense_ndcg10": round(ndcg["dense"], 4),
            "bm25_ndcg10": round(ndcg["bm25"], 4),
            "reason": "dense beats BM25 on the train queries" if wins else "dense does not beat BM25 on the train queries"}


def served_fusion(hybrid: HybridConfig, saved: HybridConfig | None) -> HybridConfig:
    """The fusion an index serves: its manifest's ``config.hybrid`` (``hybrid``), the one home since it held the
    served fusion. Indexes written before kept the default there and their tuned fusion only in a copy (``saved``:
    semantic/hybrid.json, or the manifest's top-level "hybrid"): a default manifest fusion beside a different
    copy is such an index, and the copy wins."""
    if saved is not None and hybrid == HybridConfig() and saved != hybrid:
        logger.info("fusion from its old copy (an index written before the manifest held it): %s", saved.method)
        return saved
    return hybrid


def manifest_fusion(manifest: dict) -> HybridConfig | None:
    """The fusion the index of ``manifest`` serves (what ``genir index --fusion-from`` carries over), None when it
    has no hybrid mode."""
    if "hybrid" not in manifest.get("modes", ()):
        return None
    old_copy = manifest.get("hybrid")  # the top-level copy indexes written before this function kept
    return served_fusion(from_dict(IndexConfig, manifest["config"]).hybrid,
                         from_dict(HybridConfig, old_copy) if old_copy is not None else None)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def manifest_of(path: Path) -> dict:
    """The live manifest of an index directory (no checksum pass)."""
    from genir.store import current_version

    return read_manifest(current_version(Path(path)))


def build_record(path: Path) -> dict:
    """What a result evaluating the index at ``path`` records about it (retrieval or recommendation): its live
    version, and the build's provenance (``built_by``: commit, command, machine; None for indexes written before
    it was kept), stage seconds and peak RSS, where the served fusion came from, what a build reused."""
    from genir.store import current_version

    folder = current_version(Path(path))
    manifest = read_manifest(folder)
    keys = ("kind", "built_by", "build_seconds", "peak_rss_mb", "fusion_source", "reused")
    return {"path": str(path), "version": folder.name, **{k: manifest.get(k) for k in keys}}


def dumps(obj) -> str:
    return json.dumps(obj, indent=2)
