"""Leave-one-out protocol for sequential recommendation (SASRec / S3-Rec / P5 / TIGER convention).

Per user with items ``s_1 .. s_n`` in time order: ``s_n`` is the test target, ``s_{n-1}`` the validation
target, ``s_1 .. s_{n-2}`` the training part. Training examples are every prefix of the training part
(history capped at the last ``max_history`` items, target the next item); the validation history is the
whole training part, the test history everything before ``s_n`` (validation item included). Items are
integer indices ``0 .. num_items-1`` in the order of the item table; histories are padded with ``-1``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genir.data.types import Sequences

SPLITS = ("valid", "test")
PAD = -1  # padding value of history matrices (a real item index is >= 0)
MIN_LENGTH = 3  # a user needs one training item, a validation item and a test item


@dataclass(frozen=True)
class Interactions:
    """Sequences as integer item indices plus the item table (ids and text, row = item index)."""

    user_ids: list[str]
    seqs: list[np.ndarray]  # per user (n_u,) int64 item indices in time order
    item_ids: list[str]
    item_text: list[str]  # "" when the dataset has no text for the item

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @classmethod
    def from_sequences(cls, sequences: Sequences) -> "Interactions":
        """Index items by the item table; items that only occur in sequences are appended with no text."""
        item_ids = [str(x) for x in sequences.items.column("item_id").to_pylist()]
        item_text = [t or "" for t in sequences.items.column("text").to_pylist()]
        index = {item: i for i, item in enumerate(item_ids)}
        if len(index) != len(item_ids):
            raise ValueError("item table has duplicate item_id values; each item must appear once")
        seqs = []
        for items in sequences.table.column("items").to_pylist():
            row = []
            for item in items:
                if item not in index:
                    index[item] = len(item_ids)
                    item_ids.append(item)
                    item_text.append("")
                row.append(index[item])
            seqs.append(np.asarray(row, dtype=np.int64))
        user_ids = [str(u) for u in sequences.table.column("user_id").to_pylist()]
        return cls(user_ids=user_ids, seqs=seqs, item_ids=item_ids, item_text=item_text)


@dataclass(frozen=True)
class Examples:
    """Histories with their next item: training prefixes, or one held-out query per evaluable user."""

    users: np.ndarray  # (N,) int64 user indices into Interactions.user_ids
    histories: np.ndarray  # (N, max_history) int64, newest last, PAD-padded on the right
    lengths: np.ndarray  # (N,) int64 number of real items in each history (>= 1)
    targets: np.ndarray  # (N,) int64 the next (held-out) item

    def __len__(self) -> int:
        return len(self.targets)

    @classmethod
    def pack(cls, users: list[int], hists: list[np.ndarray], targets: list[int], *, max_history: int) -> "Examples":
        histories, lengths = pack_histories(hists, max_history=max_history)
        return cls(np.asarray(users, dtype=np.int64), histories, lengths, np.asarray(targets, dtype=np.int64))

    def subset(self, idx: np.ndarray) -> "Examples":
        return Examples(self.users[idx], self.histories[idx], self.lengths[idx], self.targets[idx])


def pack_histories(histories: list[np.ndarray], *, max_history: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the newest ``max_history`` items of each history: (B, max_history) PAD-padded, (B,) lengths."""
    out = np.full((len(histories), max_history), PAD, dtype=np.int64)
    lengths = np.zeros(len(histories), dtype=np.int64)
    for row, hist in enumerate(histories):
        hist = np.asarray(hist, dtype=np.int64)[-max_history:]
        out[row, : len(hist)] = hist
        lengths[row] = len(hist)
    return out, lengths


def train_part(seq: np.ndarray) -> np.ndarray:
    """The training part of one user's sequence: everything before the validation item."""
    return seq[:-2] if len(seq) >= MIN_LENGTH else seq[:0]


def train_parts(data: Interactions) -> list[np.ndarray]:
    """Training parts of all users (the only interactions a model or an item embedding may learn from)."""
    return [train_part(s) for s in data.seqs]


def training_examples(data: Interactions, *, max_history: int = 20) -> Examples:
    """Every prefix of every training part: history s_1..s_{t-1} (newest ``max_history``) -> target s_t."""
    users, hists, targets = [], [], []
    for u, seq in enumerate(data.seqs):
        part = train_part(seq)
        for t in range(1, len(part)):
            users.append(u)
            hists.append(part[max(0, t - max_history) : t])
            targets.append(part[t])
    return Examples.pack(users, hists, targets, max_history=max_history)


def training_windows(data: Interactions, *, max_history: int = 20) -> tuple[list[np.ndarray], np.ndarray]:
    """The training parts cut into windows of at most ``max_history + 1`` items, from the newest end;
    -> (windows, (W,) int64 user index of each).

    Read causally, a window holds one training example per item after its first (history = the window's
    items before it), so models with causal encoders (SASRec, the generative recommender) train on every
    prefix in one pass per window. Every training target occurs exactly once; a target early in a later
    window sees only the part of its history inside that window.
    """
    windows, users = [], []
    for u, seq in enumerate(data.seqs):
        part = train_part(seq)
        end = len(part)
        while end >= 2:
            start = max(0, end - max_history - 1)
            windows.append(part[start:end])
            users.append(u)
            end = start + 1  # the next window ends on this one's first item (a history-only item here)
    return windows, np.asarray(users, dtype=np.int64)


def eval_queries(data: Interactions, split: str, *, max_history: int = 20) -> Examples:
    """Validation (target s_{n-1}, history s_1..s_{n-2}) or test (target s_n, history s_1..s_{n-1})."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    cut = 2 if split == "valid" else 1
    users = [u for u, s in enumerate(data.seqs) if len(s) >= MIN_LENGTH]
    hists = [data.seqs[u][:-cut] for u in users]
    targets = [data.seqs[u][-cut] for u in users]
    return Examples.pack(users, hists, targets, max_history=max_history)
