#!/usr/bin/env python3
"""Classic vision architectures as PyTorch exports them, checked against onnxruntime (issue 13).

`gen` writes, for each architecture and opset, to OUT (default /tmp/s7-onnx/classic):
  ARCH_opN.onnx        the model, exported by PyTorch's TorchScript exporter (`dynamo=False`,
                       the exporter's defaults otherwise: constant folding on, so eval-mode
                       BatchNormalization after a Conv is fused into it), a symbolic batch
                       dimension, 1000 classes
  ARCH.input.npy       a seeded input batch (N x 3 x S x S float32, N = --batch)
  ARCH_opN.ort.npy     onnxruntime's logits on that input (CPU provider)
Weights are torchvision's / timm's default initialization under torch.manual_seed(SEED), and
every BatchNorm's running statistics and affine parameters are then randomized (mean in
[-0.2, 0.2], variance in [0.5, 2], weight in [0.5, 1.5], bias in [-0.2, 0.2]) so that folding
them is exercised; models are exported in eval mode.

`check BIN` runs `BIN run ARCH_opN.onnx --input ARCH.input.npy -o ARCH_opN.slim.npy` for each
file present and compares with onnxruntime: the error is max|a - b| / max|b| over the whole
logits array (one scale for the array, so a logit near zero does not inflate it); the
tolerance is 1e-4. It prints one line per model and exits nonzero if any fails.

Input sizes (small, to keep runs short): 64 x 64 for ResNet-18/50 and DenseNet-121, 96 x 96
for the mobile nets and SqueezeNet, 224 x 224 for VGG-11 and AlexNet (their adaptive pools
to 7 x 7 / 6 x 6 are identities there, and VGG-11's first fully connected layer has
25088 x 4096 = 102.8M weights, the large-initializer case).

`table BIN` prints the BENCHMARKS rows: per architecture and opset, the import (`BIN inspect
MODEL --json` under /usr/bin/time -v: wall time and max RSS; onnxruntime's session creation in
a fresh process the same way), and per architecture at opset 17 (--bench-opsets) the batch-1 and
batch-32 median latency of `BIN bench MODEL --batch 1,32 --threads T --seconds S --json` and
of `scripts/peer_bench.py MODEL --peers onnxruntime` with the same arguments, with the error
of `check`.

`fixtures` writes the tiny graphs that crates/nn/tests/onnx.rs checks (fixtures/onnx/, a few KB
each, with onnxruntime's output): the op and graph forms the architectures above need, in
small modules built the same way (seeded, BatchNorm statistics randomized, eval mode):
  mbv3_block_opN   stride-2 conv, hard swish, depthwise conv, squeeze-and-excitation with
                   hard sigmoid (a broadcasting Mul), residual Add, ReLU6 (Clip)
                   (opset 13 writes HardSwish as HardSigmoid + Mul; 17 writes HardSwish)
  silu_se_opN      EfficientNet's SiLU (x * sigmoid(x)) and SE gate
  dense_concat_opN DenseNet's block: BN-ReLU-conv layers over the growing concatenation,
                   a transition (BN, ReLU, 1x1 conv, 2x2 average pool)
  conv1d_opN       Conv1d (padding, stride, depthwise), BatchNorm1d, ReLU6, MaxPool1d,
                   AvgPool1d over NCW
  sum_clip_op9     onnx.helper graph: Sum of three branches, Clip with attribute bounds
                   (opset 9), HardSigmoid with ONNX's default alpha/beta
  nobatch_op17     a model exported on one sample without a batch dimension ([3, 8, 8],
                   Unsqueeze(0) before the conv, Squeeze(0) after, flatten(0), MatMul);
                   input.npy holds 3 samples, expected.npy onnxruntime's output on each
  nobatch_mlp_op17 the same for an MLP on [12] (MatMul, Add, Clip, Mul on 1-D values)
(`--only NAME,...` writes only those modules.)

Needs: pip install torch torchvision timm onnx onnxruntime numpy (timm for EfficientNet-Lite0).
Usage: python3 scripts/classic_onnx.py fixtures [--out fixtures/onnx]
       python3 scripts/classic_onnx.py gen [--out DIR] [--arch A,B] [--opsets 13,17]
       python3 scripts/classic_onnx.py check BIN [--out DIR] [--arch A,B]
"""
import argparse
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")

