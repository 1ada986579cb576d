#!/usr/bin/env python3
"""onnxruntime's own static int8 of a float model, beside slimnet's int8 of the same model:
accuracy on all 10,000 Fashion-MNIST test images and inference time at batch 1 and 256 on 1
and 2 threads, measured one after the other in one run.

    python3 scripts/peer_ort_int8.py SLIMNET_BINARY FLOAT.model SLIMNET_INT8.slim \
        [--calib-samples 512] [--seconds 2] [--json]

1. `slimnet export FLOAT.model -o float.onnx` (plain Conv/Gemm graph).
2. onnxruntime's static int8 as scripts/peer_bench.py builds it (`ort_int8`: quantize_static,
   QDQ, uint8 activations, int8 weights per channel, reduce_range on CPUs without VNNI as
   onnxruntime advises, MinMax calibration on the first --calib-samples training images). `slimnet quantize` calibrates on a seeded random choice of as many
   training images, not the same images (slimnet's generator is not reproduced here).
3. Accuracy of the onnxruntime int8 model, and of SLIMNET_INT8 (`slimnet eval --json`).
4. Timing: scripts/peer_bench.py (onnxruntime, the statistics of `slimnet bench`) on the int8
   ONNX, then `slimnet bench SLIMNET_INT8 --batch 1,256 --threads T`, then the same of
   FLOAT.model (slimnet's f32), one after the other (--threads, default 1,2).
Prints a markdown table (or --json).
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
        peer = run_json([sys.executable, os.path.join(HERE, "peer_bench.py"), i8, "--batch",
                         "1,256", "--threads", a.threads, "--seconds", str(a.seconds), "--peers",
                         "onnxruntime", "--json"])
    ours = run_json([a.slimnet, "bench", a.int8_model, "--batch", "1,256", "--threads", a.threads,
                     "--seconds", str(a.seconds), "--json", "-q"])
    f32 = run_json([a.slimnet, "bench", a.float_model, "--batch", "1,256", "--threads",
                    a.threads, "--seconds", str(a.seconds), "--json", "-q"])
    result = {"accuracy": acc, "onnxruntime": peer["runs"], "slimnet": ours,
              "slimnet_f32": f32, "onnxruntime_version": ort.__version__}
    if a.json:
        print(json.dumps(result, indent=2))
        return
    for k, v in acc.items():
        print(f"{k}: {100 * v:.2f}%")
    print("| runtime | batch | threads | median us | images/s |")
    print("|---|---|---|---|---|")
    for r in peer["runs"]:
        print(f"| onnxruntime {ort.__version__} int8 | {r['batch']} | {r['threads']} | "
              f"{r['median_us']:.0f} | {r['images_per_s']:,.0f} |")
    for name, bench in [("slimnet int8", ours), ("slimnet f32", f32)]:
        for r in bench.get("runs", bench.get("results", [])):
            print(f"| {name} | {r.get('batch')} | {r.get('threads')} | "
                  f"{r.get('median_us', 0):.0f} | {r.get('images_per_s', 0):,.0f} |")


if __name__ == "__main__":
    main()
