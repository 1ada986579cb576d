#!/usr/bin/env python3
"""Check that a decomposed model exported to ONNX runs in onnxruntime at slimnet's accuracy.

For each MODEL (a file written by `slimnet decompose`): `slimnet eval --json` gives slimnet's
test accuracy, `slimnet export MODEL -o X.onnx` writes the ONNX file (the factors are plain
Gemm / Conv nodes: no new operator), and onnxruntime evaluates it on the same Fashion-MNIST
test set. Prints one markdown row per model and exits non-zero when the accuracies differ by
more than one image in 10,000 (float summation order may flip a near tie).

Usage: python3 scripts/decomp_onnx_check.py SLIMNET_BINARY DATA_DIR MODEL [MODEL ...]
"""
import gzip
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort


def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(dirname, stem):
    for name in (stem, stem + ".gz"):
        p = os.path.join(dirname, name)
        if os.path.exists(p):
            return p
    sys.exit(f"{dirname}: no {stem}[.gz]")


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    slimnet, data, models = sys.argv[1], sys.argv[2], sys.argv[3:]
    x = read_idx(find(data, "t10k-images-idx3-ubyte")).astype(np.float32) / 255.0
    y = read_idx(find(data, "t10k-labels-idx1-ubyte")).astype(np.int64)
    failed = False
    print("| model | slimnet accuracy | onnxruntime accuracy | ONNX nodes |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            ev = json.loads(subprocess.run(
                [slimnet, "eval", model, "--data", data, "--json"],
                check=True, capture_output=True, text=True).stdout)
            ours = ev["evaluation"]["accuracy"]
            onnx_path = os.path.join(tmp, os.path.basename(model) + ".onnx")
            subprocess.run([slimnet, "export", model, "-o", onnx_path],
                           check=True, capture_output=True)
            sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
            inp = sess.get_inputs()[0]
            shape = [d if isinstance(d, int) else -1 for d in inp.shape]
            xs = x.reshape([len(x)] + shape[1:])
            correct = 0
            for i in range(0, len(xs), 500):
                logits = sess.run(None, {inp.name: xs[i:i + 500]})[0]
                correct += int((logits.argmax(1) == y[i:i + 500]).sum())
            theirs = correct / len(xs)
            ops = {}
            import onnx
            for node in onnx.load(onnx_path).graph.node:
                ops[node.op_type] = ops.get(node.op_type, 0) + 1
            print(f"| {os.path.basename(model)} | {100 * ours:.2f} | {100 * theirs:.2f} | "
                  + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())) + " |")
            if abs(ours - theirs) > 1.0 / len(xs) + 1e-12:
                failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
