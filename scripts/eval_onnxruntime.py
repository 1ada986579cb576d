#!/usr/bin/env python3
"""Test accuracy of an ONNX model under onnxruntime on Fashion-MNIST (all 10,000 test images).

Reads the IDX files (gzipped or not) from --data (default /usr/share/datasets/fashion-mnist,
Debian's dataset-fashion-mnist), scales pixels to [0, 1] as slimnet does, feeds NCHW float32
batches of [N, 1, 28, 28] (or [N, 784] if the model's input has rank 2) and prints accuracy.

    python3 scripts/eval_onnxruntime.py MODEL.onnx [--data DIR] [--batch 256] [--threads 2] [--json]
"""

import argparse
import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import onnxruntime as ort


def read_idx(path):
    """The array of an IDX u8 file (magic 0x0000080N, N dims as big-endian u32)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an IDX u8 file")
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {body.size} values for dims {dims}")
    return body.reshape(dims)


def find(data_dir, stem):
    for name in (stem, stem + ".gz"):
        p = os.path.join(data_dir, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"{stem}(.gz) not in {data_dir}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    images = read_idx(find(a.data, "t10k-images-idx3-ubyte")).astype(np.float32) / 255.0
    labels = read_idx(find(a.data, "t10k-labels-idx1-ubyte")).astype(np.int64)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    rank = len(inp.shape)
    x_all = images.reshape(-1, 784) if rank == 2 else images.reshape(-1, 1, 28, 28)

    correct = 0
    start = time.perf_counter()
    for i in range(0, len(labels), a.batch):
        logits = sess.run(None, {inp.name: x_all[i : i + a.batch]})[0]
        correct += int((logits.argmax(axis=1) == labels[i : i + a.batch]).sum())
    seconds = time.perf_counter() - start
    report = {
        "model": a.model,
        "onnxruntime": ort.__version__,
        "images": int(len(labels)),
        "correct": correct,
        "accuracy": correct / len(labels),
        "threads": a.threads,
        "seconds": round(seconds, 3),
    }
    if a.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{a.model}: accuracy {100 * report['accuracy']:.2f}% ({correct}/{len(labels)}) "
            f"under onnxruntime {ort.__version__}, {a.threads} threads, {seconds:.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
