"""Encoder precision: bf16 autocast is the CPU default only where bf16 is native, equal to fp32 within noise."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import genir.device as gdevice
from genir.config import EmbedConfig, IndexConfig, ModelConfig, from_dict, to_dict
from genir.device import resolve_precision
from genir.embed import Embedder
from genir.model import TextEncoder

TEXTS = ["vitamin D deficiency and bone fractures in older adults", "a",
         "the quick brown fox jumps over the lazy dog " * 12]
NATIVE = gdevice.bf16_is_fast(torch.device("cpu"))


def test_auto_is_bf16_only_on_a_cpu_with_native_bf16(monkeypatch):
    monkeypatch.setattr(gdevice, "bf16_is_fast", lambda device: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    assert resolve_precision("auto", "cuda") == "fp32"  # CUDA keeps the float32 torch path
    assert resolve_precision("fp32", "cpu") == "fp32"
    monkeypatch.setattr(gdevice, "bf16_is_fast", lambda device: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(ValueError, match="not fast"):
        resolve_precision("bf16", "cpu")  # emulated bf16 is ~10x slower: refused, not silently slow
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", "cpu")


def test_indexes_saved_before_the_field_keep_fp32():
    saved = to_dict(IndexConfig())
    del saved["embed"]["precision"], saved["model"]["encoder_precision"], saved["decode"]["precision"]
    del saved["train"]["precision"]
    cfg = from_dict(IndexConfig, saved)
    assert cfg.embed.precision == cfg.model.encoder_precision == cfg.decode.precision == cfg.train.precision == "fp32"
    assert IndexConfig().train.precision == "auto"  # trained under bf16 where the CPU has it: a new build's default
    assert EmbedConfig().precision == ModelConfig().encoder_precision == "fp32"  # bf16 builds lost quality: opt-in


@pytest.mark.skipif(not NATIVE, reason="this CPU has no native bf16 (AVX512-BF16): auto stays fp32 here")
def test_bf16_embeddings_and_states_equal_fp32_within_noise_and_are_cached_apart(tmp_path):
    fp32 = Embedder(EmbedConfig(precision="fp32"), device="cpu")
    bf16 = Embedder(EmbedConfig(precision="auto"), device="cpu")
    assert bf16.precision == "bf16"
    a, b = fp32.encode(TEXTS), bf16.encode(TEXTS)
    assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    cos = (a * b).sum(1)
    assert cos.min() > 0.9995 and not np.array_equal(a, b)  # bf16 really ran, and stayed close
    assert fp32._cache_path(TEXTS, tmp_path) != bf16._cache_path(TEXTS, tmp_path)
    s32, m32 = TextEncoder(precision="fp32").frozen_states(TEXTS)
    s16, m16 = TextEncoder(precision="auto").frozen_states(TEXTS)
    assert s16.dtype == torch.float32 and torch.equal(m32, m16)
    tok_cos = torch.nn.functional.cosine_similarity(s32[m32], s16[m16], dim=-1)
    assert tok_cos.min() > 0.999


def test_int8_onnx_is_exported_once_into_the_cache_and_stays_close_to_fp32(tmp_path, monkeypatch):
    """precision 'int8': exported locally from the loaded weights, quantised, cached under $GENIR_CACHE and
    reused (no second export); embeddings and encoder states stay close to the float32 torch path."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import genir.onnx_encoder as ox

    monkeypatch.setenv("GENIR_CACHE", str(tmp_path))
    ox.onnx_encoder.cache_clear()
    exports = []
    real_export = ox.export
    monkeypatch.setattr(ox, "export", lambda *a, **k: exports.append(a[-1]) or real_export(*a, **k))
    int8 = Embedder(EmbedConfig(precision="int8"), device="cpu")
    b = int8.encode(TEXTS)
    files = sorted(p.name for p in (tmp_path / "onnx").iterdir())
    assert len(exports) == 1 and len(files) == 2 and files[1].endswith("-int8.onnx") and files[0].endswith("-fp32.onnx")
    a = Embedder(EmbedConfig(precision="fp32"), device="cpu").encode(TEXTS)
    cos = (a * b).sum(1)
    assert cos.min() > 0.97 and not np.array_equal(a, b)  # int8 really ran, and stayed close
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    s32, m32 = TextEncoder(precision="fp32").frozen_states(TEXTS)
    s8, m8 = TextEncoder(precision="int8").frozen_states(TEXTS)
    assert torch.equal(m32, m8) and s8.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(s32[m32], s8[m8], dim=-1).mean() > 0.97
    ox.onnx_encoder.cache_clear()  # a new process: the cached files are reused, nothing is exported again
    Embedder(EmbedConfig(precision="int8"), device="cpu").encode(TEXTS[:1])
    assert len(exports) == 1
    ox.onnx_encoder.cache_clear()


def test_int8_is_refused_where_it_cannot_run():
    with pytest.raises(ValueError, match="ONNX Runtime CPU path"):
        resolve_precision("int8", "cuda")
    pytest.importorskip("onnxruntime")
    with pytest.raises(ValueError, match="trainable_encoder_layers 0"):
        TextEncoder(trainable_layers=1, precision="int8")
