"""The `genir` command line. Each command parses options into config and makes one library call."""
from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import List, Optional

import typer

from genir.config import (Bm25Config, CodecConfig, DecodeConfig, DenseConfig, EmbedConfig, IndexConfig, ModelConfig,
                          TrainConfig)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="genir: generative retrieval and recommendation over semantic IDs.",
)
logger = logging.getLogger("genir")

TASKS = ("retrieve", "recommend")

# Errors a user can fix: reported as one line, exit code 2, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, NotADirectoryError,
                                                 IsADirectoryError, PermissionError, ImportError, KeyError)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("faiss", "bm25s", "sentence_transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# `genir index` options that are shortcuts for config fields (dotted paths as `--set` takes them), per task:
# giving one and a `--set` of a field it sets is an error. --model sets both encoders: the seq2seq's text
# encoder is the embedding model (one tokenizer and set of weights, genir.embed).
RETRIEVE_SHORTCUTS = {
    "model": ("embed.model", "model.encoder"), "batch_size": ("embed.batch_size",),
    "max_seq_length": ("embed.max_seq_length",), "factory": ("dense.factory",), "metric": ("dense.metric",),
    "ids": ("codec.scheme",), "levels": ("codec.levels",), "codebook_size": ("codec.codebook_size",),
    "seed": ("codec.seed", "train.seed"), "generative": ("generative",), "epochs": ("train.epochs",),
    "train_batch_size": ("train.batch_size",), "pseudo_mix": ("train.pseudo_mix",),
    "checkpoint_every": ("train.checkpoint_every",), "trainable_encoder_layers": ("model.trainable_encoder_layers",),
    "beam_size": ("decode.beam_size",),
}
RECOMMEND_SHORTCUTS = {"seed": ("seed", "codec.seed"), "ids": ("codec.scheme",), "levels": ("codec.levels",),
                       "codebook_size": ("codec.codebook_size",), "epochs": ("max_epochs",), "beam_size": ("beam_size",)}
# `genir index` options that --task recommend honours; any other option given with it is refused by name
# rather than silently dropped
RECOMMEND_OPTIONS = ("data_dir", "out", "task", *RECOMMEND_SHORTCUTS, "workdir", "resume", "device", "overrides",
                     "verbose", "reuse", "mode")
RECOMMEND_ONLY = ("reuse", "mode")  # `genir index` options that only --task recommend takes


def _given(ctx: typer.Context) -> set[str]:
    """Names of the command's parameters given on the command line (or environment), not defaulted."""
    sources = {p.name: ctx.get_parameter_source(p.name) for p in ctx.command.params}
    # compared by name: typer vendors its own click, so its ParameterSource enum is not click's
    return {name for name, src in sources.items() if src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP")}


def _check_shortcuts(ctx: typer.Context, given: set[str], overrides: list[str],
                     shortcuts: dict[str, tuple[str, ...]]) -> None:
    """ValueError when an option and a ``--set`` of a field that option sets are both given."""
    set_fields = {o.split("=", 1)[0].strip() for o in overrides}
    for p in ctx.command.params:
        clash = sorted(set_fields & set(shortcuts.get(p.name, ()))) if p.name in given else []
        if clash:
            raise ValueError(f"give {p.opts[0]} or --set {clash[0]}=..., not both")


def _refuse_options(ctx: typer.Context, allowed: tuple[str, ...], *, applies_to: str) -> set[str]:
    """``_given`` names; ValueError naming any given one outside ``allowed`` (it "applies to ``applies_to``" only)."""
    given = _given(ctx)
    refused = ["/".join(p.opts[:1] + list(getattr(p, "secondary_opts", []))[:1])  # --generative/--no-generative
               for p in ctx.command.params if p.name in given and p.name not in allowed]
    if refused:
        raise ValueError(f"{', '.join(refused)} {'applies' if len(refused) == 1 else 'apply'} to {applies_to}")
    return given


def _dataset(data_dir: Path, split: Optional[str], dev_fraction: float, seed: int):
    from genir.data import load_dataset

    return load_dataset(data_dir, split=split, dev_fraction=dev_fraction, seed=seed)


@app.command()
def index(
    ctx: typer.Context,
    data_dir: Path = typer.Argument(..., help="dataset folder (BEIR, MS MARCO passage; Amazon 5-core with --task recommend)"),
    out: Path = typer.Option(..., "--out", "-o", help="index directory to create or update"),
    task: str = typer.Option("retrieve", help="retrieve (documents for text queries) | recommend (next item for a user)"),
    train_split: str = typer.Option("train-dev", help="queries the generative model may train on "
                                    "('train-dev' = train minus the seeded dev carve-out)"),
    dev_fraction: float = typer.Option(0.2, help="share of train queries held out as 'dev'"),
    seed: int = typer.Option(0, help="global seed (dev split, codec, training)"),
    model: str = typer.Option(EmbedConfig.model, help="sentence-transformers model or local folder"),
    batch_size: int = typer.Option(EmbedConfig.batch_size, help="embedding batch size"),
    max_seq_length: int = typer.Option(EmbedConfig.max_seq_length, help="tokens per passage"),
    factory: str = typer.Option(DenseConfig.factory, help="faiss factory string: Flat, HNSW32, IVF256,Flat ..."),
    metric: str = typer.Option(DenseConfig.metric, help="ip or l2"),
    ids: str = typer.Option(CodecConfig.scheme, help="semantic ID scheme: rqvae | rqkmeans | hkmeans | atomic"),
    levels: int = typer.Option(CodecConfig.levels, help="codebooks before the collision suffix"),
    codebook_size: int = typer.Option(CodecConfig.codebook_size, help="codes per level"),
    generative: bool = typer.Option(True, help="build the semantic IDs and seq2seq model (off: dense + BM25 only)"),
    epochs: float = typer.Option(TrainConfig.epochs, help="seq2seq training epochs over the pair mix (--task "
                                 "recommend: at most this many, RecConfig.max_epochs; early stopping may end sooner)"),
    train_batch_size: int = typer.Option(TrainConfig.batch_size, help="seq2seq training batch size"),
    pseudo_mix: str = typer.Option(TrainConfig.pseudo_mix, help="pseudo-queries: document (sentences + "
                                   "6-20-word spans) | passage (adds keyword queries, 3-10-word spans)"),
    checkpoint_every: int = typer.Option(TrainConfig.checkpoint_every, min=0,
                                         help="training steps between checkpoints in --workdir (0 = only at the end)"),
    trainable_encoder_layers: int = typer.Option(ModelConfig.trainable_encoder_layers,
                                                 help="top MiniLM layers to fine-tune (0 = frozen, cached: CPU default)"),
    beam_size: int = typer.Option(DecodeConfig.beam_size, help="beams of the constrained search (--task recommend: "
                                  "RecConfig.beam_size)"),
    tune_split: str = typer.Option("dev", help="split the hybrid fusion is tuned on ('' = keep defaults); never test"),
    workdir: Optional[Path] = typer.Option(None, help="training checkpoints and caches (default: OUT.work)"),
    resume: bool = typer.Option(False, help="continue training from the newest checkpoint in --workdir"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N (torchrun: cuda = GPU LOCAL_RANK)"),
    extra_corpus: Optional[List[Path]] = typer.Option(None, "--extra-corpus", metavar="DIR",
                                                      help="another folder whose documents join the index (repeatable), "
                                                      "ids namespaced as FOLDER_NAME:id; queries come from DATA_DIR only"),
    fusion_from: Optional[Path] = typer.Option(None, "--fusion-from", metavar="INDEX",
                                               help="use the hybrid fusion tuned in another index instead of tuning "
                                               "here (e.g. for a corpus without labelled queries); recorded in the manifest"),
    overrides: Optional[List[str]] = typer.Option(None, "--set", metavar="FIELD=VALUE",
                                                  help="set a config field (repeatable): IndexConfig, dotted for "
                                                  "nested configs (--set train.epochs=2 --set dense.nprobe=32), or "
                                                  "RecConfig with --task recommend (--set threads=2)"),
    mode: Optional[List[str]] = typer.Option(None, "--mode", help="--task recommend: a mode to train (repeatable: "
                                             "generative, sasrec, popular, hybrid; default all; hybrid, the fusion of "
                                             "generative and sasrec, is tuned on validation whenever both are there)"),
    reuse: Optional[Path] = typer.Option(None, "--reuse", metavar="INDEX",
                                         help="--task recommend: take the item vectors and IDs, and every mode "
                                         "--mode does not name, from this index of the same data"),
    verbose: bool = typer.Option(True, help="log progress to stderr"),
) -> None:
    """Build an index (dense + BM25, and the generative model) over DATA_DIR into --out."""
    _setup_logging(verbose)
    from genir.index import GenerativeIndex

    from genir.store import check_writable

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {list(TASKS)}")
    check_writable(out)  # before any work, so a bad --out costs nothing and writes nothing
    if tune_split == "test":
        raise ValueError("--tune-split test would tune on the test queries; use the carved 'dev' split")
    from genir.config import with_overrides

    overrides = list(overrides or [])
    if task == "recommend":
        from genir.config import RecConfig
        from genir.rec import commands

        given = _refuse_options(ctx, RECOMMEND_OPTIONS, applies_to="--task retrieve")
        _check_shortcuts(ctx, given, overrides, RECOMMEND_SHORTCUTS)
        base = RecConfig(codec=CodecConfig(scheme=ids, levels=levels, codebook_size=codebook_size, seed=seed),
                         seed=seed)
        if "epochs" in given:
            if epochs != int(epochs) or epochs < 1:
                raise ValueError(f"--epochs {epochs:g}: with --task recommend it is a whole number of epochs >= 1 "
                                 "(RecConfig.max_epochs)")
            base = replace(base, max_epochs=int(epochs))
        if "beam_size" in given:
            base = replace(base, beam_size=beam_size)
        config = with_overrides(base, overrides)
        summary = commands.index(data_dir, out=out, config=config, checkpoint_dir=workdir, resume=resume,
                                 device=device, modes=mode or commands.MODES, reuse=reuse)
        reused = f"; from {reuse}: {', '.join(summary['reused'])}" if reuse is not None else ""
        typer.echo(f"indexed {summary['users']} users, {summary['items']} items from {data_dir} into {out} "
                   f"({summary['version']}); modes: {', '.join(summary['modes'])}{reused}")
        return
    _refuse_options(ctx, tuple(p.name for p in ctx.command.params if p.name not in RECOMMEND_ONLY),
                    applies_to="--task recommend")
    cfg = IndexConfig(
        embed=EmbedConfig(model=model, batch_size=batch_size, max_seq_length=max_seq_length),
        dense=DenseConfig(factory=factory, metric=metric),
        bm25=Bm25Config(),
        codec=CodecConfig(scheme=ids, levels=levels, codebook_size=codebook_size, seed=seed),
        generative=generative,
        model=ModelConfig(encoder=model, trainable_encoder_layers=trainable_encoder_layers),
        train=TrainConfig(epochs=epochs, batch_size=train_batch_size, checkpoint_every=checkpoint_every, seed=seed,
                          pseudo_mix=pseudo_mix),
        decode=DecodeConfig(beam_size=beam_size),
    )
    _check_shortcuts(ctx, _given(ctx), overrides, RETRIEVE_SHORTCUTS)
    cfg = with_overrides(cfg, overrides)
    generative = cfg.generative
    from genir.pseudo import MIXES

    if cfg.train.pseudo_mix not in MIXES:
        raise ValueError(f"unknown --pseudo-mix {cfg.train.pseudo_mix!r}; expected one of {list(MIXES)}")
    from genir.data import load_corpus, load_training, merge_corpora
    from genir.index import manifest_fusion, manifest_of

    # a bad path fails before any work; the fusion carried is the one that index serves (its config.hybrid)
    carried = manifest_fusion(manifest_of(fusion_from)) if fusion_from is not None else None
    if fusion_from is not None and carried is None:
        raise ValueError(f"--fusion-from {fusion_from}: that index has no hybrid fusion (built without the model)")
    started = time.perf_counter()
    if generative:
        corpus, train_q, train_qrels = load_training(data_dir, train_split, dev_fraction=dev_fraction, seed=seed)
        if train_q is None:
            logger.warning("%s has no %r queries: the model trains on documents and pseudo-queries only, "
                           "and the hybrid keeps %s", data_dir, train_split,
                           "the fusion of --fusion-from" if carried else "its default fusion")
    else:
        corpus, train_q, train_qrels = load_corpus(data_dir), None, None
    extras = [(Path(e).resolve().name, load_corpus(e)) for e in extra_corpus or []]
    corpus = merge_corpora(corpus, extras)
    load_seconds = time.perf_counter() - started
    from genir.device import shutdown_distributed

    try:  # under torchrun every process builds (shared embedding and training); only rank 0 gets the index
        built = GenerativeIndex.build(corpus, cfg, train_queries=train_q, train_qrels=train_qrels, device=device,
                                      workdir=workdir or out.with_name(out.name + ".work"), resume=resume)
    except BaseException:
        shutdown_distributed(wait=False)
        raise
    shutdown_distributed()  # torchrun: all processes meet here and leave the group; the rest is rank 0's alone
    if built is None:
        return  # a torchrun rank > 0: its share is done, rank 0 tunes and writes the one new version
    built.meta["build_seconds"] = {"load": load_seconds, **built.meta["build_seconds"]}
    built.meta["sources"] = [{"path": str(data_dir), "id_prefix": "", "documents": len(corpus) - sum(len(c) for _, c in extras)}]
    built.meta["sources"] += [{"path": str(e), "id_prefix": f"{name}:", "documents": len(c)}
                              for e, (name, c) in zip(extra_corpus or [], extras)]
    if generative and carried is not None:
        from genir.config import to_dict

        built.use_fusion(to_dict(carried), source=str(fusion_from))
        typer.echo(f"hybrid fusion from {fusion_from}: {carried.method}")
    elif generative and tune_split and train_q is not None:
        dev = _dataset(data_dir, tune_split, dev_fraction, seed)
        tuned = built.tune(dev.split_queries(), dev.qrels)
        typer.echo(f"hybrid tuned on {tune_split} ({len(dev.split_queries())} queries): {tuned['chosen']['method']}, "
                   + ", ".join(f"{name} {v:.4f}" for name, v in tuned["candidates"].items()))
    version = built.save(out, started=started)
    typer.echo(f"indexed {len(built)} documents from {data_dir} into {out} ({version.name}); "
               f"modes: {', '.join(built.modes)}")
    typer.echo("seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in built.meta["build_seconds"].items())
               + f"; peak RSS {built.meta['peak_rss_mb']:.0f} MB")


@app.command()
def search(
    index_dir: Path = typer.Argument(..., help="index directory"),
    query: str = typer.Argument(..., help="query text"),
    k: int = typer.Option(10, "-k", help="number of results"),
    mode: str = typer.Option("hybrid", help="dense | bm25 | rrf | generative | hybrid"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
) -> None:
    """Search an index with one query."""
    from genir.index import GenerativeIndex

    idx = GenerativeIndex.load(index_dir, device=device)
    if mode == "hybrid" and "hybrid" not in idx.modes:
        mode = "rrf"  # dense + BM25 only index: the best fusion it has
    hits = idx.search([query], k, mode=mode)[0]
    if as_json:
        typer.echo(json.dumps({"query": query, "mode": mode,
                               "hits": [h.__dict__ for h in hits]}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{mode}: {query}")
    for col in ("rank", "doc id", "score", "title (or text)", "path"):
        table.add_column(col)
    for h in hits:
        table.add_row(str(h.rank), h.doc_id, f"{h.score:.4f}", (h.title or h.snippet)[:80], h.path)
    Console().print(table)


@app.command("eval")
def eval_(
    ctx: typer.Context,
    index_dir: Path = typer.Argument(..., help="index directory"),
    data: Path = typer.Option(..., "--data", help="dataset folder with queries and qrels"),
    split: str = typer.Option("dev", help="qrels split: test, train, ... or the carved 'dev' / 'train-dev'"),
    mode: Optional[List[str]] = typer.Option(None, "--mode", help="repeat for several; default: every mode the index has"),
    measure: Optional[List[str]] = typer.Option(None, "--measure", help="ir-measures name, repeatable"),
    out: Optional[Path] = typer.Option(None, "--out", help="write the REPORT JSON here"),
    run_dir: Optional[Path] = typer.Option(None, help="write one TREC run file per mode here"),
    dev_fraction: float = typer.Option(0.2, help="share of train queries in the carved dev split"),
    seed: int = typer.Option(0, help="seed of the carved dev split"),
    depth: int = typer.Option(100, help="results retrieved per query"),
    rel_threshold: int = typer.Option(1, "--rel-threshold", min=1,
                                      help="lowest grade counted relevant by RR/R/P/AP (TREC DL: 2); nDCG uses the grades"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
) -> None:
    """Evaluate an index on a split; prints a metrics table and writes the REPORT JSON."""
    from genir.evaluate import evaluate_index
    from genir.index import GenerativeIndex, build_record, manifest_of
    from genir.metrics import DEFAULT_MEASURES

    if manifest_of(index_dir).get("kind") == "recommend":
        from genir.rec import commands

        _refuse_options(ctx, ("index_dir", "data", "split", "mode", "out", "device"), applies_to="retrieval indexes")
        report = commands.evaluate(index_dir, data=data, split=split, modes=mode or manifest_of(index_dir)["modes"],
                                   device=device)
    else:
        idx = GenerativeIndex.load(index_dir, device=device)
        ds = _dataset(data, split, dev_fraction, seed)
        report = evaluate_index(idx, ds.split_queries(), ds.qrels, modes=list(mode) if mode else list(idx.modes),
                                dataset=Path(data).name, split=split, k=depth, run_dir=run_dir, rel=rel_threshold,
                                measures=tuple(measure) if measure else DEFAULT_MEASURES)
    _print_report(report)
    if out is not None:
        from genir.provenance import write_result

        # with the command line, commit, versions and machine that produced it, and those of the index's build
        write_result(out, {**report, "index": build_record(index_dir)})


def _print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    names = list(report["results"][0]["metrics"])
    table = Table(title=f"{report['dataset']} / {report['split']} ({report['num_queries']} queries)")
    for col in ["mode", *names, "q/s"]:
        table.add_column(col, justify="right")
    for r in report["results"]:
        table.add_row(r["mode"], *(f"{r['metrics'][n]:.4f}" for n in names), f"{r['queries_per_second']:.1f}")
    Console().print(table)


@app.command()
def recommend(
    index_dir: Path = typer.Argument(..., help="recommendation index directory (genir index --task recommend)"),
    user: Optional[str] = typer.Option(None, "--user", help="a user id from the data (their whole history is used)"),
    history: Optional[str] = typer.Option(None, "--history", help="comma-separated item ids, oldest first"),
    k: int = typer.Option(10, "-k", help="number of items"),
    mode: str = typer.Option("generative", help="generative | sasrec | popular | hybrid"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N (where the models run)"),
) -> None:
    """Recommend the next items for a user or an item history."""
    from genir.rec import commands

    if (user is None) == (history is None):
        raise ValueError("give exactly one of --user USER_ID or --history ITEM,ITEM,...")
    items = [h.strip() for h in history.split(",") if h.strip()] if history is not None else None
    recs = commands.recommend(index_dir, user=user, history=items, k=k, mode=mode, device=device)
    if as_json:
        typer.echo(json.dumps({"user": user, "history": items, "mode": mode, "items": recs}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{mode}: next items for {user or 'history'}")
    for col in ("rank", "item id", "score", "text"):
        table.add_column(col)
    for r in recs:
        table.add_row(str(r["rank"]), r["item_id"], f"{r['score']:.4f}", (r.get("text") or "")[:80])
    Console().print(table)


@app.command()
def add(
    index_dir: Path = typer.Argument(..., help="index directory"),
    data_dir: Path = typer.Argument(..., help="dataset folder whose corpus holds the new documents"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
) -> None:
    """Add documents to an index without retraining (new version written atomically)."""
    from genir.index import GenerativeIndex

    from genir.store import writer_lock

    from genir.data import load_corpus

    docs = load_corpus(data_dir)  # parse first: bad input never takes the lock
    with writer_lock(index_dir):
        idx = GenerativeIndex.load(index_dir, device=device)
        new_idx = idx.add(docs)
        version = idx.save(index_dir)
    typer.echo(f"added {len(new_idx)} documents to {index_dir} ({version.name}); {len(idx)} live documents")


@app.command()
def remove(
    index_dir: Path = typer.Argument(..., help="index directory"),
    ids: Path = typer.Option(..., "--ids", help="file with one document id per line"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
) -> None:
    """Remove documents (ids listed in a file) from every structure of an index."""
    from genir.index import GenerativeIndex

    doc_ids = [line.strip() for line in Path(ids).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not doc_ids:
        raise ValueError(f"{ids} lists no document ids")
    from genir.store import writer_lock

    with writer_lock(index_dir):
        idx = GenerativeIndex.load(index_dir, device=device)
        idx.remove(doc_ids)
        version = idx.save(index_dir)
    typer.echo(f"removed {len(doc_ids)} documents from {index_dir} ({version.name}); {len(idx)} live documents")


@app.command()
def verify(index_dir: Path = typer.Argument(..., help="index directory")) -> None:
    """Check an index's manifest and the sha256 of every file."""
    from genir.store import verify as verify_index

    manifest = verify_index(index_dir)
    typer.echo(f"ok: {index_dir} format {manifest['format_version']}, {len(manifest['files'])} files verified")


@app.command()
def bench(
    job: Path = typer.Argument(..., help="job file (TOML): datasets, configs, splits, modes, metrics, expected scores"),
    out: Optional[Path] = typer.Option(None, "--out", help="result folder (default: the job's `out`)"),
    check: bool = typer.Option(False, "--check", help="exit 1 when a score moves beyond the job's tolerance"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check the job file, list its builds and cells, run nothing"),
    backend: str = typer.Option("local", help="local (this process) | ray (one Ray task per step)"),
    address: Optional[str] = typer.Option(None, "--address", help="--backend ray: cluster address (default: local)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="--backend ray: cancel the tasks still running "
                                            "after SECONDS and report their cells as failed (default: no limit)"),
    verbose: bool = typer.Option(True, help="log progress to stderr"),
) -> None:
    """Run a batch-evaluation job: every cell once (finished ones skipped), one result JSON each, a summary."""
    _setup_logging(verbose)
    from genir.bench import plan, run_job

    if dry_run:
        typer.echo(plan(job, out=out), nl=False)
        return
    outcome = run_job(job, out=out, check=check, backend=backend, address=address, device=device, timeout=timeout)
    typer.echo(outcome.text)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


def main(argv: Optional[List[str]] = None) -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    from genir.provenance import set_command

    previous = set_command(["genir", *argv] if argv is not None else sys.argv)
    try:
        app(args=argv)
    except USER_ERRORS as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        typer.echo(f"error: {msg}", err=True)
        sys.exit(2)
    finally:
        set_command(previous)
