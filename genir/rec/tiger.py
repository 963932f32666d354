"""TIGER-style generative recommender: a history encoder over the semantic-ID tokens of the items a user
interacted with (plus a hashed user token), and the shared ``genir.model.IdDecoder`` writing the next
item's semantic ID, decoded with ``genir.decoding.constrained_beam_search`` under the item IdTrie.

Encoder input, oldest item first: ``[user] c(1,0) c(1,1) .. c(1,D-1) c(2,0) ..`` where ``c(i,l)`` is the
level-l code of history item i (``history_tokens="codes"``, as in TIGER), or one token per item that sums
its code embeddings (``"items"``, 4x shorter). Every token also gets a position embedding (0 = oldest item
kept) and, in "codes" mode, a level embedding. With ``history_item_embedding`` a history item's tokens also
get a learned embedding of the item itself (as SASRec's inputs have); items added after training have none
and are read through their codes alone. With ``recency_embedding`` the memory the decoder reads gets a
learned embedding of each token's recency (0 = newest item of the prefix being continued), added after the
encoder so that the one-pass-per-window training below still holds.

Unlike TIGER's bidirectional encoder, attention here is block-causal: a token sees the user token, its own
item's tokens and earlier items. The memory of a history prefix is then the same whether the encoder reads
the prefix alone or the whole window it starts, so training encodes each window once and decodes every
next item of it (``train_tiger``): about six times less encoder work than one pass per prefix, which is
what makes TIGER-sized training fit on a CPU.
"""
from __future__ import annotations

import logging
import zlib
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from genir.decoding import constrained_beam_search, prefix_beam_search
from genir.model import IdDecoder
from genir.rec.device import autocast, to_device
from genir.trie import IdTrie

logger = logging.getLogger(__name__)

HISTORY_TOKENS = ("codes", "items")
ANONYMOUS = -1  # user bucket of a query without a known user: a learned "anonymous" token stands in
# Share of training examples shown the anonymous token instead of their user's, so that history-only
# queries (no user id) look like something the model has seen.
USER_DROPOUT = 0.1


def user_bucket(user_id: str, buckets: int) -> int:
    """Stable hash of a user id into ``buckets`` (crc32: the same across processes and machines)."""
    return zlib.crc32(user_id.encode("utf-8")) % buckets


def user_buckets(user_ids: Sequence[str], buckets: int) -> np.ndarray:
    """(U,) int64 user_bucket of each user id."""
    return np.asarray([user_bucket(u, buckets) for u in user_ids], dtype=np.int64)


def history_codes(item_codes: Tensor, histories: np.ndarray) -> tuple[Tensor, Tensor]:
    """What the HistoryEncoder reads, for serving and training alike: item_codes (num_items, depth) int64 and
    (B, H) right-padded item indices (padding -1) -> (B, H, depth) codes (padding rows hold item 0's codes and
    are masked by the lengths) and the (B, H) indices as a tensor."""
    idx = torch.as_tensor(np.asarray(histories, dtype=np.int64))
    return item_codes[idx.clamp(min=0)], idx


