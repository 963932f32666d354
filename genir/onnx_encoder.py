"""The frozen MiniLM forward on ONNX Runtime with int8 dynamic quantisation (``precision="int8"``, CPU only).

The model is exported here, from the weights already loaded (the offline package: nothing is downloaded), by
``torch.onnx.export`` of exactly the forward genir runs (``FrozenForward``: embeddings + every layer under
genir's own attention mask), then quantised by ``onnxruntime.quantization.quantize_dynamic`` (int8 weights,
per output channel). Both files are cached under ``$GENIR_CACHE/onnx`` (default ``~/.cache/genir/onnx``),
keyed by the encoder weights' sha256 and the export settings, written atomically, so a process exports at most
once per machine. eval/results/encoder-cpu.json (eval/bench_encoder.py) measured this path on SciFact at
2.3x the float32 torch throughput, cosine 0.995 to the float32 vectors, dense nDCG@10 -0.0005 and generative
nDCG@10 -0.0045 (queries only, on a model trained on bf16 states); it is opt-in until a build trained on its
states is measured (README, CPU speed).
"""
from __future__ import annotations

import logging
import os
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

OPSET = 17
INSTALL = "precision 'int8' runs on ONNX Runtime: pip install onnx onnxruntime (or 'genir[onnx]')"


class FrozenForward(nn.Module):
    """What ``TextEncoder.frozen_states`` computes with every layer frozen, as one module (input ids, bool mask ->
    last hidden states): the graph that is exported."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        h = self.bert.embeddings(input_ids=ids, token_type_ids=torch.zeros_like(ids))
        att = (1.0 - mask[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min  # as TextEncoder._run
        for layer in self.bert.encoder.layer:
            h = layer(h, att)
        return h


def cache_dir() -> Path:
    return Path(os.environ.get("GENIR_CACHE", Path.home() / ".cache" / "genir")) / "onnx"


def check_available() -> None:
    """ImportError naming the install when ONNX Runtime or the exporter's ``onnx`` package is missing."""
    try:
        import onnx  # noqa: F401  (torch.onnx.export writes through it)
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ImportError(INSTALL) from exc


def export(bert: nn.Module, tokenizer, path: Path) -> None:
    """The float32 ONNX graph of ``FrozenForward(bert)`` with dynamic batch and length, written atomically."""
    from genir.store import atomic_write

    enc = tokenizer(["an example sentence to trace", "another"], padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"].bool()
    module = FrozenForward(bert).eval()

    def write(tmp: Path) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(module, (ids, mask), str(tmp), input_names=["input_ids", "attention_mask"],
                              output_names=["states"], opset_version=OPSET, dynamo=False,
                              dynamic_axes={n: {0: "batch", 1: "tokens"} for n in ("input_ids", "attention_mask", "states")})
    atomic_write(path, write)


def quantize(src: Path, dst: Path) -> None:
    """int8 dynamic quantisation of ``src`` (weights per output channel; per-tensor int8 was not kept: it lost more in a one-off check, not a committed run)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from genir.store import atomic_write

    atomic_write(dst, lambda tmp: quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=True))


class OnnxEncoder:
    """An ONNX Runtime session over the int8 model of one text encoder; ``states`` mirrors ``frozen_states``."""

    def __init__(self, path: Path, *, threads: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = max(1, threads), 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = path
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def states(self, ids: Tensor, mask: Tensor) -> Tensor:
        """ids (B, S) int64, mask (B, S) bool -> last hidden states (B, S, dim) float32 (a CPU tensor)."""
        out = self.session.run(None, {"input_ids": ids.cpu().numpy(), "attention_mask": mask.cpu().numpy()})[0]
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


@lru_cache(maxsize=4)
def onnx_encoder(name: str) -> OnnxEncoder:
    """The int8 encoder of the text encoder ``name`` (genir.embed), exported and quantised on first use."""
    from genir.embed import text_encoder_parts, weights_sha256

    check_available()
    bert, tokenizer = text_encoder_parts(name, "cpu")
    folder = cache_dir()
    stem = f"{weights_sha256(name, 'cpu')[:16]}-opset{OPSET}"
    fp32, int8 = folder / f"{stem}-fp32.onnx", folder / f"{stem}-int8.onnx"
    if not int8.exists():
        folder.mkdir(parents=True, exist_ok=True)
        logger.info("exporting %s to ONNX (int8) in %s", name, folder)
        if not fp32.exists():
            export(bert, tokenizer, fp32)
        quantize(fp32, int8)
    return OnnxEncoder(int8, threads=torch.get_num_threads())
