#!/usr/bin/env bash
# Distillation as a recovery stage (issue 17): lenet300 pruned 12x (global magnitude, agp,
# 10 epochs of retraining at Adam 1e-3 with a cosine schedule), retrained from the labels
# against retrained from the dense model's soft targets (`--teacher self`, T 4, alpha 0.9),
# over seeds 1-3, one thread per run. Resumable: a run whose JSON exists is skipped.
#
#   scripts/distill_recovery_prune.sh [SLIMNET] [MODEL] [OUTDIR]
#
# Prints one line per run and, at the end, the mean and spread of each side.
set -euo pipefail
S=${1:-target/release/slimnet}
MODEL=${2:-target/slimnet/zoo/lenet300.model}
OUT=${3:-target/slimnet/distill-recovery}
mkdir -p "$OUT"
for seed in 1 2 3; do
  for mode in labels teacher; do
    out=$OUT/l300-12x-$mode-$seed.slim
    [ -f "$out.json" ] && continue
    extra=()
    [ "$mode" = teacher ] && extra=(--teacher self)
    t0=$(date +%s)
    "$S" --threads 1 -q prune "$MODEL" -o "$out" --method global --ratio 12 --schedule agp \
      --retrain-epochs 10 --lr 1e-3 --seed "$seed" "${extra[@]}" --json > "$out.json.tmp"
    mv "$out.json.tmp" "$out.json"
    echo "$mode seed $seed: $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['accuracy'])" "$out.json") ($(( $(date +%s) - t0 )) s)"
  done
done
python3 - "$OUT" <<'PY'
import json, statistics, sys
for mode in ("labels", "teacher"):
    acc = [100 * json.load(open(f"{sys.argv[1]}/l300-12x-{mode}-{s}.slim.json"))["accuracy"]
           for s in (1, 2, 3)]
    print(f"{mode}: " + ", ".join(f"{a:.2f}" for a in acc)
          + f"; mean {statistics.mean(acc):.2f}, spread {max(acc) - min(acc):.2f}")
PY
