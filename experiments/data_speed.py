"""Images per second of a Caffe net's input pipeline alone, of its training step alone, and of training fed by the
pipeline (the source streamed from disk, read ahead by background threads).

    python -m experiments.data_speed --solver experiments/caffe/lenet_files_solver.prototxt [--rounds 5] [--out DIR]

The TRAIN data layer's source is read in batches of its batch_size, in the order of one epoch's permutation:
`pipeline` reads them (decoding, no training; workers 1 and 2), `step` trains on one batch held on the device
(no reading), `streamed` trains on the batches as the pipeline gives them (jaxcnn.train.feed: each read while the
previous steps run). Each runs one untimed epoch (compilation, the page cache), then one epoch per round, the
rounds interleaved; the medians are printed, and with --out written to DIR/data_speed.json with each round's rate
(machines are shared: compare numbers of one run only).
"""
import argparse
import os
import statistics
import time

import jax
import numpy as np

from experiments import report
from jaxcnn.caffe.sources import open_source
from jaxcnn.cli import HelpFormatter, entry
from jaxcnn.datasets.prefetch import Prefetch
from jaxcnn.train import caffe_run
from jaxcnn.train.feed import Streamed


def rate(images: int, run) -> float:
    start = time.perf_counter()
    run()
    return images / (time.perf_counter() - start)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.data_speed", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--solver", required=True, help="Caffe solver whose net's TRAIN layer reads a source on disk")
    p.add_argument("--rounds", type=int, default=5, help="timed epochs of each, interleaved")
    p.add_argument("--out", help="directory for data_speed.json (nothing is written without it)")
    args = p.parse_args(argv)
    spec = caffe_run.load(args.solver, epochs=1)
    trainer = spec.trainer()
    b = trainer.batch_size
    source = open_source(spec.net.data)
    steps = len(source) // b
    order = np.random.default_rng(0).permutation(len(source))
    batches = [order[i * b:(i + 1) * b] for i in range(steps)]
    print(f"{source.path}: {len(source):,} records of {source.shape} {source.dtype.name}; batch {b}, {steps} steps an "
          f"epoch; {jax.devices()[0].device_kind}")

    def pipeline(workers):
        def read_all():
            with Prefetch(source.read, batches, workers=workers) as it:
                for _ in it:
                    pass
        return read_all

    ts = trainer.init(spec.config.seed)
    x, y = source.read(batches[0])

    def steps_alone():
        nonlocal ts
        for _ in range(steps):
            ts, loss = trainer.train_batch(ts, x, y)
        jax.block_until_ready(loss)

    streamed = Streamed(trainer, source, "training set")

    def streamed_epochs():
        nonlocal ts
        ts, losses = streamed.steps(ts, 0, 0, steps)
        jax.block_until_ready(losses)

    works = {"pipeline, 1 worker": pipeline(1), "pipeline, 2 workers": pipeline(2), "step alone": steps_alone,
             "streamed training": streamed_epochs}
    rates = {name: [] for name in works}
    for name, work in works.items():
        work()  # untimed: compilation, the page cache
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for name, work in works.items():
            rates[name].append(rate(steps * b, work))
        load.append(os.getloadavg()[0])
    for name, values in rates.items():
        print(f"{name:22s} {statistics.median(values):10,.0f} images/s (median of {args.rounds}; "
              f"{min(values):,.0f}-{max(values):,.0f})")
    print(report.machine_line(load))
    streamed.close()
    if args.out:
        report.write(args.out, "data_speed.json", load, source=str(source.path), records=len(source), batch=b,
                     images_per_second=rates)


if __name__ == "__main__":
    raise SystemExit(entry(main))
