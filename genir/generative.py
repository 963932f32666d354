"""GenerativeRetriever: train the seq2seq on a corpus's semantic IDs, search with constrained beam search.

The facade the index wires in: ``train`` (pairs from genir.pseudo, cached frozen-encoder states, the loop
from genir.train), ``search`` / ``search_prefixes`` (numpy in, numpy out) and ``save`` / ``load``
(``model.safetensors`` + ``generative.json``; no pickle).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import Tensor

from genir import __version__
from genir.config import ModelConfig, TrainConfig, from_dict, to_dict
from genir.decoding import constrained_beam_search, prefix_beam_search
from genir.device import autocast, resolve_decoder_precision, resolve_device, setup_distributed
from genir.model import Seq2SeqRetriever, TextEncoder
from genir.progress import track
from genir.pseudo import make_pairs
from genir.timing import stage
from genir.train import TrainResult, default_param_groups, train_model
from genir.trie import IdTrie

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
ENCODE_BATCH = 128
Memories = Sequence[tuple[Tensor, Tensor]]  # the text encoder's (memory (B, S, dim), mask (B, S) bool) per query batch


@dataclass(frozen=True)
class Decoded:
    """doc_idx (n, k) int64 (-1 padding), scores (n, k) float32 log-probs (-inf padding), codes (n, k, depth)
    int64 decoded code tuples (-1 padding)."""

    doc_idx: np.ndarray
    scores: np.ndarray
    codes: np.ndarray


class GenerativeRetriever:
    """A trained Seq2SeqRetriever plus the IdTrie its outputs are constrained to."""

    def __init__(self, model: Seq2SeqRetriever, trie: IdTrie, *, device: str = "auto") -> None:
        self.model = model.eval()
        self.trie = trie
        self.device = resolve_device(device)
        self.model.to(self.device)
        self.train_result: TrainResult | None = None
        self.build_info: dict = {}  # training-pair counts and seconds per stage (pairs, encoder_states, train)

    # ------------------------------------------------------------------------------------------ training
    @classmethod
    def train(
        cls,
        texts: list[str],
        titles: list[str],
        codes: np.ndarray,
        trie: IdTrie,
        train_queries: list[str],
        train_doc_idx: list[list[int]] | np.ndarray,
        *,
        model_cfg: ModelConfig,
        train_cfg: TrainConfig,
        device: str = "auto",
        workdir: Path | None = None,
        resume: bool = False,
        progress: bool | None = None,
        doc_emb: np.ndarray | None = None,
    ) -> "GenerativeRetriever":
        """Train on documents ``texts``/``titles`` (n,) with IDs ``codes`` (n, depth) int (row i = doc_idx i).

        ``train_queries``/``train_doc_idx`` are TRAIN-split queries and their relevant doc_idx (never dev).
        ``workdir`` holds checkpoints and the encoder-state cache; ``resume=True`` continues from its newest
        checkpoint. ``doc_emb`` (n, dim): the documents' unit embeddings by the model whose token states the encoder
        gives (the dense index's), needed when ``train_cfg.distill`` > 0 (Teacher). Works under torchrun (every
        process calls this; rank 0 writes files).
        """
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or len(codes) != len(texts):
            raise ValueError(f"codes must have shape ({len(texts)}, depth); got {codes.shape}")
        if trie.num_levels != codes.shape[1] or not np.array_equal(trie.lookup(codes), np.arange(len(codes))):
            raise ValueError("trie does not map codes row i to doc_idx i; build it with IdTrie.from_codes(codes)")
        info = setup_distributed(device)
        progress = progress if info.rank == 0 else False  # one bar per torchrun job
        torch.manual_seed(train_cfg.seed)
        vocab = tuple(int(max(v, c)) for v, c in zip(trie.vocab_sizes, codes.max(axis=0) + 1))
        if train_cfg.distill > 0 and (doc_emb is None or len(doc_emb) != len(codes)):
            raise ValueError(f"train.distill={train_cfg.distill:g} needs the documents' embeddings (doc_emb, one row "
                             "per document) to build the dense teacher; pass them or set distill=0 (this call trains "
                             "with the weight as given: train.distill_when is applied by GenerativeIndex.build)")
        model = Seq2SeqRetriever(model_cfg, vocab, label_smoothing=train_cfg.label_smoothing,
                                 distill=train_cfg.distill, device=info.device).to(info.device)
        t = time.perf_counter()
        pairs = make_pairs(texts, titles, train_queries, train_doc_idx, cfg=train_cfg)
        logger.info("training pairs: %s from %d unique texts", pairs.counts(), len(pairs.texts))
        timings = {"pairs": time.perf_counter() - t}
        t = time.perf_counter()
        flat, offsets = _cached_states(model.encoder, pairs.texts, workdir, info.rank, info.world_size, progress)
        timings["encoder_states"] = time.perf_counter() - t
        teacher = None
        if train_cfg.distill > 0:
            t = time.perf_counter()
            teacher = Teacher.build(flat, offsets, pairs.text_idx, pairs.doc_idx, doc_emb, codes,
                                    k=train_cfg.distill_k, temperature=train_cfg.distill_temperature)
            timings["teacher"] = time.perf_counter() - t
        t = time.perf_counter()
        data = CachedPairs(flat, offsets, pairs.text_idx, torch.from_numpy(codes[pairs.doc_idx]), teacher=teacher)
        groups = default_param_groups(model.decoder, train_cfg.lr, train_cfg.weight_decay)
        enc = [p for p in model.encoder.parameters() if p.requires_grad]
        if enc:
            groups.append({"params": enc, "lr": train_cfg.encoder_lr, "weight_decay": train_cfg.weight_decay})
        result = train_model(
            model, data, train_cfg, workdir=workdir, resume=resume, device=device, param_groups=groups, progress=progress
        )
        timings["train"] = time.perf_counter() - t
        retriever = cls(model, trie, device=device)
        retriever.train_result = result
        retriever.build_info = {"pairs": pairs.counts(), "unique_texts": len(pairs.texts), "seconds": timings}
        return retriever

    # ------------------------------------------------------------------------------------------ search
    def _memory(self, queries: Sequence[str]) -> tuple[Tensor, Tensor]:
        with stage("encode_memory"):
            return self.model.encoder(queries)

    def _memories(self, queries: Sequence[str], batch_size: int,
                  memories: Memories | None) -> Iterator[tuple[Tensor, Tensor]]:
        """(memory, mask) per batch of ``batch_size`` queries: ``memories`` when given, else the encoder's pass."""
        starts = range(0, len(queries), batch_size)
        sizes = [len(queries[s : s + batch_size]) for s in starts]
        if memories is not None and [len(mask) for _, mask in memories] != sizes:
            raise ValueError(f"memories must hold one (memory, mask) per batch of {batch_size} queries (sizes {sizes}); "
                             f"got batches of {[len(mask) for _, mask in memories]}")
        for b, start in enumerate(starts):
            yield self._memory(queries[start : start + batch_size]) if memories is None else memories[b]

    def _precision(self, precision: str):
        """A factory of the decoder's precision context on this device (DecodeConfig.precision: auto | fp32 | bf16)."""
        bf16 = resolve_decoder_precision(precision, self.device) == "bf16"
        return lambda: autocast(self.device, enabled=bf16)

    @torch.no_grad()
    def search(
        self, queries: list[str], *, k: int = 10, beam_size: int = 20, renormalize: bool = False, batch_size: int = 64,
        memories: Memories | None = None, precision: str = "fp32",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Constrained generation -> (doc_idx (n, k) int64, scores (n, k) float32 log-probs), -1 / -inf padded.

        Every returned doc_idx is a document in the trie. The beam is widened to ``k`` when ``k > beam_size``.
        ``memories``: the encoder's (memory (B, S, dim), mask (B, S)) per batch of ``batch_size`` queries, from a
        pass the caller already ran (genir.semantic.SemanticLayer.encode_queries); None encodes here.
        ``precision`` (auto | fp32 | bf16): the decoder's forward (DecodeConfig.precision).
        """
        res = self.decode(queries, k=k, beam_size=beam_size, renormalize=renormalize, batch_size=batch_size,
                          memories=memories, precision=precision)
        return res.doc_idx, res.scores

    @torch.no_grad()
    def decode(
        self, queries: list[str], *, k: int = 10, beam_size: int = 20, renormalize: bool = False, batch_size: int = 64,
        constrained: bool = True, memories: Memories | None = None, precision: str = "fp32",
    ) -> Decoded:
        """``search`` with the decoded code tuples kept, for checking outputs against the corpus's IDs
        (``genir.semantic.check_decoded_ids``). ``constrained=False`` drops the trie mask: only to show that
        check failing."""
        self.trie.to(self.device)
        in_precision = self._precision(precision)  # checked before any work
        docs, scores, codes = [], [], []
        depth = self.model.decoder.depth
        batches = self._memories(queries, batch_size, memories)
        for memory, mask in track(batches, description="generative search", total=-(-len(queries) // batch_size)):
            with stage("decode"), in_precision():
                res = constrained_beam_search(
                    self.model.decoder, memory, mask, self.trie, beam_size=max(beam_size, k), num_return=k,
                    renormalize=renormalize, constrained=constrained,
                )
                docs.append(res.doc_idx.cpu().numpy())
                scores.append(res.scores.cpu().numpy())
                codes.append(res.codes.cpu().numpy())
        return Decoded(_stack(docs, (0, k), np.int64), _stack(scores, (0, k), np.float32),
                       _stack(codes, (0, k, depth), np.int64))

    @torch.no_grad()
    def search_prefixes(
        self, queries: list[str], *, level: int, beam_size: int = 20, batch_size: int = 64,
        memories: Memories | None = None, precision: str = "fp32",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Best ID prefixes of length ``level`` -> (trie node ids at depth ``level`` (n, beam_size) int64,
        log-probs (n, beam_size) float32), -1 / -inf padded. ``trie.docs_under(node, level)`` lists their documents.
        ``memories`` and ``precision`` as in ``search``."""
        self.trie.to(self.device)
        in_precision = self._precision(precision)  # checked before any work
        nodes, scores = [], []
        for memory, mask in self._memories(queries, batch_size, memories):
            with stage("decode"), in_precision():
                res = prefix_beam_search(self.model.decoder, memory, mask, self.trie, level=level, beam_size=beam_size)
                nodes.append(res.nodes.cpu().numpy())
                scores.append(res.scores.cpu().numpy())
        return _stack(nodes, (0, beam_size), np.int64), _stack(scores, (0, beam_size), np.float32)

    # ------------------------------------------------------------------------------------------ persistence
    def save(self, folder: Path) -> None:
        """Write ``model.safetensors`` (decoder + trained encoder layers) and ``generative.json``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.cpu().contiguous() for k, v in self.model.trained_tensors().items()}
        save_file(tensors, str(folder / "model.safetensors"))
        meta = {
            "format_version": FORMAT_VERSION,
            "genir_version": __version__,
            "model_config": to_dict(self.model.cfg),
            "vocab_sizes": list(self.model.decoder.vocab_sizes),
        }
        (folder / "generative.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: Path, trie: IdTrie, *, device: str = "auto") -> "GenerativeRetriever":
        """Rebuild from ``save`` output; the frozen encoder layers come from the offline MiniLM package."""
        folder = Path(folder)
        meta = json.loads((folder / "generative.json").read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{folder}/generative.json has format {meta.get('format_version')}; expected {FORMAT_VERSION}")
        model = Seq2SeqRetriever(from_dict(ModelConfig, meta["model_config"]), meta["vocab_sizes"],
                                 device=resolve_device(device))
        tensors = load_file(str(folder / "model.safetensors"))
        expected = set(model.trained_tensors())
        if set(tensors) != expected:
            raise ValueError(f"{folder}/model.safetensors does not match its config: differing tensors {sorted(set(tensors) ^ expected)[:5]}")
        model.load_state_dict(tensors, strict=False)
        return cls(model, trie, device=device)


@dataclass(frozen=True)
class Teacher:
    """The dense model as a teacher for the decoder (TrainConfig.distill): per training example, the gold document
    and the ``k`` documents nearest to its input text, weighted by a softmax of their cosines / temperature.

    A text's vector is the mean of its cached encoder states, unit norm: the sentence embedding of MiniLM-style
    models (mean pooling), so it lives in the space of ``doc_emb`` when the dense index embeds with the encoder's
    model (SemanticLayer.build checks). docs/sims (u, k) per unique text; gold/gold_sims (m,) each example's
    document and its cosine; doc_codes (n, depth) every document's ID."""

    docs: Tensor
    sims: Tensor
    gold: Tensor
    gold_sims: Tensor
    doc_codes: Tensor
    temperature: float

    @classmethod
    def build(cls, flat: Tensor, offsets: Tensor, text_idx: np.ndarray, doc_idx: np.ndarray, doc_emb: np.ndarray,
              codes: np.ndarray, *, k: int, temperature: float, chunk: int = 4096) -> "Teacher":
        if temperature <= 0 or k < 1:
            raise ValueError(f"distill_k must be >= 1 and distill_temperature > 0; got {k}, {temperature}")
        docs_t = torch.from_numpy(np.ascontiguousarray(doc_emb, dtype=np.float32))
        k = min(k, len(docs_t))
        vecs, top_docs, top_sims = [], [], []
        for s in range(0, len(offsets) - 1, chunk):
            e = min(s + chunk, len(offsets) - 1)
            lengths = offsets[s + 1 : e + 1] - offsets[s:e]
            seg = torch.repeat_interleave(torch.arange(e - s), lengths)
            sums = torch.zeros(e - s, flat.shape[1]).index_add_(0, seg, flat[offsets[s] : offsets[e]].float())
            vec = torch.nn.functional.normalize(sums / lengths.clamp_min(1)[:, None].float(), dim=-1)
            sims, idx = (vec @ docs_t.T).topk(k, dim=1)
            vecs.append(vec), top_docs.append(idx), top_sims.append(sims)
        vecs_t = torch.cat(vecs)
        text_idx_t, doc_idx_t = (torch.from_numpy(np.asarray(a, dtype=np.int64)) for a in (text_idx, doc_idx))
        gold = torch.cat([(vecs_t[text_idx_t[s : s + chunk]] * docs_t[doc_idx_t[s : s + chunk]]).sum(1)
                          for s in range(0, len(text_idx_t), chunk)]) if len(text_idx_t) else torch.zeros(0)
        return cls(torch.cat(top_docs), torch.cat(top_sims), doc_idx_t, gold,
                   torch.from_numpy(np.asarray(codes, dtype=np.int64)), float(temperature))

    def candidates(self, text: Tensor, example: Tensor) -> tuple[Tensor, Tensor]:
        """(candidate IDs (B, 1 + k, depth), weights (B, 1 + k)) of examples ``example`` (whose input is
        ``text``): the gold document first; a neighbour that is the gold document gets weight 0."""
        doc = self.gold[example]
        docs = torch.cat([doc[:, None], self.docs[text]], dim=1)
        sims = torch.cat([self.gold_sims[example][:, None], self.sims[text]], dim=1)
        sims[:, 1:].masked_fill_(docs[:, 1:] == doc[:, None], float("-inf"))
        return self.doc_codes[docs], torch.softmax(sims / self.temperature, dim=1)


class CachedPairs:
    """Training examples over cached frozen-encoder states, packed without padding (float16).

    flat (T, dim) token states of all unique texts back to back; offsets (u + 1,) int64; text_idx (m,)
    example -> text; codes (m, depth) targets. ``batch`` pads to the longest text in the batch and, with a
    ``teacher``, adds its candidates (soft_codes, soft_weights).
    """

    def __init__(self, flat: Tensor, offsets: Tensor, text_idx: np.ndarray, codes: Tensor, *,
                 teacher: Teacher | None = None) -> None:
        self.flat, self.offsets, self.codes, self.teacher = flat, offsets, codes, teacher
        self.text_idx = torch.from_numpy(np.asarray(text_idx, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.text_idx)

    def batch(self, idx: np.ndarray, device: torch.device) -> dict[str, Tensor]:
        index = torch.from_numpy(idx)
        t = self.text_idx[index]
        start, length = self.offsets[t], self.offsets[t + 1] - self.offsets[t]
        pos = torch.arange(int(length.max()))
        mask = pos[None, :] < length[:, None]
        rows = (start[:, None] + pos[None, :]).clamp_(max=len(self.flat) - 1)
        states = self.flat[rows].float() * mask[:, :, None]
        out = {"states": states.to(device), "mask": mask.to(device), "codes": self.codes[index].to(device)}
        if self.teacher is not None:
            cand, weights = self.teacher.candidates(t, index)
            out.update(soft_codes=cand.to(device), soft_weights=weights.to(device))
        return out


def encode_states(encoder: TextEncoder, texts: list[str], *, progress: bool | None = None) -> tuple[Tensor, Tensor]:
    """Frozen-encoder states of ``texts`` packed: (flat (T, dim) float16, offsets (len(texts) + 1,) int64)."""
    device = encoder.bert.embeddings.word_embeddings.weight.device
    order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths together: less padding
    pieces: list[Tensor] = [torch.empty(0)] * len(texts)
    starts = range(0, len(texts), ENCODE_BATCH)
    for s in track(starts, description="encoding training texts", total=len(starts), enabled=progress):
        chunk = order[s : s + ENCODE_BATCH]
        states, mask = encoder.frozen_states([texts[i] for i in chunk], device)
        states, mask = states.to("cpu", torch.float16), mask.cpu()
        for row, i in enumerate(chunk):
            pieces[i] = states[row, mask[row]]
    lengths = torch.tensor([len(p) for p in pieces], dtype=torch.long)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    flat = torch.cat(pieces) if pieces else torch.zeros(0, encoder.dim, dtype=torch.float16)
    return flat, offsets


def _cached_states(
    encoder: TextEncoder, texts: list[str], workdir: Path | None, rank: int, world: int, progress: bool | None
) -> tuple[Tensor, Tensor]:
    """encode_states, kept in ``workdir/encoder_cache`` keyed by texts + encoder so a resumed run skips it."""
    if workdir is None:
        return encode_states(encoder, texts, progress=progress)
    settings = [encoder.split, encoder.max_tokens, str(encoder.bert.config._name_or_path)]
    settings += [encoder.precision] if encoder.precision != "fp32" else []  # fp32 keys stay as they were
    key = hashlib.sha256(json.dumps([*settings, texts]).encode()).hexdigest()[:16]
    path = Path(workdir) / "encoder_cache" / f"{key}.safetensors"
    if rank == 0 and not path.exists():
        from genir.store import atomic_write

        flat, offsets = encode_states(encoder, texts, progress=progress)
        atomic_write(path, lambda tmp: save_file({"flat": flat, "offsets": offsets}, str(tmp)))
    if world > 1:
        dist.barrier()  # other ranks read what rank 0 wrote
    cached = load_file(str(path))
    return cached["flat"], cached["offsets"]


def _stack(parts: list[np.ndarray], empty_shape: tuple[int, ...], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(empty_shape, dtype=dtype)
