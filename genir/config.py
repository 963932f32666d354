"""Frozen configuration dataclasses. Each is saved into the artifact it built (manifest.json).

Typer options in genir.cli map one-to-one onto these fields. Owners: DenseConfig/Bm25Config/IndexConfig
(index + baselines), CodecConfig (semantic IDs), ModelConfig/TrainConfig/DecodeConfig (generative model),
HybridConfig (fusion).
"""
from __future__ import annotations

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
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; expected some of {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        ftype = names[key].type
        sub = _DATACLASSES.get(ftype if isinstance(ftype, str) else getattr(ftype, "__name__", ""))
        if sub is not None and isinstance(value, dict):
            value = from_dict(sub, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


@dataclass(frozen=True)
class EmbedConfig:
    model: str = "all-MiniLM-L6-v2"  # sentence-transformers name or local folder; this name maps to the offline package
    batch_size: int = 64  # encoding batch size
    max_seq_length: int = 256  # tokens per passage (MiniLM was trained at 256)
    normalize: bool = True  # unit-norm embeddings so inner product = cosine


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
    levels: int = 3  # codebooks (levels before the collision suffix)
    codebook_size: int = 256  # codes per level
    seed: int = 0  # seed for k-means init and training


@dataclass(frozen=True)
class IndexConfig:
    embed: EmbedConfig = field(default_factory=EmbedConfig)  # text encoder for documents and queries
    dense: DenseConfig = field(default_factory=DenseConfig)  # faiss index
    bm25: Bm25Config = field(default_factory=Bm25Config)  # lexical baseline
    codec: CodecConfig = field(default_factory=CodecConfig)  # semantic IDs
    generative: bool = True  # build codec + trie + seq2seq (False: dense + BM25 only)
    seed: int = 0  # global seed


_DATACLASSES: dict[str, type] = {
    c.__name__: c for c in (EmbedConfig, DenseConfig, Bm25Config, CodecConfig, IndexConfig)
}
