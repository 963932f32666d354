"""Which device this process computes on, and the torchrun process group it may belong to.

One resolver for every module (embedding, training, search, recommendation): ``auto | cpu | cuda | cuda:N``.
Under torchrun, ``auto`` and ``cuda`` mean GPU ``LOCAL_RANK``, so N processes on one machine use N GPUs;
``cuda:N`` is refused there because it would put every process on the same GPU.

The collectives here are the few an index build needs besides DDP's own: rank 0's arrays to every process
(``broadcast_array``: the semantic IDs) and every process's rows to rank 0 (``gather_arrays``: embedding
shards). They travel as tensors on the backend's device (CUDA for nccl, CPU for gloo); no pickle.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "cuda:N")
_CUDA_N = re.compile(r"cuda:(\d+)")
# Collectives wait this long: during rank-0-only stages (the codec fit over the whole corpus) the others sit in a
# broadcast, and the default timeouts (NCCL: 10 minutes) would abort them on a large corpus.
COLLECTIVE_TIMEOUT = timedelta(hours=2)
_left_group = False  # set by shutdown_distributed: a finished process never re-joins (the others are gone)


PRECISIONS = ("auto", "fp32", "bf16", "int8")  # of the MiniLM forward passes (EmbedConfig, ModelConfig); int8: ONNX
DECODER_PRECISIONS = ("auto", "fp32", "bf16")  # of the ID decoder's forward at search time (DecodeConfig)


def bf16_is_fast(device: torch.device) -> bool:
    """True where bfloat16 matmuls beat float32: CUDA GPUs with bf16 support, CPUs with AVX512-BF16.

    On this project's CPU (AVX512-BF16): eval/results/rec-bf16-cpu.json (recommender training, 563 vs 821 ms a
    step) and eval/results/encoder-cpu.json (MiniLM forward). Where bf16 is emulated (AVX2 only) it is slower than
    float32 (no committed run measures by how much), so there autocast stays off.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # torch.cpu._is_avx512_bf16_supported is private; without it (or the instruction set) stay in float32
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return device.type == "cpu" and bool(probe and probe())


