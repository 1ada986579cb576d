#!/usr/bin/env python3
"""Peers of `slimnet bench`: inference latency and throughput of onnxruntime and PyTorch on
the same ONNX file (as `slimnet export X.model -o X.onnx` writes it), per batch size and
thread count, with the same statistics:

    python3 scripts/peer_bench.py X.onnx --batch 1,256 --threads 1,2 --seconds 2 [--json]

Method (identical to crates/cli/src/commands/bench.rs): seeded uniform [0, 1) input of the
model's input shape; a warm-up of a tenth of --seconds (at least two runs); then single
forward passes timed one by one until --seconds have passed (at least 5); nearest-rank
median / p90 / p99 of the per-pass times; images_per_s = batch / median.

- onnxruntime: CPU provider, `intra_op_num_threads = t`, `inter_op_num_threads = 1`,
  sequential execution, all graph optimizations (its defaults otherwise).
- PyTorch: the ONNX graph rebuilt as a `torch.nn.Sequential` (Conv, Gemm, MaxPool,
  AveragePool, Relu, Sigmoid, Tanh, Flatten, BatchNormalization, Dropout/Identity: the ops
  slimnet exports for a sequential model) with the initializers loaded as weights, eager
  mode under `torch.inference_mode()`, `torch.set_num_threads(t)`. Its outputs are checked
  against onnxruntime's before timing.

- onnxruntime-int8 (with --int8-model PATH): onnxruntime's own static int8 of the same
  model (`quantize_static`, QDQ, u8 activations / s8 per-channel weights, reduce_range on CPUs
  without VNNI as its documentation advises, min-max calibration on the first 512 training
  images of --data), written to PATH and timed like the f32 session (--reuse-int8: the file
  already at PATH, as a previous run wrote it).

--json prints {"model", "runs": [{"runtime", "version", "batch", "threads", "median_us",
"p90_us", "p99_us", "mean_us", "min_us", "images_per_s", "iterations"}, ...]}.
Needs: pip install onnx onnxruntime torch numpy.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import onnx
from onnx import numpy_helper


def ints(text):
    vals = [int(v) for v in text.split(",") if v]
    if not vals or min(vals) <= 0:
        raise argparse.ArgumentTypeError(f"positive comma-separated integers, got {text!r}")
    return vals


def input_shape(model):
    """The per-sample input shape (batch dimension dropped) of the graph's first real input."""
    inits = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim][1:]
    if any(d <= 0 for d in dims):
        sys.exit(f"input {inp.name}: non-batch dimensions must be fixed, got {dims}")
    return inp.name, dims


def percentile(sorted_us, q):
    rank = math.ceil(q * len(sorted_us))
    return sorted_us[min(max(rank, 1), len(sorted_us)) - 1]


def time_runs(fn, batch, seconds):
    """Warm-up, then per-call wall times for `seconds`; the bench.rs statistics."""
    warm = seconds / 10
    t0, n = time.perf_counter(), 0
    while n < 2 or time.perf_counter() - t0 < warm:
        fn()
        n += 1
    us = []
    t0 = time.perf_counter()
    while len(us) < 5 or time.perf_counter() - t0 < seconds:
        t = time.perf_counter()
        fn()
        us.append((time.perf_counter() - t) * 1e6)
    us.sort()
    median = percentile(us, 0.5)
    return {
        "median_us": median,
        "p90_us": percentile(us, 0.9),
        "p99_us": percentile(us, 0.99),
        "mean_us": sum(us) / len(us),
        "min_us": us[0],
        "images_per_s": batch / (median * 1e-6),
        "iterations": len(us),
    }


# ---------------------------------------------------------------- ONNX -> torch.nn.Sequential

def ort_int8(model_path, out_path, data_dir, samples=512):
    """onnxruntime's static int8 of `model_path` written to `out_path` (see the module doc)."""
    import os
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from eval_onnxruntime import find, read_idx

    model = onnx.load(model_path)
    name, dims = input_shape(model)
    images = read_idx(find(data_dir, "train-images-idx3-ubyte"))[:samples]
    x = (images.astype(np.float32) / 255.0).reshape(-1, *dims)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(x[i:i + 32] for i in range(0, len(x), 32))

        def get_next(self):
            batch = next(self.it, None)
            return None if batch is None else {name: batch}

    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    vnni = "avx512_vnni" in flags or "avx_vnni" in flags
    quantize_static(model_path, out_path, Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True, reduce_range=not vnni)


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def pads_2d(a):
    """ONNX pads [top, left, bottom, right] -> (torch padding, explicit ZeroPad2d or None)."""
    p = list(a.get("pads", [0, 0, 0, 0]))
    if p[0] == p[2] and p[1] == p[3]:
        return (p[0], p[1]), None
    return (0, 0), (p[1], p[3], p[0], p[2])


