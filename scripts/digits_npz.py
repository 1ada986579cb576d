#!/usr/bin/env python3
"""Writes scikit-learn's bundled 8x8 digits (1,797 images, 10 classes) as a .npz for slimnet.

Usage: python3 scripts/digits_npz.py [OUT] (default /tmp/s7-data/digits.npz)

Members: x_train, y_train, x_test, y_test. Images are float32 [N, 8, 8] scaled from the
0..16 grey levels to [0, 1]; labels int64. The train/test split is fixed: a stratified
permutation seeded with 0 holding out 20% (360 images) as the test set, so the same file
comes out on every machine. Needs numpy and scikit-learn (pip install scikit-learn).
"""

import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/s7-data/digits.npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y
    )
    np.savez_compressed(out, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    print(f"{out}: {len(y_train)} training and {len(y_test)} test images of 8x8, 10 classes")


if __name__ == "__main__":
    main()
