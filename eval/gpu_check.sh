#!/usr/bin/env bash
# The GPU check, for the day a CUDA machine is there (install the CUDA torch build first; see README "GPU").
#
#   eval/gpu_check.sh [OUT_DIR]                                  # default OUT_DIR: $OUT, else eval/results/gpu-check
#   GENIR_GPU_CHECK_ALLOW_CPU=1 eval/gpu_check.sh /tmp/gpu-dry    # dry run on a CPU: tests this script
#
# 1. tests/test_gpu.py (pytest -m gpu): a tiny retrieval index and a tiny recommendation index built on CUDA,
#    every mode served, CPU vs CUDA top-10 of the same saved index compared on seeded data
#    -> OUT_DIR/retrieval.json, OUT_DIR/recommendation.json, OUT_DIR/pytest.txt
# 2. eval/bench_decoding.py --device cuda (10k / 100k / 1M IDs)  -> OUT_DIR/decoding-cuda.json
# 3. eval/bench_baselines.py --device cuda (BM25 / dense / RRF; passages and queries embedded on the GPU) on
#    GENIR_GPU_CHECK_DATA (default ../shared/data/scifact; skipped when absent)  -> OUT_DIR/baselines-cuda.json
# OUT_DIR/summary.json: device, GPU name, exit status of each step. Exit status: 0 when every step passed.
# The dry run does steps 1 and 2 on the CPU (decoding at 2,000 IDs, 1 repeat) and step 3 only with
# GENIR_GPU_CHECK_DATA set.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=$(mkdir -p "${1:-${OUT:-eval/results/gpu-check}}" && cd "${1:-${OUT:-eval/results/gpu-check}}" && pwd)
PY=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1 GENIR_GPU_CHECK_OUT="$OUT_DIR"

if [ "$($PY -c 'import torch; print(int(torch.cuda.is_available()))')" = 1 ]; then
  DEVICE=cuda SIZES="10000 100000 1000000" REPEATS=7 DATA=${GENIR_GPU_CHECK_DATA:-../shared/data/scifact}
elif [ "${GENIR_GPU_CHECK_ALLOW_CPU:-0}" = 1 ]; then
  echo "gpu_check: no CUDA GPU; dry run on the CPU (GENIR_GPU_CHECK_ALLOW_CPU=1)" >&2
  DEVICE=cpu SIZES=2000 REPEATS=1 DATA=${GENIR_GPU_CHECK_DATA:-}
else
  echo "error: torch sees no CUDA GPU; install the CUDA torch build, or set GENIR_GPU_CHECK_ALLOW_CPU=1 for a dry run" >&2
  exit 2
fi
export GENIR_GPU_CHECK_ALLOW_CPU=${GENIR_GPU_CHECK_ALLOW_CPU:-0}

$PY -m pytest -q -rs -m gpu tests/test_gpu.py 2>&1 | tee "$OUT_DIR/pytest.txt"
S_TESTS=$?
# shellcheck disable=SC2086
$PY eval/bench_decoding.py --device "$DEVICE" --sizes $SIZES --repeats "$REPEATS" --out "$OUT_DIR/decoding-$DEVICE.json"
S_DECODING=$?
if [ -n "$DATA" ] && [ -d "$DATA" ]; then
  $PY eval/bench_baselines.py --data "$DATA" --device "$DEVICE" --workdir "$OUT_DIR/baselines-work" \
    --out "$OUT_DIR/baselines-$DEVICE.json"
  S_DENSE=$?
else
  echo "gpu_check: no dataset for the dense benchmark (GENIR_GPU_CHECK_DATA='$DATA'); skipped" >&2
  S_DENSE=skipped
fi

$PY - "$OUT_DIR" "$DEVICE" "$S_TESTS" "$S_DECODING" "$S_DENSE" "$DATA" <<'EOF'
import json, sys, time
from pathlib import Path
import torch
out, device, tests, decoding, dense, data = sys.argv[1:]
steps = {"tests/test_gpu.py": tests, "eval/bench_decoding.py": decoding, "eval/bench_baselines.py": dense}
summary = {"device": device, "dry_run_on_cpu": device == "cpu",
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "torch": torch.__version__, "cuda": torch.version.cuda, "dense_data": data or None,
           "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "steps": {k: (int(v) if v.isdigit() else v) for k, v in steps.items()},
           "files": sorted(p.name for p in Path(out).iterdir() if p.is_file())}
(Path(out) / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary, indent=2))
sys.exit(0 if all(v in ("0", "skipped") for v in steps.values()) else 1)
EOF
