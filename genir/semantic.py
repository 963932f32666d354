"""The generative layer of an index: semantic-ID codec, the IDs, their trie and the seq2seq retriever.

Kept apart from genir.index so the index module stays about dense/BM25/search dispatch and persistence;
everything here is optional (IndexConfig.generative) and lives in `semantic/` inside an index version.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genir.config import HybridConfig, IndexConfig, from_dict, to_dict
from genir.data.types import Corpus, Qrels, Queries
from genir.embed import Embedder, mean_pooled, same_model
from genir.generative import GenerativeRetriever, Memories
from genir.ids import add_suffix, load_codec, make_codec
from genir.pseudo import apply_mix
from genir.store import load_array
from genir.timing import stage
from genir.trie import IdTrie

logger = logging.getLogger(__name__)

MIN_SUFFIX_VOCAB = 16  # suffix codes the decoder reserves, so documents added later can still be decoded


def suffix_vocab(ids: np.ndarray) -> int:
    """Room for twice the largest collision group: later adds rarely need more than that."""
    largest = int(ids[:, -1].max()) + 1 if len(ids) else 1
    return max(MIN_SUFFIX_VOCAB, 1 << int(np.ceil(np.log2(2 * largest))))


def train_pairs(queries: Queries, qrels: Qrels, doc_ids: list[str]) -> tuple[list[str], list[list[int]]]:
    """Judged queries -> (texts, relevant doc_idx per query); judgements on unknown docs are skipped."""
    position = {d: i for i, d in enumerate(doc_ids)}
    relevant: dict[str, list[int]] = {}
    for q, d, r in zip(*(qrels.table.column(c).to_pylist() for c in ("query_id", "doc_id", "relevance"))):
        if r > 0 and d in position:
            relevant.setdefault(q, []).append(position[d])
    texts, targets = [], []
    for qid, text in zip(queries.query_ids, queries.texts):
        if qid in relevant:
            texts.append(text)
            targets.append(relevant[qid])
    return texts, targets


class SemanticLayer:
    """codec + ids (rows, depth) + trie + retriever; row i of ids is doc_idx i (removed docs keep theirs).

    The fusion the index serves is not kept here: it is the index's ``cfg.hybrid`` (manifest ``config.hybrid``).
    Indexes written before the manifest held it kept their tuned fusion in ``semantic/hybrid.json``, which is read
    for them only (``saved_hybrid``) and no longer written."""

    def __init__(self, codec, ids: np.ndarray, trie: IdTrie, retriever: GenerativeRetriever,
                 meta: dict | None = None) -> None:
        self.codec = codec
        self.ids = ids
        self.trie = trie
        self.retriever = retriever
        self.meta = dict(meta or {})

    @classmethod
    def build(cls, corpus: Corpus, emb: np.ndarray, cfg: IndexConfig, *, train_queries: Queries | None,
              train_qrels: Qrels | None, distill: float, distill_choice: dict | None = None, device: str = "auto",
              workdir: Path | None = None, resume: bool = False, progress: bool | None = None) -> "SemanticLayer":
        """Fit the codec on ``emb`` (n, d), build the trie and train the retriever. Under torchrun every process
        calls this: rank 0 alone fits the codec (``emb`` may be empty on the others) and sends the IDs, so every
        process trains on the same targets; other ranks get a layer without codec, which is not to be saved.
        ``distill``: the distillation weight the model trains with (genir.index.distill_choice applies
        ``cfg.train.distill_when``; ``distill_choice``, its record, goes to the meta)."""
        from genir.device import broadcast_array, setup_distributed

        info = setup_distributed(device)
        timings = {}
        t = time.perf_counter()
        codec, ids, vocab, stats = None, None, None, {}
        if info.rank == 0:
            codec = make_codec(cfg.codec).fit(emb, seed=cfg.codec.seed)
            ids = add_suffix(codec.encode(emb))
            vocab = np.array([*codec.codebook_sizes, suffix_vocab(ids)])
            stats = codec.stats().to_dict()
            logger.info("semantic IDs (%s): %s", cfg.codec.scheme, _stats_line(stats))
        ids, vocab = broadcast_array(ids, info), broadcast_array(vocab, info)  # no-ops in a single process
        timings["ids"] = time.perf_counter() - t
        t = time.perf_counter()
        trie = IdTrie.from_codes(ids, vocab_sizes=tuple(int(v) for v in vocab))
        timings["trie"] = time.perf_counter() - t
        texts = corpus.table.column("text").to_pylist()
        titles = corpus.table.column("title").to_pylist()
        q_texts, q_docs = ([], []) if train_queries is None else train_pairs(train_queries, train_qrels, corpus.doc_ids)
        train_cfg = dataclasses.replace(apply_mix(cfg.train), distill=float(distill))
        logger.info("pseudo-query mix: %s", train_cfg.pseudo_mix)
        doc_emb = None
        if train_cfg.distill > 0:
            if cfg.embed.model != cfg.model.encoder:
                raise ValueError(f"train.distill needs the dense index and the text encoder to be one model (its "
                                 f"teacher compares the encoder's pooled states with the document vectors); got "
                                 f"embed.model={cfg.embed.model!r} and model.encoder={cfg.model.encoder!r}")
            if cfg.model.trainable_encoder_layers:
                raise ValueError("train.distill pools the frozen encoder's last states into the teacher's query "
                                 "vectors: it needs model.trainable_encoder_layers=0 (the cached states stop below "
                                 "the trained layers)")
            doc_emb = broadcast_array(emb if info.rank == 0 else None, info, dtype=np.float32)
        retriever = GenerativeRetriever.train(texts, titles, ids, trie, q_texts, q_docs, model_cfg=cfg.model,
                                              train_cfg=train_cfg, device=device, workdir=workdir, resume=resume,
                                              progress=progress, doc_emb=doc_emb)
        timings.update(retriever.build_info.get("seconds", {}))
        meta = {"codec_stats": stats, "build_seconds": timings, "train_queries": len(q_texts), "trained_docs": len(ids),
                "pseudo_mix": train_cfg.pseudo_mix, "train_config": to_dict(train_cfg), "distill": distill_choice or {},
                "pairs": retriever.build_info.get("pairs", {})}
        if retriever.train_result is not None:
            meta["train"] = {k: v for k, v in vars(retriever.train_result).items() if isinstance(v, (int, float, str))}
        return cls(codec, ids, trie, retriever, meta)

    # ---------------------------------------------------------------- updates
    def add(self, emb: np.ndarray, new_idx: np.ndarray) -> None:
        """IDs for new documents from the frozen codec; suffixes continue after every ID ever issued."""
        new_ids = add_suffix(self.codec.encode(emb), existing=self.ids)
        self.trie.add(new_ids, new_idx)
        self.ids = np.concatenate([self.ids, new_ids])

    def encode_queries(self, queries: list[str], embedder: Embedder, *,
                       batch_size: int) -> tuple[np.ndarray, Memories | None]:
        """Query embeddings (q, d) float32 for the dense side and, when one MiniLM pass can serve both
        (``shares_query_pass``), the decoder's (memory, mask) per batch of ``batch_size`` queries; None when the
        decoder must encode them itself. Timed as "encode" either way.

        Shared, an embedding is ``embedder.pool`` of the decoder's token states, except for queries that filled the
        text encoder's token limit (or the embedder's, if lower): those may be truncated differently by the two, so
        they come from ``embedder.encode`` (a second pass for those queries only)."""
        with stage("encode"):
            if not shares_query_pass(embedder, self.retriever):
                return embedder.encode(queries), None
            encoder = self.retriever.model.encoder
            memories = [encoder(queries[s : s + batch_size]) for s in range(0, len(queries), batch_size)]
            if not memories:
                return np.zeros((0, embedder.dim), dtype=np.float32), memories
            emb = np.concatenate([embedder.pool(states, mask) for states, mask in memories])
            lengths = torch.cat([mask.sum(1) for _, mask in memories]).cpu().numpy()
            cut = np.flatnonzero(lengths >= min(encoder.max_tokens, embedder.cfg.max_seq_length))
            if len(cut):
                emb[cut] = embedder.encode([queries[i] for i in cut])
            return emb, memories

    def unseen(self) -> np.ndarray:
        """Per doc_idx: True for documents added after the model was trained (it never saw their IDs)."""
        mask = np.zeros(len(self.ids), dtype=bool)
        mask[int(self.meta.get("trained_docs", len(self.ids))):] = True
        return mask

    def remove(self, idx: np.ndarray) -> None:
        self.trie.remove(idx)

    def prefix_docs(self, queries: list[str], *, level: int, beam_size: int, batch_size: int = 64,
                    memories: Memories | None = None, precision: str = "fp32") -> list[np.ndarray]:
        """GDR candidates: per query, the doc_idx (int64) under its ``beam_size`` best generated ID prefixes of
        length ``level``, prefix by prefix in beam order. ``memories``, ``precision``: as GenerativeRetriever.search's."""
        nodes, _ = self.retriever.search_prefixes(queries, level=level, beam_size=beam_size, batch_size=batch_size,
                                                  memories=memories, precision=precision)
        empty = [np.zeros(0, np.int64)]
        with stage("prefix"):
            return [np.concatenate([self.trie.docs_under(int(n), level) for n in row if n >= 0] or empty)
                    for row in nodes]

    # ---------------------------------------------------------------- persistence
    def save(self, folder: Path) -> dict:
        """Write the layer into ``folder``. -> manifest fields.

        No copy of the served fusion is written (it was semantic/hybrid.json and a top-level manifest "hybrid"):
        the genir versions that required hybrid.json (before d34e87f) cannot open a current index anyway, as its
        config carries HybridConfig fields they refuse (unseen_second), and --fusion-from reads config.hybrid."""
        folder = Path(folder)
        self.codec.save(folder / "codec")
        np.save(folder / "ids.npy", self.ids, allow_pickle=False)
        self.trie.save(folder / "trie")
        self.retriever.save(folder / "model")
        (folder / "semantic.json").write_text(json.dumps(self.meta, indent=2))
        return {"semantic_ids": {"scheme": self.meta.get("codec_stats", {}).get("scheme"), "depth": int(self.ids.shape[1]),
                                 "stats": self.meta.get("codec_stats")}}

    @classmethod
    def load(cls, folder: Path, *, device: str = "auto") -> "SemanticLayer":
        folder = Path(folder)
        trie = IdTrie.load(folder / "trie")
        ids = load_array(folder / "ids.npy")
        meta = json.loads((folder / "semantic.json").read_text())
        meta.setdefault("trained_docs", len(ids))  # indexes written before the field: every row counts as trained
        return cls(load_codec(folder / "codec"), ids, trie, GenerativeRetriever.load(folder / "model", trie, device=device),
                   meta)

    @staticmethod
    def saved_hybrid(folder: Path) -> HybridConfig | None:
        """The fusion copy in ``folder/hybrid.json`` (None when absent). Indexes written before the manifest held
        the served fusion keep their tuned one only there."""
        path = Path(folder) / "hybrid.json"
        return from_dict(HybridConfig, json.loads(path.read_text())) if path.is_file() else None


