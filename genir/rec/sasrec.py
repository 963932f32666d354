"""SASRec (Kang & McAuley 2018), compact: causal self-attention over the item history, trained with
full-softmax cross-entropy over all items at every position (stronger than the paper's sampled BCE).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from genir.rec.device import bf16_is_fast, to_device
from genir.rec.protocol import Examples, Interactions, training_windows

logger = logging.getLogger(__name__)


WEIGHTS, CONFIG = "model.safetensors", "config.json"  # a saved SASRec: its folder holds these two files


class SASRec(nn.Module):
    """Item ids are shifted by one inside the model so that 0 is padding."""

    def __init__(self, num_items: int, *, max_len: int = 20, dim: int = 64, layers: int = 2, heads: int = 1,
                 dropout: float = 0.5) -> None:
        super().__init__()
        # the constructor's arguments, saved beside the weights so that load rebuilds the same model
        self.config = {"num_items": num_items, "max_len": max_len, "dim": dim, "layers": layers, "heads": heads,
                       "dropout": dropout}
        self.num_items, self.max_len = num_items, max_len
        self.item_emb = nn.Embedding(num_items + 1, dim, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, dim)
        self.drop = nn.Dropout(dropout)
        block = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=dim, dropout=dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.register_buffer("causal", torch.triu(torch.ones(max_len, max_len, dtype=torch.bool), 1), persistent=False)
        nn.init.normal_(self.item_emb.weight, std=dim ** -0.5)

    def hidden(self, seq: torch.Tensor) -> torch.Tensor:
        """seq (B, T) left-padded shifted ids (0 = pad), T <= max_len -> (B, T, dim) hidden states."""
        T = seq.shape[1]
        pad = (seq == 0).unsqueeze(-1)
        x = self.item_emb(seq) * self.item_emb.embedding_dim ** 0.5 + self.pos_emb.weight[self.max_len - T:]
        # pads stay zero vectors (as in the reference SASRec) instead of being masked out: a fully masked
        # attention row (a pad query under the causal mask) would produce NaN
        x = self.drop(x).masked_fill(pad, 0.0)
        x = self.blocks(x, mask=self.causal[:T, :T], is_causal=True)
        return self.norm(x)

    def logits(self, h: torch.Tensor, *, fast: bool = False) -> torch.Tensor:
        """(..., dim) -> (..., num_items) float32 scores of real items (tied embeddings).

        fast: compute the product in bfloat16 (about 3x faster on CPUs with AVX512-BF16); the full-softmax
        product dominates training time, and bf16 rounding of logits is harmless for the gradient.
        """
        if fast and bf16_is_fast(h.device):
            return (h.bfloat16() @ self.item_emb.weight[1:].bfloat16().T).float()
        return h @ self.item_emb.weight[1:].T

    def item_table(self) -> np.ndarray:
        """(num_items, dim) float32 item embeddings, row = item index (the padding row left out)."""
        return self.item_emb.weight[1:].detach().float().cpu().numpy()

    @classmethod
    def from_config(cls, num_items: int, cfg) -> "SASRec":
        """An untrained model over ``num_items`` items shaped by cfg (genir.config.RecConfig: sasrec_*, max_history)."""
        return cls(num_items, max_len=cfg.max_history, dim=cfg.sasrec_dim, layers=cfg.sasrec_layers,
                   heads=cfg.sasrec_heads, dropout=cfg.sasrec_dropout)

    def save(self, folder: Path) -> None:
        """Weights (safetensors) and constructor arguments (JSON) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(self.state_dict(), str(folder / WEIGHTS))
        (folder / CONFIG).write_text(json.dumps(self.config, indent=2))

    @classmethod
    def load(cls, folder: Path) -> "SASRec":
        """The model ``save`` wrote into ``folder``, in eval mode (on the CPU: ``.to(device)`` moves it)."""
        folder = Path(folder)
        model = cls(**json.loads((folder / CONFIG).read_text()))
        model.load_state_dict(load_file(str(folder / WEIGHTS)))
        return model.eval()


def left_pad(histories: np.ndarray, lengths: np.ndarray, *, max_len: int) -> np.ndarray:
    """Right-padded (B, L) item indices -> left-padded (B, max_len) shifted ids (0 = pad) of the newest items."""
    out = np.zeros((len(lengths), max_len), dtype=np.int64)
    for row, n in enumerate(lengths):
        newest = histories[row, max(0, int(n) - max_len):int(n)]
        if len(newest):
            out[row, max_len - len(newest):] = newest + 1
    return out


