"""Batched beam search over semantic IDs, constrained by an IdTrie so that every output is a real document.

All queries x beams advance together: one decoder step, one trie gather and one top-k over the flattened
(beam x vocab) candidates per level. The only Python loop is over the (few) levels.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from genir.model import IdDecoder
from genir.trie import IdTrie

NEG_INF = float("-inf")


@dataclass(frozen=True)
class BeamResult:
    """Ranked IDs per query, all on the memory's device.

    doc_idx (B, k) int64, -1 where fewer than k valid IDs exist (and everywhere when decoding without a trie;
    with ``constrained=False`` also where the decoded ID is no document);
    scores (B, k) float32 log-probabilities of the whole ID, sorted descending, -inf on padding;
    codes (B, k, depth) int64 generated codes, -1 on padding.
    """

    doc_idx: Tensor
    scores: Tensor
    codes: Tensor


@dataclass(frozen=True)
class PrefixResult:
    """Best ID prefixes of length ``level`` per query.

    nodes (B, k) int64 prefix node ids of the trie at depth ``level`` (-1 padding); scores (B, k) float32
    log-probabilities of the prefix, sorted descending (-inf padding); codes (B, k, level) int64 (-1 padding).
    """

    nodes: Tensor
    scores: Tensor
    codes: Tensor


@torch.no_grad()
def constrained_beam_search(
    decoder: IdDecoder,
    memory: Tensor,
    memory_mask: Tensor,
    trie: IdTrie | None,
    *,
    beam_size: int,
    num_return: int,
    renormalize: bool = False,
    constrained: bool = True,
) -> BeamResult:
    """Decode the ``num_return`` best full IDs per query.

    memory (B, S, d_mem), memory_mask (B, S) bool (True = keep). With a trie, each step's log-probs are
    masked to the codes that extend a beam's prefix; ``renormalize=True`` instead re-normalises the softmax
    over those codes ((G)I-DLE). Results are distinct, all valid, sorted by score; prefixes with fewer
    continuations than beams leave -1 padding rather than invalid IDs. ``trie=None`` decodes
    unconstrained (doc_idx all -1; used to measure the constraint's cost). ``constrained=False`` drops the
    trie mask but still maps each decoded ID to its document through the trie (-1 where none has it, codes
    kept): it exists only to show that ``genir.semantic.check_decoded_ids`` catches invalid IDs.
    """
    _check(decoder, trie, beam_size, num_return)
    if renormalize and not constrained:
        raise ValueError("renormalize re-normalises over the trie's allowed codes; it needs constrained=True")
    nodes, scores, codes = _search(
        decoder, memory, memory_mask, trie, decoder.depth, beam_size, num_return, renormalize, mask=constrained
    )
    if trie is None:
        doc = torch.full(scores.shape, -1, dtype=torch.long, device=scores.device)
        valid = torch.isfinite(scores)
    else:
        doc = trie.docs(nodes.reshape(-1)).view_as(nodes)
        valid = torch.isfinite(scores) & ((doc >= 0) | (not constrained))
    return BeamResult(*_finish(doc, scores, codes, valid, num_return))


@torch.no_grad()
def prefix_beam_search(
    decoder: IdDecoder,
    memory: Tensor,
    memory_mask: Tensor,
    trie: IdTrie,
    *,
    level: int,
    beam_size: int,
    renormalize: bool = False,
) -> PrefixResult:
    """Decode only the first ``level`` codes: the ``beam_size`` best existing prefixes per query (for GDR)."""
    _check(decoder, trie, beam_size, beam_size)
    if not 1 <= level <= decoder.depth:
        raise ValueError(f"level {level} out of range; expected 1..{decoder.depth}")
    nodes, scores, codes = _search(decoder, memory, memory_mask, trie, level, beam_size, beam_size, renormalize)
    valid = torch.isfinite(scores) & (nodes >= 0)
    return PrefixResult(*_finish(nodes, scores, codes, valid, beam_size))


def _check(decoder: IdDecoder, trie: IdTrie | None, beam_size: int, num_return: int) -> None:
    if beam_size < 1 or num_return < 1:
        raise ValueError(f"beam_size and num_return must be >= 1; got {beam_size}, {num_return}")
    if trie is not None and trie.num_levels != decoder.depth:
        raise ValueError(f"trie has {trie.num_levels} levels but the decoder has {decoder.depth}; rebuild one of them")


def _search(
    decoder: IdDecoder,
    memory: Tensor,
    memory_mask: Tensor,
    trie: IdTrie | None,
    levels: int,
    beam_size: int,
    last_k: int,
    renormalize: bool,
    *,
    mask: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """Beam search over ``levels`` levels -> (nodes (B, k), scores (B, k), codes (B, k, levels)); dead beams -inf.
    ``mask=False`` follows the trie (nodes -1 off it) without restricting the codes."""
    batch, device = memory.shape[0], memory.device
    cache = decoder.start(memory, memory_mask)
    scores = torch.zeros(batch, 1, device=device)
    nodes = torch.zeros(batch, 1, dtype=torch.long, device=device)  # root
    codes = torch.zeros(batch, 1, 0, dtype=torch.long, device=device)
    prev: Tensor | None = None
    for level in range(levels):
        logits = decoder.step(cache, prev, level).float()  # (B, W, V)
        width, vocab = logits.shape[1:]
        if trie is None or not mask:
            logp = F.log_softmax(logits, dim=-1)
        else:
            allowed = _fit(trie.allowed(nodes.reshape(-1), level), vocab).view(batch, width, vocab)
            if renormalize:
                logp = F.log_softmax(logits.masked_fill(~allowed, NEG_INF), dim=-1)
            else:
                logp = F.log_softmax(logits, dim=-1)
            logp = torch.where(allowed, logp, NEG_INF)  # also clears NaN rows of beams with no continuation
        cand = (scores[:, :, None] + logp).view(batch, width * vocab)
        k = min(beam_size if level < levels - 1 else last_k, width * vocab)
        scores, flat = cand.topk(k, dim=1)  # sorted: distinct (beam, code) pairs, so distinct prefixes
        parent, code = flat // vocab, flat % vocab
        alive = torch.isfinite(scores)
        codes = torch.cat([codes.gather(1, parent[:, :, None].expand(-1, -1, codes.shape[2])), code[:, :, None]], dim=2)
        if trie is not None:
            child = trie.step(nodes.gather(1, parent).reshape(-1), level, code.reshape(-1)).view(batch, k)
            nodes = torch.where(alive, child, -1)
        if level < levels - 1:
            cache.reorder(parent)
            prev = code
    return nodes, scores, codes


def _fit(allowed: Tensor, vocab: int) -> Tensor:
    """Match the trie's mask width to the decoder's: codes the decoder cannot emit (e.g. a collision suffix
    added after training) are dropped; codes the trie lacks are disallowed."""
    have = allowed.shape[1]
    if have >= vocab:
        return allowed[:, :vocab]
    return F.pad(allowed, (0, vocab - have), value=False)


def _finish(ids: Tensor, scores: Tensor, codes: Tensor, valid: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Drop invalid rows, keep descending order, pad every output to width k."""
    scores = torch.where(valid, scores, NEG_INF)
    order = scores.argsort(dim=1, descending=True, stable=True)
    scores, ids, valid = scores.gather(1, order), ids.gather(1, order), valid.gather(1, order)
    codes = codes.gather(1, order[:, :, None].expand_as(codes))
    ids = torch.where(valid, ids, -1)
    codes = torch.where(valid[:, :, None], codes, -1)
    pad = k - scores.shape[1]
    if pad > 0:
        scores = F.pad(scores, (0, pad), value=NEG_INF)
        ids = F.pad(ids, (0, pad), value=-1)
        codes = F.pad(codes, (0, 0, 0, pad), value=-1)
    return ids[:, :k], scores[:, :k].float(), codes[:, :k]
