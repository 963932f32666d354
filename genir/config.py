"""Frozen configuration dataclasses. Each is saved into the artifact it built (manifest.json).

`genir index` sets them one way for both tasks: ``--set FIELD=VALUE`` over the task's config (IndexConfig for
retrieval, dotted for nested configs: ``--set train.epochs=2``; RecConfig for recommendation), parsed by
``with_overrides``; its typer options are shortcuts for the common fields (genir.cli.RETRIEVE_SHORTCUTS /
RECOMMEND_SHORTCUTS), and giving an option and a ``--set`` of the same field is an error. Owners:
DenseConfig/Bm25Config/IndexConfig (index + baselines), CodecConfig (semantic IDs), ModelConfig/TrainConfig/
DecodeConfig (generative model), HybridConfig (fusion), RecConfig and RecHybridConfig (recommendation).
"""
from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a (nested) config dataclass; unknown keys are an error naming the valid ones."""
    names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    data = {k: v for k, v in data.items() if k not in REMOVED_FIELDS.get(cls.__name__, ())}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; expected some of {sorted(names)}")
    kwargs = {}
    data = {**ADDED_LATER.get(cls.__name__, {}), **data}
    for key, value in data.items():
        ftype = names[key].type
        sub = _DATACLASSES.get(ftype if isinstance(ftype, str) else getattr(ftype, "__name__", ""))
        if sub is not None and isinstance(value, dict):
            value = from_dict(sub, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


_SCALARS = {"bool": bool, "int": int, "float": float, "str": str}


def with_overrides(cfg: T, pairs: list[str]) -> T:
    """``cfg`` with scalar fields replaced from ``FIELD=VALUE`` strings (the CLI's and benchmarks' ``--set``);
    FIELD is dotted for nested configs (``train.epochs=2``, ``codec.scheme=rqkmeans``). Values are Python
    literals checked against the field's type: ``dropout=0.3``, ``history_item_embedding=True``,
    ``item_embedding=cooc`` (a bare word is a string). Bad names or values raise ValueError."""
    for pair in pairs:
        key, eq, text = pair.partition("=")
        key = key.strip()
        if not eq:
            raise ValueError(f"--set {pair!r}: expected FIELD=VALUE")
        cfg = _set_path(cfg, key.split("."), key, text.strip())
    return cfg


def _set_path(cfg: T, path: list[str], key: str, text: str) -> T:
    names = {f.name: f for f in dataclasses.fields(cfg)}  # type: ignore[arg-type]
    name = path[0]
    if name not in names:
        where = f"{type(cfg).__name__} field" + (f" (in {key})" if len(path) < len(key.split(".")) else "")
        raise ValueError(f"--set {key}: unknown {where}; expected one of {sorted(names)}")
    current = getattr(cfg, name)
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise ValueError(f"--set {key}: {name} is a {names[name].type} field, not a config with fields")
        return dataclasses.replace(cfg, **{name: _set_path(current, path[1:], key, text)})  # type: ignore[type-var]
    kind = _SCALARS.get(str(names[name].type))
    if kind is None:
        hint = f"; set its fields as {key}.FIELD" if dataclasses.is_dataclass(current) else ""
        raise ValueError(f"--set {key}: only scalar fields can be set this way (it is {names[name].type}){hint}")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text  # a bare word is a string
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not kind:
        raise ValueError(f"--set {key}={text}: expected type {kind.__name__}")
    return dataclasses.replace(cfg, **{name: value})  # type: ignore[type-var]


@dataclass(frozen=True)
class EmbedConfig:
    model: str = "all-MiniLM-L6-v2"  # sentence-transformers name or local folder; this name maps to the offline package
    batch_size: int = 64  # encoding batch size
    max_seq_length: int = 256  # tokens per passage (MiniLM was trained at 256)
    normalize: bool = True  # unit-norm embeddings so inner product = cosine
    # fp32 | auto | bf16 | int8: compute precision of the forward pass. fp32 is the default everywhere: builds
    # whose embeddings and encoder states ran in bf16 scored 0.006 generative / 0.013 hybrid nDCG@10 below float32
    # on SciFact dev (two seeds each, all four bf16 builds below all four float32 ones: eval/results/jobs/
    # scifact-precision-study). Opt-in, faster: auto = bf16 on a CPU with native bf16 (AVX512-BF16: 1.7x float32
    # at cosine 0.99998, eval/results/encoder-cpu.json), float32 on CUDA and elsewhere; int8 (CPU): ONNX Runtime
    # with int8 weights, exported locally (genir.onnx_encoder), 2.3x at cosine 0.995
    precision: str = "fp32"


@dataclass(frozen=True)
class DenseConfig:
    factory: str = "Flat"  # faiss index_factory string, e.g. "Flat", "HNSW32", "IVF256,Flat"
    metric: str = "ip"  # "ip" (inner product) or "l2"
    hnsw_ef_search: int = 128  # efSearch when the factory string builds an HNSW index
    nprobe: int = 16  # nprobe when the factory string builds an IVF index
    use_gpu: bool = True  # move to GPU when faiss sees one (ignored on CPU-only faiss)


@dataclass(frozen=True)
class Bm25Config:
    k1: float = 1.5  # term-frequency saturation
    b: float = 0.75  # length normalisation
    method: str = "lucene"  # bm25s scoring variant
    stopwords: str = "en"  # stopword list passed to bm25s.tokenize ("" for none)
    stemmer: bool = True  # Snowball stemming when PyStemmer is installed


@dataclass(frozen=True)
class CodecConfig:
    scheme: str = "rqvae"  # rqvae | rqkmeans | hkmeans | atomic
    levels: int = 3  # codebooks (levels before the collision suffix); atomic always uses 1
    codebook_size: int = 256  # codes per level; hkmeans: branching factor and leaf size
    seed: int = 0  # seed for k-means init and training
    kmeans_iters: int = 25  # faiss k-means iterations (rqkmeans, hkmeans, RQ-VAE codebook init)
    hidden_dims: tuple[int, ...] = (256, 128)  # RQ-VAE encoder MLP widths, decoder mirrors them (TIGER: 512, 256, 128)
    latent_dim: int = 32  # RQ-VAE latent = codebook vector size (TIGER)
    epochs: int = 50  # RQ-VAE passes over the data (12k x 384: ~25 s CPU with 1 thread)
    batch_size: int = 256  # RQ-VAE batch; >= codebook_size so dead codes can be re-seeded from one batch
    lr: float = 1e-3  # RQ-VAE Adam learning rate
    beta: float = 0.25  # RQ-VAE commitment weight (TIGER)
    init_sample: int = 20000  # latents (a seeded sample) clustered by k-means to initialise the codebooks
    reset_dead: bool = True  # re-seed codes unused during an epoch from the epoch's last batch residuals


@dataclass(frozen=True)
class IndexConfig:
    embed: EmbedConfig = field(default_factory=EmbedConfig)  # text encoder for documents and queries
    dense: DenseConfig = field(default_factory=DenseConfig)  # faiss index
    bm25: Bm25Config = field(default_factory=Bm25Config)  # lexical baseline
    codec: CodecConfig = field(default_factory=CodecConfig)  # semantic IDs
    generative: bool = True  # build codec + trie + seq2seq (False: dense + BM25 only)
    model: ModelConfig = field(default_factory=lambda: ModelConfig())  # seq2seq architecture
    train: TrainConfig = field(default_factory=lambda: TrainConfig())  # seq2seq training and data mix
    decode: DecodeConfig = field(default_factory=lambda: DecodeConfig())  # constrained beam search
    hybrid: HybridConfig = field(default_factory=lambda: HybridConfig())  # fusion (replaced by the dev-tuned one)


# Fields saved configs may still carry but that are gone, per config class. IndexConfig.seed was never read
# (codec.seed and train.seed are the seeds; `genir index --seed` sets both), so dropping it changes nothing.
REMOVED_FIELDS: dict[str, tuple[str, ...]] = {"IndexConfig": ("seed",)}


@dataclass(frozen=True)
class RecHybridConfig:
    """Fusion of the generative recommender's beam with SASRec and the item vectors (genir.rec.hybrid); tuned
    on the validation split only, when an index holds both models."""

    # interpolate | rrf; the default (interpolate, prob, equal weights) is an even mixture of the two models'
    # next-item distributions
    method: str = "interpolate"
    candidates: int = 50  # SASRec's own top items added to the generative beam; the fusion ranks their union
    weight_generative: float = 1.0  # weight of the generative beam (its log-probabilities)
    weight_sasrec: float = 1.0  # weight of SASRec's ranking of the candidates (its full-softmax log-probabilities)
    weight_similarity: float = 0.0  # weight of the item vectors' cosine to the history's mean vector (0 = unused)
    k_rrf: int = 60  # rrf: reciprocal-rank constant
    # interpolate: per-query score scale; prob = the two models' probabilities as they are (a mixture of the two
    # next-item distributions, the similarity min-max scaled), minmax | zscore = genir.hybrid.normalize
    norm: str = "prob"
    valid_score: float = 0.0  # RecConfig.early_stop_metric on the tuning users (RecConfig.hybrid_users) (0 = not tuned)


@dataclass(frozen=True)
class RecConfig:
    """Sequential recommendation (genir.rec): protocol, item IDs, TIGER-style model, SASRec baseline."""

    max_history: int = 20  # newest history items a model sees (training prefixes and queries alike)
    # source of the item vectors behind semantic IDs: auto | text | cooc | text+cooc | sasrec | text+sasrec (sasrec:
    # the item table of the SASRec trained in the same build, or taken with --reuse); auto = text+cooc when items have
    # text, else item_embedding_no_text
    item_embedding: str = "auto"
    # what auto means for a dataset without item text (NO_TEXT_SOURCES): "sasrec" = the build's SASRec item table
    # (co-occurrence when the build has no SASRec), "cooc" = co-occurrence. sasrec won on Amazon Sports validation
    # (nDCG@10 0.0291 vs 0.0277, eval/results/jobs/amazon-sports-ids; README, item IDs)
    item_embedding_no_text: str = "sasrec"
    cooc_dim: int = 64  # dimensions of the co-occurrence (PPMI + truncated SVD) item vectors
    cooc_window: int = 3  # items within this distance in a training sequence count as co-occurring
    codec: CodecConfig = field(default_factory=CodecConfig)  # semantic IDs of items (3 x 256 + suffix)
    user_buckets: int = 2000  # hashed user-id token buckets (TIGER used 2,000)
    # encoder tokens: "items" = one per history item (sum of its ID-level embeddings); "codes" = one per level (TIGER, 3x CPU)
    history_tokens: str = "items"
    # history tokens also get a learned embedding of the item itself (items trained on; later items: codes only)
    history_item_embedding: bool = True
    # the decoder sees each memory token's recency (0 = newest history item) added after the encoder: the
    # encoder's own positions count from the oldest item so that one pass serves every prefix in training
    recency_embedding: bool = True
    d_model: int = 128  # width of history encoder and ID decoder (TIGER: 128)
    encoder_layers: int = 4  # history encoder layers (TIGER: 4)
    decoder_layers: int = 4  # ID decoder layers (TIGER: 4)
    heads: int = 4  # attention heads (must divide d_model)
    d_ff: int = 512  # feed-forward width
    dropout: float = 0.2  # dropout in encoder and decoder (0.2 beat 0.1 on Beauty validation)
    lr: float = 1e-3  # AdamW learning rate (generative model)
    weight_decay: float = 0.0  # AdamW weight decay (generative model)
    label_smoothing: float = 0.0  # label smoothing of the per-level code cross-entropy (generative model)
    # learning-rate multiplier after each epoch without validation improvement (1 = constant); 0.8 beat 0.5 on
    # Beauty validation (nDCG@10 0.0469 vs 0.0409: 0.5 anneals too fast and stops early)
    lr_decay: float = 0.8
    batch_size: int = 256  # training examples per step (generative model)
    max_epochs: int = 100  # upper bound on epochs (early stopping usually ends sooner)
    patience: int = 6  # epochs without validation improvement before stopping (4 stopped Beauty at epoch 15 on noise)
    early_stop_metric: str = "nDCG@10"  # validation metric watched for early stopping and best checkpoint
    valid_users: int = 5000  # validation users sampled (seeded) for the generative model's early stopping (0 = all)
    # validation users the hybrid fusion is tuned on: "held_out" = those outside the early-stopping sample (the
    # generative checkpoint was chosen on the sample, which flatters it there: a scratch check on Sports (README),
    # generative nDCG@10 0.0324 on the sample vs 0.0270 on the rest, SASRec 0.0288 vs 0.0275), all of them when
    # the sample takes every user;
    # "sample" = the early-stopping sample itself (indexes built before this field)
    hybrid_users: str = "held_out"
    # what the fusion is chosen by (genir.rec.hybrid.tune): "min_gain" = the largest worse-of-two ratio to SASRec
    # alone on early_stop_metric and R@10 (no fusion that buys nDCG@10 with recall when another gains on both);
    # "metric" = early_stop_metric alone (indexes built before this field)
    hybrid_objective: str = "min_gain"
    beam_size: int = 20  # constrained beam width (>= 10 so the top 10 is a real ranking)
    # bfloat16 autocast while training the generative model, only where bf16 is fast (CUDA; CPUs with AVX512-BF16:
    # 1.46x at the default size: eval/results/rec-bf16-cpu.json); elsewhere it is ignored (float32)
    bf16: bool = True
    sasrec_dim: int = 64  # SASRec hidden size
    sasrec_layers: int = 2  # SASRec self-attention blocks
    sasrec_heads: int = 1  # SASRec attention heads
    sasrec_dropout: float = 0.3  # SASRec dropout (high: Amazon 5-core data is sparse)
    sasrec_lr: float = 3e-3  # SASRec AdamW learning rate
    sasrec_batch_size: int = 256  # SASRec sequence windows per step
    sasrec_lr_decay: float = 0.5  # SASRec learning-rate multiplier after each epoch without validation improvement
    threads: int = 1  # torch CPU threads while training and evaluating
    seed: int = 0  # seed for sampling, initialisation and dropout
    # hybrid mode's fusion: the build replaces it with the one tuned on validation (an index saved before the
    # field, or never tuned, serves this untuned default)
    hybrid: RecHybridConfig = field(default_factory=RecHybridConfig)


# RecConfig fields added after indexes were saved, with the value that reproduces the behaviour from before
# they existed (a saved config lacking them must not pick up today's defaults); SASRec shared lr_decay then
REC_ADDED_LATER = {"history_item_embedding": False, "recency_embedding": False, "label_smoothing": 0.0,
                   "hybrid_users": "sample", "hybrid_objective": "metric", "item_embedding_no_text": "cooc"}


def rec_config_from_dict(data: dict[str, Any]) -> "RecConfig":
    """A saved RecConfig (manifest, benchmark JSON); fields it predates take their old behaviour."""
    data = {**REC_ADDED_LATER, "sasrec_lr_decay": data.get("lr_decay", 0.5), **data}
    return from_dict(RecConfig, data)


@dataclass(frozen=True)
class ModelConfig:
    """Generative retriever: MiniLM text encoder + ID decoder (genir.model)."""

    encoder: str = "all-MiniLM-L6-v2"  # text encoder: this name maps to the offline package; else a local HF folder
    trainable_encoder_layers: int = 0  # top encoder layers trained; 0 = frozen, so training caches encoder states once per text
    max_input_tokens: int = 64  # queries and training inputs are truncated to this many tokens
    d_model: int = 384  # decoder width
    n_layers: int = 2  # decoder layers
    n_heads: int = 6  # decoder attention heads (must divide d_model)
    d_ff: int = 1536  # decoder feed-forward width
    dropout: float = 0.1  # decoder dropout (residual and embeddings)
    pooled_memory: bool = False  # the decoder also reads the mean of the encoder states (sentence embedding) as a token
    encoder_precision: str = "fp32"  # fp32 | auto | bf16 | int8 of the frozen encoder's forward (as EmbedConfig.precision)


DISTILL_WHEN = ("dense_beats_bm25", "always")  # TrainConfig.distill_when


@dataclass(frozen=True)
class TrainConfig:
    """Training of the generative retriever (genir.train) and its data mix (genir.pseudo)."""

    # passes over the training pairs (fractional allowed). 20 under bf16 (precision auto) beat 10 in float32 on
    # msmarco-10k dev (generative RR@10 0.734 vs 0.707, msmarco-10k-arch-e10.json) and SciFact dev (nDCG@10 0.698 vs
    # 0.679, jobs/scifact-training) in 1.5x the training time; README, MS MARCO
    epochs: float = 20.0
    max_steps: int = 0  # when > 0, stop after this many optimizer steps instead of `epochs`
    batch_size: int = 256  # examples per optimizer step, summed over all torchrun processes
    lr: float = 1e-3  # AdamW peak learning rate of the decoder
    encoder_lr: float = 5e-5  # peak learning rate of trainable encoder layers
    weight_decay: float = 0.01  # AdamW weight decay (not on biases and norms)
    warmup_fraction: float = 0.05  # share of the steps spent warming up linearly; linear decay to 0 after
    grad_clip: float = 1.0  # max global gradient norm (0 = off)
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    checkpoint_every: int = 500  # steps between checkpoints (0 = only at the end)
    keep_checkpoints: int = 2  # newest checkpoints kept in workdir/checkpoints
    index_words: int = 64  # indexing pairs: title + this many leading words of the text -> ID
    pseudo_per_doc: int = 6  # pseudo-queries per document (document sentences and random spans) -> ID
    sentence_share: float = 0.5  # share of pseudo-queries that are whole sentences (the rest are spans)
    span_words: tuple[int, int] = (6, 20)  # min, max words of a random span pseudo-query
    # pseudo-query style: "document" (the fields above) or "passage" (a third each of sentences, 3-10-word spans
    # and keyword queries: genir.pseudo.PASSAGE_MIX). "document" is the default everywhere: on msmarco-10k dev,
    # the corpus "passage" was written for, it trained the better generative model at every budget measured
    # (README, MS MARCO); the mix used is recorded in the manifest
    pseudo_mix: str = "document"
    keyword_share: float = 0.0  # share of pseudo-queries that are keyword queries (rarest words of the document)
    keyword_words: tuple[int, int] = (3, 6)  # min, max words of a keyword pseudo-query
    query_upsample: int = 4  # each labelled train query -> relevant doc pair is repeated this many times
    # distillation from the dense index (genir.generative.Teacher): weight of a soft target in each level's loss,
    # the distribution the dense model puts on the documents nearest to the training input (cosine / temperature,
    # softmax over the gold document and distill_k neighbours) summed per code under the gold prefix; 0 = off
    distill: float = 0.5
    # when the build distils (DISTILL_WHEN): "dense_beats_bm25" = only when the dense index ranks the build's own
    # labelled train queries better than BM25 does (nDCG@10; genir.index.distill_choice); "always" = as set. Measured:
    # it lifts the generative model where the teacher is strong (msmarco-10k dev RR@10 0.707 vs 0.636; dense beats
    # BM25 there) and lowers it where BM25 beats dense (SciFact dev nDCG@10 0.649 vs 0.679); README, distillation
    distill_when: str = "dense_beats_bm25"
    distill_k: int = 20  # neighbours per training text in the teacher's distribution (the gold document added)
    distill_temperature: float = 0.05  # of the teacher's softmax over cosines
    # fp32 | auto | bf16: the training forward (bfloat16 autocast; the loss is summed in float32, weights and the
    # optimizer stay float32). auto = bf16 on a CPU with native bf16 (as DecodeConfig.precision), float32 elsewhere.
    # bf16 trained 1.4x faster here at RR@10 0.697 vs 0.707 for equal epochs (msmarco-10k-arch-e10.json)
    precision: str = "auto"
    seed: int = 0  # seed for the data mix, data order, initialisation and dropout


@dataclass(frozen=True)
class DecodeConfig:
    """Constrained beam search at query time (genir.decoding)."""

    beam_size: int = 20  # beams per query; also the most generative candidates a query gets
    renormalize: bool = False  # renormalise each step's log-probs over the allowed codes ((G)I-DLE) instead of masking
    batch_size: int = 64  # queries decoded together
    # auto | fp32 | bf16: the decoder's forward at search time (bf16 = autocast; log-probs summed in float32).
    # auto = bf16 on a CPU with native bf16, float32 elsewhere (as EmbedConfig.precision). The same model decodes
    # within 0.004 nDCG@10 of float32 on SciFact and msmarco-10k dev (eval/results/latency-cpu.json: hybrid -0.004
    # on SciFact, generative +0.002 on MS MARCO, the rest equal); decoding 1.2x faster on MS MARCO there
    precision: str = "auto"


@dataclass(frozen=True)
class HybridConfig:
    """Fusion of generative, dense and BM25 rankings (genir.hybrid); tuned on the dev split only."""

    method: str = "rrf"  # rrf | interpolate | gated | prefix_dense
    k_rrf: int = 60  # reciprocal-rank constant
    weight_generative: float = 1.0  # RRF weight of the generative ranking
    weight_dense: float = 1.0  # RRF weight of the dense ranking
    weight_bm25: float = 1.0  # RRF weight of the BM25 ranking (0 = not used)
    alpha: float = 0.5  # interpolate: weight of the normalised generative score (dense gets 1 - alpha)
    norm: str = "minmax"  # interpolate: per-query score normalisation, minmax | zscore
    gate_signal: str = "prob"  # gated: confidence = top beam probability (prob) or top-2 probability gap (margin)
    gate_low: float = 0.1  # gated: confidence below this -> fallback ranking alone ("dense" path)
    gate_high: float = 0.5  # gated: confidence at or above this -> generative first ("generative" path); between -> RRF ("fused")
    prefix_level: int = 1  # prefix_dense: ID prefix length whose documents dense search ranks
    prefix_bonus: float = 3.0  # prefix_dense: added to the cosine of documents under generated prefixes (> 2: all of them first)
    # gated: a document added after training (the model cannot generate it) that tops the fallback ranking is
    # placed second on "fused" and "generative" rows (genir.hybrid.gated); False turns the rule off
    unseen_second: bool = True
    dev_ndcg10: float = 0.0  # nDCG@10 on the dev split when tuned (0 = not tuned)


# Fields added after indexes were saved, per config class, with the value that reproduces the behaviour from
# before they existed (a saved config lacking them must not pick up today's defaults).
ADDED_LATER: dict[str, dict[str, Any]] = {
    "EmbedConfig": {"precision": "fp32"},  # indexes saved before it were embedded (and their queries encoded) in fp32
    # manifests from before distillation had none; from before distill_when, distill was applied as set
    "TrainConfig": {"pseudo_mix": "document", "keyword_share": 0.0, "distill": 0.0, "distill_when": "always",
                    "precision": "fp32"},
    "ModelConfig": {"pooled_memory": False, "encoder_precision": "fp32"},
    # the rule existed before the field (driven by the documents added after training alone): it stays on
    "HybridConfig": {"unseen_second": True},
    "DecodeConfig": {"precision": "fp32"},  # indexes saved before it decoded in float32
}

_DATACLASSES: dict[str, type] = {
    c.__name__: c for c in (EmbedConfig, DenseConfig, Bm25Config, CodecConfig, IndexConfig, RecConfig, ModelConfig,
                            TrainConfig, DecodeConfig, HybridConfig, RecHybridConfig)
}
