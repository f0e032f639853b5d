#!/usr/bin/env python3
"""Builds the small data fixtures in tests/fixtures/ from the full data sets beside the repository.

The fixtures (in trainer/tests/fixtures/) let a bare clone pass `cargo test`: the loaders are tested on real bytes without
../shared/data. They are committed; this script documents where they came from and rebuilds them:

    python3 scripts/make_fixtures.py ../shared/data

- mnist-head/: the first 256 training and 64 test records of the official MNIST IDX files, gzipped
  again with the official names (MNIST, LeCun, Cortes & Burges; commonly cited as CC BY-SA 3.0).
- cifar-samples/: the 20 CIFAR-10 and 20 CIFAR-100 test images as PNG, copied unchanged
  (from the foolbox 3.3.4 wheel, MIT: LICENSE.foolbox; CIFAR: Krizhevsky 2009).

It also prints the reference values the loader tests assert (pixel mean and std of the fixture's
training images, computed here in plain Python, independently of the Rust loader).
"""
import gzip
import hashlib
import math
import shutil
import struct
import sys
from pathlib import Path

TRAIN, TEST = 256, 64
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "trainer" / "tests" / "fixtures"


def head(src: Path, dst: Path, count: int) -> bytes:
    data = gzip.decompress(src.read_bytes())
    magic = struct.unpack(">I", data[:4])[0]
    ndim = magic & 0xFF
    dims = list(struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim]))
    item = math.prod(dims[1:])
    header = struct.pack(">I", magic) + struct.pack(">" + "I" * ndim, count, *dims[1:])
    body = data[4 + 4 * ndim : 4 + 4 * ndim + count * item]
    # mtime=0 so that rebuilding gives byte-identical files.
    dst.write_bytes(gzip.compress(header + body, compresslevel=9, mtime=0))
    return body


def main() -> None:
    shared = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT.parent / "shared" / "data")
    mnist = OUT / "mnist-head"
    mnist.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", TRAIN), ("t10k", TEST)):
        pixels = head(shared / "mnist" / f"{prefix}-images-idx3-ubyte.gz",
                      mnist / f"{prefix}-images-idx3-ubyte.gz", count)
        labels = head(shared / "mnist" / f"{prefix}-labels-idx1-ubyte.gz",
                      mnist / f"{prefix}-labels-idx1-ubyte.gz", count)
        values = [p / 255.0 for p in pixels]
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        print(f"{prefix}: {count} images, labels[:10] = {list(labels[:10])}, "
              f"pixel mean {mean:.10f}, std {std:.10f}, pixel sum {sum(pixels)}, "
              f"image 0 sum {sum(pixels[:784])}")
    cifar = OUT / "cifar-samples"
    cifar.mkdir(parents=True, exist_ok=True)
    for png in sorted((shared / "cifar-samples").glob("cifar*.png")):
        shutil.copyfile(png, cifar / png.name)
    shutil.copyfile(shared / "cifar-samples" / "LICENSE.foolbox", cifar / "LICENSE.foolbox")
    for folder in (mnist, cifar):
        lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n"
                 for p in sorted(folder.iterdir()) if p.name != "SHA256SUMS"]
        (folder / "SHA256SUMS").write_text("".join(lines))


if __name__ == "__main__":
    main()
