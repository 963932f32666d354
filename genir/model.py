"""The seq2seq model: an ID decoder over semantic-ID tokens, and the MiniLM text encoder that feeds it.

``IdDecoder`` is shared by retrieval (memory = text-encoder token states) and recommendation (memory =
an item-history encoder's states); both decode through ``genir.decoding.constrained_beam_search``.

Token layout: step t (0..depth-1) reads token ``BOS`` (t = 0) or ``1 + offset[t-1] + code[t-1]`` and
predicts the level-t code with head t. IDs have a fixed depth (levels + collision suffix), so no EOS step
is needed: the end of an ID is known.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genir.config import ModelConfig

logger = logging.getLogger(__name__)



# ---------------------------------------------------------------------------------------------- decoder
@dataclass
class DecoderCache:
    """Incremental-decoding state for ``B`` queries x ``width`` beams.

    Cross-attention K/V stay at (B, H, S, dh): all beams of a query share the memory, so beams attend as
    extra query rows and never need expanding or reordering. Self-attention K/V are (B*width, H, t, dh).
    """

    cross_k: list[Tensor]
    cross_v: list[Tensor]
    mem_mask: Tensor  # (B, 1, 1, S) bool, True = attend
    self_k: list[Tensor] = field(default_factory=list)
    self_v: list[Tensor] = field(default_factory=list)
    width: int = 1

    def reorder(self, parent: Tensor) -> None:
        """Keep beams ``parent`` (B, W') (indices into the current width) in that order."""
        batch, new_width = parent.shape
        base = torch.arange(batch, device=parent.device)[:, None] * self.width
        flat = (base + parent).reshape(-1)
        self.self_k = [k.index_select(0, flat) for k in self.self_k]
        self.self_v = [v.index_select(0, flat) for v in self.self_v]
        self.width = new_width


class _DecoderLayer(nn.Module):
    """Pre-norm block: causal self-attention, cross-attention to the memory, feed-forward."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln_self, self.ln_cross, self.ln_ff = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.self_out = nn.Linear(d_model, d_model)
        self.cross_q = nn.Linear(d_model, d_model)
        self.cross_kv = nn.Linear(d_model, 2 * d_model)
        self.cross_out = nn.Linear(d_model, d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout)

    def _heads(self, x: Tensor) -> Tensor:  # (B, N, d) -> (B, H, N, dh)
        b, n, d = x.shape
        return x.view(b, n, self.n_heads, d // self.n_heads).transpose(1, 2)

    def _merge(self, x: Tensor) -> Tensor:  # (B, H, N, dh) -> (B, N, d)
        b, h, n, dh = x.shape
        return x.transpose(1, 2).reshape(b, n, h * dh)

    def memory_kv(self, memory: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Cross-attention K/V of ``memory`` (B, S, d). With ``mask`` (B, S) bool, only the real positions are
        projected and padding gets zeros: attention never reads padded keys, so the output is the same, and
        batches of queries padded to their longest one cost their real tokens only. (Decoding; training's
        teacher-forced pass uses ``_cross_absorbed`` and projects no memory.)"""
        if mask is None or bool(mask.all()):
            kv = self.cross_kv(memory)
        else:
            b, n, d = memory.shape
            real = mask.reshape(-1).nonzero().squeeze(1)
            kv = self.cross_kv(memory.reshape(b * n, d).index_select(0, real))
            kv = kv.new_zeros(b * n, kv.shape[1]).index_copy(0, real, kv).view(b, n, -1)
        k, v = kv.chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def _cross(self, x: Tensor, k: Tensor, v: Tensor, mem_mask: Tensor) -> Tensor:
        # x (B, W, d): one row per beam when decoding, every beam of a query reading its K/V
        q = self._heads(self.cross_q(self.ln_cross(x)))
        return self.drop(self.cross_out(self._merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mem_mask))))

    def _cross_absorbed(self, x: Tensor, memory: Tensor, mask: Tensor) -> Tensor:
        """Cross-attention of x (B, N, d) to ``memory`` (B, S, d) (mask (B, S) bool) without projecting the memory:
        q_h . (W_k,h m + b_k,h) ranks the memory like (W_k,h^T q_h) . m (the q_h . b_k,h term is the same for every
        m, and softmax ignores it), and sum_j a_j (W_v,h m_j + b_v,h) = W_v,h (sum_j a_j m_j) + b_v,h. Equal to
        ``_cross`` over ``memory_kv(memory)`` up to float rounding, and cheaper whenever the target is much shorter
        than the memory: a training step projects N = depth rows per head instead of S memory tokens per layer."""
        b, n, d = x.shape
        h, dh, width = self.n_heads, d // self.n_heads, memory.shape[-1]
        w_k, w_v = (w.view(h, dh, width) for w in self.cross_kv.weight.chunk(2, dim=0))
        q = self.cross_q(self.ln_cross(x)).view(b * n, h, dh).transpose(0, 1)  # (H, B*N, dh)
        q = torch.bmm(q, w_k).mul_(dh ** -0.5).view(h, b, n, width).transpose(0, 1).reshape(b, h * n, width)
        scores = torch.bmm(q, memory.transpose(1, 2)).masked_fill(~mask[:, None, :], float("-inf"))
        ctx = torch.bmm(scores.softmax(dim=-1), memory)  # (B, H*N, width): attention-weighted memory per head
        ctx = ctx.view(b, h, n, width).transpose(0, 1).reshape(h, b * n, width)
        out = torch.bmm(ctx, w_v.transpose(1, 2)).view(h, b, n, dh).permute(1, 2, 0, 3).reshape(b, n, d)
        return self.drop(self.cross_out(out + self.cross_kv.bias[d:]))

    def forward(self, x: Tensor, memory: Tensor, mask: Tensor) -> Tensor:
        """Teacher-forced pass over the whole target x (B, T, d), reading ``memory`` (B, S, d) where ``mask``
        (B, S) is True."""
        q, sk, sv = (self._heads(t) for t in self.qkv(self.ln_self(x)).chunk(3, dim=-1))
        x = x + self.drop(self.self_out(self._merge(F.scaled_dot_product_attention(q, sk, sv, is_causal=True))))
        x = x + self._cross_absorbed(x, memory, mask)
        return x + self.drop(self.ff(self.ln_ff(x)))

    def step(self, x: Tensor, cache: DecoderCache, i: int) -> Tensor:
        """One new position per beam: x (B, W, d); appends this layer's K/V to ``cache``."""
        b, w, d = x.shape
        q, k, v = (self._heads(t.reshape(b * w, 1, d)) for t in self.qkv(self.ln_self(x)).chunk(3, dim=-1))
        if len(cache.self_k) > i:
            k, v = torch.cat([cache.self_k[i], k], dim=2), torch.cat([cache.self_v[i], v], dim=2)
            cache.self_k[i], cache.self_v[i] = k, v
        else:
            cache.self_k.append(k)
            cache.self_v.append(v)
        att = self._merge(F.scaled_dot_product_attention(q, k, v)).view(b, w, d)
        x = x + self.self_out(att)
        x = x + self._cross(x, cache.cross_k[i], cache.cross_v[i], cache.mem_mask)
        return x + self.ff(self.ln_ff(x))


