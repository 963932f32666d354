"""MS MARCO benchmarks: msmarco-10k dev end to end, TREC DL 2019 zero-shot on the DL pool, and a scale curve.

Every index is built and evaluated through the `genir` command line, as a user would type it; this script
only runs the commands, reads what they wrote (manifest, REPORT JSON) and writes one result file with the
commands, provenance (git commit, machine, versions) and per-stage build seconds.

    # msmarco-10k with the defaults, once per pseudo-query mix: genir index / search / eval --split dev
    # -> eval/results/msmarco-10k-dev.json (the default's mix is the headline; the other beside it)
    HF_HUB_OFFLINE=1 .venv/bin/python eval/bench_msmarco.py dev
    # DL pool, no labelled queries, fusion carried over from the msmarco-10k index -> msmarco-dl19.json
    HF_HUB_OFFLINE=1 .venv/bin/python eval/bench_msmarco.py dl19 --epochs 2
    # 10k vs 10k + DL pool (35k) at the same settings, the pseudo-query mixes side by side, and the trained
    # decoder over 100k / 1M synthetic IDs -> msmarco-scale.json + .png
    HF_HUB_OFFLINE=1 .venv/bin/python eval/bench_msmarco.py scale --epochs 2
    # the README's MS MARCO tables, from the three result files (with every other README table)
    .venv/bin/python eval/readme_tables.py

Nothing is tuned on DL 2019 or on a test split: fusion is tuned on the msmarco-10k dev carve-out (20 % of
its train queries, seed 0) or carried over from that index.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "eval" / "results"
DATA = Path(os.environ.get("GENIR_DATA", ROOT.parent / "shared" / "data"))
MODES = ("bm25", "dense", "rrf", "generative", "hybrid")
PROVENANCE: dict = {}


def genir(args: list[str], log: list[dict]) -> str:
    """Run one `genir` command; its argv, seconds and return code go to ``log``. Fails loudly."""
    cmd = [sys.executable, "-m", "genir", *args]
    t = time.perf_counter()
    print("$ genir " + " ".join(args), file=sys.stderr, flush=True)
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "GENIR_PROGRESS": "0"})
    log.append({"argv": ["genir", *args], "seconds": round(time.perf_counter() - t, 1), "returncode": done.returncode})
    if done.returncode != 0:
        raise SystemExit(f"failed: genir {' '.join(args)}")  # its stderr went to ours
    return done.stdout


def index_facts(index_dir: Path) -> dict:
    """Build facts from the live manifest: seconds per stage, peak RSS, size on disk, semantic-ID stats."""
    folder = index_dir / (index_dir / "CURRENT").read_text().strip()
    manifest = json.loads((folder / "manifest.json").read_text())
    semantic = folder / "semantic" / "semantic.json"
    sem = json.loads(semantic.read_text()) if semantic.exists() else {}
    return {
        "version": folder.name,
        "documents": manifest["counts"]["documents"],
        "built_by": manifest.get("built_by"),  # the build's provenance: a skipped (existing) build keeps its lineage
        "build_seconds": manifest.get("build_seconds"),
        "peak_rss_mb": manifest.get("peak_rss_mb"),
        "disk_mb": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20,
        "sources": manifest.get("sources"),
        "fusion": manifest["config"].get("hybrid"),
        "fusion_source": manifest.get("fusion_source"),
        "pseudo_mix": sem.get("pseudo_mix"),
        "distill": sem.get("distill"),  # the distillation rule's decision and scores (genir.index.distill_choice)
        "pairs": sem.get("pairs"),
        "train": sem.get("train"),
        "codec_stats": sem.get("codec_stats"),
        "config": manifest["config"],
    }


def evaluate(index_dir: Path, data: Path, split: str, log: list[dict], *, rel: int = 1, modes=MODES) -> dict:
    out = index_dir.with_name(index_dir.name + f"-{split}.json")
    genir(["eval", str(index_dir), "--data", str(data), "--split", split, "--out", str(out),
           "--rel-threshold", str(rel), *[a for m in modes for a in ("--mode", m)]], log)
    return json.loads(out.read_text())


def build(data: Path, out: Path, log: list[dict], *extra: str, rebuild: bool = False) -> None:
    if rebuild or not (out / "CURRENT").exists():
        genir(["index", str(data), "--out", str(out), *extra], log)


def write(name: str, result: dict) -> Path:
    from genir.provenance import write_result

    path = write_result(RESULTS / name, result, started=PROVENANCE)
    print(f"wrote {path}")
    return path


def rows(report: dict) -> dict:
    return {r["mode"]: {**r["metrics"], "queries_per_second": r["queries_per_second"], **({"paths": r["paths"]} if "paths" in r else {})}
            for r in report["results"]}


# ------------------------------------------------------------------------------------------------ dev
def default_mix() -> str:
    """The pseudo-query mix ``genir index`` uses when none is given (TrainConfig.pseudo_mix)."""
    from genir.config import TrainConfig

    return TrainConfig().pseudo_mix


def cmd_dev(args) -> None:
    """The defaults a user would type, once per pseudo-query mix (every mix is built with the same defaults
    otherwise and compared on dev, in this one run; the default mix's build is the headline)."""
    data, log = args.data / "msmarco-10k", []
    chosen = default_mix()
    mixes, example = {}, None
    for mix in args.mixes:
        out = args.indexes / ("msmarco-10k-" + "-".join([mix, *[a.strip("-").replace("=", "") for a in args.index_args]]))
        build(data, out, log, "--pseudo-mix", mix, *args.index_args, rebuild=args.rebuild)
        if mix == chosen:
            example = json.loads(genir(["search", str(out), "what is the most awarded japanese whisky", "-k", "3", "--json"], log))
        report = evaluate(out, data, "dev", log)
        mixes[mix] = {"index": index_facts(out), "num_queries": report["num_queries"],
                      "relevance_threshold": report["relevance_threshold"], "results": rows(report)}
    best = max(mixes, key=lambda m: mixes[m]["results"]["generative"]["RR@10"]) if len(mixes) > 1 else None
    default = mixes.get(chosen)
    write(args.result, {
        "what": "msmarco-10k: genir index with the defaults (once per pseudo-query mix: --pseudo-mix passage and "
                "document, everything else default), then genir eval --split dev (20 % of the train queries, seed 0; "
                "the model trains on the other 80 %, the fusion is tuned on dev). 'results' and 'index' are the "
                "build with the default mix",
        "default_mix": chosen, "best_mix_on_dev": best, "mix_criterion": "generative RR@10 on dev",
        "commands": log, "index": default and default["index"], "num_queries": default and default["num_queries"],
        "relevance_threshold": default and default["relevance_threshold"],
        "results": default and default["results"], "example_search": example, "mixes": mixes,
    })


# ------------------------------------------------------------------------------------------------ dl19
def cmd_dl19(args) -> None:
    data, out, log = args.data / "msmarco-dl-pool", args.indexes / f"msmarco-dl-pool-e{args.epochs:g}", []
    fusion = args.fusion_from or args.indexes / "msmarco-10k"
    if not (fusion / "CURRENT").exists():
        raise SystemExit(f"{fusion} is missing: run `bench_msmarco.py dev` first (its dev-tuned fusion is carried over)")
    build(data, out, log, "--epochs", str(args.epochs), "--fusion-from", str(fusion), *args.index_args,
          rebuild=args.rebuild)
    report = evaluate(out, data, "dl19", log, rel=2)
    default = default_fusion(out, data, "dl19", rel=2)
    write("msmarco-dl19.json", {
        "what": "TREC DL 2019 on the DL pool (24,884 passages), zero-shot: the model trains on indexing pairs and "
                "pseudo-queries only; the hybrid serves the fusion tuned on msmarco-10k dev (carried over). "
                "DL 2019 is for evaluation only: nothing is tuned on it. RR/R count grades >= 2; nDCG uses grades.",
        "commands": log, "index": index_facts(out), "num_queries": report["num_queries"],
        "relevance_threshold": report["relevance_threshold"], "results": rows(report),
        "hybrid_with_untuned_default_fusion": {"fusion": default["config"]["hybrid"], "results": rows(default)},
    })


def default_fusion(index_dir: Path, data: Path, split: str, *, rel: int) -> dict:
    """The hybrid mode of ``index_dir`` served with HybridConfig() (what an index without a dev split and
    without --fusion-from would serve), evaluated in this process on ``split``."""
    import dataclasses

    from genir.config import HybridConfig
    from genir.data import load_dataset
    from genir.evaluate import evaluate_index
    from genir.index import GenerativeIndex

    index = GenerativeIndex.load(index_dir, device="cpu")
    index.cfg = dataclasses.replace(index.cfg, hybrid=HybridConfig())  # the served fusion (genir.index)
    ds = load_dataset(data, split=split)
    return evaluate_index(index, ds.split_queries(), ds.qrels, modes=["hybrid"], dataset=data.name, split=split, rel=rel)


# ------------------------------------------------------------------------------------------------ scale
def synthetic_ids(real: np.ndarray, n: int, *, seed: int = 0) -> np.ndarray:
    """(n, levels) codes drawn level by level from the real IDs' code frequencies (so they crowd the same
    prefixes the decoder knows), without the suffix column."""
    rng = np.random.default_rng(seed)
    levels = real.shape[1] - 1
    out = np.zeros((n, levels), dtype=np.int64)
    for level in range(levels):
        values, counts = np.unique(real[:, level], return_counts=True)
        out[:, level] = rng.choice(values, size=n, p=counts / counts.sum())
    return out


def extended_decoding(index_dir: Path, data: Path, sizes: list[int], queries: int = 64, repeats: int = 3) -> list[dict]:
    """The trained decoder over the real IDs plus synthetic ones (``sizes`` IDs in all): decode seconds per
    batch of dev queries, trie memory, process peak RSS, and dev RR@10 of the generative ranking (synthetic
    IDs are never relevant)."""
    import torch

    from genir.data import load_dataset
    from genir.generative import GenerativeRetriever
    from genir.ids import add_suffix
    from genir.index import GenerativeIndex, peak_rss_mb
    from genir.metrics import evaluate_order
    from genir.trie import IdTrie

    index = GenerativeIndex.load(index_dir, device="cpu")
    sem = index.semantic
    dev = load_dataset(data, split="dev")
    texts, qids = dev.split_queries().texts, dev.split_queries().query_ids
    doc_ids = index.corpus.doc_ids
    out = []
    for size in [len(sem.ids), *sizes]:
        extra = max(0, size - len(sem.ids))
        codes = sem.ids if extra == 0 else np.concatenate(
            [sem.ids, add_suffix(synthetic_ids(sem.ids, extra), existing=sem.ids)])
        vocab = tuple(max(v, int(c) + 1) for v, c in zip(sem.trie.vocab_sizes, codes.max(axis=0)))
        decoder_vocab = sem.retriever.model.decoder.vocab_sizes
        codes = codes[np.all(codes < np.asarray(decoder_vocab), axis=1)]  # suffixes the decoder can emit
        t = time.perf_counter()
        trie = IdTrie.from_codes(codes, vocab_sizes=vocab)
        trie_seconds = time.perf_counter() - t
        retriever = GenerativeRetriever(sem.retriever.model, trie, device="cpu")
        batch = texts[:queries]
        retriever.search(batch, k=10, beam_size=index.cfg.decode.beam_size, precision=index.cfg.decode.precision)  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            retriever.search(batch, k=10, beam_size=index.cfg.decode.beam_size, precision=index.cfg.decode.precision)
            times.append(time.perf_counter() - t)
        idx, _ = retriever.search(texts, k=10, beam_size=index.cfg.decode.beam_size,
                                  precision=index.cfg.decode.precision)
        ids_all = doc_ids + [f"synthetic-{i}" for i in range(len(codes) - len(doc_ids))]
        metrics = evaluate_order(qids, idx, ids_all, dev.qrels, ("RR@10", "R@1", "R@10"))
        out.append({"ids": int(len(codes)), "synthetic": int(len(codes) - len(doc_ids)),
                    "decode_seconds_per_batch": float(np.median(times)), "batch_queries": len(batch),
                    "queries_per_second": len(batch) / float(np.median(times)),
                    "trie_build_seconds": trie_seconds, "trie_mb": trie.memory_bytes() / 2**20,
                    "process_peak_rss_mb": peak_rss_mb(),
                    "synthetic_in_top10": float(np.mean(idx >= len(doc_ids))), "dev": metrics,
                    "torch_threads": torch.get_num_threads()})
        print(out[-1], flush=True)
    return out


def plot_scale(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [s for s in result["sizes"] if s.get("label", "10k") in ("10k", "35k")]  # equal epochs: the curve
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    docs = [s["index"]["documents"] for s in sizes]
    for mode in MODES:
        axes[0].plot(docs, [s["results"][mode]["RR@10"] for s in sizes], marker="o", label=mode)
    for s in result["sizes"]:
        if s not in sizes:  # 10k trained as many steps as 35k: generative at equal compute
            axes[0].scatter([s["index"]["documents"]], [s["results"]["generative"]["RR@10"]], marker="x", color="k",
                            label=f"generative, {s['label']}", zorder=3)
    axes[0].set(xlabel="passages in the index", ylabel="RR@10 (msmarco-10k dev)", title="quality vs corpus size")
    axes[0].legend()
    stages = sorted({k for s in sizes for k in (s["index"]["build_seconds"] or {}) if k != "total"})
    bottom = np.zeros(len(sizes))
    for stage in stages:
        vals = np.array([(s["index"]["build_seconds"] or {}).get(stage, 0.0) / 60 for s in sizes])
        axes[1].bar([str(d) for d in docs], vals, bottom=bottom, label=stage)
        bottom += vals
    axes[1].set(xlabel="passages in the index", ylabel="minutes", title="build time per stage")
    axes[1].legend(fontsize=7)
    ext = result["extended_ids"]
    axes[2].plot([e["ids"] for e in ext], [1000 * e["decode_seconds_per_batch"] / e["batch_queries"] for e in ext],
                 marker="o", label="decode ms / query")
    axes[2].set(xscale="log", xlabel="IDs in the trie (real + synthetic)", ylabel="ms per query (batch of 64)",
                title="trained decoder, extended ID space")
    ax2 = axes[2].twinx()
    ax2.plot([e["ids"] for e in ext], [e["trie_mb"] for e in ext], marker="s", color="gray", label="trie MB")
    ax2.set(ylabel="trie MB")
    axes[2].legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def library_build(out: Path, corpus, cfg, train, dev, work: Path, *, embeddings=None, rebuild: bool = False) -> None:
    """Build with the library as `genir index` does (train-dev queries, fusion tuned on dev), save to ``out``."""
    from genir.index import GenerativeIndex

    if (out / "CURRENT").exists() and not rebuild:
        return
    started = time.perf_counter()
    print(f"building {out} in this process", file=sys.stderr, flush=True)
    index = GenerativeIndex.build(corpus, cfg, train_queries=train.split_queries(), train_qrels=train.qrels,
                                  device="cpu", workdir=work, embeddings=embeddings)
    index.tune(dev.split_queries(), dev.qrels)
    index.save(out, started=started)


def cmd_scale(args) -> None:
    """10k and 35k (10k + the DL pool as distractors) at the same settings, built in this process so the 35k
    build reuses the 10k passage vectors; optionally the document pseudo-query mix at 10k; then the trained
    10k decoder over synthetic IDs."""
    import dataclasses

    from genir.config import IndexConfig, TrainConfig, to_dict
    from genir.data import load_corpus, load_dataset, merge_corpora
    from genir.embed import Embedder

    data, pool_dir, log = args.data / "msmarco-10k", args.data / "msmarco-dl-pool", []
    tag = f"e{args.epochs:g}-p{args.pseudo_per_doc}"
    cfg = IndexConfig(train=TrainConfig(epochs=args.epochs, pseudo_per_doc=args.pseudo_per_doc))
    train, dev = load_dataset(data, split="train-dev"), load_dataset(data, split="dev")
    pool = load_corpus(pool_dir)
    embedder = Embedder(cfg.embed, device="cpu")
    t = time.perf_counter()
    small_emb = embedder.encode_cached(train.corpus.passages(), args.indexes / "msmarco-10k.work" / "embeddings")
    # the DL19 build (bench_msmarco.py dl19, `genir index` with the default workdir) finds this cache
    pool_emb = embedder.encode_cached(pool.passages(), args.indexes / f"msmarco-dl-pool-e{args.dl_epochs:g}.work" / "embeddings")
    embed_seconds = time.perf_counter() - t
    small, large = args.indexes / f"msmarco-10k-{tag}", args.indexes / f"msmarco-35k-{tag}"
    library_build(small, train.corpus, cfg, train, dev, args.indexes / f"msmarco-10k-{tag}.work", embeddings=small_emb,
                  rebuild=args.rebuild)
    merged = merge_corpora(train.corpus, [(pool_dir.name, pool)])
    library_build(large, merged, cfg, train, dev, args.indexes / f"msmarco-35k-{tag}.work",
                  embeddings=np.concatenate([small_emb, pool_emb]), rebuild=args.rebuild)
    builds = [("10k", small), ("35k", large)]
    if args.equal_steps:  # 10k trained for as many optimizer steps as the 35k model: the drop at equal compute
        steps = int(index_facts(large)["train"]["steps"])
        same = args.indexes / f"msmarco-10k-{tag}-steps{steps}"
        same_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=steps))
        library_build(same, train.corpus, same_cfg, train, dev, args.indexes / f"msmarco-10k-{tag}.work",
                      embeddings=small_emb, rebuild=args.rebuild)
        builds.append((f"10k, {steps} steps (as 35k)", same))
    sizes = []
    for label, path in builds:
        report = evaluate(path, data, "dev", log)
        sizes.append({"label": label, "index": index_facts(path), "results": rows(report), "num_queries": report["num_queries"]})
    mixes = []
    if args.document_mix:
        doc = args.indexes / f"msmarco-10k-{tag}-document-mix"
        doc_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, pseudo_mix="document"))
        library_build(doc, train.corpus, doc_cfg, train, dev, args.indexes / f"msmarco-10k-{tag}-document.work",
                      embeddings=small_emb, rebuild=args.rebuild)
        report = evaluate(doc, data, "dev", log, modes=("generative", "hybrid"))
        mixes = [{"pseudo_mix": "passage (auto for short untitled passages)", "results": sizes[0]["results"]},
                 {"pseudo_mix": "document", "results": rows(report), "index": index_facts(doc)}]
    result = {
        "what": f"msmarco-10k dev queries over 10k passages and over 10k + the DL pool as distractors (35k, DL pool ids "
                f"namespaced 'msmarco-dl-pool:'), both built in this process with the library exactly as `genir index` "
                f"does (train-dev queries, fusion tuned on dev) with epochs={args.epochs:g} and "
                f"pseudo_per_doc={args.pseudo_per_doc} (to fit this machine's CPU budget), otherwise the defaults; the "
                f"35k build reuses the 10k passage vectors, so its embed stage is recorded separately below; then the 10k "
                f"model's decoder over extra synthetic IDs",
        "config": to_dict(cfg),
        "embedding_seconds_10k_plus_pool": embed_seconds,
        "commands": log, "sizes": sizes, "pseudo_mix_comparison": mixes,
        "extended_ids": extended_decoding(small, data, args.synthetic_sizes),
    }
    path = write("msmarco-scale.json", result)
    plot_scale(result, path.with_suffix(".png"))