@dataclass(frozen=True)
class IdCheck:
    """What ``check_decoded_ids`` found: returned outputs and how many of them are valid."""

    outputs: int  # returned positions that carry a decoded ID or a document (padding excluded)
    valid: int  # of them: a live corpus row whose semantic ID is exactly the decoded code tuple

    @property
    def share(self) -> float:
        """valid / outputs (nan when nothing was returned)."""
        return self.valid / self.outputs if self.outputs else float("nan")


def check_decoded_ids(codes: np.ndarray, doc_idx: np.ndarray, ids: np.ndarray, *, num_docs: int,
                      deleted: np.ndarray | None = None) -> IdCheck:
    """Check generative outputs against the corpus, not against the trie that produced them.

    codes (n, k, depth) decoded code tuples and doc_idx (n, k) the documents returned for them (-1 rows /
    -1 on padding); ids (num_docs, depth) the semantic ID of every row of the corpus table (row i = doc_idx i);
    deleted (num_docs,) bool, removed rows. An output is valid when its doc_idx is a row of the corpus table,
    not removed, and that row's ID equals the decoded tuple, so a trie that maps an ID to the wrong document,
    or a decoder that leaves the trie, is caught.
    """
    codes, doc_idx, ids = np.asarray(codes), np.asarray(doc_idx), np.asarray(ids)
    if codes.ndim != 3 or codes.shape[:2] != doc_idx.shape:
        raise ValueError(f"codes must be (n, k, depth) and doc_idx (n, k); got {codes.shape} and {doc_idx.shape}")
    if ids.shape != (num_docs, codes.shape[2]):
        raise ValueError(f"ids must be ({num_docs}, {codes.shape[2]}) to match the corpus table and the decoder; "
                         f"got {ids.shape}")
    returned = (doc_idx >= 0) | (codes >= 0).any(axis=2)
    in_table = (doc_idx >= 0) & (doc_idx < num_docs)
    row = np.where(in_table, doc_idx, 0)
    live = in_table if deleted is None else in_table & ~np.asarray(deleted, dtype=bool)[row]
    same = (ids[row] == codes).all(axis=2) if num_docs else np.zeros_like(live)
    return IdCheck(outputs=int(returned.sum()), valid=int((returned & live & same).sum()))


