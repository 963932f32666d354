"""RQ-VAE semantic IDs (TIGER): MLP encoder -> L residual codebooks -> MLP decoder.

Loss = reconstruction + codebook + beta * commitment, with straight-through gradients past the
quantiser. Two guards against the collapse public implementations report (all items on one ID):
codebooks start from residual k-means on the encoder's initial latents, and codes unused during an
epoch are re-seeded from residuals of that epoch's last full batch. Training is seeded (a forked torch
RNG, so the caller's global RNG is untouched) and deterministic on CPU for a given thread count.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from genir.config import CodecConfig
from genir.ids.base import CodecBase, compute_stats
from genir.ids.rqkmeans import residual_kmeans
from genir.progress import track

logger = logging.getLogger(__name__)


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    """encoder (d -> latent), codebooks (L, K, latent), decoder (latent -> d)."""

    def __init__(self, dim: int, cfg: CodecConfig) -> None:
        super().__init__()
        widths = [dim, *cfg.hidden_dims, cfg.latent_dim]
        self.encoder = _mlp(widths)
        self.decoder = _mlp(widths[::-1])
        self.codebooks = nn.Parameter(torch.zeros(cfg.levels, cfg.codebook_size, cfg.latent_dim))

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        """z (B, latent) -> codes (B, L), quantised sum (B, latent) with codebook grads, residuals per level."""
        residual = z
        codes, quants, residuals = [], [], []
        for book in self.codebooks:
            dist = (residual.detach() ** 2).sum(1, keepdim=True) - 2 * residual.detach() @ book.T + (book**2).sum(1)
            idx = dist.argmin(1)
            q = book[idx]
            codes.append(idx)
            quants.append(q)
            residuals.append(residual)
            residual = residual - q.detach()
        return torch.stack(codes, 1), torch.stack(quants, 0), residuals

    def loss(self, x: Tensor, beta: float) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Total loss, codes (B, L), detached residuals per level (for dead-code re-seeding)."""
        z = self.encoder(x)
        codes, quants, residuals = self.quantize(z)
        codebook = sum(((r.detach() - q) ** 2).sum(1).mean() for r, q in zip(residuals, quants))
        commit = sum(((r - q.detach()) ** 2).sum(1).mean() for r, q in zip(residuals, quants))
        z_q = z + (quants.sum(0) - z).detach()  # straight-through: decoder sees z_q, encoder gets its gradient
        recon = ((self.decoder(z_q) - x) ** 2).sum(1).mean()
        return recon + codebook + beta * commit, codes, [r.detach() for r in residuals]


class RQVAECodec(CodecBase):
    """TIGER's RQ-VAE; ``encode`` is the nearest-code residual assignment of the trained encoder's latents."""

    scheme = "rqvae"

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__(cfg)
        self.model: RQVAE | None = None

    def fit(self, emb: np.ndarray, *, seed: int | None = None) -> "RQVAECodec":
        """Train on ``emb`` (n, d) float32, n >= codebook_size."""
        t0 = time.perf_counter()
        cfg, seed = self.cfg, self._seed(seed)
        emb = np.asarray(emb, dtype=np.float32)
        n, k = len(emb), cfg.codebook_size
        if n < k:
            raise ValueError(f"RQ-VAE needs at least codebook_size={k} embeddings; got {n}")
        x = torch.from_numpy(emb)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            model = RQVAE(emb.shape[1], cfg)
            with torch.no_grad():
                sample = torch.randperm(n, generator=gen)[: cfg.init_sample]
                z0 = model.encoder(x[sample]).numpy()
                books = residual_kmeans(z0, cfg.levels, k, seed=seed, niter=cfg.kmeans_iters)
                model.codebooks.copy_(torch.from_numpy(books))
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
            batch = min(cfg.batch_size, n)
            # Cosine decay: late epochs barely move the encoder, so codes in use at the last re-seed stay
            # in use when encode() runs (with a constant rate, codes alive early in an epoch drift dead).
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1), eta_min=cfg.lr * 0.05)
            for epoch in track(range(cfg.epochs), description="RQ-VAE", total=cfg.epochs):
                usage = torch.zeros(cfg.levels, k, dtype=torch.long)
                last_residuals: list[Tensor] = []
                total = 0.0
                for idx in torch.randperm(n, generator=gen).split(batch):
                    loss, codes, residuals = model.loss(x[idx], cfg.beta)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += loss.item() * len(idx)
                    for level in range(cfg.levels):
                        usage[level] += torch.bincount(codes[:, level], minlength=k)
                    if len(idx) >= k or not last_residuals:
                        last_residuals = residuals
                sched.step()
                dead = self._reseed(model, usage, last_residuals, gen) if cfg.reset_dead else 0
                logger.debug("epoch %d loss %.4f re-seeded %d codes", epoch, total / n, dead)
        model.eval()
        self.model = model
        codes, recon = self._encode_decode(emb)
        self._stats = compute_stats(
            self.scheme, codes, self.codebook_sizes, fit_seconds=time.perf_counter() - t0, emb=emb, recon=recon
        )
        return self

    @staticmethod
    @torch.no_grad()
    def _reseed(model: RQVAE, usage: Tensor, residuals: list[Tensor], gen: torch.Generator) -> int:
        """Move every code unused this epoch onto a random residual of the last batch at its level."""
        dead_total = 0
        for level, book in enumerate(model.codebooks):
            dead = (usage[level] == 0).nonzero().ravel()
            if len(dead):
                pool = residuals[level]
                book[dead] = pool[torch.randint(len(pool), (len(dead),), generator=gen)]
                dead_total += len(dead)
        return dead_total

    @torch.no_grad()
    def _encode_decode(self, emb: np.ndarray, *, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        assert self.model is not None  # internal: callers check fitted first
        codes, recon = [], []
        for i in range(0, len(emb), chunk):
            x = torch.from_numpy(np.ascontiguousarray(emb[i : i + chunk], dtype=np.float32))
            c, quants, _ = self.model.quantize(self.model.encoder(x))
            codes.append(c.numpy())
            recon.append(self.model.decoder(quants.sum(0)).numpy())
        dim = self.model.encoder[0].in_features
        if not codes:
            return np.zeros((0, self.levels), np.int64), np.zeros((0, dim), np.float32)
        return np.concatenate(codes).astype(np.int64), np.concatenate(recon)

    def encode(self, emb: np.ndarray) -> np.ndarray:
        """(n, d) -> (n, levels) int64."""
        self._check_fitted()
        return self._encode_decode(np.asarray(emb, dtype=np.float32))[0]

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """(n, levels) codes -> (n, d) reconstructed embeddings."""
        self._check_fitted()
        assert self.model is not None
        with torch.no_grad():
            c = torch.as_tensor(np.asarray(codes, dtype=np.int64))
            z = sum(self.model.codebooks[level][c[:, level]] for level in range(self.levels))
            return self.model.decoder(z).numpy()

    def _arrays(self) -> dict[str, np.ndarray]:
        assert self.model is not None
        return {name: t.detach().numpy() for name, t in self.model.state_dict().items()}

    def _meta(self) -> dict[str, Any]:
        assert self.model is not None
        return {"input_dim": self.model.encoder[0].in_features}

    def _restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.model = RQVAE(int(meta["input_dim"]), self.cfg)
        self.model.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()})
        self.model.eval()