def autocast(device: torch.device | str, *, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device``'s type when asked for and fast there; a no-op context otherwise."""
    device = torch.device(device)
    if not (enabled and bf16_is_fast(device)):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def resolve_decoder_precision(precision: str, device: torch.device | str) -> str:
    """``auto | fp32 | bf16`` -> ``fp32 | bf16`` for the ID decoder at search time on ``device`` (auto as for
    the encoder: bf16 on a CPU with native bf16). int8 is the ONNX encoder's path and has no decoder."""
    if precision not in DECODER_PRECISIONS:
        raise ValueError(f"decode precision must be one of {DECODER_PRECISIONS}; got {precision!r}")
    return resolve_precision(precision, device)


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``auto | fp32 | bf16 | int8`` -> ``fp32 | bf16 | int8`` for the text encoder on ``device``.

    ``auto`` is bf16 on a CPU with native bf16 (AVX512-BF16: 1.7x the float32 MiniLM throughput here at a
    cosine of 0.99998 to the float32 vectors, eval/results/encoder-cpu.json) and float32 elsewhere: on CUDA
    the float32 torch path stays, and where bf16 would be emulated it is slower. ``bf16`` where it is not fast
    is refused rather than silently slow. The encoder's default is fp32 (EmbedConfig: bf16 builds scored lower);
    the decoder's is auto (DecodeConfig: the same model decodes within 0.004 nDCG@10 in bf16)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
    device = torch.device(device)
    if precision == "auto":
        return "bf16" if device.type == "cpu" and bf16_is_fast(device) else "fp32"
    if precision == "bf16" and not bf16_is_fast(device):
        raise ValueError(f"precision 'bf16' is not fast on {device} (no native bfloat16): use 'fp32' or 'auto'")
    if precision == "int8":  # ONNX Runtime's CPU path (genir.onnx_encoder), opt-in
        if device.type != "cpu":
            raise ValueError(f"precision 'int8' is the ONNX Runtime CPU path; on {device} use 'fp32' or 'auto'")
        from genir.onnx_encoder import check_available

        try:
            check_available()
        except ImportError as exc:
            raise ValueError(str(exc)) from None
    return precision


@dataclass(frozen=True)
class DistInfo:
    rank: int  # this process's rank (0 when not under torchrun)
    world_size: int  # processes in the group (1 when not under torchrun)
    device: torch.device  # where this process computes


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer; torchrun sets it, unset it "
                         "when not running under torchrun") from None


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> this process's GPU when torch sees one, else CPU; ``cuda`` -> this process's GPU (error
    without one); ``cuda:N`` -> GPU N (single process only); ``cpu``. "This process's GPU" is ``LOCAL_RANK``
    (set by torchrun; 0 otherwise)."""
    if not isinstance(device, str) or (device not in DEVICES[:3] and not _CUDA_N.fullmatch(device)):
        raise ValueError(f"unknown device {device!r}; expected one of {list(DEVICES)} (N = GPU number, e.g. cuda:1)")
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch sees no CUDA GPU; use --device cpu or auto")
    count = torch.cuda.device_count()
    match = _CUDA_N.fullmatch(device)
    if match is not None:
        if _env_int("WORLD_SIZE", 1) > 1:
            raise ValueError(f"device {device!r} would put every torchrun process on one GPU; use --device cuda "
                             "(each process takes GPU LOCAL_RANK)")
        index = int(match.group(1))
        if index >= count:
            raise ValueError(f"device {device!r} but torch sees {count} GPU(s): cuda:0 .. cuda:{count - 1}")
        return torch.device("cuda", index)
    local = _env_int("LOCAL_RANK", 0)
    if not 0 <= local < count:
        raise ValueError(f"LOCAL_RANK {local} but torch sees {count} GPU(s); start at most {count} processes per "
                         f"machine (torchrun --nproc_per_node={count}) or use --device cpu")
    return torch.device("cuda", local)


def setup_distributed(device: str = "auto") -> DistInfo:
    """Resolve the device and, under torchrun (WORLD_SIZE > 1), join the process group (idempotent; a process
    that left with ``shutdown_distributed`` stays single)."""
    dev = resolve_device(device)
    world = _env_int("WORLD_SIZE", 1)
    if world > 1 and not dist.is_initialized() and not _left_group:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
    if not dist.is_initialized():
        return DistInfo(rank=0, world_size=1, device=dev)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), device=dev)


def shutdown_distributed(*, wait: bool = True) -> None:
    """Leave the process group (no-op outside torchrun). ``wait=True``: every process must call this after its
    last collective; they meet at a barrier first. ``wait=False`` (on an error) leaves without waiting."""
    global _left_group
    if not dist.is_initialized():
        return
    if wait:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()
    rank, world = dist.get_rank(), dist.get_world_size()
    dist.destroy_process_group()
    _left_group = True
    logger.info("rank %d of %d left the process group", rank, world)


def _comm_device(info: DistInfo) -> torch.device:
    return info.device if dist.get_backend() == "nccl" else torch.device("cpu")


def broadcast_array(array: np.ndarray | None, info: DistInfo, *, dtype: type = np.int64) -> np.ndarray:
    """Rank 0's ``array`` (any shape, cast to ``dtype``) on every process; the others pass None."""
    if info.world_size == 1:
        return np.asarray(array, dtype=dtype)
    dev = _comm_device(info)
    header = torch.zeros(9, dtype=torch.long, device=dev)  # ndim, then up to 8 dimensions
    if info.rank == 0:
        array = np.ascontiguousarray(array, dtype=dtype)
        if array.ndim > 8:
            raise ValueError(f"broadcast_array takes at most 8 dimensions; got {array.ndim}")
        header[0] = array.ndim
        header[1 : 1 + array.ndim] = torch.tensor(array.shape, dtype=torch.long)
    dist.broadcast(header, src=0)
    shape = tuple(int(s) for s in header[1 : 1 + int(header[0])].tolist())
    if info.rank == 0:
        tensor = torch.from_numpy(array).to(dev)
    else:
        tensor = torch.empty(shape, dtype=torch.from_numpy(np.zeros(0, dtype)).dtype, device=dev)
    dist.broadcast(tensor, src=0)
    return tensor.cpu().numpy()


def gather_arrays(local: np.ndarray, rows: list[int], info: DistInfo) -> list[np.ndarray]:
    """Every process's ``local`` (rows[r], d) array, in rank order, on rank 0; [] on the other ranks.

    ``rows`` (world_size,) is how many rows each rank holds (every rank passes the same list); the arrays travel
    padded to the longest, as the collective needs equal shapes.
    """
    if info.world_size == 1:
        return [local]
    dev = _comm_device(info)
    longest = max(rows)
    padded = torch.zeros((longest, *local.shape[1:]), dtype=torch.from_numpy(local[:0]).dtype, device=dev)
    padded[: len(local)] = torch.from_numpy(np.ascontiguousarray(local)).to(dev)
    parts = [torch.empty_like(padded) for _ in rows] if info.rank == 0 else None
    dist.gather(padded, parts, dst=0)
    if parts is None:
        return []
    return [p[:n].cpu().numpy() for p, n in zip(parts, rows)]
