"""IdTrie: the set of existing semantic IDs as per-level tensor tables, for constrained decoding.

Prefix nodes at depth ``l`` (the prefixes of length ``l``; the root is node 0 at depth 0) are numbered
0..n_l-1 in lexicographic order of their codes. Because of that order, the children of a node are a
contiguous run of the next depth, and so are all leaves below any prefix. Per level ``l`` the trie keeps

* CSR: ``offsets[l]`` (n_l + 1,) -- children of node p are nodes offsets[p]..offsets[p+1]-1 at depth l+1 --
  and ``keys[l]`` (n_{l+1},) = parent * V_l + code, sorted, so ``step`` is one ``searchsorted``;
* dense, where n_l * V_l <= ``dense_limit``: ``rank[l]`` (n_l, V_l), the child's position among its
  siblings or -1. ``allowed`` is then one gather (rank >= 0) and ``step`` two (offsets + rank). Storing
  the sibling rank instead of a child id plus a separate bool mask keeps it int16 for V <= 32768: a
  quarter of the bytes of int32 child ids + bool mask at the same number of gathers per step.

Leaves (depth = num_levels) map to doc_idx through ``leaf_doc``. Node ids are positions in the current
tables: ``add`` and ``remove`` rebuild them (vectorised numpy, ~1 s per million IDs), so callers must not
keep node ids across an update. Persistence: ``trie.marisa`` (marisa BinaryTrie over the codes packed
big-endian, so byte order is code order) + ``trie.safetensors`` (doc_idx by marisa key id) + ``trie.json``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_DENSE_LIMIT = 1 << 24  # table entries per level kept dense: 32 MB as int16


class IdTrie:
    """Prefix tables over a code table; row i of ``codes`` is document ``doc_idx[i]``."""

    def __init__(
        self,
        codes: np.ndarray,
        doc_idx: np.ndarray,
        *,
        vocab_sizes: tuple[int, ...] | None = None,
        dense_limit: int = DEFAULT_DENSE_LIMIT,
    ) -> None:
        codes, doc_idx = _check_table(codes, doc_idx)
        self.num_levels: int = codes.shape[1]
        observed = codes.max(axis=0) + 1 if len(codes) else np.ones(self.num_levels, dtype=np.int64)
        if vocab_sizes is not None and len(vocab_sizes) != self.num_levels:
            raise ValueError(f"vocab_sizes has {len(vocab_sizes)} entries; the codes have {self.num_levels} levels")
        floor = vocab_sizes or (1,) * self.num_levels
        self.vocab_sizes: tuple[int, ...] = tuple(int(max(o, f)) for o, f in zip(observed, floor))
        self.dense_limit = int(dense_limit)
        self.device = torch.device("cpu")
        self._build(codes, doc_idx)

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_codes(
        cls,
        codes: np.ndarray,
        doc_idx: np.ndarray | None = None,
        *,
        vocab_sizes: tuple[int, ...] | None = None,
        dense_limit: int = DEFAULT_DENSE_LIMIT,
    ) -> "IdTrie":
        """Build from ``codes`` (n, depth) non-negative ints, unique rows; ``doc_idx`` (n,) defaults to arange(n).

        ``vocab_sizes`` sets a floor per level (e.g. the codebook size, so masks match the decoder's
        logits even when a code is unused); otherwise each level's size is its max code + 1.
        """
        codes = np.asarray(codes)
        if doc_idx is None:
            doc_idx = np.arange(len(codes), dtype=np.int64)
        return cls(codes, doc_idx, vocab_sizes=vocab_sizes, dense_limit=dense_limit)

    def _build(self, codes: np.ndarray, doc_idx: np.ndarray) -> None:
        n, depth = codes.shape
        order = np.lexsort(codes.T[::-1]) if n else np.zeros(0, dtype=np.int64)
        s = codes[order]
        new = np.zeros(n, dtype=bool)  # row starts a new prefix node at the current depth
        new[:1] = True
        node = np.zeros(n, dtype=np.int64)  # each sorted row's node id at the current depth
        self._offsets: list[np.ndarray] = []
        self._keys: list[np.ndarray] = []
        self._rank: list[np.ndarray | None] = []
        self.level_sizes: list[int] = [1]
        for level in range(depth):
            vocab = self.vocab_sizes[level]
            if n:
                new = new | np.concatenate([[True], s[1:, level] != s[:-1, level]])
            child_of_row = np.cumsum(new) - 1
            first = np.flatnonzero(new)
            parent, code = node[first], s[first, level]
            n_parent = self.level_sizes[-1]
            offsets = np.zeros(n_parent + 1, dtype=np.int64)
            np.cumsum(np.bincount(parent, minlength=n_parent), out=offsets[1:])
            self._offsets.append(offsets)
            self._keys.append(parent * vocab + code)
            if n_parent * vocab <= self.dense_limit:
                rank = np.full((n_parent, vocab), -1, dtype=np.int16 if vocab <= 32768 else np.int32)
                rank[parent, code] = np.arange(len(first)) - offsets[parent]
                self._rank.append(rank)
            else:
                self._rank.append(None)
            node = child_of_row
            self.level_sizes.append(len(first))
        if self.level_sizes[-1] != n:
            dup = s[np.flatnonzero(~new)[0]] if n else s
            raise ValueError(
                f"{n - self.level_sizes[-1]} rows repeat a full code (e.g. {dup.tolist()}); "
                "make IDs unique first with genir.ids.suffix.add_suffix"
            )
        self._codes = s
        self._leaf_doc = doc_idx[order]
        self._to_torch()

    def _to_torch(self) -> None:
        dev = self.device
        self._t_offsets = [torch.from_numpy(o).to(dev) for o in self._offsets]
        self._t_keys = [torch.from_numpy(k).to(dev) for k in self._keys]
        self._t_rank = [None if r is None else torch.from_numpy(r).to(dev) for r in self._rank]
        self._t_leaf_doc = torch.from_numpy(self._leaf_doc).to(dev)

    # ---------------------------------------------------------------- decoding-time queries (tensors)
    def allowed(self, node: Tensor, level: int) -> Tensor:
        """(B,) int64 prefix node ids at depth ``level`` -> (B, vocab_sizes[level]) bool mask of next codes.

        Node ids outside 0..n_level-1 (e.g. -1 for a dead beam) get an all-False row.
        """
        self._check_level(level, self.num_levels - 1)
        node = self._on_device(node)
        vocab = self.vocab_sizes[level]
        if self.level_sizes[level + 1] == 0:  # empty trie: no prefix has children
            return torch.zeros(len(node), vocab, dtype=torch.bool, device=node.device)
        valid, safe = self._safe(node, self.level_sizes[level])
        rank = self._t_rank[level]
        if rank is not None:
            return (rank[safe] >= 0) & valid[:, None]
        # Beams share prefixes (all of them at the root), so expand each distinct node's children once.
        uniq, inverse = torch.unique(safe, return_inverse=True)
        offsets, keys = self._t_offsets[level], self._t_keys[level]
        start = offsets[uniq]
        counts = offsets[uniq + 1] - start
        rows = torch.repeat_interleave(torch.arange(len(uniq), device=node.device), counts)
        within = torch.arange(len(rows), device=node.device) - (torch.cumsum(counts, 0) - counts)[rows]
        codes = keys[start[rows] + within] - uniq[rows] * vocab
        mask = torch.zeros(len(uniq), vocab, dtype=torch.bool, device=node.device)
        mask[rows, codes] = True
        return mask[inverse] & valid[:, None]

    def step(self, node: Tensor, level: int, code: Tensor) -> Tensor:
        """(B,) nodes at depth ``level`` + (B,) codes -> (B,) child nodes at depth level+1; -1 if absent."""
        self._check_level(level, self.num_levels - 1)
        node, code = self._on_device(node), self._on_device(code)
        vocab = self.vocab_sizes[level]
        if self.level_sizes[level + 1] == 0:  # empty trie: no prefix has children
            return torch.full_like(node, -1)
        valid, safe = self._safe(node, self.level_sizes[level])
        code_ok = (code >= 0) & (code < vocab)
        valid = valid & code_ok
        safe_code = torch.where(code_ok, code, 0)
        rank = self._t_rank[level]
        if rank is not None:
            r = rank[safe, safe_code].long()
            return torch.where(valid & (r >= 0), self._t_offsets[level][safe] + r, -1)
        keys = self._t_keys[level]
        query = safe * vocab + safe_code
        pos = torch.searchsorted(keys, query).clamp_(max=len(keys) - 1)
        return torch.where(valid & (keys[pos] == query), pos, -1)

    def docs(self, leaf: Tensor) -> Tensor:
        """(B,) leaf node ids (depth num_levels) -> (B,) doc_idx, -1 where ``leaf`` is not a leaf."""
        leaf = self._on_device(leaf)
        if len(self._leaf_doc) == 0:
            return torch.full_like(leaf, -1)
        valid, safe = self._safe(leaf, self.level_sizes[-1])
        return torch.where(valid, self._t_leaf_doc[safe], -1)

    # ---------------------------------------------------------------- host-side queries (numpy)
    def docs_under(self, node: int, level: int) -> np.ndarray:
        """doc_idx (k,) int64 of every ID below prefix node ``node`` at depth ``level``, in code order."""
        self._check_level(level, self.num_levels)
        if not 0 <= node < self.level_sizes[level]:
            raise ValueError(f"node {node} out of range; depth {level} has {self.level_sizes[level]} nodes")
        lo, hi = node, node + 1
        for offsets in self._offsets[level:]:
            lo, hi = int(offsets[lo]), int(offsets[hi])
        return self._leaf_doc[lo:hi].copy()

    def lookup(self, codes: np.ndarray) -> np.ndarray:
        """Full IDs (m, num_levels) -> doc_idx (m,) int64, -1 where the ID is absent."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[1] != self.num_levels:
            raise ValueError(f"codes must have shape (m, {self.num_levels}); got {codes.shape}")
        node = np.zeros(len(codes), dtype=np.int64)
        for level, keys in enumerate(self._keys):
            vocab = self.vocab_sizes[level]
            code = codes[:, level]
            ok = (node >= 0) & (code >= 0) & (code < vocab)
            query = np.where(ok, node * vocab + code, -1)
            pos = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
            hit = ok & (keys[pos] == query) if len(keys) else np.zeros_like(ok)
            node = np.where(hit, pos, -1)
        return np.where(node >= 0, self._leaf_doc[np.maximum(node, 0)] if len(self._leaf_doc) else -1, -1)

    def code_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(codes (n, num_levels) int64 in code order, doc_idx (n,) int64): copies of what the trie holds."""
        return self._codes.copy(), self._leaf_doc.copy()

    def __len__(self) -> int:
        return len(self._leaf_doc)

    # ---------------------------------------------------------------- updates
    def add(self, codes: np.ndarray, doc_idx: np.ndarray) -> None:
        """Insert IDs (m, num_levels) for new documents; full IDs and doc_idx must be new. Rebuilds tables."""
        codes, doc_idx = _check_table(np.asarray(codes), np.asarray(doc_idx))
        if codes.shape[1] != self.num_levels:
            raise ValueError(f"codes must have {self.num_levels} levels; got {codes.shape[1]}")
        clash = np.intersect1d(doc_idx, self._leaf_doc)
        if len(clash):
            raise ValueError(f"doc_idx already in the trie: {clash[:10].tolist()}; remove them first")
        taken = self.lookup(codes) >= 0
        if taken.any():
            raise ValueError(
                f"{int(taken.sum())} IDs already exist (e.g. {codes[taken][0].tolist()}); "
                "give new documents a fresh suffix with add_suffix(codes, existing=...)"
            )
        if len(codes):
            grown = codes.max(axis=0) + 1
            self.vocab_sizes = tuple(int(max(v, g)) for v, g in zip(self.vocab_sizes, grown))
        self._build(np.concatenate([self._codes, codes]), np.concatenate([self._leaf_doc, doc_idx]))

    def remove(self, doc_idx: np.ndarray) -> None:
        """Delete the IDs of these documents (vocab sizes stay, so mask shapes do not change)."""
        doc_idx = np.asarray(doc_idx, dtype=np.int64).ravel()
        missing = np.setdiff1d(doc_idx, self._leaf_doc)
        if len(missing):
            raise ValueError(f"doc_idx not in the trie: {missing[:10].tolist()}")
        keep = ~np.isin(self._leaf_doc, doc_idx)
        self._build(self._codes[keep], self._leaf_doc[keep])

    def to(self, device: torch.device | str) -> "IdTrie":
        """Move the tensor tables to ``device`` (in place, like nn.Module.to); returns self. No-op when already there."""
        target = torch.device(device)
        if target == self.device or (target.index is None and target.type == self.device.type == "cuda"
                                     and self.device.index == torch.cuda.current_device()):
            return self  # callers may call this before every search: never re-upload the tables
        self.device = target
        self._to_torch()
        self.device = self._t_offsets[0].device  # "cuda" resolves to "cuda:0"; compare against the real one
        return self

    def memory_bytes(self) -> int:
        """Bytes held by the decoding tables (offsets, keys, dense ranks, leaf -> doc)."""
        tensors = [*self._t_offsets, *self._t_keys, *(r for r in self._t_rank if r is not None), self._t_leaf_doc]
        return sum(t.numel() * t.element_size() for t in tensors)

    # ---------------------------------------------------------------- persistence
    def save(self, folder: Path) -> None:
        """Write trie.marisa, trie.safetensors (doc_idx by marisa key id) and trie.json into ``folder``."""
        import marisa_trie
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        width = 2 if max(self.vocab_sizes) <= 1 << 16 else 4
        packed = self._codes.astype(f">u{width}").view(np.uint8)  # (n, num_levels * width)
        keys = [row.tobytes() for row in packed]
        trie = marisa_trie.BinaryTrie(keys)
        doc_by_key = np.empty(len(keys), dtype=np.int64)
        ids = np.fromiter((trie[k] for k in keys), dtype=np.int64, count=len(keys))
        doc_by_key[ids] = self._leaf_doc
        trie.save(str(folder / "trie.marisa"))
        save_file({"doc_by_key": doc_by_key}, str(folder / "trie.safetensors"))
        meta = {
            "format_version": FORMAT_VERSION,
            "num_levels": self.num_levels,
            "vocab_sizes": list(self.vocab_sizes),
            "dense_limit": self.dense_limit,
            "key_bytes_per_level": width,
            "num_ids": len(keys),
        }
        (folder / "trie.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: Path) -> "IdTrie":
        """Rebuild the tables from what ``save`` wrote (on CPU; call ``.to(device)`` after)."""
        import marisa_trie
        from safetensors.numpy import load_file

        folder = Path(folder)
        meta = json.loads((folder / "trie.json").read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{folder}/trie.json has format {meta.get('format_version')}; expected {FORMAT_VERSION}")
        trie = marisa_trie.BinaryTrie()
        trie.load(str(folder / "trie.marisa"))
        doc_by_key = load_file(str(folder / "trie.safetensors"))["doc_by_key"]
        depth, width = meta["num_levels"], meta["key_bytes_per_level"]
        items = trie.items()
        raw = b"".join(k for k, _ in items)
        codes = np.frombuffer(raw, dtype=f">u{width}").astype(np.int64).reshape(len(items), depth)
        ids = np.fromiter((i for _, i in items), dtype=np.int64, count=len(items))
        return cls(codes, doc_by_key[ids], vocab_sizes=tuple(meta["vocab_sizes"]), dense_limit=meta["dense_limit"])

    # ---------------------------------------------------------------- helpers
    def _check_level(self, level: int, top: int) -> None:
        if not 0 <= level <= top:
            raise ValueError(f"level {level} out of range; expected 0..{top}")

    def _on_device(self, x: Tensor) -> Tensor:
        if x.device != self.device:
            raise ValueError(f"tensor is on {x.device} but the trie is on {self.device}; call trie.to({str(x.device)!r})")
        return x.long()

    @staticmethod
    def _safe(node: Tensor, size: int) -> tuple[Tensor, Tensor]:
        valid = (node >= 0) & (node < size)
        return valid, torch.where(valid, node, 0)


def _check_table(codes: np.ndarray, doc_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if codes.ndim != 2 or codes.shape[1] < 1:
        raise ValueError(f"codes must have shape (n, levels) with levels >= 1; got {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be integers; got {codes.dtype}")
    doc_idx = np.asarray(doc_idx).astype(np.int64, copy=False).ravel()
    if len(doc_idx) != len(codes):
        raise ValueError(f"doc_idx has {len(doc_idx)} entries for {len(codes)} code rows")
    codes = codes.astype(np.int64, copy=False)
    if len(codes) and codes.min() < 0:
        raise ValueError("codes must be non-negative")
    if len(np.unique(doc_idx)) != len(doc_idx):
        raise ValueError("doc_idx must be unique")
    return codes, doc_idx
