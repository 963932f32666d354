"""The recommendation engine as one object: build (item IDs + models), save/load, recommend, evaluate,
add new items without retraining.

Everything learned (item vectors, codec, TIGER, SASRec, popularity) sees only the leave-one-out training
parts, so ``evaluate`` on the validation and test splits is honest; ``recommend(user=...)`` serves from the
user's whole stored sequence.
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
from safetensors.numpy import load_file as load_np
from safetensors.numpy import save_file as save_np
from safetensors.torch import load_file as load_torch
from safetensors.torch import save_file as save_torch

import genir
from genir.config import RecConfig, rec_config_from_dict, to_dict
from genir.data.store import read_parquet, write_parquet
from genir.data.types import Sequences
from genir.ids import add_suffix, load_codec, make_codec
from genir.rec import items as item_vectors
from genir.rec.device import resolve_device
from genir.rec.evaluate import timed_evaluation
from genir.rec.popular import PopularRecommender
from genir.rec.protocol import Examples, Interactions, eval_queries, pack_histories, train_parts, training_windows
from genir.rec.sasrec import SASRec, SASRecRecommender
from genir.rec.tiger import ANONYMOUS, GenerativeRanker, TigerModel, train_tiger, user_bucket
from genir.trie import IdTrie

logger = logging.getLogger(__name__)

MODES = ("generative", "sasrec", "popular")
KIND = "recommend"  # manifest "kind" (genir.cli dispatches on it)


def _check_modes(modes: Sequence[str]) -> tuple[str, ...]:
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"unknown or no modes {list(bad)}; expected some of {MODES}")
    return tuple(dict.fromkeys(modes))


def _sample(queries: Examples, n: int, seed: int) -> Examples:
    if n <= 0 or n >= len(queries):
        return queries
    return queries.subset(np.sort(np.random.default_rng(seed).choice(len(queries), n, replace=False)))


@dataclass
class Recommender:
    """A trained recommendation index: item table, sequences, and whichever of the MODES were built.

    ``build`` trains, ``save``/``load`` persist (genir.store versioned directory), ``recommend`` serves one
    user or history, ``evaluate`` returns the REPORT dict, ``add_items`` extends the catalogue.
    """

    cfg: RecConfig
    data: Interactions  # every user's full sequence + the item table (row = item index)
    dataset: str = ""
    popular: PopularRecommender | None = None
    sasrec: SASRec | None = None
    tiger: TigerModel | None = None
    item_codes: np.ndarray | None = None  # (num_items, levels + 1) full semantic IDs
    trie: IdTrie | None = None
    codec: object | None = None  # genir.ids.SemanticIdCodec
    vectors: item_vectors.ItemVectors | None = None  # item vectors behind the IDs (places new items)
    reports: dict[str, dict] = field(default_factory=dict)  # per mode: training report, codec stats
    trained_items: int = 0  # items that existed when the generative model was trained (later: add_items)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where models and trie live (to())

    @property
    def modes(self) -> tuple[str, ...]:
        have = {"generative": self.tiger, "sasrec": self.sasrec, "popular": self.popular}
        return tuple(m for m in MODES if have[m] is not None)

    # ------------------------------------------------------------------------------------------ build
    @classmethod
    def build(cls, sequences: Sequences, cfg: RecConfig = RecConfig(), *, modes: Sequence[str] = MODES,
              dataset: str = "", checkpoint_dir: Path | None = None, resume: bool = True,
              progress: bool | None = None, device: str = "auto") -> "Recommender":
        """Train the requested modes on the training parts; early stopping on (a sample of) validation.

        Per-epoch checkpoints go to ``checkpoint_dir``; ``resume`` continues from them (they are fingerprinted,
        so another run's are refused), ``resume=False`` starts over and removes them. ``device`` (auto | cpu |
        cuda | cuda:N) is where item text is embedded and the models train and serve."""
        modes = _check_modes(modes)
        dev = resolve_device(device)  # before any work: a bad device costs nothing
        threads = torch.get_num_threads()
        torch.set_num_threads(cfg.threads)
        try:
            rec = cls(cfg=cfg, data=Interactions.from_sequences(sequences), dataset=dataset, device=dev)
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
                rec._build_generative(_sample(valid, cfg.valid_users, cfg.seed), ckpt / "tiger" if ckpt else None,
                                      resume, progress)
        finally:
            torch.set_num_threads(threads)
        return rec

    def _build_generative(self, valid: Examples, ckpt: Path | None, resume: bool, progress: bool | None) -> None:
        cfg, t0 = self.cfg, time.perf_counter()
        self.vectors = item_vectors.item_embeddings(
            self.data.item_text, train_parts(self.data), source=cfg.item_embedding, cooc_dim=cfg.cooc_dim,
            cooc_window=cfg.cooc_window, seed=cfg.seed, device=str(self.device), progress=progress)
        emb, source = self.vectors.combined(), self.vectors.source
        t1 = time.perf_counter()
        self.codec = make_codec(cfg.codec).fit(emb, seed=cfg.codec.seed)
        self.item_codes = add_suffix(self.codec.encode(emb))
        self.trained_items = len(self.item_codes)
        self.trie = IdTrie.from_codes(self.item_codes, vocab_sizes=self._vocab_sizes())
        stats = self.codec.stats().to_dict()
        logger.info("semantic IDs from %s: collisions %.3f, largest group %d", source, stats["collision_share"],
                    stats["largest_collision"])
        torch.manual_seed(cfg.seed)
        self.tiger = TigerModel(self._vocab_sizes(), cfg=cfg, num_items=self.trained_items).to(self.device)
        windows, owners = training_windows(self.data, max_history=cfg.max_history)
        buckets = self._user_buckets(self.data.user_ids)[owners]
        t2 = time.perf_counter()
        report = train_tiger(self.tiger, self._ranker(), windows, buckets, valid, cfg=cfg, checkpoint_dir=ckpt,
                             resume=resume, progress=progress)
        self.reports["generative"] = {"train": report.to_dict(), "item_embedding": source, "codec": stats,
                                      "embed_seconds": t1 - t0, "codec_seconds": t2 - t1,
                                      "seconds": time.perf_counter() - t0}

    def _vocab_sizes(self) -> tuple[int, ...]:
        sizes = tuple(self.codec.codebook_sizes)
        return (*sizes, int(self.item_codes[:, -1].max()) + 1)

    def _user_buckets(self, user_ids: Sequence[str]) -> np.ndarray:
        return np.asarray([user_bucket(u, self.cfg.user_buckets) for u in user_ids], dtype=np.int64)

    def _ranker(self, user_ids: Sequence[str] | None = None) -> GenerativeRanker:
        buckets = self._user_buckets(self.data.user_ids if user_ids is None else user_ids)
        return GenerativeRanker(self.tiger, self.item_codes, self.trie, buckets, beam_size=self.cfg.beam_size,
                                trained_items=self.trained_items)

    def ranker(self, mode: str, user_ids: Sequence[str] | None = None):
        """The object whose ``rank(histories, lengths, users, *, k)`` serves ``mode``; users index ``user_ids``."""
        if mode not in self.modes:
            raise ValueError(f"mode {mode!r} is not in this index; it holds {self.modes} (rebuild with it)")
        if mode == "generative":
            return self._ranker(user_ids)
        return SASRecRecommender(self.sasrec) if mode == "sasrec" else self.popular

    # ------------------------------------------------------------------------------------------ serve
    def recommend(self, *, user: str | None = None, history: Sequence[str] | None = None, k: int = 10,
                  mode: str = "generative") -> list[dict]:
        """Top-k next items for a known user (their whole sequence) or an explicit history of item ids.

        -> [{"rank", "item_id", "text", "score"}] best first (score: log-probability for generative,
        model score for sasrec, interaction count for popular).
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
        if mode == "generative":
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
        if self.codec is None:
            raise ValueError("this index has no generative mode; rebuild with mode 'generative' to add items")
        known = set(self.data.item_ids)
        dup = [i for i in item_ids if i in known]
        if dup or len(set(item_ids)) != len(item_ids):
            raise ValueError(f"item ids already present or repeated: {dup[:5]}; new items need new ids")
        if embeddings is None:
            if texts is None or len(texts) != len(item_ids):
                raise ValueError("give texts= (one per item) or embeddings= (n, d) for the new items")
            embeddings = item_vectors.new_item_vectors(list(texts), self.vectors, device=str(self.device))
        emb = np.asarray(embeddings, dtype=np.float32)
        codes = add_suffix(self.codec.encode(emb), existing=self.item_codes)
        first = self.data.num_items
        self.trie.add(codes, np.arange(first, first + len(codes)))
        self.item_codes = np.concatenate([self.item_codes, codes])
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
        codes = self.item_codes.tolist() if self.item_codes is not None else [[] for _ in self.data.item_ids]
        write_parquet(pa.table({"item_id": self.data.item_ids, "text": self.data.item_text,
                                "codes": pa.array(codes, pa.list_(pa.int64()))}), folder / "items.parquet")
        write_parquet(pa.table({"user_id": self.data.user_ids,
                                "items": pa.array([s.tolist() for s in self.data.seqs], pa.list_(pa.int64()))}),
                      folder / "sequences.parquet")
        if self.popular is not None:
            self.popular.save(folder)
        if self.sasrec is not None:
            save_torch(self.sasrec.state_dict(), str(folder / "sasrec.safetensors"))
        if self.tiger is not None:
            save_torch(self.tiger.state_dict(), str(folder / "tiger.safetensors"))
            self.codec.save(folder / "codec")
            self.trie.save(folder / "trie")
            save_np(self.vectors.arrays(), str(folder / "item_vectors.safetensors"))
        return {"kind": KIND, "dataset": self.dataset, "config": to_dict(self.cfg), "modes": list(self.modes),
                "counts": {"users": self.data.num_users, "items": self.data.num_items},
                "vocab_sizes": list(self.tiger.decoder.vocab_sizes) if self.tiger is not None else None,
                "item_source": self.vectors.source if self.vectors is not None else None,
                "trained_items": self.trained_items,
                "reports": self.reports}

    def to(self, device: str) -> "Recommender":
        """Move the models and the item trie to ``device`` (auto | cpu | cuda | cuda:N); returns self."""
        self.device = resolve_device(device)
        for model in (self.sasrec, self.tiger):
            if model is not None:
                model.to(self.device)
        if self.trie is not None:
            self.trie.to(self.device)
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
        rec = cls(cfg=cfg, data=data, dataset=manifest.get("dataset", ""), reports=manifest.get("reports", {}),
                  trained_items=manifest.get("trained_items", 0))
        if (folder / "popular.safetensors").exists():
            rec.popular = PopularRecommender.load(folder)
        if (folder / "sasrec.safetensors").exists():
            state = load_torch(str(folder / "sasrec.safetensors"))
            rec.sasrec = SASRec(state["item_emb.weight"].shape[0] - 1, max_len=cfg.max_history, dim=cfg.sasrec_dim,
                                layers=cfg.sasrec_layers, heads=cfg.sasrec_heads, dropout=cfg.sasrec_dropout)
            rec.sasrec.load_state_dict(state)
            rec.sasrec.eval()
        if (folder / "tiger.safetensors").exists():
            rec.codec = load_codec(folder / "codec")
            rec.trie = IdTrie.load(folder / "trie")
            rec.item_codes = np.asarray(items.column("codes").to_pylist(), dtype=np.int64)
            arrays = load_np(str(folder / "item_vectors.safetensors"))
            rec.vectors = item_vectors.ItemVectors(manifest["item_source"], arrays.get("text"), arrays.get("cooc"))
            rec.tiger = TigerModel(manifest["vocab_sizes"], cfg=cfg, num_items=rec.trained_items)
            rec.tiger.load_state_dict(load_torch(str(folder / "tiger.safetensors")))
            rec.tiger.eval()
        return rec.to(device)