# ------------------------------------------------------------------------------------------------ arch
# the variants `arch` compares when none are given: NAME, then FIELD=VALUE overrides of IndexConfig (genir index --set)
ARCH_VARIANTS = ("decoder reads the token states (default)", "+ pooled memory token:model.pooled_memory=True")


def parse_variant(spec: str) -> tuple[str, list[str]]:
    """'NAME[:FIELD=VALUE;FIELD=VALUE...]' -> (NAME, ['FIELD=VALUE', ...])."""
    name, _, sets = spec.partition(":")
    return name.strip(), [s.strip() for s in sets.split(";") if s.strip()]


def cmd_arch(args) -> None:
    """Variants side by side on msmarco-10k dev, built in this process with the library (same data and seeds as
    `genir index`), ``--epochs`` each, every other field default unless the variant sets it (``--variant
    'NAME:FIELD=VALUE;...'``, repeatable; IndexConfig fields as `genir index --set` takes them); the embedding and
    encoder-state caches are copied from ``--cache-from`` (default: the dev build's workdir) when present."""
    import dataclasses
    import shutil

    from genir.config import IndexConfig, TrainConfig, with_overrides
    from genir.data import load_dataset
    from genir.evaluate import evaluate_index
    from genir.index import GenerativeIndex

    specs = [parse_variant(v) for v in (args.variants or ARCH_VARIANTS)]
    names = [name for name, _ in specs]
    if len(set(names)) != len(names):
        raise SystemExit(f"arch: variant names must differ; got {names}")
    base = IndexConfig(train=TrainConfig(epochs=args.epochs))
    configs = [with_overrides(base, sets) for _, sets in specs]  # bad fields fail before any work
    data, work = args.data / "msmarco-10k", args.indexes / "msmarco-10k-arch.work"
    cache_from = args.cache_from or args.indexes / "msmarco-10k.work"
    for cache in ("embeddings", "encoder_cache"):
        if (cache_from / cache).is_dir():
            shutil.copytree(cache_from / cache, work / cache, dirs_exist_ok=True)
    train, dev = load_dataset(data, split="train-dev"), load_dataset(data, split="dev")
    variants = []
    for (name, sets), cfg in zip(specs, configs):
        t = time.perf_counter()
        index = GenerativeIndex.build(train.corpus, cfg, train_queries=train.split_queries(), train_qrels=train.qrels,
                                      device="cpu", workdir=work, resume=False)
        tuned = index.tune(dev.split_queries(), dev.qrels)
        report = evaluate_index(index, dev.split_queries(), dev.qrels, modes=["dense", "generative", "hybrid"],
                                dataset="msmarco-10k", split="dev")
        variants.append({"variant": name, "set": sets, "model": dataclasses.asdict(cfg.model),
                         "train": dataclasses.asdict(cfg.train), "seconds": time.perf_counter() - t,
                         "build_seconds": index.meta["build_seconds"], "fusion": tuned["chosen"],
                         "training": index.semantic.meta.get("train"), "distill": index.semantic.meta.get("distill"),
                         "results": rows(report)})
        print(name, {m: round(r["RR@10"], 4) for m, r in variants[-1]["results"].items()}, flush=True)
        # rewritten whole after every variant, so a run stopped part-way keeps what it measured (and says so)
        write(args.result or f"msmarco-10k-arch-e{args.epochs:g}.json", {
            "what": f"variants on msmarco-10k dev built side by side in one process, --epochs {args.epochs:g}, "
                    "otherwise the defaults unless a variant's 'set' says (fusion tuned on dev, as `genir index` "
                    "does); compared on dev only",
            "variants_planned": names, "finished": len(variants) == len(specs), "variants": variants})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA, help="folder holding msmarco-10k/ and msmarco-dl-pool/")
    p.add_argument("--indexes", type=Path, default=ROOT / "indexes", help="where the indexes are built")
    p.add_argument("--rebuild", action="store_true", help="rebuild indexes that exist")
    p.add_argument("--index-arg", dest="index_args", action="append", default=[],
                   help="extra `genir index` argument (repeatable), e.g. --index-arg=--device=cpu")
    sub = p.add_subparsers(dest="cmd", required=True)
    dv = sub.add_parser("dev")
    dv.add_argument("--mixes", nargs="+", default=["passage", "document"], choices=["passage", "document"],
                    help="pseudo-query mixes built and compared (the default's own mix is the headline)")
    dv.add_argument("--result", default="msmarco-10k-dev.json",
                    help="result file name under eval/results (another name for non-default builds, e.g. with --index-arg)")
    dv.set_defaults(fn=cmd_dev)
    dl = sub.add_parser("dl19")
    dl.add_argument("--epochs", type=float, default=2.0)
    dl.add_argument("--fusion-from", type=Path, default=None,
                    help="index whose msmarco-10k-dev-tuned fusion is carried over (default: INDEXES/msmarco-10k)")
    dl.set_defaults(fn=cmd_dl19)
    sc = sub.add_parser("scale")
    sc.add_argument("--epochs", type=float, default=2.0)
    sc.add_argument("--pseudo-per-doc", type=int, default=3, help="pseudo-queries per passage (default build: 6)")
    sc.add_argument("--dl-epochs", type=float, default=2.0, help="the dl19 run's --epochs (its workdir gets the pool vectors)")
    sc.add_argument("--synthetic-sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    sc.add_argument("--document-mix", action="store_true", help="also build 10k with the document pseudo-query mix")
    sc.add_argument("--equal-steps", action="store_true",
                    help="also train 10k for as many steps as the 35k model (the size effect at equal training compute)")
    sc.set_defaults(fn=cmd_scale)
    ar = sub.add_parser("arch", help="model variants side by side on msmarco-10k dev")
    ar.add_argument("--epochs", type=float, default=3.0)
    ar.add_argument("--variant", dest="variants", action="append", default=[],
                    help="'NAME:FIELD=VALUE;FIELD=VALUE' (repeatable), e.g. 'distill:train.distill=0.5'")
    ar.add_argument("--cache-from", type=Path, default=None,
                    help="workdir whose embeddings/ and encoder_cache/ are copied first (default INDEXES/msmarco-10k.work)")
    ar.add_argument("--result", default=None, help="result file name under eval/results")
    ar.set_defaults(fn=cmd_arch)
    args = p.parse_args()
    from genir.provenance import provenance

    global PROVENANCE
    PROVENANCE = provenance()  # the code that runs is the code at the start
    if not (args.data / "msmarco-10k").is_dir():
        raise SystemExit(f"{args.data}/msmarco-10k not found: pass --data FOLDER (see ../shared/data/README.md)")
    args.fn(args)


if __name__ == "__main__":
    main()
