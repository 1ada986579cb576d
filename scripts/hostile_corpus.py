#!/usr/bin/env python3
"""Replays a corpus of corrupt and hostile inputs against every reader of the release slimnet.

Usage: python3 scripts/hostile_corpus.py [--slimnet target/release/slimnet] [--keep DIR]

Generates about 160 bad inputs into a temporary directory (native .model/.slim files,
ONNX, safetensors, IDX and gzip IDX data directories, .npz archives, CIFAR-10 batches and
image folders (interop), .npy inputs of `run`, training
checkpoints, data directories that are missing or a file), runs slimnet on each (inspect,
eval, run, import, train --resume as fits) and checks, per case:

- the exit code is neither 101 (a Rust panic) nor 0 (the input is bad), nor a signal;
- stderr is one line (`error: ...`) that names the offending file (or directory);
- the child's peak resident memory (os.wait4's ru_maxrss) is at most
  4 x the input's size + FIXED_MB, FIXED_MB being the cost of the process itself with the
  model it needs and, for data cases, the valid half of the data set (measured here by the
  baseline runs, printed with the table).

Prints a markdown table (case, reader, bytes, exit, peak MB, bound, ok) and exits 1 on any
failure. Needs only the Python standard library (ONNX cases are hand-encoded protobuf).
"""

import argparse
import gzip
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
FIXED_MB = 160  # the process, a model and the valid test split; see the module docs


def run(cmd, stderr_path):
    """Runs cmd; returns (exit code or -signal, peak RSS in MB)."""
    with open(stderr_path, "wb") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return code, usage.ru_maxrss / 1024.0


class Corpus:
    def __init__(self, slimnet, work):
        self.slimnet = slimnet
        self.work = work
        self.rows = []
        self.failures = 0

    def check(self, case, reader, args, bad_path, size, name_in_message=None):
        stderr_path = self.work / "stderr.txt"
        code, peak = run([str(self.slimnet), "--quiet"] + [str(a) for a in args], stderr_path)
        err = stderr_path.read_text(errors="replace").strip()
        lines = [l for l in err.splitlines() if l.strip()]
        bound = 4 * size / 2**20 + FIXED_MB
        named = name_in_message or Path(bad_path).name
        problems = []
        if code == 101:
            problems.append("panic")
        elif code < 0:
            problems.append(f"signal {-code}")
        elif code == 0:
            problems.append("accepted")
        if len(lines) != 1:
            problems.append(f"{len(lines)} stderr lines")
        if named not in err:
            problems.append("file not named")
        if peak > bound:
            problems.append("memory")
        ok = not problems
        if not ok:
            self.failures += 1
            print(f"FAIL {case}: {', '.join(problems)}: {err[:300]}", file=sys.stderr)
        self.rows.append((case, reader, size, code, peak, bound, "ok" if ok else ", ".join(problems)))

    def file_case(self, case, reader, data, suffix, args_of):
        """Writes data to a file and runs args_of(path)."""
        p = self.work / f"{case}{suffix}"
        p.write_bytes(data)
        self.check(case, reader, args_of(p), p, len(data))

    def table(self):
        out = ["| case | reader | bytes | exit | peak MB | bound MB | ok |", "|---|---|---:|---:|---:|---:|---|"]
        for case, reader, size, code, peak, bound, ok in self.rows:
            out.append(f"| {case} | {reader} | {size} | {code} | {peak:.1f} | {bound:.1f} | {ok} |")
        return "\n".join(out)