SEED = 13
OUT = "/tmp/s7-onnx/classic"
TOL = 1e-4

# name -> (constructor, input side)
ARCHS = {
    "resnet18": ("torchvision.resnet18", 64),
    "resnet50": ("torchvision.resnet50", 64),
    "mobilenet_v2": ("torchvision.mobilenet_v2", 96),
    "mobilenet_v3_small": ("torchvision.mobilenet_v3_small", 96),
    "squeezenet1_1": ("torchvision.squeezenet1_1", 96),
    "efficientnet_b0": ("torchvision.efficientnet_b0", 96),
    "efficientnet_lite0": ("timm.efficientnet_lite0", 96),
    "vgg11": ("torchvision.vgg11", 224),
    "alexnet": ("torchvision.alexnet", 224),
    "densenet121": ("torchvision.densenet121", 64),
}


def build(arch):
    import torch

    lib, name = ARCHS[arch][0].split(".")
    torch.manual_seed(SEED)
    if lib == "torchvision":
        import torchvision

        m = getattr(torchvision.models, name)(weights=None)
    else:
        import timm

        m = timm.create_model(name, pretrained=False)
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                c = mod.num_features
                mod.running_mean.copy_((torch.rand(c, generator=g) - 0.5) * 0.4)
                mod.running_var.copy_(0.5 + torch.rand(c, generator=g) * 1.5)
                mod.weight.copy_(0.5 + torch.rand(c, generator=g))
                mod.bias.copy_((torch.rand(c, generator=g) - 0.5) * 0.4)
    return m.eval()