def to_torch(model):
    """The graph as a torch.nn.Sequential; exits naming the node it cannot map."""
    import torch
    from torch import nn

    w = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in model.graph.initializer}
    layers = []
    for node in model.graph.node:
        op, a = node.op_type, attrs(node)
        if op == "Conv":
            weight = w[node.input[1]]
            bias = w[node.input[2]] if len(node.input) > 2 and node.input[2] else None
            o, cg, kh, kw = weight.shape
            padding, explicit = pads_2d(a)
            if explicit:
                layers.append(nn.ZeroPad2d(explicit))
            conv = nn.Conv2d(cg * a.get("group", 1), o, (kh, kw), stride=tuple(a.get("strides", [1, 1])),
                             padding=padding, dilation=tuple(a.get("dilations", [1, 1])),
                             groups=a.get("group", 1), bias=bias is not None)
            conv.weight.data.copy_(weight)
            if bias is not None:
                conv.bias.data.copy_(bias)
            layers.append(conv)
        elif op == "Gemm":
            if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
                sys.exit(f"Gemm {node.name}: only transA=0, alpha=beta=1 map to nn.Linear")
            weight = w[node.input[1]]
            if not a.get("transB", 0):
                weight = weight.t()
            bias = w[node.input[2]] if len(node.input) > 2 and node.input[2] else None
            lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
            lin.weight.data.copy_(weight)
            if bias is not None:
                lin.bias.data.copy_(bias)
            layers.append(lin)
        elif op in ("MaxPool", "AveragePool"):
            padding, explicit = pads_2d(a)
            if explicit:
                sys.exit(f"{op} {node.name}: asymmetric pads")
            k = tuple(a["kernel_shape"])
            s = tuple(a.get("strides", k))
            ceil = bool(a.get("ceil_mode", 0))
            if op == "MaxPool":
                layers.append(nn.MaxPool2d(k, s, padding, dilation=tuple(a.get("dilations", [1, 1])),
                                           ceil_mode=ceil))
            else:
                layers.append(nn.AvgPool2d(k, s, padding, ceil_mode=ceil,
                                           count_include_pad=bool(a.get("count_include_pad", 0))))
        elif op == "Relu":
            layers.append(nn.ReLU())
        elif op == "Sigmoid":
            layers.append(nn.Sigmoid())
        elif op == "Tanh":
            layers.append(nn.Tanh())
        elif op == "Flatten":
            layers.append(nn.Flatten(a.get("axis", 1)))
        elif op in ("Identity", "Dropout"):
            continue
        elif op == "BatchNormalization":
            scale, b, mean, var = (w[n] for n in node.input[1:5])
            bn = nn.BatchNorm2d(scale.shape[0], eps=a.get("epsilon", 1e-5))
            bn.weight.data.copy_(scale)
            bn.bias.data.copy_(b)
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
            layers.append(bn)
        else:
            sys.exit(f"node {node.name}: op {op} is not in this script's sequential subset")
    return nn.Sequential(*layers).eval()


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="ONNX file")
    ap.add_argument("--batch", type=ints, default=[1, 256])
    ap.add_argument("--threads", type=ints, default=[1, 2])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--peers", default="onnxruntime,torch",
                    help="comma-separated subset of onnxruntime,torch")
    ap.add_argument("--int8-model", metavar="PATH",
                    help="also build onnxruntime's static int8 of the model at PATH and time it")
    ap.add_argument("--reuse-int8", action="store_true",
                    help="time the --int8-model PATH already there instead of building it again "
                         "(later rounds of `cargo xtask bench`)")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist",
                    help="Fashion-MNIST directory (calibration images of --int8-model)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not (0 < a.seconds <= 3600):
        sys.exit(f"--seconds must be in (0, 3600], got {a.seconds}")
    peers = a.peers.split(",")

    import onnxruntime as ort
    model = onnx.load(a.model)
    name, dims = input_shape(model)
    rng = np.random.default_rng(a.seed)
    inputs = {b: rng.random((b, *dims), dtype=np.float32) for b in a.batch}
    runs = []

    def session(threads, path=a.model):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    if "torch" in peers:
        import torch
        net = to_torch(model)
        check = session(1)
        x = inputs[a.batch[0]]
        with torch.inference_mode():
            got = net(torch.from_numpy(x)).numpy()
        want = check.run(None, {name: x})[0]
        if not np.allclose(got, want, rtol=1e-4, atol=1e-4):
            sys.exit(f"torch and onnxruntime disagree: max |diff| {np.abs(got - want).max()}")

    if a.int8_model and not (a.reuse_int8 and os.path.exists(a.int8_model)):
        ort_int8(a.model, a.int8_model, a.data)

    for t in a.threads:
        if a.int8_model:
            sess = session(t, a.int8_model)
            for b in a.batch:
                feed = {name: inputs[b]}
                r = time_runs(lambda: sess.run(None, feed), b, a.seconds)
                runs.append({"runtime": "onnxruntime-int8", "version": ort.__version__, "batch": b, "threads": t, **r})
        if "onnxruntime" in peers:
            sess = session(t)
            for b in a.batch:
                feed = {name: inputs[b]}
                r = time_runs(lambda: sess.run(None, feed), b, a.seconds)
                runs.append({"runtime": "onnxruntime", "version": ort.__version__, "batch": b, "threads": t, **r})
        if "torch" in peers:
            torch.set_num_threads(t)
            for b in a.batch:
                x = torch.from_numpy(inputs[b])
                with torch.inference_mode():
                    r = time_runs(lambda: net(x), b, a.seconds)
                runs.append({"runtime": "torch", "version": torch.__version__, "batch": b, "threads": t, **r})

    if a.json:
        print(json.dumps({"model": a.model, "runs": runs}, indent=2))
        return
    print(f"{a.model}")
    print(f"{'runtime':>12} {'batch':>6} {'threads':>7} {'median_us':>12} {'p90_us':>12} {'p99_us':>12} {'images/s':>12}")
    for r in runs:
        print(f"{r['runtime']:>12} {r['batch']:>6} {r['threads']:>7} {r['median_us']:>12.1f} "
              f"{r['p90_us']:>12.1f} {r['p99_us']:>12.1f} {r['images_per_s']:>12.0f}")


if __name__ == "__main__":
    main()
