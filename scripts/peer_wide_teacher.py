#!/usr/bin/env python3
"""Writes the twice-as-wide cnn-teacher of issue 16 as ONNX (opset 13), for timing only:

    python3 scripts/peer_wide_teacher.py -o wide-teacher.onnx [--width 2] [--seed 1]
    slimnet import wide-teacher.onnx -o wide-teacher.model

The layout is the zoo's cnn-teacher with BatchNorm folded (conv 3x3 pad 1 + ReLU, twice, max
pool 2, twice more, max pool 2, fc 256 + ReLU, fc 10; input [batch, 1, 28, 28]) with every
convolution `--width` times as wide: width 2 gives conv 64-64-128-128 and fc 6272-256-10
(the fc width is kept at 256, as the issue states only the convolutions). Weights are seeded
uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)] (PyTorch's default init): the file is for
speed, its accuracy is chance. Needs: pip install onnx numpy.
"""
import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--width", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    nodes, inits = [], []
    x = "input"

    def param(name, shape, fan_in):
        bound = 1.0 / np.sqrt(fan_in)
        inits.append(numpy_helper.from_array(
            rng.uniform(-bound, bound, shape).astype(np.float32), name))
        return name

    def op(kind, inputs, **kw):
        nonlocal x
        out = f"{kind.lower()}{len(nodes)}"
        nodes.append(helper.make_node(kind, [x, *inputs], [out], name=out, **kw))
        x = out

    c = 1
    for i, o in enumerate([32, 32, None, 64, 64, None]):
        if o is None:
            op("MaxPool", [], kernel_shape=[2, 2], strides=[2, 2])
            continue
        o *= a.width
        op("Conv", [param(f"conv{i}.weight", (o, c, 3, 3), c * 9), param(f"conv{i}.bias", (o,), c * 9)],
           kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        op("Relu", [])
        c = o
    op("Flatten", [], axis=1)
    fc_in = c * 7 * 7
    op("Gemm", [param("fc1.weight", (256, fc_in), fc_in), param("fc1.bias", (256,), fc_in)], transB=1)
    op("Relu", [])
    op("Gemm", [param("fc2.weight", (10, 256), 256), param("fc2.bias", (10,), 256)], transB=1)
    nodes[-1].output[0] = "logits"
    graph = helper.make_graph(
        nodes, f"cnn-teacher-x{a.width}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, a.output)
    params = sum(int(np.prod(i.dims)) for i in inits)
    print(f"wrote {a.output}: {params} parameters")


if __name__ == "__main__":
    main()