def cuts(n, k=8):
    """k truncation points spread over 0..n (0 and n-1 included)."""
    pts = sorted({0, 1, 7, n // 2, n - 1} | {n * i // k for i in range(1, k)})
    return [c for c in pts if 0 <= c < n]


def flips(data, k=6):
    """Copies of data with one byte flipped at k spread offsets."""
    out = []
    for i in range(k):
        at = min(len(data) - 1, 8 + (len(data) - 9) * i // max(1, k - 1))
        b = bytearray(data)
        b[at] ^= 0xA5
        out.append((at, bytes(b)))
    return out


# --- hand-encoded protobuf for ONNX cases ---------------------------------------------

def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, wire, payload):
    key = varint((num << 3) | wire)
    if wire == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload


def onnx_model(dims, initializer_dims=None, raw=b""):
    """ModelProto: ir_version 7, opset 13, a graph with input x of `dims` and an optional
    initializer w of `initializer_dims` holding `raw`."""
    shape = b"".join(field(1, 2, field(1, 0, d)) for d in dims)  # TensorShapeProto.dim.dim_value
    tensor_type = field(1, 0, 1) + field(2, 2, shape)  # elem_type FLOAT, shape
    type_proto = field(1, 2, tensor_type)
    value_info = field(1, 2, b"x") + field(2, 2, type_proto)
    graph = field(2, 2, b"g") + field(11, 2, value_info)
    graph += field(1, 2, field(1, 2, b"x") + field(2, 2, b"y") + field(4, 2, b"Relu"))
    graph += field(12, 2, field(1, 2, b"y"))
    if initializer_dims is not None:
        t = b"".join(field(1, 0, d) for d in initializer_dims) + field(2, 0, 1) + field(8, 2, b"w") + field(9, 2, raw)
        graph += field(5, 2, t)
    opset = field(1, 2, b"") + field(2, 0, 13)
    return field(1, 0, 7) + field(8, 2, opset) + field(7, 2, graph)


# --- safetensors ---------------------------------------------------------------------

def safetensors(header: bytes, data: bytes, declared_len=None):
    n = len(header) if declared_len is None else declared_len
    return struct.pack("<Q", n) + header + data


# --- IDX -----------------------------------------------------------------------------

def idx_images(n, rows=28, cols=28, body=None):
    head = struct.pack(">IIII", 0x00000803, n, rows, cols)
    return head + (body if body is not None else bytes(n * rows * cols))


def npy(header_dict: str, data: bytes, magic=b"\x93NUMPY", version=b"\x01\x00"):
    h = header_dict.encode()
    pad = (64 - (10 + len(h) + 1) % 64) % 64
    h = h + b" " * pad + b"\n"
    return magic + version + struct.pack("<H", len(h)) + h + data


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slimnet", default=str(ROOT / "target/release/slimnet"))
    ap.add_argument("--keep", help="generate into this directory and keep it")
    a = ap.parse_args()
    slimnet = Path(a.slimnet).resolve()
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="slimnet-hostile-"))
    work.mkdir(parents=True, exist_ok=True)
    c = Corpus(slimnet, work)
    S = str(slimnet)

    # Valid seeds to corrupt.
    onnx_src = FIXTURES / "onnx/mlp_ts_op13.onnx"
    good_model = work / "good.model"
    good_slim = work / "good.slim"
    subprocess.run([S, "import", onnx_src, "-o", good_model], check=True, capture_output=True)
    # A small trained model and a checkpoint of it (two epochs, stopped after one).
    data = FIXTURES / "fashion-mnist"
    ck_out = work / "ck.slim"
    subprocess.run([S, "train", "--model", "mlp:784-16-10", "--epochs", "2", "--limit", "128",
                    "--data", data, "--stop-after-epochs", "1", "-o", ck_out], check=True,
                   capture_output=True)
    good_ckpt = Path(str(ck_out) + ".ckpt").read_bytes()
    subprocess.run([S, "train", "--model", "mlp:784-16-10", "--epochs", "1", "--limit", "128",
                    "--data", data, "-o", good_slim], check=True, capture_output=True)
    native = good_model.read_bytes()
    slim = good_slim.read_bytes()
    onnx_bytes = onnx_src.read_bytes()
    st_good = work / "good.safetensors"
    subprocess.run([S, "export", good_slim, "-o", st_good], check=True, capture_output=True)
    st_bytes = st_good.read_bytes()

    inspect = lambda p: ["inspect", p]

    # 1. Native files (.model, older layout; .slim container).
    for name, blob, suffix in [("native", native, ".model"), ("slim", slim, ".slim")]:
        c.file_case(f"{name}-empty", suffix, b"", suffix, inspect)
        for cut in cuts(len(blob)):
            c.file_case(f"{name}-cut{cut}", suffix, blob[:cut], suffix, inspect)
        for at, b in flips(blob):
            c.file_case(f"{name}-flip{at}", suffix, b, suffix, inspect)
        # The magic, then a declared payload length of 2^62.
        c.file_case(f"{name}-huge-length", suffix, blob[:12] + struct.pack("<Q", 1 << 62) + blob[20:64], suffix, inspect)
        c.file_case(f"{name}-garbage", suffix, blob[:8] + os.urandom(4096), suffix, inspect)

    # 2. ONNX.
    c.file_case("onnx-empty", ".onnx", b"", ".onnx", inspect)
    for cut in cuts(len(onnx_bytes)):
        if cut:
            c.file_case(f"onnx-cut{cut}", ".onnx", onnx_bytes[:cut], ".onnx", inspect)
    # (ONNX and safetensors carry no checksum: a flipped weight byte is another valid model,
    # so their corruptions are structural.)
    c.file_case("onnx-tag-garbage", ".onnx", b"\xff" * 64, ".onnx", inspect)
    c.file_case("onnx-random", ".onnx", os.urandom(8192), ".onnx", inspect)
    c.file_case("onnx-dim-2^40", ".onnx", onnx_model([1, 1 << 40]), ".onnx", inspect)
    c.file_case("onnx-dim-negative", ".onnx", onnx_model([1, (1 << 64) - 5]), ".onnx", inspect)
    c.file_case("onnx-dims-product-overflow", ".onnx", onnx_model([1 << 31, 1 << 31, 1 << 31]), ".onnx", inspect)
    c.file_case("onnx-initializer-huge-dims", ".onnx", onnx_model([1, 4], [1 << 30, 1 << 30], b"\0" * 16), ".onnx", inspect)
    c.file_case("onnx-initializer-short-data", ".onnx", onnx_model([1, 4], [1000, 1000], b"\0" * 16), ".onnx", inspect)
    c.file_case("onnx-length-past-end", ".onnx", field(1, 0, 7) + varint((7 << 3) | 2) + varint(1 << 40) + b"x", ".onnx", inspect)
    c.file_case("onnx-deep-nesting", ".onnx", field(1, 0, 7) + (varint((7 << 3) | 2) + varint(1 << 20)) * 200, ".onnx", inspect)

    # 3. safetensors (inspect infers the architecture from slimnet_arch, or --arch).
    st = lambda p: ["inspect", p, "--arch", "lenet300"]
    st_auto = lambda p: ["inspect", p]
    c.file_case("st-empty", ".safetensors", b"", ".safetensors", st)
    for cut in cuts(len(st_bytes)):
        c.file_case(f"st-cut{cut}", ".safetensors", st_bytes[:cut], ".safetensors", st_auto)
    hlen = struct.unpack("<Q", st_bytes[:8])[0]
    c.file_case("st-header-len-short", ".safetensors", struct.pack("<Q", hlen - 5) + st_bytes[8:], ".safetensors", st_auto)
    c.file_case("st-header-len-long", ".safetensors", struct.pack("<Q", hlen + 5) + st_bytes[8:], ".safetensors", st_auto)
    c.file_case("st-header-len-u64max", ".safetensors", struct.pack("<Q", (1 << 64) - 1) + b"{}", ".safetensors", st)
    c.file_case("st-header-len-past-end", ".safetensors", safetensors(b'{"a":1}', b"", 1 << 30), ".safetensors", st)
    c.file_case("st-header-not-json", ".safetensors", safetensors(b"{not json", b""), ".safetensors", st)
    c.file_case("st-offsets-past-end", ".safetensors",
                safetensors(b'{"fc1.weight":{"dtype":"F32","shape":[300,784],"data_offsets":[0,940800]}}', b"\0" * 64), ".safetensors", st)
    c.file_case("st-offsets-reversed", ".safetensors",
                safetensors(b'{"fc1.weight":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}', b"\0" * 8), ".safetensors", st)
    c.file_case("st-shape-overflow", ".safetensors",
                safetensors(b'{"fc1.weight":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}', b"\0" * 8), ".safetensors", st)
    c.file_case("st-bad-dtype", ".safetensors",
                safetensors(b'{"fc1.weight":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}}', b"\0" * 8), ".safetensors", st)
    c.file_case("st-arch-recorded-bogus", ".safetensors",
                safetensors(b'{"__metadata__":{"slimnet_arch":"mlp:784-99999999-10"}}', b""), ".safetensors", st_auto)
    c.file_case("st-no-arch", ".safetensors", safetensors(b'{}', b""), ".safetensors", st_auto)

    # 4. .npy inputs of `run`.
    run_npy = lambda p: ["run", good_slim, "--input", p, "-o", work / "out.npy"]
    good_npy = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1, 28, 28), }", b"\0" * (2 * 784 * 4))
    c.file_case("npy-empty", ".npy", b"", ".npy", run_npy)
    for cut in cuts(len(good_npy), 6):
        if cut:
            c.file_case(f"npy-cut{cut}", ".npy", good_npy[:cut], ".npy", run_npy)
    c.file_case("npy-bad-magic", ".npy", b"\x93NUMPZ" + good_npy[6:], ".npy", run_npy)
    c.file_case("npy-shape-huge", ".npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1, 28, 28), }", b"\0" * 64), ".npy", run_npy)
    c.file_case("npy-shape-overflow", ".npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 2), }", b""), ".npy", run_npy)
    c.file_case("npy-dtype-complex", ".npy", npy("{'descr': '<c8', 'fortran_order': False, 'shape': (1, 1, 28, 28), }", b"\0" * 6272), ".npy", run_npy)
    c.file_case("npy-dtype-object", ".npy", npy("{'descr': '|O', 'fortran_order': False, 'shape': (1, 1, 28, 28), }", b"\0" * 6272), ".npy", run_npy)
    c.file_case("npy-header-garbage", ".npy", npy("{'descr': <f4 shape", b""), ".npy", run_npy)
    c.file_case("npy-header-len-past-end", ".npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", 60000) + b"{", ".npy", run_npy)
    c.file_case("npy-wrong-shape", ".npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }", b"\0" * 60), ".npy", run_npy)
    c.file_case("npy-nan", ".npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 28, 28), }", struct.pack("<f", float("nan")) * 784), ".npy", run_npy)

    # 5. Checkpoints (train --resume).
    resume = lambda p: ["train", "--resume", p, "--data", data, "-o", work / "resumed.slim"]
    c.file_case("ckpt-empty", ".ckpt", b"", ".ckpt", resume)
    for cut in cuts(len(good_ckpt)):
        c.file_case(f"ckpt-cut{cut}", ".ckpt", good_ckpt[:cut], ".ckpt", resume)
    for at, b in flips(good_ckpt):
        c.file_case(f"ckpt-flip{at}", ".ckpt", b, ".ckpt", resume)
    # A section length of 2^62 with the checksum recomputed: the bound check, not the CRC.
    body = bytearray(good_ckpt[:-4])
    body[17:25] = struct.pack("<Q", 1 << 62)
    c.file_case("ckpt-section-length-huge", ".ckpt", bytes(body) + struct.pack("<I", zlib.crc32(bytes(body))), ".ckpt", resume)

    # A checkpoint of a command trained in phases (iterative pruning, two rounds, stopped at
    # the second round's start: one finished phase with its end model), resumed by `prune`.
    pk_out = work / "pk.slim"
    prune = lambda out: ["prune", good_slim, "--method", "global", "--sparsity", "0.8",
                         "--schedule", "iterative", "--rounds", "2", "--retrain-epochs", "2",
                         "--limit", "128", "--data", data, "-o", out]
    subprocess.run([S, *prune(pk_out), "--stop-after-epochs", "1"], check=True,
                   capture_output=True)
    phased = Path(str(pk_out) + ".ckpt").read_bytes()
    resume_phased = lambda p: [*prune(work / "pk-resumed.slim"), "--resume", p]
    for cut in cuts(len(phased), 4):
        c.file_case(f"ckpt-phased-cut{cut}", ".ckpt", phased[:cut], ".ckpt", resume_phased)
    # Bytes changed inside the `phases` section, in its last part (the finished phase's end
    # model, its last field), the checksum recomputed: the nested model reader's own checks
    # answer, naming the checkpoint.
    at = phased.index(b"\x06phases") + 7 + 8
    n = struct.unpack("<Q", phased[at - 8:at])[0]
    for k, frac in enumerate((0.5, 0.75, 0.95)):
        body = bytearray(phased[:-4])
        body[at + int(n * frac)] ^= 0xFF
        body[at + int(n * frac) + 1] ^= 0xFF
        c.file_case(f"ckpt-phases-tampered{k}", ".ckpt",
                    bytes(body) + struct.pack("<I", zlib.crc32(bytes(body))), ".ckpt",
                    resume_phased)

    # 6. Fashion-MNIST data directories (eval reads the test split only).
    def data_case(case, images=None, labels=None, gz=False, raw_images=None):
        d = work / f"data-{case}"
        d.mkdir(exist_ok=True)
        # The training split must be present for the directory to be recognized; eval reads
        # only the test split.
        for train_file in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
            if not (d / train_file).exists():
                os.symlink(FIXTURES / "fashion-mnist" / train_file, d / train_file)
        lab = labels if labels is not None else (FIXTURES / "fashion-mnist/t10k-labels-idx1-ubyte.gz").read_bytes()
        if labels is not None and not gz:
            (d / "t10k-labels-idx1-ubyte").write_bytes(lab)
        else:
            (d / "t10k-labels-idx1-ubyte.gz").write_bytes(lab if labels is None else gzip.compress(lab))
        blob = raw_images if raw_images is not None else (gzip.compress(images, 1) if gz else images)
        name = "t10k-images-idx3-ubyte" + (".gz" if gz else "")
        (d / name).write_bytes(blob)
        c.check(case, "idx" + (".gz" if gz else ""), ["eval", good_slim, "--data", d], d / name, len(blob), name_in_message=name)

    data_case("idx-empty", b"")
    data_case("idx-bad-magic", b"\0\0\x08\x04" + idx_images(10)[4:])
    data_case("idx-count-huge", idx_images(10)[:4] + struct.pack(">I", 0xFFFFFFFF) + idx_images(10)[8:])
    data_case("idx-dims-huge", struct.pack(">IIII", 0x803, 10000, 65535, 65535) + b"\0" * 1000)
    data_case("idx-truncated", idx_images(10000)[:50000])
    data_case("idx-wrong-rows", idx_images(10000, 27, 28))
    data_case("idx-gz-empty", b"", gz=True)
    data_case("idx-gz-truncated", None, gz=True, raw_images=gzip.compress(idx_images(10000), 1)[:2000])
    data_case("idx-gz-not-gzip", None, gz=True, raw_images=b"\x1f\x8b" + os.urandom(2000))
    # A gzip bomb: the header declares 10,000 images, the stream expands to 1 GiB.
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [bomb.compress(struct.pack(">IIII", 0x803, 10000, 28, 28))]
    chunk = b"\0" * (1 << 20)
    for _ in range(1024):
        parts.append(bomb.compress(chunk))
    parts.append(bomb.flush())
    data_case("idx-gz-bomb-1GiB", None, gz=True, raw_images=b"".join(parts))
    # Header declaring 2^32-1 images, stream of zeros.
    bomb2 = zlib.compressobj(9, zlib.DEFLATED, 31)
    p2 = [bomb2.compress(struct.pack(">IIII", 0x803, 0xFFFFFFFF, 28, 28))]
    for _ in range(256):
        p2.append(bomb2.compress(chunk))
    p2.append(bomb2.flush())
    data_case("idx-gz-count-huge", None, gz=True, raw_images=b"".join(p2))
    data_case("idx-labels-mismatch", idx_images(5000), labels=struct.pack(">II", 0x801, 10000) + bytes(10000))

    # 7. Foreign data (interop): .npz archives, CIFAR-10 batches, image folders.
    def arr(descr, shape, data):
        dims = "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
        return npy(f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}", data)

    def npz_bytes(members, method=zipfile.ZIP_DEFLATED):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", method) as z:
            for name, data in members.items():
                z.writestr(name, data)
        return buf.getvalue()

    n = 100
    x_ok = arr("|u1", (n, 28, 28), bytes(n * 784))
    y_ok = arr("<i8", (n,), struct.pack(f"<{n}q", *[i % 10 for i in range(n)]))
    good_npz = npz_bytes({"x.npy": x_ok, "y.npy": y_ok})
    ev = lambda p: ["eval", good_slim, "--data", p]
    c.file_case("npz-empty", ".npz", b"", ".npz", ev)
    for cut in cuts(len(good_npz)):
        c.file_case(f"npz-cut{cut}", ".npz", good_npz[:cut], ".npz", ev)
    # Flips past the first local header: zip readers take a member's method and sizes from the
    # central directory, so a flip in the local copy (offsets 4-29) may leave a valid archive.
    for at, b in flips(good_npz):
        if at >= 30:
            c.file_case(f"npz-flip{at}", ".npz", b, ".npz", ev)
    # Declared sizes far beyond what the deflated bytes can give (both headers patched).
    bomb = bytearray(npz_bytes({"x.npy": arr("|u1", (10000, 28, 28), bytes(10000 * 784)), "y.npy": y_ok}))
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = bomb.find(sig)
        while at >= 0:
            bomb[at + off:at + off + 4] = struct.pack("<I", 0xFFFFFFF0)
            at = bomb.find(sig, at + 4)
    c.file_case("npz-declared-size-huge", ".npz", bytes(bomb), ".npz", ev)
    c.file_case("npz-labels-float", ".npz", npz_bytes({"x.npy": x_ok, "y.npy": arr("<f4", (n,), bytes(4 * n))}), ".npz", ev)
    c.file_case("npz-labels-count", ".npz", npz_bytes({"x.npy": x_ok, "y.npy": arr("<i8", (n - 1,), bytes(8 * (n - 1)))}), ".npz", ev)
    c.file_case("npz-images-int32", ".npz", npz_bytes({"x.npy": arr("<i4", (n, 28, 28), bytes(4 * n * 784)), "y.npy": y_ok}), ".npz", ev)
    c.file_case("npz-shape-lies", ".npz", npz_bytes({"x.npy": arr("|u1", (1 << 20, 28, 28), bytes(784)), "y.npy": y_ok}), ".npz", ev)
    c.file_case("npz-no-members", ".npz", npz_bytes({"weights.npy": y_ok}), ".npz", ev)
    c.file_case("npz-wrong-size-for-model", ".npz", npz_bytes({"x.npy": arr("|u1", (n, 3, 32, 32), bytes(n * 3072)), "y.npy": y_ok}), ".npz", ev)

    def cifar_case(case, batch):
        d = work / f"cifar-{case}"
        d.mkdir(exist_ok=True)
        (d / "test_batch.bin").write_bytes(batch)
        c.check(case, "cifar", ["eval", good_slim, "--data", d], d / "test_batch.bin", len(batch))

    record = bytes([3]) + bytes(3072)
    cifar_case("cifar-truncated", record * 10 + record[:100])
    cifar_case("cifar-label-11", record * 4 + bytes([11]) + bytes(3072))

    def folder_case(case, data):
        d = work / f"folder-{case}"
        (d / "cls").mkdir(parents=True, exist_ok=True)
        bad = d / "cls" / "img.png"
        bad.write_bytes(data)
        c.check(case, "image folder", ["eval", good_slim, "--data", d], bad, len(data))

    png_sig = b"\x89PNG\r\n\x1a\n"
    folder_case("image-not-an-image", b"just text, not pixels")
    folder_case("image-png-truncated", png_sig + b"\0\0\0\rIHDR\0\0\0\x1c\0\0")
    # An IHDR declaring 100,000 x 100,000 pixels: refused by the decoder's limits.
    ihdr = b"IHDR" + struct.pack(">II", 100000, 100000) + bytes([8, 0, 0, 0, 0])
    folder_case("image-png-huge", png_sig + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr)))

    missing = work / "no-such-data-dir"
    c.check("data-missing", "data dir", ["eval", good_slim, "--data", missing], missing, 0, name_in_message=missing.name)
    afile = work / "data-is-a-file"
    afile.write_bytes(b"x")
    c.check("data-is-a-file", "data dir", ["eval", good_slim, "--data", afile], afile, 1, name_in_message=afile.name)
    c.check("model-missing", "model", ["inspect", work / "no-such.model"], work / "no-such.model", 0)
    c.check("model-is-a-dir", "model", ["inspect", work], work, 0, name_in_message=work.name)

    print(c.table())
    print()
    worst = sorted(c.rows, key=lambda r: r[4], reverse=True)[:5]
    print(f"{len(c.rows)} cases, {c.failures} failed; fixed bound {FIXED_MB} MB; "
          f"highest peaks: " + ", ".join(f"{r[0]} {r[4]:.1f} MB" for r in worst))
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if c.failures else 0)


if __name__ == "__main__":
    main()
