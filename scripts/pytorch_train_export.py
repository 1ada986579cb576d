#!/usr/bin/env python3
"""Trains a zoo architecture in PyTorch with the zoo's reference recipe (Adam 1e-3, cosine
schedule, batch 128; lenet300 30 epochs, lenet5 20) and exports it with torch.onnx.export:
the "bring a PyTorch model" input of `slimnet compress` (issue 10's ONNX acceptance runs).

    pip install torch onnx numpy
    python3 scripts/pytorch_train_export.py --arch lenet300 -o lenet300-torch.onnx
    slimnet compress lenet300-torch.onnx --recipe deep-compression -o lenet300-torch.slim

Reads the IDX files from --data (default: the Debian package path); prints the test accuracy
PyTorch measures, so the import can be checked against it. Not a test dependency.
"""
import argparse, math, time

import numpy as np
import torch
import torch.nn as nn

from fmnist import read_idx


def build(arch):
    if arch == "lenet300":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100),
                             nn.ReLU(), nn.Linear(100, 10))
    if arch == "lenet5":
        return nn.Sequential(
            nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
    raise SystemExit(f"unknown --arch {arch}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", required=True, choices=["lenet300", "lenet5"])
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    epochs = a.epochs or (30 if a.arch == "lenet300" else 20)
    xs = torch.tensor(read_idx(f"{a.data}/train-images-idx3-ubyte.gz"), dtype=torch.float32)
    ys = torch.tensor(read_idx(f"{a.data}/train-labels-idx1-ubyte.gz"), dtype=torch.long)
    xt = torch.tensor(read_idx(f"{a.data}/t10k-images-idx3-ubyte.gz"), dtype=torch.float32)
    yt = torch.tensor(read_idx(f"{a.data}/t10k-labels-idx1-ubyte.gz"), dtype=torch.long)
    xs, xt = xs.div(255.0).unsqueeze(1), xt.div(255.0).unsqueeze(1)
    model = build(a.arch)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = epochs * math.ceil(len(xs) / 128)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(a.seed)
    for epoch in range(epochs):
        t0 = time.time()
        model.train()
        perm = torch.randperm(len(xs), generator=g)
        total = 0.0
        for i in range(0, len(xs), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            loss = loss_fn(model(xs[idx]), ys[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}/{epochs}: loss {total / len(xs):.4f}, {time.time() - t0:.1f} s",
              flush=True)
    model.eval()
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean().item()
    print(f"{a.arch}: PyTorch test accuracy {100 * acc:.2f}% on {len(xt)} images")
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), a.output, opset_version=13,
                      input_names=["input"], output_names=["logits"], dynamo=False)
    print(f"exported {a.output}")


if __name__ == "__main__":
    main()