class IdDecoder(nn.Module):
    """Transformer decoder over semantic-ID tokens, cross-attending to an encoder memory.

    ``vocab_sizes`` (depth,) codes per level, suffix level included. Memory is (B, S, d_mem) with a
    (B, S) bool mask, True = real token; every row needs at least one True.
    """

    def __init__(
        self,
        vocab_sizes: Sequence[int],
        *,
        d_model: int = 384,
        n_layers: int = 2,
        n_heads: int = 6,
        d_mem: int = 384,
        d_ff: int | None = None,
        dropout: float = 0.1,
        pooled_memory: bool = False,
    ) -> None:
        super().__init__()
        self.pooled_memory = pooled_memory
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} must be divisible by n_heads {n_heads}")
        if not vocab_sizes or min(vocab_sizes) < 1:
            raise ValueError(f"vocab_sizes must be a non-empty list of positive sizes; got {list(vocab_sizes)}")
        self.vocab_sizes = tuple(int(v) for v in vocab_sizes)
        self.depth = len(self.vocab_sizes)
        self.d_model, self.d_mem = d_model, d_mem
        offsets = torch.tensor((0, *self.vocab_sizes[:-1])).cumsum(0) + 1  # token 0 is BOS
        self.register_buffer("offsets", offsets, persistent=False)
        self.tok_emb = nn.Embedding(1 + sum(self.vocab_sizes), d_model)
        self.pos_emb = nn.Embedding(self.depth, d_model)  # position t = the level being predicted
        self.mem_proj = nn.Linear(d_mem, d_model) if d_mem != d_model else nn.Identity()
        self.layers = nn.ModuleList(_DecoderLayer(d_model, n_heads, d_ff or 4 * d_model, dropout) for _ in range(n_layers))
        self.ln_out = nn.LayerNorm(d_model)
        self.heads = nn.ModuleList(nn.Linear(d_model, v) for v in self.vocab_sizes)
        self.drop = nn.Dropout(dropout)
        self.apply(_init_weights)

    def _memory(self, memory: Tensor, memory_mask: Tensor) -> tuple[Tensor, Tensor]:
        """The memory the layers read -> (memory (B, S', d_model), mask (B, S') bool), S' = S + 1 with the pooled
        token."""
        if memory.shape[-1] != self.d_mem:
            raise ValueError(f"memory has width {memory.shape[-1]}; this decoder was built with d_mem={self.d_mem}")
        memory, memory_mask = memory.to(self.tok_emb.weight.dtype), memory_mask.bool()
        if self.pooled_memory:
            # the masked mean of the memory (the sentence embedding's direction) as one more memory token: the
            # semantic IDs are a function of that vector, so the decoder gets it without learning to pool
            m = memory_mask[:, :, None].to(memory.dtype)
            pooled = (memory * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1.0)
            memory = torch.cat([pooled, memory], dim=1)
            memory_mask = torch.cat([torch.ones_like(memory_mask[:, :1]), memory_mask], dim=1)
        return self.mem_proj(memory), memory_mask

    def forward(self, memory: Tensor, memory_mask: Tensor, codes: Tensor) -> list[Tensor]:
        """Teacher forcing: codes (B, depth) int64 -> per-level logits, entry l is (B, vocab_sizes[l])."""
        b, depth = codes.shape
        if depth != self.depth:
            raise ValueError(f"codes have {depth} levels; this decoder has {self.depth}")
        prev = self.offsets[: depth - 1] + codes[:, :-1]
        tokens = torch.cat([torch.zeros(b, 1, dtype=torch.long, device=codes.device), prev], dim=1)
        x = self.drop(self.tok_emb(tokens) + self.pos_emb.weight[None, :depth])
        mem, mask = self._memory(memory, memory_mask)
        for layer in self.layers:
            x = layer(x, mem, mask)
        x = self.ln_out(x)
        return [head(x[:, t]) for t, head in enumerate(self.heads)]

    def loss(self, memory: Tensor, memory_mask: Tensor, codes: Tensor, *, label_smoothing: float = 0.0,
             soft: tuple[Tensor, Tensor] | None = None, soft_weight: float = 0.0) -> Tensor:
        """Mean over levels of the per-level cross-entropy (scalar). With ``soft`` = (candidate codes (B, C, depth),
        weights (B, C)) and ``soft_weight`` > 0, each level's loss is (1 - soft_weight) x the cross-entropy with the
        gold code + soft_weight x the cross-entropy with ``soft_targets`` (distillation)."""
        logits = self(memory, memory_mask, codes)
        total = 0.0
        for t, lg in enumerate(logits):
            lg = lg.float()
            hard = F.cross_entropy(lg, codes[:, t], label_smoothing=label_smoothing)
            if soft is None or soft_weight <= 0:
                total = total + hard
                continue
            target = soft_targets(codes, *soft, level=t, vocab=lg.shape[1])
            distilled = -(target * F.log_softmax(lg, dim=-1)).sum(-1).mean()
            total = total + (1.0 - soft_weight) * hard + soft_weight * distilled
        return total / self.depth

    # -------------------------------------------------------------------------------- incremental
    def start(self, memory: Tensor, memory_mask: Tensor) -> DecoderCache:
        """Project the memory into per-layer cross-attention K/V once per batch (each query's beams share them)."""
        mem, mask = self._memory(memory, memory_mask)
        kv = [layer.memory_kv(mem, mask) for layer in self.layers]
        return DecoderCache(cross_k=[k for k, _ in kv], cross_v=[v for _, v in kv], mem_mask=mask[:, None, None, :])

    def step(self, cache: DecoderCache, prev_codes: Tensor | None, level: int) -> Tensor:
        """Logits (B, W, vocab_sizes[level]) for the code at ``level``.

        ``prev_codes`` (B, W) are the beams' codes at level-1 (None at level 0, which reads BOS). The cache
        must already be reordered to these W beams; this call appends their K/V.
        """
        b = cache.mem_mask.shape[0]
        if level == 0:
            tokens = torch.zeros(b, 1, dtype=torch.long, device=cache.mem_mask.device)
        else:
            tokens = self.offsets[level - 1] + prev_codes
        x = self.tok_emb(tokens) + self.pos_emb.weight[level]
        for i, layer in enumerate(self.layers):
            x = layer.step(x, cache, i)
        cache.width = x.shape[1]
        return self.heads[level](self.ln_out(x))