def shares_query_pass(embedder: Embedder, retriever: GenerativeRetriever) -> bool:
    """True when the retriever's text encoder computes exactly what the embedder pools: a frozen encoder (no
    trainable top layers, so its token states are MiniLM's last hidden states) that is the embedding model's own
    transformer (same weights, same loaded module), a mean-pooled SentenceTransformer (``mean_pooled``) without a
    default prompt, and one compute precision for both. Then a query's embedding is the masked mean of the decoder's memory, and one MiniLM
    pass serves both (issue 16: the two passes were half of a hybrid query's latency)."""
    cfg, encoder = retriever.model.cfg, retriever.model.encoder
    return (cfg.trainable_encoder_layers == 0 and len(encoder.top_layers) == 0
            and same_model(cfg.encoder, embedder.cfg.model)
            and encoder.bert is getattr(embedder.model[0], "auto_model", None)
            and mean_pooled(list(embedder.model)) and not getattr(embedder.model, "default_prompt_name", None)
            and embedder.precision == encoder.precision)


def _stats_line(stats: dict) -> str:
    util = ", ".join(f"{u:.0%}" for u in stats.get("utilization", ()))
    return (f"utilisation per level [{util}], {stats.get('collision_share', 0):.1%} of documents collide before "
            f"the suffix, largest group {stats.get('largest_collision', 0)}")