def sequence_windows(windows: list[np.ndarray], *, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """protocol.training_windows -> inputs and next-item targets, (N, max_len) left-padded shifted ids."""
    if not windows:
        raise ValueError("no training sequences with two or more items; every user needs at least 4 interactions")
    inputs = np.zeros((len(windows), max_len), np.int64)
    targets = np.zeros((len(windows), max_len), np.int64)
    for row, window in enumerate(windows):
        ids = np.asarray(window, dtype=np.int64) + 1
        inputs[row, max_len - len(ids) + 1:] = ids[:-1]
        targets[row, max_len - len(ids) + 1:] = ids[1:]
    return inputs, targets


class SASRecRecommender:
    """Trains and serves a SASRec model over an Interactions table."""

    def __init__(self, model: SASRec) -> None:
        self.model = model.eval()
        self.device = next(model.parameters()).device  # the recommender runs where its model is

    @torch.no_grad()
    def scores(self, histories: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """(B, L) right-padded histories -> (B, num_items) float32 scores."""
        return self._scores(histories, lengths).cpu().numpy()

    def _scores(self, histories: np.ndarray, lengths: np.ndarray) -> torch.Tensor:
        seq = torch.from_numpy(left_pad(histories, lengths, max_len=self.model.max_len)).to(self.device)
        return self.model.logits(self.model.hidden(seq)[:, -1])

    @torch.no_grad()
    def rank(self, histories: np.ndarray, lengths: np.ndarray, users: np.ndarray, *, k: int,
             batch_size: int = 512) -> np.ndarray:
        """(Q, k) int64 top-k item indices by full ranking over all items (seen items not filtered)."""
        out = np.empty((len(lengths), k), dtype=np.int64)
        for lo in range(0, len(lengths), batch_size):
            s = self._scores(histories[lo:lo + batch_size], lengths[lo:lo + batch_size])  # top-k on the device
            out[lo:lo + batch_size] = torch.topk(s, min(k, s.shape[1]), dim=1).indices.cpu().numpy()
        return out

    @classmethod
    def train(cls, data: Interactions, valid: Examples, *, cfg, checkpoint_dir: Path | None = None,
              resume: bool | str = True, progress: bool | None = None, device: torch.device = torch.device("cpu")):
        """Fit on the training parts with early stopping on ``valid``; returns (recommender, TrainReport).

        cfg: genir.config.RecConfig (the sasrec_* fields, max_history, max_epochs, patience, seed, early_stop_metric);
        device: where the model trains (genir.rec.device.resolve_device).
        """
        from genir.rec.evaluate import evaluate_ranker
        from genir.rec.training import fingerprint_of, fit

        torch.manual_seed(cfg.seed)
        model = SASRec.from_config(data.num_items, cfg).to(device)
        windows, _ = training_windows(data, max_history=cfg.max_history)
        inputs, targets = sequence_windows(windows, max_len=cfg.max_history)
        rec = cls(model)
        bs = cfg.sasrec_batch_size

        def batches(rng: np.random.Generator):
            order = rng.permutation(len(inputs))
            for lo in range(0, len(order), bs):
                idx = order[lo:lo + bs]
                yield torch.from_numpy(inputs[idx]), torch.from_numpy(targets[idx])

        def loss_fn(m: SASRec, batch) -> torch.Tensor:
            inp, tgt = to_device(batch, device)
            keep = tgt > 0
            return F.cross_entropy(m.logits(m.hidden(inp)[keep], fast=True), tgt[keep] - 1)

        report = fit(model, batches=batches, loss_fn=loss_fn, validate=lambda: evaluate_ranker(rec, valid),
                     metric=cfg.early_stop_metric, lr=cfg.sasrec_lr, lr_decay=cfg.sasrec_lr_decay,
                     max_epochs=cfg.max_epochs, patience=cfg.patience, seed=cfg.seed,
                     checkpoint_dir=checkpoint_dir, resume=resume, progress=progress, description="sasrec",
                     fingerprint=fingerprint_of(cfg, inputs, targets, model="sasrec"))
        return rec, report
