"""Item vectors behind the semantic IDs: item text through MiniLM, interactions through a factorised
co-occurrence matrix or through the item table of the trained SASRec (collaborative vectors), or text and one of
the two concatenated.

Why both by default when text exists: Amazon Beauty's only text is brand + category (3,120 distinct
strings for 12,101 items; 201 items share "Skin Care, Body, Moisturizers, Lotions"), so text alone gives
identical vectors to large groups and pushes the distinction into an arbitrary collision suffix. The
co-occurrence half separates items that users treat differently. Only the training parts of the
sequences are used, so held-out items never shape the IDs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds
from threadpoolctl import threadpool_limits

from genir.config import EmbedConfig

# Item texts are embedded once per build and per added item: float32, as before the CPU bf16 default, so a
# recommendation index (its item vectors, IDs and results) is the same whatever CPU builds or extends it.
ITEM_EMBED = EmbedConfig(precision="fp32")

logger = logging.getLogger(__name__)

SOURCES = ("auto", "text", "cooc", "text+cooc", "sasrec", "text+sasrec")
NO_TEXT_SOURCES = ("sasrec", "cooc")  # RecConfig.item_embedding_no_text


def has_text(texts: list[str]) -> bool:
    """Whether any item has text (what 'auto' and item_embedding_no_text turn on)."""
    return any(t.strip() for t in texts)


def check_no_text(no_text: str) -> str:
    """RecConfig.item_embedding_no_text checked (ValueError naming the choices); returned as given."""
    if no_text not in NO_TEXT_SOURCES:
        raise ValueError(f"unknown item_embedding_no_text {no_text!r}; expected one of {NO_TEXT_SOURCES}")
    return no_text


def resolve_source(source: str, texts: list[str], *, no_text: str = "cooc", has_sasrec: bool = False) -> str:
    """'auto' -> 'text+cooc' when any item has text; without text, ``no_text`` ('sasrec' only when the build has a
    trained SASRec, ``has_sasrec``, else 'cooc'). Other sources are checked and returned."""
    if source not in SOURCES:
        raise ValueError(f"unknown item_embedding {source!r}; expected one of {SOURCES}")
    text = has_text(texts)
    if source == "auto":
        if text:
            return "text+cooc"
        if check_no_text(no_text) == "sasrec" and not has_sasrec:
            logger.warning("item_embedding auto: no item text and no SASRec in this build; IDs from co-occurrence "
                           "(train --mode sasrec too for IDs from its item table)")
            return "cooc"
        return no_text
    if "text" in source and not text:
        raise ValueError(f"item_embedding {source!r} needs item text and this dataset has none; use 'cooc', "
                         "'sasrec' or 'auto'")
    return source


def text_embeddings(texts: list[str], *, embed: EmbedConfig = ITEM_EMBED, device: str = "auto",
                    progress: bool | None = None) -> np.ndarray:
    """(n, 384) float32 unit-norm MiniLM vectors, computed on ``device``; each distinct text is encoded once."""
    from genir.embed import Embedder

    unique = list(dict.fromkeys(texts))
    vecs = Embedder(embed, device=device).encode(unique, progress=progress)
    where = {t: i for i, t in enumerate(unique)}
    return _unit(vecs[[where[t] for t in texts]])


def cooc_matrix(train_seqs: list[np.ndarray], num_items: int, *, window: int) -> sp.csr_matrix:
    """Symmetric (num_items, num_items) counts of item pairs within ``window`` positions in one sequence."""
    rows, cols = [], []
    for seq in train_seqs:
        seq = np.asarray(seq, dtype=np.int64)
        for gap in range(1, window + 1):
            if len(seq) > gap:
                rows.append(seq[:-gap])
                cols.append(seq[gap:])
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    keep = r != c
    r, c = r[keep], c[keep]
    pairs = (np.concatenate([r, c]), np.concatenate([c, r]))
    m = sp.coo_matrix((np.ones(2 * len(r)), pairs), shape=(num_items, num_items))
    return m.tocsr()


def cooc_embeddings(train_seqs: list[np.ndarray], num_items: int, *, dim: int = 64, window: int = 3,
                    seed: int = 0) -> np.ndarray:
    """(num_items, dim) float32 unit-norm rows: truncated SVD of the PPMI co-occurrence matrix.

    Items that never co-occur with another get the zero vector (nothing to place them by).
    """
    counts = cooc_matrix(train_seqs, num_items, window=window)
    total = counts.sum()
    if total == 0:
        raise ValueError("no co-occurring item pairs in the training sequences; item_embedding needs 'text'")
    row = np.asarray(counts.sum(axis=1)).ravel()
    coo = counts.tocoo()
    # PPMI with context-distribution smoothing (alpha 0.75) damps the weight of very rare items
    ctx = row ** 0.75
    pmi = np.log(coo.data * ctx.sum() / (row[coo.row] * ctx[coo.col]))
    keep = pmi > 0
    ppmi = sp.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=counts.shape)
    k = min(dim, num_items - 2)
    rng = np.random.default_rng(seed)
    # one BLAS thread: threaded BLAS may sum ARPACK's products in another order, and near-equal singular values can
    # then come out differently, which would make the IDs depend on the machine's core count
    with threadpool_limits(limits=1, user_api="blas"):
        u, s, _ = svds(ppmi.astype(np.float64), k=k, v0=rng.standard_normal(num_items))
    vecs = u * np.sqrt(s)[None, :]
    out = np.zeros((num_items, dim), dtype=np.float32)
    out[:, :k] = vecs
    return _unit(out)


def combine(*parts: np.ndarray | None) -> np.ndarray:
    """Concatenate the given unit-norm parts (None: absent) with equal weight; the result is unit norm (zero rows
    stay zero)."""
    given = [p for p in parts if p is not None]
    if not given:
        raise ValueError("need at least one of the text, co-occurrence or SASRec item vectors")
    return _unit(np.concatenate(given, axis=1))


def impute_cooc(text_new: np.ndarray, text_known: np.ndarray, cooc_known: np.ndarray, *, k: int = 10) -> np.ndarray:
    """Interaction vectors (co-occurrence or SASRec) for items without interactions: the mean over their ``k``
    nearest known items by text (cosine), so a new item lands among the items it reads like. (m, d_text) ->
    (m, d_cooc); known rows that are zero are skipped."""
    has = np.linalg.norm(cooc_known, axis=1) > 0
    known_text, known_cooc = text_known[has], cooc_known[has]
    if len(known_text) == 0:
        return np.zeros((len(text_new), cooc_known.shape[1]), dtype=np.float32)
    sims = text_new @ known_text.T
    k = min(k, len(known_text))
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return _unit(known_cooc[top].mean(axis=1))


@dataclass(frozen=True)
class ItemVectors:
    """Per-item unit vectors of each source used; ``combined`` is what the codec sees."""

    source: str  # resolved: text | cooc | text+cooc | sasrec | text+sasrec
    text: np.ndarray | None  # (n, 384) MiniLM
    cooc: np.ndarray | None  # (n, cooc_dim) PPMI-SVD (imputed from text neighbours for items without pairs)
    # (n, sasrec_dim) the trained SASRec's item embeddings, unit norm (imputed from text neighbours, when there is
    # text, for items absent from the training sequences: their rows never learned from a positive)
    sasrec: np.ndarray | None = None

    def combined(self) -> np.ndarray:
        return combine(self.text, self.cooc, self.sasrec)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in (("text", self.text), ("cooc", self.cooc), ("sasrec", self.sasrec)) if v is not None}

    def save(self, path: Path) -> None:
        """One safetensors file: the arrays, and the source in its metadata."""
        from safetensors.numpy import save_file

        save_file(self.arrays(), str(path), metadata={"source": self.source})

    @classmethod
    def load(cls, path: Path, *, source: str | None = None) -> "ItemVectors":
        """What ``save`` wrote; ``source`` for files written before it kept the source in their metadata."""
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            arrays = {k: f.get_tensor(k) for k in f.keys()}
            source = (f.metadata() or {}).get("source", source)
        if source not in SOURCES[1:]:
            raise ValueError(f"{path}: unknown item vector source {source!r}; expected one of {SOURCES[1:]}")
        return cls(source, arrays.get("text"), arrays.get("cooc"), arrays.get("sasrec"))


def item_embeddings(texts: list[str], train_seqs: list[np.ndarray], *, source: str = "auto", cooc_dim: int = 64,
                    cooc_window: int = 3, embed: EmbedConfig = ITEM_EMBED, seed: int = 0, device: str = "auto",
                    progress: bool | None = None, sasrec_table: np.ndarray | None = None,
                    no_text: str = "cooc") -> ItemVectors:
    """Item vectors from the requested source ("auto": text+cooc when there is text, else ``no_text``, see
    resolve_source); text is embedded on ``device``. The sasrec sources need ``sasrec_table`` (num_items, d): a
    trained SASRec's item embeddings, row = item index."""
    source = resolve_source(source, texts, no_text=no_text, has_sasrec=sasrec_table is not None)
    text = text_embeddings(texts, embed=embed, device=device, progress=progress) if "text" in source else None
    cooc = sasrec = None
    if "cooc" in source:
        cooc = cooc_embeddings(train_seqs, len(texts), dim=cooc_dim, window=cooc_window, seed=seed)
        cold = np.linalg.norm(cooc, axis=1) == 0
    if "sasrec" in source:
        if sasrec_table is None or len(sasrec_table) != len(texts):
            raise ValueError(f"item_embedding {source!r} needs the trained SASRec's item table, one row per item "
                             f"({len(texts)}); train SASRec in the same build (--mode sasrec) or --reuse an index "
                             "that has it")
        sasrec = _unit(np.asarray(sasrec_table, dtype=np.float32))
        seen = np.zeros(len(texts), dtype=bool)
        for seq in train_seqs:
            seen[np.asarray(seq, dtype=np.int64)] = True
        cold = ~seen
    if text is not None and (cooc is not None or sasrec is not None) and cold.any():
        part = cooc if cooc is not None else sasrec
        part[cold] = impute_cooc(text[cold], text[~cold], part[~cold])
    logger.info("item embeddings from %s: %d items", source, len(texts))
    return ItemVectors(source, text, cooc, sasrec)


def new_item_vectors(texts: list[str], known: ItemVectors, *, embed: EmbedConfig = ITEM_EMBED,
                     device: str = "auto") -> np.ndarray:
    """Combined vectors (n, d) for items added after training, from their text alone (embedded on ``device``)."""
    if known.text is None:
        raise ValueError(f"item IDs here come from {known.source!r}, not text; pass embeddings= for new items")
    text = text_embeddings(texts, embed=embed, device=device)
    parts = [impute_cooc(text, known.text, p) if p is not None else None for p in (known.cooc, known.sasrec)]
    return combine(text, *parts)


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(np.where(norm > 0, x / np.maximum(norm, 1e-12), 0.0), dtype=np.float32)
