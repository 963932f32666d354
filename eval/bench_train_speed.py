"""Decoder training throughput on SciFact (issue 16, point 3): today's training vs variants, with dev quality.

The data are prepared once, as `genir index` prepares them (the same caches, so a `genir index DATA --out
indexes/scifact` workdir is reused): document embeddings, semantic IDs (rqvae, cached here too), trie, the
training pairs of the train-dev queries plus pseudo-queries, and the frozen MiniLM states of every pair text.
Then only the decoder's training repeats, once per variant (the default loop, genir.train.train_model, on
cached encoder states):

* ``default``: TrainConfig as `genir index` trains (batch 256, float32);
* ``bf16``: the decoder's forward pass under bfloat16 autocast behind genir.device's gate (skipped, with the
  reason, where that gate says bf16 is not fast on this machine);
* ``batch512``: batch size 512 (same peak learning rate; half the steps per epoch);
* ``compile``: ``torch.compile(model, dynamic=True)`` (batches pad to their longest text, so shapes vary);
  skipped, with the error, where compiling fails on this machine;
* ``projected-kv``: the default before commit 814ae3d, which projected the real memory tokens into each layer's
  cross-attention K/V (today the teacher-forced pass absorbs W_k into the query and applies W_v after the
  weighted sum, projecting no memory token; same loss and gradients up to rounding);
* ``padded-kv``: the default before commit 3d78c66, which projected the cross-attention K/V of every padded
  memory position;
* ``dedup``: the training pairs de-duplicated (a (text, document) pair once, so the labelled queries'
  ``query_upsample`` repeats and repeated sentences go).

Per variant: steps/s and examples/s over ``--steps`` steps after ``--warmup-steps`` (compile time and the
first allocations excluded) and over the whole run, and after ``--epochs`` epochs (an equal budget in epochs)
the dev generative nDCG@10 on the carved dev split (the queries `genir eval --split dev` reads; beam 20),
beside the default's. ``--epochs 0`` measures throughput only (``--warmup-steps + --steps`` steps, no dev
evaluation). Results: eval/results/train-speed-cpu.json (+ .png), written whole with genir.provenance; each
finished variant is kept in OUT.partial.json and a rerun with the same settings skips it (``--fresh``
starts over).

    HF_HUB_OFFLINE=1 .venv/bin/python eval/bench_train_speed.py [--data /work/shared/data/scifact]
        [--workdir indexes/scifact.work] [--epochs 2] [--steps 50] [--warmup-steps 5]
        [--variants default bf16 batch512 compile dedup] [--threads 2] [--set train.pseudo_per_doc=1]
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import time
import traceback
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from genir.config import IndexConfig, to_dict, with_overrides
from genir.data import load_dataset
from genir.device import autocast, bf16_is_fast
from genir.embed import Embedder
from genir.generative import CachedPairs, GenerativeRetriever, _cached_states  # _cached_states: genir index's cache
from genir.ids import add_suffix, make_codec
from genir.metrics import evaluate_order
from genir.model import Seq2SeqRetriever, TextEncoder
from genir.provenance import measure_resumably, partial_path, provenance, write_result
from genir.pseudo import TrainingPairs, apply_mix, make_pairs
from genir.semantic import suffix_vocab, train_pairs
from genir.store import atomic_write
from genir.train import default_param_groups, total_steps, train_model
from genir.trie import IdTrie

logger = logging.getLogger("bench_train_speed")
ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("default", "projected-kv", "padded-kv", "bf16", "batch512", "compile", "dedup")
QUALITY_TOLERANCE = 0.005  # issue 16: a change holds quality when dev nDCG@10 stays within this of the default


@dataclass
class Prepared:
    """Everything the variants share: IDs (n, depth), trie, pairs and their cached encoder states, dev queries."""

    cfg: IndexConfig
    ids: np.ndarray
    vocab: tuple[int, ...]
    trie: IdTrie
    pairs: TrainingPairs
    flat: Tensor
    offsets: Tensor
    doc_ids: list[str]
    dev: object  # BeirDataset of the carved dev split
    seconds: dict[str, float]


def prepare(data: Path, workdir: Path, cfg: IndexConfig, device: torch.device) -> Prepared:
    seconds = {}
    t = time.perf_counter()
    train = load_dataset(data, split="train-dev")
    dev = load_dataset(data, split="dev")
    corpus = train.corpus
    emb = Embedder(cfg.embed, device=str(device)).encode_cached(corpus.passages(), workdir / "embeddings")
    seconds["embed"] = time.perf_counter() - t
    t = time.perf_counter()
    ids, vocab = _cached_ids(emb, cfg, workdir)
    trie = IdTrie.from_codes(ids, vocab_sizes=vocab)
    seconds["ids"] = time.perf_counter() - t
    t = time.perf_counter()
    texts, titles = corpus.table.column("text").to_pylist(), corpus.table.column("title").to_pylist()
    q_texts, q_docs = train_pairs(train.split_queries(), train.qrels, corpus.doc_ids)
    # as genir.semantic.SemanticLayer.build applies the mix; the loop is timed without distillation's teacher
    # (a build stage of its own, seconds), so the config recorded says distill 0
    train_cfg = dataclasses.replace(apply_mix(cfg.train), distill=0.0)
    pairs = make_pairs(texts, titles, q_texts, q_docs, cfg=train_cfg)
    seconds["pairs"] = time.perf_counter() - t
    t = time.perf_counter()
    encoder = TextEncoder(cfg.model.encoder, trainable_layers=cfg.model.trainable_encoder_layers,
                          max_tokens=cfg.model.max_input_tokens, device=device, precision=cfg.model.encoder_precision)
    flat, offsets = _cached_states(encoder, pairs.texts, workdir, 0, 1, None)
    seconds["encoder_states"] = time.perf_counter() - t
    cfg = dataclasses.replace(cfg, train=train_cfg)
    logger.info("prepared: %d documents, pairs %s, %d unique texts; seconds %s", len(corpus), pairs.counts(),
                len(pairs.texts), {k: round(v, 1) for k, v in seconds.items()})
    return Prepared(cfg, ids, vocab, trie, pairs, flat, offsets, corpus.doc_ids, dev, seconds)


def _cached_ids(emb: np.ndarray, cfg: IndexConfig, workdir: Path) -> tuple[np.ndarray, tuple[int, ...]]:
    """Semantic IDs with the collision suffix (n, depth) and the vocabulary per level, as genir.semantic makes
    them; kept in the workdir keyed by the embeddings and the codec config (the codec fit takes ~30 s)."""
    key = hashlib.sha256(json.dumps(to_dict(cfg.codec), sort_keys=True).encode() + emb.tobytes()).hexdigest()[:16]
    path = workdir / "bench_ids" / f"{key}.npz"
    if not path.is_file():
        codec = make_codec(cfg.codec).fit(emb, seed=cfg.codec.seed)
        ids = add_suffix(codec.encode(emb))
        vocab = np.array([*codec.codebook_sizes, suffix_vocab(ids)], dtype=np.int64)
        atomic_write(path, lambda tmp: np.savez(tmp, ids=ids, vocab=vocab))
    saved = np.load(path, allow_pickle=False)
    return saved["ids"], tuple(int(v) for v in saved["vocab"])


class _Bf16(nn.Module):
    """The model's forward under bf16 autocast (as genir.rec.tiger does it); the loss comes back in float32."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.model, self.device = model, device

    def forward(self, **batch: Tensor) -> Tensor:
        with autocast(self.device, enabled=True):
            return self.model(**batch).float()