def gen(args):
    import onnxruntime as ort
    import torch

    os.makedirs(args.out, exist_ok=True)
    for arch in args.arch:
        side = ARCHS[arch][1]
        m = build(arch)
        rng = np.random.default_rng(SEED)
        x = rng.random((args.batch, 3, side, side), dtype=np.float32)
        np.save(os.path.join(args.out, f"{arch}.input.npy"), x)
        for opset in args.opsets:
            path = os.path.join(args.out, f"{arch}_op{opset}.onnx")
            t0 = time.time()
            torch.onnx.export(
                m,
                torch.from_numpy(x[:1]),
                path,
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            y = sess.run(None, {"input": x})[0]
            np.save(os.path.join(args.out, f"{arch}_op{opset}.ort.npy"), y)
            with torch.no_grad():
                yt = m(torch.from_numpy(x)).numpy()
            err = np.abs(y - yt).max() / np.abs(yt).max()
            size = os.path.getsize(path) / 1e6
            print(
                f"{arch} opset {opset}: {size:.1f} MB, exported in {time.time() - t0:.1f} s, "
                f"onnxruntime vs torch rel err {err:.2e}",
                flush=True,
            )


def randomize_bn(m, torch, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                c = mod.num_features
                mod.running_mean.copy_((torch.rand(c, generator=g) - 0.5) * 0.4)
                mod.running_var.copy_(0.5 + torch.rand(c, generator=g) * 1.5)
                mod.weight.copy_(0.5 + torch.rand(c, generator=g))
                mod.bias.copy_((torch.rand(c, generator=g) - 0.5) * 0.4)
    return m.eval()


def small_modules():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Mbv3Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
            self.bn0 = nn.BatchNorm2d(8)
            self.dw = nn.Conv2d(8, 8, 3, stride=1, padding=1, groups=8, bias=False)
            self.bn1 = nn.BatchNorm2d(8)
            self.se1 = nn.Conv2d(8, 4, 1)
            self.se2 = nn.Conv2d(4, 8, 1)
            self.pw = nn.Conv2d(8, 8, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(8)
            self.dw2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            x = F.hardswish(self.bn0(self.stem(x)))  # 8x8 -> 4x4
            y = F.hardswish(self.bn1(self.dw(x)))
            s = F.adaptive_avg_pool2d(y, 1)
            s = F.hardsigmoid(self.se2(F.relu(self.se1(s))))
            y = self.bn2(self.pw(y * s))
            x = F.relu6(x + y)
            x = F.relu6(self.dw2(x))  # 4x4 -> 2x2
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    class SiluSe(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.se1 = nn.Conv2d(8, 2, 1)
            self.se2 = nn.Conv2d(2, 8, 1)
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            x = F.silu(self.bn(self.stem(x)))
            s = x.mean((2, 3), keepdim=True)
            s = torch.sigmoid(self.se2(F.silu(self.se1(s))))
            x = x * s
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    class DenseLayer(nn.Module):
        def __init__(self, cin, growth):
            super().__init__()
            self.bn1 = nn.BatchNorm2d(cin)
            self.conv1 = nn.Conv2d(cin, 2 * growth, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(2 * growth)
            self.conv2 = nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False)

        def forward(self, feats):
            x = torch.cat(feats, 1)
            x = self.conv1(F.relu(self.bn1(x)))
            return self.conv2(F.relu(self.bn2(x)))

    class DenseConcat(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3, padding=1, bias=False)
            self.layers = nn.ModuleList([DenseLayer(4 + 3 * i, 3) for i in range(3)])
            self.bn_t = nn.BatchNorm2d(13)
            self.conv_t = nn.Conv2d(13, 6, 1, bias=False)
            self.layer4 = DenseLayer(6, 2)
            self.bn = nn.BatchNorm2d(8)
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            feats = [self.stem(x)]
            for l in self.layers:
                feats.append(l(feats))
            x = torch.cat(feats, 1)
            x = F.avg_pool2d(self.conv_t(F.relu(self.bn_t(x))), 2)  # 8x8 -> 4x4
            x = torch.cat([x, self.layer4([x])], 1)
            x = F.relu(self.bn(x))
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    class Conv1dNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv1d(2, 6, 5, stride=2, padding=2)
            self.bn = nn.BatchNorm1d(6)
            self.dw = nn.Conv1d(6, 6, 3, padding=1, groups=6, dilation=1)
            self.c2 = nn.Conv1d(6, 4, 3, padding=2, dilation=2)
            self.fc = nn.Linear(4 * 2, 5)

        def forward(self, x):  # [N, 2, 24]
            x = F.relu6(self.bn(self.c1(x)))  # 12
            x = F.max_pool1d(self.dw(x), 2)  # 6
            x = F.avg_pool1d(torch.tanh(self.c2(x)), 3, ceil_mode=True, count_include_pad=False)
            return self.fc(torch.flatten(x, 1))

    class NoBatch(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 3)
            self.l = nn.Linear(4 * 6 * 6, 5)

        def forward(self, x):  # [3, 8, 8], no batch dimension
            return self.l(torch.relu(self.c(x)).flatten(0))

    class NoBatchMlp(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1 = nn.Linear(12, 8)
            self.l2 = nn.Linear(8, 4)

        def forward(self, x):  # [12], no batch dimension
            return self.l2(F.relu6(self.l1(x)) * 0.5)

    return {
        "mbv3_block": (Mbv3Block, (3, 8, 8), [13, 17]),
        "silu_se": (SiluSe, (3, 6, 6), [13, 17]),
        "dense_concat": (DenseConcat, (3, 8, 8), [13, 17]),
        "conv1d": (Conv1dNet, (2, 24), [13, 17]),
        # Exported on one unbatched sample: shape None, the sample shape after "nobatch".
        "nobatch": (NoBatch, ("nobatch", (3, 8, 8)), [17]),
        "nobatch_mlp": (NoBatchMlp, ("nobatch", (12,)), [17]),
    }


def make_fixtures(args):
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper, numpy_helper

    os.makedirs(args.out, exist_ok=True)

    def ort_run(path, x):
        s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return s.run(None, {s.get_inputs()[0].name: x})[0]

    def save(name, path, x):
        onnx.checker.check_model(onnx.load(path))
        y = ort_run(path, x)
        np.save(os.path.join(args.out, f"{name}.input.npy"), x)
        np.save(os.path.join(args.out, f"{name}.expected.npy"), y.astype(np.float32))
        print(f"  {name}: {os.path.getsize(path)} bytes, output {y.shape}")

    only = set(args.only.split(",")) if args.only else None
    for i, (name, (cls, shape, opsets)) in enumerate(small_modules().items()):
        if only is not None and name not in only:
            continue
        torch.manual_seed(SEED + i)
        m = randomize_bn(cls(), torch, SEED + 100 + i)
        for opset in opsets:
            tag = f"{name}_op{opset}"
            path = os.path.join(args.out, f"{tag}.onnx")
            if shape[0] == "nobatch":
                # The graph takes one sample; the expected output stacks onnxruntime's output
                # on each sample of a batch of 3, which slimnet runs as one batch.
                x = np.random.default_rng(SEED + i).standard_normal((3, *shape[1])).astype(
                    np.float32)
                torch.onnx.export(m, torch.from_numpy(x[0]), path, dynamo=False,
                                  opset_version=opset, input_names=["input"],
                                  output_names=["y"])
                onnx.checker.check_model(onnx.load(path))
                y = np.stack([ort_run(path, s) for s in x])
                np.save(os.path.join(args.out, f"{tag}.input.npy"), x)
                np.save(os.path.join(args.out, f"{tag}.expected.npy"), y.astype(np.float32))
                print(f"  {tag}: {os.path.getsize(path)} bytes, output {y.shape} (per sample)")
                continue
            x = np.random.default_rng(SEED + i).standard_normal((3, *shape)).astype(np.float32)
            torch.onnx.export(m, torch.from_numpy(x[:1]), path, dynamo=False,
                              opset_version=opset, input_names=["input"], output_names=["y"],
                              dynamic_axes={"input": {0: "batch"}, "y": {0: "batch"}})
            save(tag, path, x)

    if only is not None and "sum_clip" not in only:
        return
    # Sum and attribute-bounded Clip (opset 9), HardSigmoid with ONNX's defaults.
    rng = np.random.default_rng(SEED)
    w = lambda *d: numpy_helper.from_array(rng.standard_normal(d).astype(np.float32) * 0.5)
    inits = []
    for n, d in [("w1", (6, 6)), ("w2", (6, 6)), ("w3", (6, 6)), ("w4", (6, 4))]:
        t = w(*d)
        t.name = n
        inits.append(t)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["a"], name="mm1"),
        helper.make_node("MatMul", ["x", "w2"], ["b0"], name="mm2"),
        helper.make_node("HardSigmoid", ["b0"], ["b"], name="hsig"),
        helper.make_node("MatMul", ["x", "w3"], ["c0"], name="mm3"),
        helper.make_node("Clip", ["c0"], ["c"], name="clip_attr", min=-0.5, max=0.75),
        helper.make_node("Sum", ["a", "b", "c"], ["s"], name="sum3"),
        helper.make_node("Clip", ["s"], ["t"], name="clip_max_only", max=1.5),
        helper.make_node("MatMul", ["t", "w4"], ["y"], name="mm4"),
    ]
    g = helper.make_graph(
        nodes, "sum_clip", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], inits)
    mp = helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)], ir_version=4)
    path = os.path.join(args.out, "sum_clip_op9.onnx")
    onnx.save(mp, path)
    save("sum_clip_op9", path, rng.standard_normal((4, 6)).astype(np.float32) * 2)


