"""Fashion-MNIST IDX reading shared by the peer scripts (pixels scaled to [0, 1] by callers)."""
import gzip

import numpy as np

DEBIAN = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    """The array of one (gzip-compressed) IDX file."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
