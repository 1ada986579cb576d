#!/usr/bin/env python3
"""PyTorch peer of `cargo bench --bench train_epoch`: one lenet5 (Caffe variant) training
epoch on Fashion-MNIST with Adam at batch 128, on N CPU threads, timed by wall clock.

    pip install torch numpy
    python3 scripts/peer_pytorch_lenet5.py --threads 2 --epochs 3

Reads the IDX files from --data (default: the Debian package path). Prints one line per
epoch and the median epoch time. Not a test dependency.
"""
import argparse, statistics, time

import numpy as np
import torch
import torch.nn as nn

from fmnist import read_idx


def lenet5():
    return nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    x = torch.from_numpy(read_idx(f"{a.data}/train-images-idx3-ubyte.gz").astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(read_idx(f"{a.data}/train-labels-idx1-ubyte.gz").astype(np.int64))
    model = lenet5()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for epoch in range(a.epochs):
        perm = torch.randperm(len(x))
        t0 = time.perf_counter()
        for i in range(0, len(x), a.batch_size):
            idx = perm[i:i + a.batch_size]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        dt = time.perf_counter() - t0
        times.append(dt)
        print(f"epoch {epoch + 1}: {dt:.2f} s ({len(x) / dt:.0f} images/s), last loss {loss.item():.4f}")
    print(f"torch {torch.__version__}, {a.threads} threads, batch {a.batch_size}: "
          f"median epoch {statistics.median(times):.2f} s over {len(x)} images")


if __name__ == "__main__":
    main()