class HistoryEncoder(nn.Module):
    """(B, H, depth) history codes [+ (B, H) item indices] -> memory (B, S, d), mask (B, S) bool (True = real)."""

    def __init__(self, vocab_sizes: Sequence[int], *, user_buckets: int, max_history: int, d_model: int,
                 layers: int, heads: int, d_ff: int, dropout: float, tokens: str = "codes",
                 num_items: int = 0) -> None:
        """num_items > 0: learned embeddings for items 0..num_items-1 (a zero row stands for any other item)."""
        super().__init__()
        if tokens not in HISTORY_TOKENS:
            raise ValueError(f"unknown history_tokens {tokens!r}; expected one of {HISTORY_TOKENS}")
        self.tokens, self.max_history = tokens, max_history
        self.vocab_sizes = tuple(int(v) for v in vocab_sizes)
        self.per_item = len(self.vocab_sizes) if tokens == "codes" else 1  # encoder tokens per history item
        self.register_buffer("offsets", torch.tensor((0, *self.vocab_sizes[:-1])).cumsum(0), persistent=False)
        self.register_buffer("top", torch.tensor(self.vocab_sizes) - 1, persistent=False)
        self.code_emb = nn.Embedding(sum(self.vocab_sizes), d_model)
        self.level_emb = nn.Embedding(len(self.vocab_sizes), d_model)
        self.pos_emb = nn.Embedding(max_history + 1, d_model)
        self.user_emb = nn.Embedding(user_buckets + 1, d_model)  # last row: anonymous
        self.num_items = int(num_items)
        self.item_emb = nn.Embedding(num_items + 1, d_model, padding_idx=num_items) if num_items > 0 else None
        self.recency_emb: nn.Embedding | None = None
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=d_ff, dropout=dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def use_recency(self) -> None:
        """Add recency embeddings (zero at start: a fresh model reads the memory as without them)."""
        self.recency_emb = nn.Embedding(self.max_history + 1, self.code_emb.embedding_dim)  # last row: user token
        nn.init.zeros_(self.recency_emb.weight)

    def with_recency(self, memory: Tensor, n_items: Tensor) -> Tensor:
        """memory (B, S, d) of histories whose prefixes of n_items (B,) items are being continued -> memory
        plus each token's recency embedding (unchanged without recency embeddings)."""
        if self.recency_emb is None:
            return memory
        slot = self.item_of_token((memory.shape[1] - 1) // self.per_item, memory.device)[None, :]  # (1, S)
        age = (n_items[:, None] - 1 - slot).clamp(0, self.max_history - 1)
        return memory + self.recency_emb(torch.where(slot < 0, self.max_history, age)).to(memory.dtype)

    def item_of_token(self, H: int, device: torch.device) -> Tensor:
        """(1 + H * per_item,) history slot of each encoder token; the user token is slot -1."""
        slots = torch.arange(H, device=device).repeat_interleave(self.per_item)
        return torch.cat([torch.full((1,), -1, device=device), slots])

    def forward(self, hist_codes: Tensor, lengths: Tensor, buckets: Tensor,
                hist_items: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """hist_codes (B, H, depth) int64, right-padded (rows past ``lengths`` are ignored); lengths (B,);
        buckets (B,) user buckets or ANONYMOUS; hist_items (B, H) item indices (needed with item embeddings)
        -> memory (B, 1 + H * per_item, d), mask (B, S) bool."""
        B, H, depth = hist_codes.shape
        slot = torch.arange(H, device=hist_codes.device)
        real = slot[None, :] < lengths[:, None]  # (B, H)
        pos = self.pos_emb(slot.clamp(max=self.max_history))[None]  # (1, H, d)
        # codes the encoder never saw (a suffix issued after training) share the last embedding of their level
        emb = self.code_emb(torch.minimum(hist_codes.clamp(min=0), self.top) + self.offsets)  # (B, H, depth, d)
        if self.item_emb is not None:
            if hist_items is None:
                raise ValueError("this encoder embeds history items: pass hist_items")
            known = (hist_items >= 0) & (hist_items < self.num_items)
            pos = pos + self.item_emb(torch.where(known, hist_items, self.num_items))  # (B, H, d)
        if self.tokens == "codes":
            x = (emb + self.level_emb.weight + pos[:, :, None]).reshape(B, H * depth, -1)
        else:
            x = emb.sum(dim=2) + pos
        bucket = torch.where(buckets >= 0, buckets, self.user_emb.num_embeddings - 1)
        x = torch.cat([self.user_emb(bucket)[:, None], x], dim=1)
        item = self.item_of_token(H, x.device)
        mask = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=x.device),
                          real.repeat_interleave(self.per_item, dim=1)], dim=1)
        blocked = item[None, :] > item[:, None]  # (S, S) True = may not attend: later items
        x = self.layers(self.drop(x), mask=blocked, src_key_padding_mask=~mask)
        return self.norm(x), mask


