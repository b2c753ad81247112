"""MNIST as a Caffe user's own data: the files Caffe's tools would make of it, for `python -m jaxcnn train`.

    python -m experiments.caffe_files [--data-dir DIR] [--out runs/mnist_caffe] [--train N] [--test N]

Writes into --out: `mnist_train_lmdb`, an LMDB of raw Datums (1x28x28 uint8 and the label, keys 00000000, ...,
as Caffe's convert_mnist_data and convert_imageset write them) of the first N training images; `test/`, the first
N test images as PNG files, with `test.txt`, ImageData's list of "path label" lines; and `mean.binaryproto`, the
training images' mean (1, 1, 28, 28), as Caffe's compute_image_mean writes it. The net
experiments/caffe/lenet_files_train_test.prototxt trains on the LMDB and tests on the image list.
"""
import argparse
from pathlib import Path

import numpy as np

from jaxcnn import datasets
from jaxcnn.caffe.data_layers import mean_blob
from jaxcnn.caffe.images import encode_image
from jaxcnn.caffe.sources import write_lmdb
from jaxcnn.cli import HelpFormatter, entry


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.caffe_files", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--data-dir", help="directory with MNIST's IDX files (see jaxcnn.datasets.load)")
    p.add_argument("--out", default="runs/mnist_caffe", help="directory to write the files into")
    p.add_argument("--train", type=int, help="training images to write (default: all)")
    p.add_argument("--test", type=int, help="test images to write (default: all)")
    args = p.parse_args(argv)
    for flag, value in (("--train", args.train), ("--test", args.test)):
        if value is not None and value < 1:
            p.error(f"{flag} must be a positive int, got {value}")
    out = Path(args.out)
    if (out / "mnist_train_lmdb").exists():
        p.error(f"--out {out}: {out / 'mnist_train_lmdb'} exists already; give another --out")
    train, test = (datasets.load("mnist", split, args.data_dir) for split in ("train", "test"))
    images, labels = (a[:args.train] for a in train)
    (out / "test").mkdir(parents=True, exist_ok=True)
    write_lmdb(out / "mnist_train_lmdb", images, labels)
    (out / "mean.binaryproto").write_bytes(mean_blob(images.mean(axis=0, dtype=np.float64)))
    lines = []
    for i, (image, label) in enumerate(zip(*(a[:args.test] for a in test))):
        (out / "test" / f"{i:05d}.png").write_bytes(encode_image(image))
        lines.append(f"{i:05d}.png {label}\n")
    (out / "test.txt").write_text("".join(lines))
    print(f"wrote {out}: mnist_train_lmdb ({len(labels):,} images), test/ and test.txt ({len(lines):,} images), "
          "mean.binaryproto")


if __name__ == "__main__":
    raise SystemExit(entry(main))
