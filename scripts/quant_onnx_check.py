#!/usr/bin/env python3
"""Check that a quantized model exported as QDQ ONNX runs in onnxruntime at slimnet's accuracy.

For each MODEL (a file written by `slimnet quantize`): `slimnet eval --json` gives slimnet's
test accuracy on all 10,000 Fashion-MNIST test images, `slimnet export MODEL -o X.onnx`
writes the QDQ graph (quant::onnx: QuantizeLinear/DequantizeLinear around float Conv/Gemm,
which onnxruntime fuses into its integer kernels), and onnxruntime evaluates it on the same
images. Prints one markdown row per model and exits non-zero when the two accuracies differ by
more than 0.05 points (issue 15's bar).

Usage: python3 scripts/quant_onnx_check.py SLIMNET_BINARY MODEL [MODEL ...]
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fmnist import DEBIAN, read_idx  # noqa: E402

BAR_POINTS = 0.05


def test_set():
    x = read_idx(os.path.join(DEBIAN, "t10k-images-idx3-ubyte.gz")).astype(np.float32) / 255.0
    y = read_idx(os.path.join(DEBIAN, "t10k-labels-idx1-ubyte.gz")).astype(np.int64)
    return x.reshape(-1, 1, 28, 28), y


def ort_accuracy(path, x, y):
    opts = ort.SessionOptions()
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else -1 for d in inp.shape]
    correct = 0
    for i in range(0, len(x), 500):
        xb = x[i:i + 500].reshape([len(x[i:i + 500])] + shape[1:])
        logits = sess.run(None, {inp.name: xb})[0]
        correct += int((logits.argmax(1) == y[i:i + 500]).sum())
    return correct / len(x)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    slimnet, models = sys.argv[1], sys.argv[2:]
    x, y = test_set()
    print("| model | slimnet | onnxruntime (QDQ) | points | ONNX bytes |")
    print("|---|---|---|---|---|")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for m in models:
            ev = json.loads(subprocess.run([slimnet, "eval", m, "--json", "-q"], check=True,
                                           capture_output=True, text=True).stdout)
            ours = ev["evaluation"]["accuracy"]
            onnx = os.path.join(tmp, os.path.basename(m) + ".onnx")
            subprocess.run([slimnet, "export", m, "-o", onnx], check=True, capture_output=True)
            theirs = ort_accuracy(onnx, x, y)
            pts = 100.0 * (theirs - ours)
            worst = max(worst, abs(pts))
            print(f"| {m} | {100 * ours:.2f}% | {100 * theirs:.2f}% | {pts:+.2f} | "
                  f"{os.path.getsize(onnx):,} |")
    if worst > BAR_POINTS:
        sys.exit(f"onnxruntime differs from slimnet by {worst:.2f} points (bar {BAR_POINTS})")


if __name__ == "__main__":
    main()
