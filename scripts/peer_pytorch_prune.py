#!/usr/bin/env python3
"""PyTorch baseline of `slimnet prune`: gradual magnitude pruning with torch.nn.utils.prune on
the same trained model (read from the ONNX file `slimnet export` writes), retrained and
evaluated the same way, at several compression ratios.

    pip install torch onnx numpy
    slimnet export lenet300.model -o lenet300.onnx
    python3 scripts/peer_pytorch_prune.py lenet300.onnx --arch lenet300 --ratios 2,5,8,12,20

Procedure (the prune issue's baseline): for each ratio R (sparsity s = 1 - 1/R), 10 rounds
each pruning to k/10 of s (global L1 magnitude over every Linear/Conv2d weight, or
per layer with --per-layer) followed by 2 epochs of Adam at 1e-3, then 10 epochs at 1e-4 with
the final mask: 30 epochs of retraining, batch 128, pixels scaled to [0, 1]. Accuracy is on
all 10,000 test images. Prints one JSON object per ratio (and a summary with --json).
Not a test dependency.
"""
import argparse, json, sys, time

import numpy as np
import onnx
from onnx import numpy_helper
import torch
import torch.nn as nn
import torch.nn.utils.prune as tprune

from fmnist import read_idx


def build(arch):
    if arch == "lenet300":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100),
                             nn.ReLU(), nn.Linear(100, 10))
    if arch == "lenet5":
        return nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(800, 500), nn.ReLU(),
                             nn.Linear(500, 10))
    sys.exit(f"unknown --arch {arch} (lenet300 or lenet5)")


def load_onnx_weights(model, path):
    """Copies the ONNX initializers, in graph order, into the model's weights and biases."""
    inits = [numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer]
    params = [p for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))
              for p in (m.weight, m.bias)]
    arrays = [a for a in inits if a.dtype == np.float32 and a.ndim in (1, 2, 4)]
    if len(arrays) != len(params):
        sys.exit(f"{path}: {len(arrays)} float initializers for {len(params)} parameters")
    with torch.no_grad():
        for p, a in zip(params, arrays):
            if tuple(p.shape) != a.shape:
                sys.exit(f"{path}: initializer of shape {a.shape} for a parameter of shape {tuple(p.shape)}")
            p.copy_(torch.from_numpy(a.copy()))


def prunable(model):
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def evaluate(model, x, y):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 1000):
            correct += (model(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum().item()
    model.train()
    return correct / len(x)


def train(model, x, y, epochs, lr, batch, gen):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()


def prune_to(model, sparsity, done, per_layer):
    """Prunes to cumulative `sparsity` given `done` already (the amount applies to what is left)."""
    amount = (sparsity - done) / (1.0 - done) if done < 1.0 else 0.0
    if amount <= 0:
        return
    if per_layer:
        for m, name in prunable(model):
            tprune.l1_unstructured(m, name, amount=amount)
    else:
        tprune.global_unstructured(prunable(model), pruning_method=tprune.L1Unstructured, amount=amount)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("onnx")
    ap.add_argument("--arch", required=True)
    ap.add_argument("--ratios", default="2,5,8,12,20")
    ap.add_argument("--per-layer", action="store_true", help="prune each layer to the same sparsity")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--round-epochs", type=int, default=2)
    ap.add_argument("--final-epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    img = lambda f: torch.from_numpy(read_idx(f"{a.data}/{f}").astype(np.float32) / 255.0).unsqueeze(1)
    lab = lambda f: torch.from_numpy(read_idx(f"{a.data}/{f}").astype(np.int64))
    xtr, ytr = img("train-images-idx3-ubyte.gz"), lab("train-labels-idx1-ubyte.gz")
    xte, yte = img("t10k-images-idx3-ubyte.gz"), lab("t10k-labels-idx1-ubyte.gz")
    rows = []
    for r in [float(v) for v in a.ratios.split(",")]:
        torch.manual_seed(a.seed)
        gen = torch.Generator().manual_seed(a.seed)
        model = build(a.arch)
        load_onnx_weights(model, a.onnx)
        before = evaluate(model, xte, yte)
        s_final, done, t0 = 1.0 - 1.0 / r, 0.0, time.perf_counter()
        for k in range(1, a.rounds + 1):
            s = s_final * k / a.rounds
            prune_to(model, s, done, a.per_layer)
            done = s
            train(model, xtr, ytr, a.round_epochs, 1e-3, a.batch_size, gen)
        train(model, xtr, ytr, a.final_epochs, 1e-4, a.batch_size, gen)
        for m, name in prunable(model):
            tprune.remove(m, name)
        total = sum(m.weight.numel() for m, _ in prunable(model))
        kept = sum(int((m.weight != 0).sum()) for m, _ in prunable(model))
        row = {"arch": a.arch, "ratio": r, "sparsity": s_final, "weights": total, "kept": kept,
               "accuracy_before": before, "accuracy": evaluate(model, xte, yte),
               "method": "per-layer" if a.per_layer else "global",
               "retrain_epochs": a.rounds * a.round_epochs + a.final_epochs,
               "seconds": round(time.perf_counter() - t0, 1),
               "torch": torch.__version__, "threads": a.threads}
        row["loss_points"] = round(100 * (row["accuracy_before"] - row["accuracy"]), 2)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr if a.json else sys.stdout, flush=True)
    if a.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
