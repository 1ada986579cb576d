#!/usr/bin/env python3
"""onnxruntime's own static int8 of a float model, beside slimnet's int8 of the same model:
accuracy on all 10,000 Fashion-MNIST test images and inference time at batch 1 and 256 on 1
and 2 threads, measured one after the other in one run.

    python3 scripts/peer_ort_int8.py SLIMNET_BINARY FLOAT.model SLIMNET_INT8.slim \
        [--calib-samples 512] [--seconds 2] [--threads 1,2] [--rounds 3] [--json]

1. `slimnet export FLOAT.model -o float.onnx` (plain Conv/Gemm graph).
2. onnxruntime's static int8 as scripts/peer_bench.py builds it (`ort_int8`: quantize_static,
   QDQ, uint8 activations, int8 weights per channel, reduce_range on CPUs without VNNI as
   onnxruntime advises, MinMax calibration on the first --calib-samples training images). `slimnet quantize` calibrates on a seeded random choice of as many
   training images, not the same images (slimnet's generator is not reproduced here).
3. Accuracy of the onnxruntime int8 model, and of SLIMNET_INT8 (`slimnet eval --json`).
4. Timing, interleaved: --rounds times (default 3), scripts/peer_bench.py (onnxruntime, the
   statistics of `slimnet bench`) on the int8 ONNX, then `slimnet bench SLIMNET_INT8 --batch
   1,256 --threads T`, then the same of FLOAT.model (slimnet's f32) (--threads, default 1,2).
   Each row reports the median over the rounds of each round's median time, and the smallest
   and largest of those medians (the spread the machine's load gave).
Prints a markdown table (or --json, with every round's figures).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from fmnist import DEBIAN, read_idx  # noqa: E402
from peer_bench import ort_int8  # noqa: E402


def images(stem):
    x = read_idx(os.path.join(DEBIAN, f"{stem}-images-idx3-ubyte.gz")).astype(np.float32) / 255.0
    y = read_idx(os.path.join(DEBIAN, f"{stem}-labels-idx1-ubyte.gz")).astype(np.int64)
    return x.reshape(-1, 1, 28, 28), y


def accuracy(path, x, y):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    correct = 0
    for i in range(0, len(x), 500):
        correct += int((sess.run(None, {name: x[i:i + 500]})[0].argmax(1) == y[i:i + 500]).sum())
    return correct / len(x)


def run_json(cmd):
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("slimnet")
    ap.add_argument("float_model")
    ap.add_argument("int8_model")
    ap.add_argument("--calib-samples", type=int, default=512)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    xte, yte = images("t10k")
    with tempfile.TemporaryDirectory() as tmp:
        f32 = os.path.join(tmp, "float.onnx")
        i8 = os.path.join(tmp, "ort_int8.onnx")
        subprocess.run([a.slimnet, "export", a.float_model, "-o", f32], check=True,
                       capture_output=True)
        ort_int8(f32, i8, DEBIAN, a.calib_samples)
        acc = {
            "float (onnxruntime)": accuracy(f32, xte, yte),
            "onnxruntime int8": accuracy(i8, xte, yte),
            "slimnet int8": run_json([a.slimnet, "eval", a.int8_model, "--json", "-q"])
            ["evaluation"]["accuracy"],
        }
        rounds = {"onnxruntime": [], "slimnet": [], "slimnet_f32": []}
        for _ in range(a.rounds):
            peer = run_json([sys.executable, os.path.join(HERE, "peer_bench.py"), i8,
                             "--batch", "1,256", "--threads", a.threads, "--seconds",
                             str(a.seconds), "--peers", "onnxruntime", "--json"])
            rounds["onnxruntime"].append(peer["runs"])
            for key, model in [("slimnet", a.int8_model), ("slimnet_f32", a.float_model)]:
                bench = run_json([a.slimnet, "bench", model, "--batch", "1,256", "--threads",
                                  a.threads, "--seconds", str(a.seconds), "--json", "-q"])
                rounds[key].append(bench.get("runs", bench.get("results", [])))
    table = {key: summarize(runs) for key, runs in rounds.items()}
    medians = [{"runtime": key, "batch": b, "threads": t, "median_us": m, "min_us": lo,
                "max_us": hi}
               for key, rows in table.items() for (b, t), (m, lo, hi) in rows.items()]
    result = {"accuracy": acc, "rounds": rounds, "medians": medians,
              "onnxruntime_version": ort.__version__}
    if a.json:
        print(json.dumps(result, indent=2))
        return
    for k, v in acc.items():
        print(f"{k}: {100 * v:.2f}%")
    print(f"{a.rounds} interleaved rounds; median over rounds of each round's median "
          "(smallest - largest)")
    print("| runtime | batch | threads | median us | min - max us | images/s |")
    print("|---|---|---|---|---|---|")
    names = {"onnxruntime": f"onnxruntime {ort.__version__} int8", "slimnet": "slimnet int8",
             "slimnet_f32": "slimnet f32"}
    cells = sorted((b, t, key, row) for key, rows in table.items() for (b, t), row in rows.items())
    for b, t, key, (med, lo, hi) in cells:
        print(f"| {names[key]} | {b} | {t} | {med:.0f} | {lo:.0f} - {hi:.0f} | "
              f"{b * 1e6 / med:,.0f} |")


def summarize(rounds):
    """{(batch, threads): (median, min, max)} of the per-round median times."""
    by = {}
    for runs in rounds:
        for r in runs:
            by.setdefault((int(r["batch"]), int(r["threads"])), []).append(r["median_us"])
    return {k: (float(np.median(v)), min(v), max(v)) for k, v in by.items()}


if __name__ == "__main__":
    main()