class TigerModel(nn.Module):
    """HistoryEncoder + IdDecoder: ``loss`` for training; GenerativeRanker decodes from ``encoder`` output."""

    def __init__(self, vocab_sizes: Sequence[int], *, cfg, num_items: int = 0) -> None:
        """vocab_sizes: decoder vocabulary per ID level (suffix included); cfg: genir.config.RecConfig;
        num_items: items trained on (sizes the item embeddings when cfg.history_item_embedding)."""
        super().__init__()
        if cfg.history_item_embedding and num_items <= 0:
            raise ValueError("history_item_embedding needs num_items > 0")
        self.encoder = HistoryEncoder(vocab_sizes, user_buckets=cfg.user_buckets, max_history=cfg.max_history,
                                      d_model=cfg.d_model, layers=cfg.encoder_layers, heads=cfg.heads, d_ff=cfg.d_ff,
                                      dropout=cfg.dropout, tokens=cfg.history_tokens,
                                      num_items=num_items if cfg.history_item_embedding else 0)
        if cfg.recency_embedding:
            self.encoder.use_recency()
        self.label_smoothing = float(cfg.label_smoothing)
        self.decoder = IdDecoder(vocab_sizes, d_model=cfg.d_model, n_layers=cfg.decoder_layers, n_heads=cfg.heads,
                                 d_mem=cfg.d_model, d_ff=cfg.d_ff, dropout=cfg.dropout)

    def loss(self, hist_codes: Tensor, lengths: Tensor, buckets: Tensor, target_codes: Tensor,
             hist_items: Tensor | None = None) -> Tensor:
        """Mean per-level cross-entropy of the target IDs (B, depth) given the histories (scalar)."""
        memory, mask = self.encoder(hist_codes, lengths, buckets, hist_items)
        return self.decoder.loss(self.encoder.with_recency(memory, lengths), mask, target_codes,
                                 label_smoothing=self.label_smoothing)


