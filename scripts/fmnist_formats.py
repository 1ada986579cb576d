#!/usr/bin/env python3
"""Writes Fashion-MNIST in the foreign formats slimnet reads, to check they evaluate exactly as
the IDX files do.

Usage: python3 scripts/fmnist_formats.py [OUT_DIR] (default /tmp/s7-data/fmnist)

Writes OUT_DIR/fmnist.npz (x_train, y_train, x_test, y_test: uint8 [N, 28, 28] and uint8
labels, deflate-compressed), OUT_DIR/npy/ (the same four arrays as .npy files) and
OUT_DIR/folder/{train,test}/<label>/<index>.png (8-bit grayscale PNGs; class folders named
00..09 so that sorted names give the IDX labels). Reads the IDX files from
/usr/share/datasets/fashion-mnist (scripts/fmnist.py). Needs numpy and Pillow.
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fmnist import DEBIAN, read_idx  # noqa: E402


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/s7-data/fmnist")
    out.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        arrays[f"x_{split}"] = read_idx(f"{DEBIAN}/{prefix}-images-idx3-ubyte.gz")
        arrays[f"y_{split}"] = read_idx(f"{DEBIAN}/{prefix}-labels-idx1-ubyte.gz")
    np.savez_compressed(out / "fmnist.npz", **arrays)
    (out / "npy").mkdir(exist_ok=True)
    for name, a in arrays.items():
        np.save(out / "npy" / f"{name}.npy", a)
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        for c in range(10):
            (out / "folder" / split / f"{c:02d}").mkdir(parents=True, exist_ok=True)
        for i, (img, label) in enumerate(zip(images, labels)):
            Image.fromarray(img, mode="L").save(out / "folder" / split / f"{label:02d}" / f"{i:05d}.png")
    print(f"{out}: fmnist.npz, npy/, folder/ (train {len(arrays['y_train'])}, test {len(arrays['y_test'])})")


if __name__ == "__main__":
    main()