def check(args):
    failed = 0
    for arch in args.arch:
        x = os.path.join(args.out, f"{arch}.input.npy")
        for opset in args.opsets:
            model = os.path.join(args.out, f"{arch}_op{opset}.onnx")
            if not os.path.exists(model):
                continue
            out = os.path.join(args.out, f"{arch}_op{opset}.slim.npy")
            t0 = time.time()
            r = subprocess.run(
                [args.bin, "run", model, "--input", x, "-o", out, "-q"],
                capture_output=True,
                text=True,
            )
            dt = time.time() - t0
            if r.returncode != 0:
                print(f"FAIL {arch} opset {opset}: {r.stderr.strip()}", flush=True)
                failed += 1
                continue
            a = np.load(out)
            b = np.load(os.path.join(args.out, f"{arch}_op{opset}.ort.npy"))
            if a.shape != b.shape:
                print(f"FAIL {arch} opset {opset}: shape {a.shape} vs {b.shape}")
                failed += 1
                continue
            err = float(np.abs(a - b).max() / np.abs(b).max())
            ok = err <= TOL
            failed += not ok
            print(
                f"{'ok  ' if ok else 'FAIL'} {arch} opset {opset}: max|a-b|/max|b| = {err:.2e} "
                f"(max|b| = {np.abs(b).max():.3g}, {dt:.1f} s)",
                flush=True,
            )
    return 1 if failed else 0