def run_variant(name: str, prep: Prepared, args: argparse.Namespace, device: torch.device) -> dict:
    """Train a fresh decoder as variant ``name``; -> throughput, run facts and (epochs > 0) dev nDCG@10."""
    cfg = prep.cfg.train
    text_idx, doc_idx = prep.pairs.text_idx, prep.pairs.doc_idx
    if name == "dedup":
        unique = np.unique(np.stack([text_idx, doc_idx], axis=1), axis=0)
        text_idx, doc_idx = unique[:, 0], unique[:, 1]
    batch_size = 512 if name == "batch512" else cfg.batch_size
    if name == "bf16" and not bf16_is_fast(device):
        return {"skipped": f"genir.device.bf16_is_fast({device.type}) is False: bf16 would be emulated here"}
    n = len(text_idx)
    cfg = dataclasses.replace(cfg, batch_size=batch_size, checkpoint_every=0)
    if args.epochs > 0:
        cfg = dataclasses.replace(cfg, epochs=args.epochs, max_steps=0)
    else:
        cfg = dataclasses.replace(cfg, max_steps=args.warmup_steps + args.steps)
    torch.manual_seed(cfg.seed)
    model = Seq2SeqRetriever(prep.cfg.model, prep.vocab, label_smoothing=cfg.label_smoothing, device=device).to(device)
    net: nn.Module = _Bf16(model, device) if name == "bf16" else model
    if name in ("projected-kv", "padded-kv"):  # the memory projected into K/V per layer: before 814ae3d (real
        for layer in model.decoder.layers:       # tokens only), before 3d78c66 (every padded position too)
            layer._cross_absorbed = partial(_projected_cross, layer, padded=name == "padded-kv")
    if name == "compile":
        net = torch.compile(model, dynamic=True)
    data = CachedPairs(prep.flat, prep.offsets, text_idx, torch.from_numpy(prep.ids[doc_idx]))
    stamps: list[float] = []
    started = time.perf_counter()
    try:
        result = train_model(net, data, cfg, device=str(device), progress=False,
                             param_groups=default_param_groups(model.decoder, cfg.lr, cfg.weight_decay),
                             on_step=lambda step, loss: stamps.append(time.perf_counter()))
    except Exception as exc:  # noqa: BLE001 (torch.compile fails in many ways on some CPUs; record why and go on)
        if name != "compile":
            raise
        return {"skipped": f"torch.compile failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}",
                "traceback_tail": traceback.format_exc().splitlines()[-3:]}
    wall = time.perf_counter() - started
    # stamps[i]: the end of step i + 1; the timed steps are warm-up + 1 .. warm-up + steps (as many as ran)
    w = max(0, min(args.warmup_steps, len(stamps) - 1))
    timed = min(args.steps, len(stamps) - w)
    t0 = stamps[w - 1] if w > 0 else started
    steps_s = timed / (stamps[w + timed - 1] - t0) if timed > 0 else float("nan")
    per_step = min(batch_size, n)  # full batches only (genir.train); a set smaller than a batch is one step
    out = {
        "examples": n, "batch_size": batch_size, "steps": result.steps, "train_seconds": round(wall, 2),
        "first_step_seconds": round(stamps[0] - started, 2) if stamps else None,
        "timed_steps": timed, "steps_per_second": round(steps_s, 4), "examples_per_second": round(steps_s * per_step, 1),
        "steps_per_second_whole_run": round(result.steps / wall, 4), "final_loss": round(result.final_loss, 4),
        "epochs": args.epochs if args.epochs > 0 else None,
        "planned_steps": total_steps(n, cfg),
    }
    if args.epochs > 0:
        t = time.perf_counter()
        out["dev_ndcg10"] = dev_ndcg10(model, prep, device)
        out["eval_seconds"] = round(time.perf_counter() - t, 2)
    logger.info("%s: %s", name, out)
    return out


