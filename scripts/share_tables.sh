#!/usr/bin/env bash
# Weight-sharing tables of docs/BENCHMARKS.md (issue 9): Deep Compression's Table 6 (bits
# against accuracy, with and without centroid fine-tuning), the init comparison (Figure 4's
# question) and the acceptance runs. One `slimnet share` per row, one after another.
#
#   scripts/share_tables.sh SECTION [MODEL]
#   SECTION: fc-bits (fc 2..8, conv 8) | conv-bits (conv 4..8, fc 5) | init (4- and 5-bit fc,
#            four inits) | one (5-bit fc / 8-bit conv)
#
# Each row: model, bits_fc, bits_conv, init, baseline accuracy, accuracy before fine-tuning,
# after 1 epoch of fine-tuning (Adam, lr 1e-4, batch 64, seed 1), file bytes, seconds.
# Env: SLIMNET (binary, default target/release/slimnet), OUT (scratch dir), LR (1e-4).
set -euo pipefail
section=${1:?section}
model=${2:-/work/zoo/lenet300.model}
slimnet=${SLIMNET:-target/release/slimnet}
out=${OUT:-/tmp/share-tables}
lr=${LR:-1e-4}
mkdir -p "$out"

row() { # bits_fc bits_conv init
  local t0 t1 json
  t0=$(date +%s)
  json=$("$slimnet" share "$model" -o "$out/shared.model" --bits-fc "$1" --bits-conv "$2" \
    --init "$3" --finetune-epochs 1 --lr "$lr" --json 2>/dev/null)
  t1=$(date +%s)
  python3 -c '
import json, sys
r = json.loads(sys.argv[1])
print("| %s | %s | %s | %s | %.2f | %.2f | %.2f | %d | %d |" % (
    sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5],
    100 * r["baseline"]["accuracy"], 100 * r["accuracy_before_finetune"],
    100 * r["accuracy"], r["file_bytes"], int(sys.argv[6])))
' "$json" "$(basename "$model" .model)" "$1" "$2" "$3" "$((t1 - t0))"
}

echo "| model | bits fc | bits conv | init | baseline % | shared % | fine-tuned % | file bytes | s |"
echo "|---|---|---|---|---|---|---|---|---|"
case "$section" in
  fc-bits) for b in 2 3 4 5 6 7 8; do row "$b" 8 linear; done ;;
  conv-bits) for b in 4 5 6 7 8; do row 5 "$b" linear; done ;;
  init) for b in 4 5; do for i in linear density random kmeans++; do row "$b" 8 "$i"; done; done ;;
  one) row 5 8 linear ;;
  *) echo "unknown section $section" >&2; exit 2 ;;
esac