def timed(cmd):
    """Runs cmd under /usr/bin/time -v; returns (wall seconds, max RSS MB, stdout)."""
    r = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr[-2000:]}")
    rss = wall = None
    for line in r.stderr.splitlines():
        line = line.strip()
        if line.startswith("Maximum resident set size"):
            rss = int(line.split()[-1]) / 1024
        if line.startswith("Elapsed (wall clock) time"):
            t = line.split()[-1].split(":")
            wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(t)))
    return wall, rss, r.stdout


ORT_LOAD = (
    "import sys, onnxruntime as ort; o = ort.SessionOptions(); o.intra_op_num_threads = 1; "
    "ort.InferenceSession(sys.argv[1], o, providers=['CPUExecutionProvider'])"
)


def table(args):
    here = os.path.dirname(os.path.abspath(__file__))
    print("| model | opset | input | params | rel. error | slimnet import s / MB | "
          "onnxruntime load s / MB | slimnet b1 ms | ort b1 ms | slimnet b32 ms | ort b32 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for arch in args.arch:
        side = ARCHS[arch][1]
        x = os.path.join(args.out, f"{arch}.input.npy")
        for opset in args.opsets:
            model = os.path.join(args.out, f"{arch}_op{opset}.onnx")
            if not os.path.exists(model):
                continue
            wall, rss, out = timed([args.bin, "inspect", model, "--json", "-q"])
            params = json.loads(out).get("params", "?")
            owall, orss, _ = timed([sys.executable, "-c", ORT_LOAD, model])
            y = os.path.join(args.out, f"{arch}_op{opset}.slim.npy")
            subprocess.run([args.bin, "run", model, "--input", x, "-o", y, "-q"], check=True)
            a, b = np.load(y), np.load(os.path.join(args.out, f"{arch}_op{opset}.ort.npy"))
            err = float(np.abs(a - b).max() / np.abs(b).max())
            lat = ["", "", "", ""]
            if opset in args.bench_opsets:
                common = ["--batch", "1,32", "--threads", str(args.threads),
                          "--seconds", str(args.seconds), "--json"]
                sb = json.loads(subprocess.run([args.bin, "bench", model, "-q", *common],
                                               capture_output=True, text=True,
                                               check=True).stdout)
                pb = json.loads(subprocess.run(
                    [sys.executable, os.path.join(here, "peer_bench.py"), model,
                     "--peers", "onnxruntime", *common],
                    capture_output=True, text=True, check=True).stdout)
                med = lambda runs, bt: next(r["median_us"] for r in runs if r["batch"] == bt) / 1e3
                lat = [f"{med(sb['runs'], 1):.2f}", f"{med(pb['runs'], 1):.2f}",
                       f"{med(sb['runs'], 32):.1f}", f"{med(pb['runs'], 32):.1f}"]
            print(f"| {arch} | {opset} | 3x{side}x{side} | {params} | {err:.1e} | "
                  f"{wall:.2f} / {rss:.0f} | {owall:.2f} / {orss:.0f} | "
                  + " | ".join(lat) + " |", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixtures")
    f.add_argument("--out", default="fixtures/onnx")
    f.add_argument("--only", default="", help="comma-separated module names (default: all)")
    for name in ("gen", "check", "table"):
        s = sub.add_parser(name)
        if name != "gen":
            s.add_argument("bin", help="the slimnet binary")
        s.add_argument("--bench-opsets", default="17")
        s.add_argument("--threads", type=int, default=2)
        s.add_argument("--seconds", type=float, default=1.0)
        s.add_argument("--out", default=OUT)
        s.add_argument("--arch", default=",".join(ARCHS))
        s.add_argument("--opsets", default="13,17")
        s.add_argument("--batch", type=int, default=2)
    a = p.parse_args()
    if a.cmd == "fixtures":
        sys.exit(make_fixtures(a))
    a.arch = a.arch.split(",")
    for arch in a.arch:
        if arch not in ARCHS:
            sys.exit(f"unknown architecture {arch}; known: {', '.join(ARCHS)}")
    a.opsets = [int(o) for o in a.opsets.split(",")]
    a.bench_opsets = [int(o) for o in a.bench_opsets.split(",")]
    sys.exit({"gen": gen, "check": check, "table": table}[a.cmd](a))


if __name__ == "__main__":
    main()
