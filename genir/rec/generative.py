"""The generative layer of a recommendation index: item vectors -> semantic IDs -> TIGER model.

The recommendation counterpart of genir.semantic.SemanticLayer, in three stages, each with its own files in
the ``generative/`` folder of an index version:

    item vectors   item_vectors.safetensors   MiniLM over item text and/or co-occurrence (genir.rec.items)
    item IDs       codec/, codes.npy, trie/   the codec fitted on the vectors, every item's ID, their trie
    model          model.safetensors          the TigerModel trained to write the next item's ID

``fit_ids`` runs the first two stages and ``train`` the third; ``untrained`` hands a saved layer's vectors and
IDs to a new training run, so the model can be rebuilt without recomputing them (``genir index --task recommend
--reuse INDEX``). ``generative.json`` records the config each stage was built with.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from genir.config import REC_ADDED_LATER, RecConfig, rec_config_from_dict, to_dict
from genir.ids import add_suffix, load_codec, make_codec
from genir.rec import items as item_vectors
from genir.rec.evaluate import evaluate_ranker
from genir.rec.protocol import Examples, Interactions, train_parts, training_windows
from genir.store import load_array
from genir.rec.tiger import GenerativeRanker, TigerModel, train_tiger, user_buckets
from genir.trie import IdTrie

logger = logging.getLogger(__name__)

# RecConfig fields that shape the item vectors and IDs (with ``seed``, which seeds the co-occurrence SVD): a layer
# trained on reused IDs must ask for the same ones, or its config would describe IDs it does not have
ID_FIELDS = ("item_embedding", "item_embedding_no_text", "cooc_dim", "cooc_window", "codec")
META = "generative.json"


def ids_config(cfg: RecConfig) -> dict[str, Any]:
    """The ID_FIELDS and seed of ``cfg``, as JSON values: what the item vectors and IDs were made with."""
    full = json.loads(json.dumps(to_dict(cfg)))  # tuples as lists, as they come back from generative.json
    return {name: full[name] for name in (*ID_FIELDS, "seed")}


def ids_with_added_later(ids: dict[str, Any]) -> dict[str, Any]:
    """A saved ``ids`` config plus the ID_FIELDS it predates, at the values it was made with (REC_ADDED_LATER),
    appended so that the saved order (and so the bytes the layer writes again) stays."""
    return {**ids, **{k: v for k, v in REC_ADDED_LATER.items() if k in ID_FIELDS and k not in ids}}


class GenerativeRecLayer:
    """Item vectors, codec, codes (num_items, levels + 1) with collision suffix (row = item index), their trie, and
    the TigerModel (None until ``train``). ``cfg`` shapes the model and its serving (beam_size, user_buckets);
    ``ids`` is the config the vectors and IDs were made with (``ids_config``), which a reused layer keeps."""

    def __init__(self, cfg: RecConfig, vectors: item_vectors.ItemVectors, codec, codes: np.ndarray, trie: IdTrie, *,
                 vocab_sizes: Sequence[int], ids: dict[str, Any], model: TigerModel | None = None,
                 trained_items: int | None = None) -> None:
        self.cfg, self.vectors, self.codec, self.codes, self.trie = cfg, vectors, codec, codes, trie
        self.vocab_sizes = tuple(int(v) for v in vocab_sizes)  # decoder vocabulary per level, suffix included
        self.ids = dict(ids)
        self.model = model
        # items 0..trained_items-1 existed when the model was trained; later ones came through add_items
        self.trained_items = len(codes) if trained_items is None else int(trained_items)
        self.device = torch.device("cpu")

    # ------------------------------------------------------------------------------------------ stages
    @classmethod
    def fit_ids(cls, data: Interactions, cfg: RecConfig, *, device: torch.device = torch.device("cpu"),
                progress: bool | None = None, sasrec_table: np.ndarray | None = None,
                ) -> tuple["GenerativeRecLayer", dict[str, float]]:
        """Stages 1 and 2 on the training parts of ``data``: item vectors (text embedded on ``device``; the sasrec
        sources read ``sasrec_table``, a trained SASRec's item embeddings), then the codec, the IDs and their trie.
        -> (layer without model, {"embed_seconds", "codec_seconds"})."""
        t0 = time.perf_counter()
        vectors = item_vectors.item_embeddings(
            data.item_text, train_parts(data), source=cfg.item_embedding, cooc_dim=cfg.cooc_dim,
            cooc_window=cfg.cooc_window, seed=cfg.seed, device=str(device), progress=progress,
            sasrec_table=sasrec_table, no_text=cfg.item_embedding_no_text)
        emb = vectors.combined()
        t1 = time.perf_counter()
        codec = make_codec(cfg.codec).fit(emb, seed=cfg.codec.seed)
        codes = add_suffix(codec.encode(emb))
        vocab = (*codec.codebook_sizes, int(codes[:, -1].max()) + 1)
        trie = IdTrie.from_codes(codes, vocab_sizes=vocab)
        stats = codec.stats().to_dict()
        logger.info("semantic IDs from %s: collisions %.3f, largest group %d", vectors.source,
                    stats["collision_share"], stats["largest_collision"])
        layer = cls(cfg, vectors, codec, codes, trie, vocab_sizes=vocab, ids=ids_config(cfg))
        layer.device = device
        return layer, {"embed_seconds": t1 - t0, "codec_seconds": time.perf_counter() - t1}

    def untrained(self, cfg: RecConfig) -> "GenerativeRecLayer":
        """A layer with this one's item vectors and IDs (every item counts as trained) and no model yet, for
        training one under ``cfg`` (whose ID_FIELDS the caller has checked against ``self.ids``)."""
        layer = GenerativeRecLayer(cfg, self.vectors, self.codec, self.codes.copy(), self.trie,
                                   vocab_sizes=self.vocab_sizes, ids=self.ids)
        layer.device = self.device
        return layer

    def train(self, data: Interactions, valid: Examples, *, checkpoint_dir: Path | None = None, resume: bool | str = True,
              progress: bool | None = None) -> dict:
        """Stage 3: a new TigerModel (seeded by cfg.seed) trained on ``data``'s training windows with early
        stopping on ``valid``. -> training report (genir.rec.training.TrainReport as a dict)."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        self.model = TigerModel(self.vocab_sizes, cfg=cfg, num_items=self.trained_items).to(self.device)
        windows, owners = training_windows(data, max_history=cfg.max_history)
        buckets = user_buckets(data.user_ids, cfg.user_buckets)[owners]
        report = train_tiger(self.model, self.codes, windows, buckets,
                             lambda: evaluate_ranker(self.ranker(data.user_ids), valid), cfg=cfg,
                             checkpoint_dir=checkpoint_dir, resume=resume, progress=progress)
        return report.to_dict()

    def stats(self) -> dict:
        """The codec's utilisation and collisions (genir.ids CodecStats as a dict; kept in codec/codec.json)."""
        return self.codec.stats().to_dict()

    # ------------------------------------------------------------------------------------------ serve
    def ranker(self, user_ids: Sequence[str]) -> GenerativeRanker:
        """Constrained beam search over the trie; query users index ``user_ids``."""
        if self.model is None:
            raise ValueError("this generative layer has no trained model yet (train it first)")
        return GenerativeRanker(self.model, self.codes, self.trie, user_buckets(user_ids, self.cfg.user_buckets),
                                beam_size=self.cfg.beam_size, trained_items=self.trained_items)

    def add_items(self, *, texts: Sequence[str] | None, embeddings: np.ndarray | None) -> np.ndarray:
        """IDs for new items (rows after every existing one) from the frozen codec, added to the trie; from their
        ``texts`` (embedded like the catalogue) or ready ``embeddings`` (n, d). -> (n, depth) IDs."""
        if embeddings is None:
            embeddings = item_vectors.new_item_vectors(list(texts), self.vectors, device=str(self.device))
        codes = add_suffix(self.codec.encode(np.asarray(embeddings, dtype=np.float32)), existing=self.codes)
        first = len(self.codes)
        self.trie.add(codes, np.arange(first, first + len(codes)))
        self.codes = np.concatenate([self.codes, codes])
        return codes

    def to(self, device: torch.device) -> "GenerativeRecLayer":
        """Model and trie on ``device`` (a resolved torch.device); returns self."""
        self.device = device
        if self.model is not None:
            self.model.to(device)
        self.trie.to(device)
        return self

    # ------------------------------------------------------------------------------------------ persistence
    def save(self, folder: Path) -> None:
        """Each stage's files into ``folder`` (see the module docstring) and generative.json (no timings: the
        same build writes the same bytes)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.vectors.save(folder / "item_vectors.safetensors")
        self.codec.save(folder / "codec")
        np.save(folder / "codes.npy", self.codes, allow_pickle=False)
        self.trie.save(folder / "trie")
        if self.model is not None:
            save_file(self.model.state_dict(), str(folder / "model.safetensors"))
        # the hybrid fusion is the index's, not the layer's: its one home is the manifest's config.hybrid
        config = {name: value for name, value in to_dict(self.cfg).items() if name != "hybrid"}
        meta = {"config": config, "ids": {"config": self.ids},
                "vocab_sizes": list(self.vocab_sizes), "trained_items": self.trained_items}
        (folder / META).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: Path) -> "GenerativeRecLayer":
        """What ``save`` wrote into ``folder``, on the CPU (``to`` moves it)."""
        folder = Path(folder)
        meta = json.loads((folder / META).read_text())
        cfg = rec_config_from_dict(meta["config"])
        vectors = item_vectors.ItemVectors.load(folder / "item_vectors.safetensors")
        layer = cls(cfg, vectors, load_codec(folder / "codec"),
                    load_array(folder / "codes.npy"), IdTrie.load(folder / "trie"),
                    vocab_sizes=meta["vocab_sizes"], ids=ids_with_added_later(meta["ids"]["config"]),
                    trained_items=meta["trained_items"])
        if (folder / "model.safetensors").exists():
            layer.model = layer.new_model(load_file(str(folder / "model.safetensors")))
        return layer

    def new_model(self, state: dict[str, torch.Tensor]) -> TigerModel:
        """The TigerModel of this layer's cfg and vocabulary holding the weights ``state``, in eval mode."""
        model = TigerModel(self.vocab_sizes, cfg=self.cfg, num_items=self.trained_items)
        model.load_state_dict(state)
        return model.eval()
