#!/usr/bin/env bash
# The GPU checks and timings, in one go (about 6 minutes on an H200): the CUDA tests, then the
# train_head, extract and folds benchmarks on the GPU. Needs tgdfer importable (`make install`, or
# PYTHONPATH) and a CUDA device; writes one log per step into DIR (default: gpu-logs/).
#
#   bash benchmarks/gpu.sh [DIR] [--sweep]
#
# --sweep adds the Table 4 sweep of benchmarks/folds.py (9 points x 5 folds, about 3 minutes more).
set -uo pipefail
out=${1:-gpu-logs}
sweep=--no-sweep
[[ "${2:-}" == "--sweep" ]] && sweep=
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
status=0

step() {  # step NAME CMD...: run, tee its output into DIR/NAME.log, remember a failure
  local name=$1; shift
  echo "=== $name: $*" | tee "$out/$name.log"
  local t0=$SECONDS
  "$@" 2>&1 | tee -a "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$out/$name.log"
  [[ $rc == 0 ]] || status=1
}

step env "$py" -c "import torch, tgdfer, open_clip; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.get_device_name(0), '| tgdfer', tgdfer.__version__, '| open_clip', open_clip.__version__)"
step tests "$py" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_metrics.py -rs
step train_head "$py" benchmarks/train_head.py --device cuda --precision bf16
step extract "$py" benchmarks/extract.py --device cuda --precision bf16 --clips 40 --workers 4 --batch-clips 4 8
step folds "$py" benchmarks/folds.py --device cuda $sweep
exit $status
