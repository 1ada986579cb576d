#!/usr/bin/env python3
"""PyTorch peer of `cargo bench --bench train_epoch`: training epochs of a zoo model on
Fashion-MNIST at batch 128, on N CPU threads, timed by wall clock.

    pip install torch numpy
    python3 scripts/peer_pytorch_lenet5.py --threads 2 --epochs 3                      # lenet5, Adam
    python3 scripts/peer_pytorch_lenet5.py --model cnn-teacher --threads 2 --epochs 2  # SGD Nesterov

The models and optimizers are slimnet's zoo models with their reference recipes
(crates/nn/src/zoo.rs, recipes.rs): lenet5 (Caffe variant) with Adam at 1e-3; cnn-teacher
(four 3x3 conv + BatchNorm + ReLU, two max pools, fc 3136-256, dropout, fc 256-10) with SGD
(lr 0.05, Nesterov momentum 0.9, weight decay 5e-4), last partial batch dropped. Neither side
augments in the timed epoch (the slimnet bench turns the recipe's augmentation off too), and
the learning-rate schedule is left out (a scalar per step on either side).

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


def cnn_teacher():
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(
        *block(1, 32), *block(32, 32), nn.MaxPool2d(2),
        *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 10))


def build(name):
    if name == "lenet5":
        model = lenet5()
        return model, torch.optim.Adam(model.parameters(), lr=1e-3), False
    model = cnn_teacher()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    return model, opt, True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["lenet5", "cnn-teacher"], default="lenet5")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--limit", type=int, default=None,
                    help="train on only the first N images (as slimnet train --limit)")
    ap.add_argument("--eval", action="store_true",
                    help="then evaluate the 10,000 test images, as slimnet train does at the end")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    x = torch.from_numpy(read_idx(f"{a.data}/train-images-idx3-ubyte.gz").astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(read_idx(f"{a.data}/train-labels-idx1-ubyte.gz").astype(np.int64))
    if a.limit:
        x, y = x[:a.limit], y[:a.limit]
    model, opt, drop_last = build(a.model)
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    n = len(x) - (len(x) % a.batch_size if drop_last else 0)
    times = []
    for epoch in range(a.epochs):
        perm = torch.randperm(len(x))
        t0 = time.perf_counter()
        for i in range(0, n, a.batch_size):
            idx = perm[i:i + a.batch_size]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        dt = time.perf_counter() - t0
        times.append(dt)
        print(f"epoch {epoch + 1}: {dt:.2f} s ({n / dt:.0f} images/s), last loss {loss.item():.4f}")
    if a.eval:
        xt = torch.from_numpy(read_idx(f"{a.data}/t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0).unsqueeze(1)
        yt = torch.from_numpy(read_idx(f"{a.data}/t10k-labels-idx1-ubyte.gz").astype(np.int64))
        model.eval()
        t0 = time.perf_counter()
        with torch.no_grad():
            correct = sum((model(xt[i:i + 256]).argmax(1) == yt[i:i + 256]).sum().item()
                          for i in range(0, len(xt), 256))
        print(f"test accuracy {correct / len(xt):.4f} ({time.perf_counter() - t0:.2f} s)")
    print(f"torch {torch.__version__}, {a.model}, {a.threads} threads, batch {a.batch_size}: "
          f"median epoch {statistics.median(times):.2f} s over {n} images")


if __name__ == "__main__":
    main()