def _projected_cross(layer: nn.Module, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor, *,
                     padded: bool) -> torch.Tensor:
    """The teacher-forced cross-attention as it was: ``memory`` projected into K/V (the real positions, or every
    padded one), then scaled_dot_product_attention over them (what decoding still runs)."""
    k, v = layer.memory_kv(memory, None if padded else mask)
    return layer._cross(x, k, v, mask[:, None, None, :])


def dev_ndcg10(model: Seq2SeqRetriever, prep: Prepared, device: torch.device) -> float:
    """Generative nDCG@10 on the carved dev split, beam 20 as served (DecodeConfig)."""
    queries = prep.dev.split_queries()
    judged = set(prep.dev.qrels.table.column("query_id").to_pylist())
    keep = [i for i, q in enumerate(queries.query_ids) if q in judged]
    texts = [queries.texts[i] for i in keep]
    qids = [queries.query_ids[i] for i in keep]
    dc = prep.cfg.decode
    retriever = GenerativeRetriever(model, prep.trie, device=str(device))
    idx, _ = retriever.search(texts, k=10, beam_size=dc.beam_size, renormalize=dc.renormalize, batch_size=dc.batch_size,
                              precision=dc.precision)
    return round(float(evaluate_order(qids, idx, prep.doc_ids, prep.dev.qrels, ["nDCG@10"])["nDCG@10"]), 4)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(n, v) for n, v in result["variants"].items() if "skipped" not in v]
    names = [n for n, _ in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.bar(names, [v["examples_per_second"] for _, v in rows], color="tab:blue")
    a.set_ylabel("training examples / s")
    a.set_title(f"throughput over {result['settings']['steps']} steps")
    if all("dev_ndcg10" in v for _, v in rows) and rows:
        b.bar(names, [v["dev_ndcg10"] for _, v in rows], color="tab:green")
        b.set_ylim(min(v["dev_ndcg10"] for _, v in rows) * 0.9, max(v["dev_ndcg10"] for _, v in rows) * 1.05)
    b.set_ylabel("dev generative nDCG@10")
    b.set_title(f"after {result['settings']['epochs']} epochs")
    for ax in (a, b):
        ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    started = provenance()  # the code that ran is the code at the start
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path("/work/shared/data/scifact"))
    p.add_argument("--workdir", type=Path, default=ROOT / "indexes" / "scifact.work",
                   help="embedding / encoder-state caches (a `genir index` workdir is reused)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--epochs", type=float, default=2.0, help="quality budget per variant (0: throughput only)")
    p.add_argument("--steps", type=int, default=50, help="steps timed for throughput, after the warm-up steps")
    p.add_argument("--warmup-steps", type=int, default=5, help="first steps not timed (compilation, allocation)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave the default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="IndexConfig override as for `genir index --set` (e.g. train.pseudo_per_doc=1 for a smoke run)")
    p.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "train-speed-cpu.json")
    p.add_argument("--fresh", action="store_true", help="ignore OUT.partial.json from an interrupted run")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = with_overrides(IndexConfig(), args.overrides)
    settings = {"data": str(args.data), "epochs": args.epochs, "steps": args.steps, "warmup_steps": args.warmup_steps,
                "overrides": args.overrides, "device": str(device), "torch_threads": torch.get_num_threads(),
                "dev_split": {"fraction": 0.2, "seed": 0}}
    prep = prepare(args.data, args.workdir, cfg, device)
    done = measure_resumably(args.out, settings, args.variants, lambda name: run_variant(name, prep, args, device),
                             fresh=args.fresh)
    base = done.get("default", {}).get("dev_ndcg10")
    for v in done.values():
        if base is not None and "dev_ndcg10" in v:
            v["dev_ndcg10_minus_default"] = round(v["dev_ndcg10"] - base, 4)
            v["holds_quality"] = bool(v["dev_ndcg10"] >= base - QUALITY_TOLERANCE)
        if "steps_per_second" in v and "steps_per_second" in done.get("default", {}):
            v["examples_per_second_over_default"] = round(v["examples_per_second"] / done["default"]["examples_per_second"], 3)
    result = {"benchmark": "decoder training throughput on cached encoder states (issue 16)", "settings": settings,
              "config": to_dict(prep.cfg), "pairs": prep.pairs.counts(), "unique_texts": len(prep.pairs.texts),
              "prepare_seconds": {k: round(v, 2) for k, v in prep.seconds.items()},
              "bf16_is_fast": bf16_is_fast(device), "quality_tolerance": QUALITY_TOLERANCE,
              "variants": {n: done[n] for n in args.variants}}
    write_result(args.out, result, started=started)
    plot(result, args.out.with_suffix(".png"))
    partial_path(args.out).unlink(missing_ok=True)
    logger.info("wrote %s and %s", args.out, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