class GenerativeRanker:
    """Ranks items for histories by constrained beam search; every output is an item in the trie."""

    def __init__(self, model: TigerModel, item_codes: np.ndarray, trie: IdTrie, user_buckets: np.ndarray, *,
                 beam_size: int = 20, batch_size: int = 256, trained_items: int | None = None) -> None:
        """item_codes (num_items, depth) full IDs; user_buckets (num_users,) bucket of each known user index;
        trained_items: items 0..trained_items-1 existed when the model was trained (later ones are new)."""
        if beam_size < 10:
            raise ValueError(f"beam_size {beam_size} < 10: the top 10 would not be a real ranking; use >= 10")
        self.model = model.eval()
        self.device = next(model.parameters()).device  # the ranker runs where its model is
        self.item_codes = torch.as_tensor(np.asarray(item_codes, dtype=np.int64))  # stays on CPU: batches index it
        self.trie, self.user_buckets = trie.to(self.device), np.asarray(user_buckets, dtype=np.int64)
        self.beam_size, self.batch_size = beam_size, batch_size
        self.trained_items = len(item_codes) if trained_items is None else trained_items

    def history(self, histories: np.ndarray) -> tuple[Tensor, Tensor]:
        """(B, H) right-padded item indices -> history_codes (codes (B, H, depth), indices (B, H))."""
        return history_codes(self.item_codes, histories)

    def buckets(self, users: np.ndarray) -> Tensor:
        users = np.asarray(users, dtype=np.int64)
        known = (users >= 0) & (users < len(self.user_buckets))
        return torch.as_tensor(np.where(known, self.user_buckets[np.where(known, users, 0)], ANONYMOUS))

    @torch.no_grad()
    def search(self, histories: np.ndarray, lengths: np.ndarray, users: np.ndarray, *,
               k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, k) item indices (-1 where fewer than k valid IDs survive the beam) and (Q, k) log-probabilities."""
        if k > self.beam_size:
            raise ValueError(f"k={k} exceeds beam_size={self.beam_size}; raise beam_size to at least k")
        items = np.full((len(lengths), k), -1, dtype=np.int64)
        scores = np.full((len(lengths), k), -np.inf, dtype=np.float32)
        for lo in range(0, len(lengths), self.batch_size):
            sl = slice(lo, lo + self.batch_size)
            n = np.maximum(lengths[sl], 1)
            hist, hist_items, n, buckets = to_device((*self.history(histories[sl, :int(n.max())]),
                                                      torch.as_tensor(n), self.buckets(users[sl])), self.device)
            memory, mask = self.model.encoder(hist, n, buckets, hist_items)
            memory = self.model.encoder.with_recency(memory, n)
            res = constrained_beam_search(self.model.decoder, memory, mask, self.trie, beam_size=self.beam_size,
                                          num_return=k)
            items[sl], scores[sl] = res.doc_idx.cpu().numpy(), res.scores.float().cpu().numpy()
            if self.trained_items < len(self.item_codes):
                items[sl], scores[sl] = self._with_new_items(memory, mask, items[sl], scores[sl])
        return items, scores

    def _with_new_items(self, memory: Tensor, mask: Tensor, items: np.ndarray,
                        scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Merge items added after training into the ranking (TIGER's cold-start recipe).

        The decoder never learnt their collision suffix, so its suffix probability means nothing; instead a
        new item scores as its prefix (all levels but the suffix, decoded under the trie) times a uniform
        share 1 / (items under that prefix).
        """
        depth, k = self.item_codes.shape[1], items.shape[1]
        pre = prefix_beam_search(self.model.decoder, memory, mask, self.trie, level=depth - 1, beam_size=self.beam_size)
        new = np.arange(self.trained_items, len(self.item_codes))
        codes = self.item_codes.numpy()
        sizes = self.trie.vocab_sizes[:depth - 1]
        base = np.asarray([int(np.prod(sizes[lvl + 1:])) for lvl in range(depth - 1)], dtype=np.int64)  # prefix -> key
        new_keys = codes[new, :-1] @ base
        group = {key: n for key, n in zip(*np.unique(codes[:, :-1] @ base, return_counts=True))}
        pre_codes, pre_scores = pre.codes.cpu().numpy(), pre.scores.float().cpu().numpy()
        pre_keys = np.where((pre_codes >= 0).all(-1), pre_codes @ base, -1)
        out_items, out_scores = items.copy(), scores.copy()
        for q in range(len(items)):
            cand = dict(zip(items[q][items[q] >= 0].tolist(), scores[q][items[q] >= 0].tolist()))
            for key, score in zip(pre_keys[q], pre_scores[q]):
                for item in new[new_keys == key] if key >= 0 else ():
                    cand[int(item)] = max(cand.get(int(item), -np.inf), float(score - np.log(group[key])))
            best = sorted(cand.items(), key=lambda kv: -kv[1])[:k]
            out_items[q, :len(best)] = [i for i, _ in best]
            out_scores[q, :len(best)] = [v for _, v in best]
        return out_items, out_scores

    def rank(self, histories: np.ndarray, lengths: np.ndarray, users: np.ndarray, *, k: int) -> np.ndarray:
        """(Q, k) int64 item indices, best first."""
        return self.search(histories, lengths, users, k=k)[0]


