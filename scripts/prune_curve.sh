#!/usr/bin/env bash
# Accuracy against compression for slimnet's pruning (issue 8's curve): one `slimnet prune`
# per ratio, global magnitude on Zhu and Gupta's schedule, 30 epochs of retraining (the
# PyTorch baseline's budget: scripts/peer_pytorch_prune.py), Adam 1e-3 with a cosine
# schedule, retrained from the dense model's soft targets (--teacher self) unless
# TEACHER=none. One run after another; each prints a Markdown row.
#
#   scripts/prune_curve.sh MODEL [RATIOS]        (RATIOS default 2,5,8,12,20)
#
# A ratio may carry its own budget, R:EPOCHS or R:EPOCHS:LR (e.g. 2:2:1e-4,12:10), where a
# low ratio needs only a short, gentle retraining (the budget is a ceiling, not a target).
# Env: SLIMNET (binary, default target/release/slimnet), OUT (scratch dir), EPOCHS (30),
# LR (1e-3), TEACHER (self|none), ARCH (for .safetensors inputs).
set -euo pipefail
model=${1:?model}
ratios=${2:-2,5,8,12,20}
slimnet=${SLIMNET:-target/release/slimnet}
out=${OUT:-/tmp/prune-curve}
epochs=${EPOCHS:-30}
lr=${LR:-1e-3}
teacher=${TEACHER:-self}
mkdir -p "$out"
extra=()
[ "$teacher" != none ] && extra+=(--teacher "$teacher")
[ -n "${ARCH:-}" ] && extra+=(--arch "$ARCH")

echo "| model | ratio | epochs | lr | teacher | baseline % | pruned % | loss (points) | nonzero | file bytes | s |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for spec in ${ratios//,/ }; do
  IFS=: read -r r e l <<<"$spec"
  e=${e:-$epochs}
  l=${l:-$lr}
  t0=$(date +%s)
  json=$("$slimnet" prune "$model" --method global --ratio "$r" --schedule agp \
    --retrain-epochs "$e" --lr "$l" "${extra[@]}" --json -o "$out/pruned-$r.slim" 2>/dev/null)
  t1=$(date +%s)
  python3 -c '
import json, sys
r = json.loads(sys.argv[1])
b, a = 100 * r["baseline"]["accuracy"], 100 * r["accuracy"]
print("| %s | %sx | %s | %s | %s | %.2f | %.2f | %.2f | %d | %d | %d |" % (
    sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], b, a, b - a,
    r["nonzero_params"], r["file_bytes"], int(sys.argv[7])))
' "$json" "$(basename "$model")" "$r" "$e" "$l" "$teacher" "$((t1 - t0))"
done