def soft_targets(codes: Tensor, cand_codes: Tensor, weights: Tensor, *, level: int, vocab: int) -> Tensor:
    """A teacher's distribution over the codes of ``level`` given the gold prefix: the weights of the candidate
    documents whose ID starts with ``codes[:, :level]``, summed per code at ``level`` and normalised.

    codes (B, depth) gold IDs; cand_codes (B, C, depth) the candidates' IDs; weights (B, C) >= 0 (the gold document
    among the candidates, with a positive weight, keeps every row non-empty) -> (B, vocab) float32."""
    match = (cand_codes[:, :, :level] == codes[:, None, :level]).all(dim=-1)
    target = torch.zeros(len(codes), vocab, dtype=torch.float32, device=codes.device)
    target.scatter_add_(1, cand_codes[:, :, level], (weights * match).float())
    return target / target.sum(dim=1, keepdim=True).clamp_min(1e-12)


def _init_weights(module: nn.Module) -> None:
    # small init (GPT-2 style) keeps the untrained decoder's logits near uniform
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


# ---------------------------------------------------------------------------------------------- text side
class TextEncoder(nn.Module):
    """MiniLM (BERT) token states for the ID decoder: texts -> (B, S, 384) states + (B, S) bool mask.

    The bottom ``num_layers - trainable_layers`` layers and the embeddings are frozen, and ``frozen_states``
    computes their output without gradients, so training can cache it once per text and run only the
    trainable top (none by default) and the decoder per step.

    The transformer and tokenizer are those of the embedding model (``genir.embed.text_encoder_parts``: one
    name map, one load per process and ``device``). A frozen encoder shares that module with the Embedder;
    trainable top layers are fine-tuned, so they get a copy and the embeddings keep the pretrained weights.
    """

    def __init__(self, name: str = "all-MiniLM-L6-v2", *, trainable_layers: int = 0, max_tokens: int = 64,
                 device: torch.device | str = "cpu", precision: str = "fp32") -> None:
        super().__init__()
        from genir.device import resolve_precision
        from genir.embed import text_encoder_parts

        # the frozen part runs in this precision (fp32; opt-in bf16 autocast or int8 ONNX); its output is float32
        self.precision = resolve_precision(precision, device)
        self.name = name
        if self.precision == "int8" and trainable_layers:
            raise ValueError("precision 'int8' runs the whole encoder on ONNX Runtime: it needs "
                             "trainable_encoder_layers 0 (or use 'fp32' / 'bf16')")

        bert, self.tokenizer = text_encoder_parts(name, str(device))
        n_layers = bert.config.num_hidden_layers
        if not 0 <= trainable_layers <= n_layers:
            raise ValueError(f"trainable_layers must be in 0..{n_layers}; got {trainable_layers}")
        if bert.config._attn_implementation not in ("sdpa", "eager"):
            # SDPA (or eager) attention takes the additive mask ``_run`` builds; flash kernels would not
            raise ValueError(f"text encoder {name!r} uses {bert.config._attn_implementation} attention; "
                             "genir needs sdpa or eager")
        self.bert = bert if trainable_layers == 0 else copy.deepcopy(bert)
        self.split = n_layers - trainable_layers
        self.max_tokens = max_tokens
        self.dim: int = self.bert.config.hidden_size
        for p in self.bert.parameters():
            p.requires_grad_(False)
        for layer in self.top_layers:
            for p in layer.parameters():
                p.requires_grad_(True)
        self.train(False)

    @property
    def top_layers(self) -> nn.ModuleList:
        return self.bert.encoder.layer[self.split :]

    def train(self, mode: bool = True) -> "TextEncoder":
        super().train(mode)
        # frozen layers stay deterministic, so cached states equal what a live pass would give
        self.bert.embeddings.train(False)
        for layer in self.bert.encoder.layer[: self.split]:
            layer.train(False)
        return self

    def tokenize(self, texts: Sequence[str], device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """-> input ids (B, S) int64, mask (B, S) bool; truncated to ``max_tokens``."""
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        return enc["input_ids"].to(device), enc["attention_mask"].to(device).bool()

    def _run(self, layers: Sequence[nn.Module], h: Tensor, mask: Tensor) -> Tensor:
        # BERT's extended attention mask, built here rather than by a private transformers helper: (B, 1, 1, S),
        # 0 on real keys and the dtype's minimum on padding; eager and SDPA attention both add it to the scores
        att = (1.0 - mask[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min
        for layer in layers:
            h = layer(h, att)
        return h

    @torch.no_grad()
    def frozen_states(self, texts: Sequence[str], device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """Output of the frozen part: (B, S, dim) float, (B, S) bool."""
        from genir.device import autocast

        ids, mask = self.tokenize(texts, device)
        if self.precision == "int8":  # every layer frozen: the whole forward on ONNX Runtime (genir.onnx_encoder)
            from genir.onnx_encoder import onnx_encoder

            return onnx_encoder(self.name).states(ids, mask).to(ids.device), mask
        with autocast(ids.device, enabled=self.precision == "bf16"):
            h = self.bert.embeddings(input_ids=ids, token_type_ids=torch.zeros_like(ids))
            h = self._run(self.bert.encoder.layer[: self.split], h, mask)
        return h.float(), mask

    def top(self, states: Tensor, mask: Tensor) -> Tensor:
        """Run the trainable layers on ``frozen_states`` output: (B, S, dim) -> (B, S, dim)."""
        return self._run(self.top_layers, states, mask) if len(self.top_layers) else states

    def forward(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        states, mask = self.frozen_states(texts, self.bert.embeddings.word_embeddings.weight.device)
        return self.top(states, mask), mask


class Seq2SeqRetriever(nn.Module):
    """TextEncoder + IdDecoder. ``forward`` takes cached frozen encoder states and returns the training loss."""

    def __init__(self, cfg: ModelConfig, vocab_sizes: Sequence[int], *, label_smoothing: float = 0.0,
                 distill: float = 0.0, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.cfg = cfg
        self.label_smoothing = label_smoothing
        self.distill = distill  # weight of the soft targets in the loss (TrainConfig.distill)
        self.encoder = TextEncoder(cfg.encoder, trainable_layers=cfg.trainable_encoder_layers,
                                   max_tokens=cfg.max_input_tokens, device=device,  # build it where it will run
                                   precision=cfg.encoder_precision)
        self.decoder = IdDecoder(
            vocab_sizes,
            d_model=cfg.d_model,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            d_mem=self.encoder.dim,
            d_ff=cfg.d_ff,
            dropout=cfg.dropout,
            pooled_memory=cfg.pooled_memory,
        )

    def forward(self, states: Tensor, mask: Tensor, codes: Tensor, soft_codes: Tensor | None = None,
                soft_weights: Tensor | None = None) -> Tensor:
        """states (B, S, dim) from ``encoder.frozen_states``, mask (B, S) bool, codes (B, depth) -> scalar loss;
        ``soft_codes`` (B, C, depth) / ``soft_weights`` (B, C): a teacher's candidates (IdDecoder.loss)."""
        memory = self.encoder.top(states, mask)
        soft = None if soft_codes is None else (soft_codes, soft_weights)
        return self.decoder.loss(memory, mask, codes, label_smoothing=self.label_smoothing, soft=soft,
                                 soft_weight=self.distill)

    def trained_tensors(self) -> dict[str, Tensor]:
        """The parameters training changes (decoder + trainable encoder layers): what a checkpoint stores."""
        return {name: p.detach() for name, p in self.named_parameters() if p.requires_grad}