def window_batches(lengths: np.ndarray, targets_per_batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Window indices grouped by similar length (little padding) into batches of about
    ``targets_per_batch`` next-item targets each, in random order."""
    order = np.lexsort((rng.random(len(lengths)), lengths))
    batches, start, count = [], 0, 0
    for pos, window in enumerate(order):
        count += int(lengths[window]) - 1
        if count >= targets_per_batch or pos == len(order) - 1:
            batches.append(order[start:pos + 1])
            start, count = pos + 1, 0
    rng.shuffle(batches)
    return batches


def _window_loss(model: TigerModel, batch: tuple, chunks: int = 2) -> Tensor:
    """Encode each window once, then decode every next item of it from its own prefix of the memory.

    Targets are split by prefix length into ``chunks`` groups so each group's memory copy is cut to the
    longest prefix it needs (the decoder projects one memory copy per target).
    """
    hist, hist_items, lengths, buckets, rows, prefix, target_codes = batch
    memory, mask = model.encoder(hist, lengths, buckets, hist_items)
    total = memory.new_zeros(())
    for part in torch.tensor_split(torch.argsort(prefix), chunks):
        if len(part) == 0:
            continue
        width = int(prefix[part].max())
        keep = mask[rows[part], :width] & (torch.arange(width, device=mask.device) < prefix[part, None])
        mem = model.encoder.with_recency(memory[rows[part], :width], (prefix[part] - 1) // model.encoder.per_item)
        loss = model.decoder.loss(mem, keep, target_codes[part], label_smoothing=model.label_smoothing)
        total = total + loss * len(part)
    return total / len(rows)


class WindowBatches:
    """Training batches of the generative model: windows (protocol.training_windows) grouped by length, each
    window encoded once and every next item of it a target (``_window_loss``). Built from the item codes alone,
    apart from the serving GenerativeRanker.

    A batch: (history codes (B, H, depth), history items (B, H), lengths (B,), user buckets (B,), target window
    row (T,), target prefix length in encoder tokens (T,), target codes (T, depth)).
    """

    def __init__(self, item_codes: np.ndarray, windows: list[np.ndarray], window_buckets: np.ndarray, *,
                 per_item: int, targets_per_batch: int) -> None:
        """item_codes (num_items, depth) full IDs (the targets); window_buckets (W,) user bucket of each window;
        per_item: encoder tokens per history item (HistoryEncoder.per_item)."""
        self.item_codes = torch.as_tensor(np.asarray(item_codes, dtype=np.int64))
        self.lengths = np.asarray([len(w) for w in windows], dtype=np.int64)
        self.items = np.full((len(windows), int(self.lengths.max())), -1, dtype=np.int64)  # (W, longest) padded -1
        for row, window in enumerate(windows):
            self.items[row, :len(window)] = window
        self.window_buckets = np.asarray(window_buckets, dtype=np.int64)
        self.per_item, self.targets_per_batch = per_item, targets_per_batch

    def __call__(self, rng: np.random.Generator) -> Iterator[tuple]:
        """One epoch of batches in ``rng``'s order; USER_DROPOUT of the windows read as the anonymous user."""
        for idx in window_batches(self.lengths, self.targets_per_batch, rng):
            n = self.lengths[idx]
            width = int(n.max())
            buckets = self.window_buckets[idx].copy()
            buckets[rng.random(len(idx)) < USER_DROPOUT] = ANONYMOUS
            rows, pos = np.nonzero(np.arange(1, width)[None, :] < n[:, None])  # target (window row, position - 1)
            targets = self.items[idx[rows], pos + 1]
            yield (*history_codes(self.item_codes, self.items[idx, :width - 1]), torch.as_tensor(n - 1),
                   torch.as_tensor(buckets), torch.as_tensor(rows), torch.as_tensor(1 + self.per_item * (pos + 1)),
                   self.item_codes[torch.as_tensor(targets)])


def train_tiger(model: TigerModel, item_codes: np.ndarray, windows: list[np.ndarray], window_buckets: np.ndarray,
                validate: Callable[[], dict[str, float]], *, cfg, checkpoint_dir=None, resume: bool | str = True,
                progress: bool | None = None):
    """Fit ``model`` (on its device) on protocol.training_windows with early stopping on ``validate()`` (the
    validation metrics of the model as it is, e.g. genir.rec.evaluate.evaluate_ranker of a GenerativeRanker over
    it); -> TrainReport. item_codes (num_items, depth) are the targets; window_buckets (W,) each window's user bucket.
    """
    from genir.rec.training import fingerprint_of, fit

    batches = WindowBatches(item_codes, windows, window_buckets, per_item=model.encoder.per_item,
                            targets_per_batch=cfg.batch_size)
    device = next(model.parameters()).device

    def loss_fn(m: TigerModel, batch) -> Tensor:
        with autocast(device, enabled=cfg.bf16):
            return _window_loss(m, to_device(batch, device))

    return fit(model, batches=batches, loss_fn=loss_fn, validate=validate,
               metric=cfg.early_stop_metric, lr=cfg.lr, weight_decay=cfg.weight_decay, lr_decay=cfg.lr_decay,
               max_epochs=cfg.max_epochs, patience=cfg.patience, seed=cfg.seed, checkpoint_dir=checkpoint_dir,
               resume=resume, progress=progress, description="tiger",
               fingerprint=fingerprint_of(cfg, batches.item_codes.numpy(), batches.items, model="generative"))
