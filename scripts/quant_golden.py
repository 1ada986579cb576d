#!/usr/bin/env python3
"""Golden vectors for quant's affine quantization: ONNX QuantizeLinear / DequantizeLinear.

Writes fixtures/quant/golden.json. Each case runs the opset-21 (opset 25 for the 2-bit types)
QuantizeLinear and DequantizeLinear of ONNX's reference implementation (onnx.reference) and,
where onnxruntime implements the type, onnxruntime too; the script stops if the two disagree.
Cases cover ties (exact halves, which round to even), saturation at both ends, zero points
at the ends of the range, non-power-of-two scales, and per-axis parameters.

Usage: python3 scripts/quant_golden.py [OUT]   (numpy, onnx and onnxruntime; seeded)
"""
import json
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

TYPES = {  # name: (TensorProto type, numpy storage for zero points, bits, signed, opset)
    "int8": (TensorProto.INT8, np.int8, 8, True, 21),
    "uint8": (TensorProto.UINT8, np.uint8, 8, False, 21),
    "int4": (TensorProto.INT4, None, 4, True, 21),
    "uint4": (TensorProto.UINT4, None, 4, False, 21),
    "int2": (TensorProto.INT2, None, 2, True, 25),
    "uint2": (TensorProto.UINT2, None, 2, False, 25),
}


def qdq_model(tp, dims, axis, zps, opset):
    """x -> QuantizeLinear -> q -> DequantizeLinear -> y, with scale/zero point initializers."""
    n = len(zps)
    sdims = [] if axis is None else [n]
    attrs = {} if axis is None else {"axis": axis}
    scale = helper.make_tensor_value_info("scale", TensorProto.FLOAT, sdims)
    zp = helper.make_tensor("zp", tp, sdims, [int(z) for z in zps])
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["q"], **attrs),
        helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["y"], **attrs),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims), scale],
        [
            helper.make_tensor_value_info("q", tp, dims),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, dims),
        ],
        initializer=[zp],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def run_case(name, dtype, dims, axis, scales, zps, x):
    tp, _, bits, signed, opset = TYPES[dtype]
    model = qdq_model(tp, dims, axis, zps, opset)
    onnx.checker.check_model(model)
    scales = np.asarray(scales, dtype=np.float32).reshape([] if axis is None else [-1])
    x = np.asarray(x, dtype=np.float32).reshape(dims)
    q, y = ReferenceEvaluator(model).run(None, {"x": x, "scale": scales})
    q = np.asarray(q).astype(np.int32)
    y = np.asarray(y, dtype=np.float32)
    checked = "onnx.reference"
    try:
        import onnxruntime as ort

        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        q2, y2 = sess.run(None, {"x": x, "scale": scales})
        q2 = np.asarray(q2).astype(np.int32)
        if not (np.array_equal(q, q2) and np.array_equal(y.view(np.uint32), np.asarray(y2, np.float32).view(np.uint32))):
            raise SystemExit(f"{name}: onnx.reference and onnxruntime disagree:\n{q}\n{q2}")
        checked += " + onnxruntime"
    except SystemExit:
        raise
    except Exception as e:  # onnxruntime lacks the type: the reference alone
        print(f"{name}: onnxruntime skipped ({type(e).__name__})", file=sys.stderr)
    print(f"{name}: {dtype} dims={dims} axis={axis}: {checked}", file=sys.stderr)
    return {
        "name": name,
        "dtype": dtype,
        "bits": bits,
        "signed": signed,
        "dims": list(dims),
        "axis": axis,
        "scales": [float(s) for s in scales.reshape(-1)],
        "zero_points": [int(z) for z in zps],
        "x": [float(v) for v in x.reshape(-1)],
        "q": [int(v) for v in q.reshape(-1)],
        "y": [float(v) for v in y.reshape(-1)],
        "checked_by": checked,
    }


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "fixtures/quant/golden.json"
    rng = np.random.default_rng(15)
    cases = []
    for dtype, (_, _, bits, signed, _) in TYPES.items():
        qmin, qmax = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        mid = (qmin + qmax + 1) // 2
        # Ties: exact halves of a power-of-two scale around every code, plus far outside.
        halves = np.arange(2 * (qmin - mid) - 3, 2 * (qmax - mid) + 4, dtype=np.float32) * 0.25
        cases.append(run_case(f"{dtype}_ties", dtype, [len(halves)], None, [0.5], [mid], halves))
        # Saturation and zero points at both ends of the range.
        # (Beyond int32 the reference casts rint(x / scale) with overflow, so the far ends stay within it.)
        edge = np.array([-1e8, -1e4, -3.0, -0.75, -0.25, 0.0, 0.25, 0.75, 3.0, 1e4, 1e8], np.float32)
        for zp, tag in ((qmin, "zp_min"), (qmax, "zp_max")):
            cases.append(run_case(f"{dtype}_{tag}", dtype, [len(edge)], None, [0.5], [zp], edge))
        # Random values, a non-power-of-two scale, a few outside the range.
        scale = np.float32(rng.uniform(0.01, 0.2))
        zp = int(rng.integers(qmin, qmax + 1))
        span = (qmax - qmin) * float(scale)
        x = rng.uniform(-0.7 * span, 0.7 * span, 64).astype(np.float32)
        cases.append(run_case(f"{dtype}_random", dtype, [64], None, [scale], [zp], x))
        # Per axis: a [3, 5] weight along axis 0, a [2, 3, 2, 2] activation along axis 1.
        for dims, axis in (([3, 5], 0), ([2, 3, 2, 2], 1)):
            n = dims[axis]
            scales = rng.uniform(0.02, 0.3, n).astype(np.float32)
            zps = rng.integers(qmin, qmax + 1, n)
            zps[0] = qmin
            zps[-1] = qmax
            x = rng.uniform(-span, span, int(np.prod(dims))).astype(np.float32)
            x[0] = np.float32(scales[0]) * np.float32(1.5)  # a tie in channel 0
            cases.append(run_case(f"{dtype}_axis{axis}_{len(dims)}d", dtype, dims, axis, scales, zps, x))
    doc = {
        "generator": "scripts/quant_golden.py",
        "onnx": onnx.__version__,
        "numpy": np.__version__,
        "cases": cases,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(cases)} cases to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
