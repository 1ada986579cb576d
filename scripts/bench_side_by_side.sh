#!/usr/bin/env bash
# slimnet beside onnxruntime and PyTorch on the four zoo models of issue 16, in one run:
#
#   scripts/bench_side_by_side.sh [--seconds S] [--batch 1,256] [--threads 1,2] [--models a,b]
#
# Models (override the paths with LENET300=..., LENET5=..., TEACHER=..., WIDE=...):
#   lenet300, lenet5   trained zoo files (default /work/zoo/*.model; one quick epoch if missing);
#   cnn-teacher        any cnn-teacher file (timing needs no trained weights; default made by
#                      `slimnet train --model cnn-teacher --epochs 1 --limit 256` if missing);
#   wide-teacher       conv 64-64-128-128, written by scripts/peer_wide_teacher.py and imported.
# Each model is exported with `slimnet export X.model -o X.onnx`; then, per model, slimnet bench
# and scripts/peer_bench.py run one after the other (same batch sizes, threads, seconds, seed)
# and one table prints median latency and images/s per runtime, with the ratio
# slimnet / best peer (throughput: > 1 means slimnet is faster). `uptime` is printed first and
# last: others share the cores, so read ratios, not absolute figures, under load.
# Needs: cargo build --release -p cli; pip install onnx onnxruntime torch numpy.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SLIMNET="${SLIMNET:-$ROOT/target/release/slimnet}"
WORK="${WORK:-/tmp/slimnet-side-by-side}"
SECONDS_PER_RUN=2
BATCH=1,256
THREADS=1,2
MODELS=lenet300,lenet5,cnn-teacher,wide-teacher
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) SECONDS_PER_RUN="$2"; shift 2 ;;
    --batch) BATCH="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --models) MODELS="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$WORK"
[[ -x "$SLIMNET" ]] || { echo "build slimnet first: cargo build --release -p cli" >&2; exit 1; }

# The given file, or (timing needs no trained weights) a quick one-epoch zoo model.
zoo_or_train() {
  local f="$1" arch="$2"
  if [[ ! -f "$f" ]]; then
    f="$WORK/$arch-1epoch.model"
    [[ -f "$f" ]] || "$SLIMNET" train --model "$arch" --epochs 1 --limit 256 -o "$f" >&2
  fi
  echo "$f"
}

model_file() {
  case "$1" in
    lenet300) zoo_or_train "${LENET300:-/work/zoo/lenet300.model}" lenet300 ;;
    lenet5) zoo_or_train "${LENET5:-/work/zoo/lenet5.model}" lenet5 ;;
    cnn-teacher) zoo_or_train "${TEACHER:-/work/zoo/cnn-teacher.model}" cnn-teacher ;;
    wide-teacher)
      local f="${WIDE:-$WORK/wide-teacher.model}"
      if [[ ! -f "$f" ]]; then
        python3 "$ROOT/scripts/peer_wide_teacher.py" -o "$WORK/wide-teacher-src.onnx" >&2
        "$SLIMNET" import "$WORK/wide-teacher-src.onnx" -o "$f" >&2
      fi
      echo "$f" ;;
    *) echo "unknown model $1" >&2; exit 2 ;;
  esac
}

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) vCPUs"
echo "# load before: $(uptime | sed 's/.*load/load/')"
echo "# batch $BATCH, threads $THREADS, $SECONDS_PER_RUN s per run"
IFS=, read -ra names <<< "$MODELS"
for name in "${names[@]}"; do
  model="$(model_file "$name")"
  onnx="$WORK/$name.onnx"
  "$SLIMNET" export "$model" -o "$onnx" >/dev/null
  "$SLIMNET" bench "$model" --batch "$BATCH" --threads "$THREADS" --seconds "$SECONDS_PER_RUN" \
    --json > "$WORK/$name.slimnet.json"
  python3 "$ROOT/scripts/peer_bench.py" "$onnx" --batch "$BATCH" --threads "$THREADS" \
    --seconds "$SECONDS_PER_RUN" --json > "$WORK/$name.peers.json"
  python3 - "$name" "$WORK/$name.slimnet.json" "$WORK/$name.peers.json" <<'EOF'
import json, sys
name, ours, peers = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
rows = [dict(r, runtime="slimnet") for r in ours["runs"]] + peers["runs"]
keys = sorted({(r["batch"], r["threads"]) for r in rows})
print(f"\n## {name} ({ours['macs']:,} MACs/image, {ours['file_bytes']:,} bytes)")
print(f"{'batch':>5} {'thr':>3} | {'slimnet us':>10} {'ort us':>10} {'torch us':>10} | "
      f"{'slimnet img/s':>13} {'ort img/s':>11} {'torch img/s':>11} | {'vs best':>7}")
for b, t in keys:
    by = {r["runtime"]: r for r in rows if (r["batch"], r["threads"]) == (b, t)}
    def f(rt, k, fmt):
        return format(by[rt][k], fmt) if rt in by else "-"
    best = max((by[p]["images_per_s"] for p in ("onnxruntime", "torch") if p in by), default=None)
    ratio = f"{by['slimnet']['images_per_s'] / best:.2f}x" if best and "slimnet" in by else "-"
    print(f"{b:>5} {t:>3} | {f('slimnet', 'median_us', '10.1f')} {f('onnxruntime', 'median_us', '10.1f')} "
          f"{f('torch', 'median_us', '10.1f')} | {f('slimnet', 'images_per_s', '13,.0f')} "
          f"{f('onnxruntime', 'images_per_s', '11,.0f')} {f('torch', 'images_per_s', '11,.0f')} | {ratio:>7}")
EOF
done
echo
echo "# load after: $(uptime | sed 's/.*load/load/')"
