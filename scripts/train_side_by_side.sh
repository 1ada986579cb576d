#!/usr/bin/env bash
# One training epoch of slimnet beside PyTorch, one right after the other, in one run (issue 16):
#
#   scripts/train_side_by_side.sh [--models lenet5,cnn-teacher] [--threads 2] [--torch-epochs 1] [--limit N]
#
# Per model: `slimnet train --model M --epochs 1 --augment false` (the zoo recipe's optimizer
# and batch 128: Adam for lenet5, SGD with Nesterov momentum and weight decay for cnn-teacher;
# augmentation off on both sides), then scripts/peer_pytorch_lenet5.py --model M with the same
# optimizer, batch size and thread count. Both run as whole processes under /usr/bin/time, so
# the table has each side's epoch time (slimnet: the JSON report's `train.epochs[0].seconds`,
# which includes the final test evaluation of 10,000 images; PyTorch: the median of
# --torch-epochs epochs), the process wall time and its CPU time (user + sys; both processes
# load the data, train, and evaluate the 10,000 test images; PyTorch's includes importing
# torch). `uptime` is printed before and after each model: the
# machine may be shared, so read the ratios of one run. --limit N trains both sides on the
# first N images only (a shorter run on a loaded machine; the full epoch is the criterion).
# Needs: cargo build --release -p cli; pip install torch numpy.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SLIMNET="${SLIMNET:-$ROOT/target/release/slimnet}"
WORK="${WORK:-/tmp/slimnet-train-side-by-side}"
MODELS=lenet5,cnn-teacher
THREADS=2
TORCH_EPOCHS=1
LIMIT=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --models) MODELS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --torch-epochs) TORCH_EPOCHS="$2"; shift 2 ;;
    --limit) LIMIT=(--limit "$2"); shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -x "$SLIMNET" ]] || { echo "build slimnet first: cargo build --release -p cli" >&2; exit 1; }
mkdir -p "$WORK"

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) vCPUs, $THREADS threads"
printf '%-12s | %-28s | %-28s | %s\n' model "slimnet epoch / wall / CPU s" "PyTorch epoch / wall / CPU s" "epoch ratio, CPU ratio (slimnet / PyTorch)"
for m in ${MODELS//,/ }; do
  echo "# load before $m: $(uptime | sed 's/.*load/load/')" >&2
  RAYON_NUM_THREADS=$THREADS /usr/bin/time -f '%e %U %S' -o "$WORK/$m.time" \
    "$SLIMNET" train --model "$m" --epochs 1 --augment false "${LIMIT[@]}" --json -o "$WORK/$m.model" \
    > "$WORK/$m.json"
  s_epoch=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['train']['epochs'][0]['seconds'])" "$WORK/$m.json")
  read -r s_wall s_user s_sys < "$WORK/$m.time"
  /usr/bin/time -f '%e %U %S' -o "$WORK/$m.torch.time" \
    python3 "$ROOT/scripts/peer_pytorch_lenet5.py" --model "$m" --threads "$THREADS" \
      --epochs "$TORCH_EPOCHS" "${LIMIT[@]}" --eval > "$WORK/$m.torch.txt"
  t_epoch=$(sed -n 's/.*median epoch \([0-9.]*\) s.*/\1/p' "$WORK/$m.torch.txt")
  read -r t_wall t_user t_sys < "$WORK/$m.torch.time"
  echo "# load after $m: $(uptime | sed 's/.*load/load/')" >&2
  python3 - "$m" "$s_epoch" "$s_wall" "$s_user" "$s_sys" "$t_epoch" "$t_wall" "$t_user" "$t_sys" "$TORCH_EPOCHS" <<'PY'
import sys
m = sys.argv[1]
se, sw, su, ss, te, tw, tu, ts, k = map(float, sys.argv[2:])
# With k = 1 (the default) both processes load the data and run one epoch: the CPU ratio is
# the acceptance's whole-process one. With k > 1 PyTorch's CPU is divided by k, import and
# loading included, which favours PyTorch.
s_cpu, t_cpu = su + ss, tu + ts
print(f"{m:<12} | {se:8.2f} / {sw:7.2f} / {s_cpu:7.2f} | {te:8.2f} / {tw:7.2f} / {t_cpu:7.2f} "
      f"({k:.0f} epochs) | {se / te:.2f}x, CPU per epoch {s_cpu / (t_cpu / k):.2f}x")
PY
done
