"""Training-step time of the generative recommender with and without bf16 autocast on this CPU (1 thread).

Random histories and targets of the default shapes (batch 256, 20 items, 3 x 256 codes + suffix); the first 2
of 12 AdamW steps are warm-up. The default RecConfig and a tiny one (d_model 32, 1 + 1 layers) side by side.
genir.rec.device turns autocast on only where bf16 is fast (CUDA with bf16, CPUs with AVX512-BF16).

    HF_HUB_OFFLINE=1 .venv/bin/python eval/bench_rec_bf16.py   # -> eval/results/rec-bf16-cpu.json
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch

from genir.config import RecConfig, to_dict
from genir.provenance import provenance, write_result
from genir.rec.device import bf16_is_fast
from genir.rec.tiger import TigerModel

RESULT = Path(__file__).resolve().parent / "results" / "rec-bf16-cpu.json"
VOCAB, BATCH, HISTORY, ITEMS, STEPS, WARMUP = (256, 256, 256, 8), 256, 20, 5000, 12, 2


def step_ms(cfg: RecConfig, bf16: bool) -> tuple[float, float]:
    """Mean ms per training step after warm-up, and the last loss."""
    torch.manual_seed(0)
    model = TigerModel(VOCAB, cfg=cfg, num_items=ITEMS).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    hist = torch.stack([torch.randint(0, v, (BATCH, HISTORY), generator=g) for v in VOCAB], -1)
    items = torch.randint(0, ITEMS, (BATCH, HISTORY), generator=g)
    lengths = torch.randint(1, HISTORY + 1, (BATCH,), generator=g)
    buckets = torch.randint(0, cfg.user_buckets, (BATCH,), generator=g)
    target = torch.stack([torch.randint(0, v, (BATCH,), generator=g) for v in VOCAB], -1)
    times = []
    for _ in range(STEPS):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(hist, lengths, buckets, target, items)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return 1000 * sum(times[WARMUP:]) / (STEPS - WARMUP), float(loss)


def main() -> None:
    started = provenance()
    torch.set_num_threads(1)
    configs = {"default": RecConfig(),
               "tiny": replace(RecConfig(), d_model=32, encoder_layers=1, decoder_layers=1, heads=2, d_ff=64)}
    rows = []
    for name, cfg in configs.items():
        for bf16 in (False, True):
            ms, loss = step_ms(cfg, bf16)
            rows.append({"model": name, "bf16": bf16, "ms_per_step": ms, "final_loss": loss, "config": to_dict(cfg)})
            print(name, "bf16" if bf16 else "fp32", f"{ms:.0f} ms/step", flush=True)
    write_result(RESULT, {"bf16_is_fast_here": bf16_is_fast(torch.device("cpu")), "steps": STEPS, "warmup": WARMUP,
                          "batch": BATCH, "threads": 1, "rows": rows}, started=started)
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
