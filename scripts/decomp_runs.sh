#!/usr/bin/env bash
# The decomposition measurements of docs/BENCHMARKS.md (issue 12): runs `slimnet decompose`
# over all 10,000 test images and prints one markdown row per run.
# Usage: scripts/decomp_runs.sh SLIMNET_BINARY OUT_DIR
#   {lenet300|lenet5-fc|lenet5-conv|energy-default|lenet5-schemes|MODEL ARGS...}
set -euo pipefail
bin=$1; out=$2; what=$3; shift 3
mkdir -p "$out"
row() { # model tag args...
    local model=$1 tag=$2; shift 2
    local start=$(date +%s.%N)
    "$bin" decompose "$model" -o "$out/$tag.slim" --json "$@" 2>/dev/null >"$out/$tag.json"
    local secs=$(echo "$(date +%s.%N) - $start" | bc)
    python3 - "$out/$tag.json" "$secs" "$*" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ls = [l for l in r["layers"] if l["rank"] is not None]
ranks = ", ".join(f'{l["path"]}: {l["rank"]}/{l["max_rank"]} ({100*l["kept_energy"]:.1f}%)' for l in ls) or "none"
mb = sum(l["macs_before"] for l in ls); ma = sum(l["macs_after"] for l in ls)
cut = f"{mb}->{ma} ({mb/ma:.2f}x)" if ma else "-"
b = r["baseline"]["accuracy"]
print(f'| `{sys.argv[3]}` | {ranks} | {cut} | {r["macs_before"]}->{r["macs_after"]} ({r["mac_ratio"]:.2f}x) '
      f'| {r["params_before"]}->{r["params_after"]} | {100*b:.2f} | {100*r["accuracy_before_finetune"]:.2f} '
      f'({100*(r["accuracy_before_finetune"]-b):+.2f}) | {100*r["accuracy"]:.2f} ({100*(r["accuracy"]-b):+.2f}) | {float(sys.argv[2]):.0f} |')
PY
}
echo "| args | ranks (kept energy) | MACs of factored layers | model MACs | params | base % | decomposed % | fine-tuned % | s |"
echo "|---|---|---|---|---|---|---|---|---|"
case $what in
lenet300)
    for e in 0.8 0.9 0.95; do
        row /work/zoo/lenet300.model l300-e$e-svd --layers 1 --energy $e --calibration 0
        row /work/zoo/lenet300.model l300-e$e --layers 1 --energy $e
        row /work/zoo/lenet300.model l300-e$e-ft2 --layers 1 --energy $e --finetune-epochs 2
    done ;;
lenet5-fc)
    for e in 0.8 0.9 0.95; do
        row /work/zoo/lenet5.model l5fc-e$e-svd --method svd --energy $e --calibration 0
        row /work/zoo/lenet5.model l5fc-e$e --method svd --energy $e
        row /work/zoo/lenet5.model l5fc-e$e-ft1 --method svd --energy $e --finetune-epochs 1
    done ;;
lenet5-conv)
    for m in separable channel; do
        row /work/zoo/lenet5.model l5-$m-svd --method $m --layers 0,2 --mac-target 0.4 --calibration 0
        row /work/zoo/lenet5.model l5-$m --method $m --layers 0,2 --mac-target 0.4
        row /work/zoo/lenet5.model l5-$m-ft2 --method $m --layers 0,2 --mac-target 0.4 --finetune-epochs 2
    done ;;
energy-default)
    # Session 6: the classifier is kept by default; every other linear layer by energy.
    for e in 0.9 0.95; do
        row /work/zoo/lenet300.model l300-default-e$e-ft1 --energy $e --finetune-epochs 1
        row /work/zoo/lenet5.model l5fc-default-e$e-ft1 --method svd --energy $e --finetune-epochs 1
    done ;;
lenet5-schemes)
    # Session 6: Jaderberg's scheme 2 (separable) against scheme 1 (separable1), convolutions only.
    for m in separable separable1; do
        row /work/zoo/lenet5.model l5-$m-ft1 --method $m --layers 0,2 --mac-target 0.4 --finetune-epochs 1
    done ;;
*)
    row "$what" custom "$@" ;;
esac
