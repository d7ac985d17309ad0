#!/usr/bin/env bash
# The GPU checks and timings of issue 19 in one go, at most 8 minutes on an H200: the CUDA tests, then
# benchmarks/gpu_table.py's one table (extraction vs the bare encoder, the encoder vs a bf16 matmul,
# the head step eager vs compiled, a DFEW-shaped fold's 50 epochs, 5 folds x 3 seeds together).
# Needs tgdfer importable (`make install`, or PYTHONPATH) and a CUDA device; one log per step in DIR
# (default: gpu-logs/); each step has a time limit, so the whole run cannot pass 8 minutes.
#
#   bash benchmarks/gpu.sh [DIR] [--cpu] [--all]
#
# --cpu: the same steps on the CPU with tiny sizes (the CUDA tests skip): checks the script in a few
#        minutes before GPU time is spent on it.
# --all: also the older train_head, extract and folds benchmarks (about 6 minutes more).
set -uo pipefail
out=gpu-logs
cpu=0
all=0
for arg in "$@"; do
  case $arg in
    --cpu) cpu=1 ;;
    --all) all=1 ;;
    -*) echo "unknown option $arg" >&2; exit 2 ;;
    *) out=$arg ;;
  esac
done
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
status=0

step() {  # step NAME SECONDS CMD...: run with a time limit, tee its output into DIR/NAME.log
  local name=$1 limit=$2; shift 2
  echo "=== $name: $*" | tee "$out/$name.log"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$out/$name.log"
  [[ $rc == 0 ]] || status=1
}

for script in gpu_table.py extract.py train_head.py folds.py; do  # a typo costs nothing here
  [[ -f benchmarks/$script ]] || { echo "benchmarks/$script is missing: run from the repository root" >&2; exit 2; }
done
step env $([[ $cpu == 1 ]] && echo 300 || echo 30) "$py" -c "import torch, tgdfer, open_clip; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device', '| tgdfer', tgdfer.__version__, \
'| open_clip', open_clip.__version__)"
step tests 150 "$py" -m pytest -q -p no:cacheprovider tests/test_cuda.py -rsP  # -rP: the measured differences
if [[ $cpu == 1 ]]; then
  step table 600 "$py" benchmarks/gpu_table.py --cpu --small
else
  step table 300 "$py" benchmarks/gpu_table.py --device cuda
fi
if [[ $all == 1 ]]; then
  dev=$([[ $cpu == 1 ]] && echo cpu || echo cuda)
  quick=$([[ $cpu == 1 ]] && echo --quick || true)
  step train_head 300 "$py" benchmarks/train_head.py --device "$dev" --precision bf16 $quick
  step extract 300 "$py" benchmarks/extract.py --device "$dev" --precision bf16 --clips 40 --workers 4 --batch-clips 4 8 $quick
  step folds 300 "$py" benchmarks/folds.py --device "$dev" --no-sweep $quick
fi
exit $status
