"""Per-layer summary of a net: output shape, parameters, activation memory and FLOPs.

Shapes come from jax.eval_shape, so summarising VGG16 allocates no weights and spends no FLOPs.
A convolution's MACs count every kernel tap, taps on zero padding included (as Caffe, torchinfo and the
cs231n notes count); XLA's cost analysis skips padding taps, so it reports up to ~12% fewer FLOPs for padded nets.
"""
import math
from dataclasses import asdict, dataclass

import numpy as np

from .net import Net, count


@dataclass(frozen=True)
class Row:
    """One layer, per example: activations are its output's element count."""

    name: str
    type: str
    output_shape: tuple
    trainable: int
    non_trainable: int
    activations: int
    activation_bytes: int
    macs: int
    flops: int
    inplace: bool


@dataclass(frozen=True)
class Summary:
    """Per-layer rows and totals for one input shape, batch and dtype.

    forward_activation_bytes (per example): the input plus every output that needs a buffer of its own;
    elementwise layers (ReLU, BatchNorm, Scale, Dropout, Flatten) run in place, as Caffe's in-place layers,
    and add nothing. train_step_bytes (for `batch`): forward activations kept for the backward pass plus their
    gradients (2x), the weights with their gradients and one optimizer slot such as SGD momentum (3x trainable
    parameters), and the non-trainable statistics.
    """

    net: str
    input_shape: tuple
    batch: int
    dtype: str
    rows: tuple

    @property
    def trainable(self):
        return sum(r.trainable for r in self.rows)

    @property
    def non_trainable(self):
        return sum(r.non_trainable for r in self.rows)

    @property
    def macs(self):
        return sum(r.macs for r in self.rows)

    @property
    def flops(self):
        return sum(r.flops for r in self.rows)

    @property
    def itemsize(self):
        return np.dtype(self.dtype).itemsize

    @property
    def forward_activations(self):
        return math.prod(self.input_shape) + sum(r.activations for r in self.rows if not r.inplace)

    @property
    def forward_activation_bytes(self):
        return self.forward_activations * self.itemsize

    @property
    def train_step_bytes(self):
        params = (3 * self.trainable + self.non_trainable) * self.itemsize
        return 2 * self.batch * self.forward_activation_bytes + params

    def to_dict(self):
        totals = {k: getattr(self, k) for k in (
            "trainable", "non_trainable", "macs", "flops", "forward_activations", "forward_activation_bytes",
            "train_step_bytes")}
        totals["params"] = self.trainable + self.non_trainable
        totals["flops_per_batch"] = self.flops * self.batch
        return {"net": self.net, "input_shape": list(self.input_shape), "batch": self.batch, "dtype": self.dtype,
                "layers": [asdict(r) | {"output_shape": list(r.output_shape)} for r in self.rows], "totals": totals}

    def __str__(self):
        return format_table(self)


def summary(net: Net, input_shape=None, *, batch=1, dtype="float32") -> Summary:
    """Summarise `net` for a per-example input_shape (default net.input_shape), e.g. print(summary(net))."""
    dtype = np.dtype(dtype)
    shapes, rows = net.shapes(input_shape), []
    for s in shapes:
        macs, flops = s.layer.cost(s.in_shape, s.out_shape)
        acts = math.prod(s.out_shape)
        rows.append(Row(s.layer.name, type(s.layer).__name__, s.out_shape, count(s.params), count(s.state),
                        acts, acts * dtype.itemsize, macs, flops, s.layer.inplace))
    return Summary(net.name, shapes[0].in_shape, batch, dtype.name, tuple(rows))


def _human(n, unit=""):
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n}{unit}"


def _shape(shape):
    return str(tuple(shape))


def format_table(s: Summary) -> str:
    header = ("layer", "type", "output shape", "params", "non-train", "activations", "memory", "MACs", "FLOPs")
    body = [(r.name, r.type, _shape(r.output_shape), f"{r.trainable:,}", f"{r.non_trainable:,}",
             f"{r.activations:,}", _human(r.activation_bytes, "B"), _human(r.macs), _human(r.flops)) for r in s.rows]
    widths = [max(len(str(row[i])) for row in [header, *body]) for i in range(len(header))]
    align = ["<", "<", "<", ">", ">", ">", ">", ">", ">"]

    def line(cells):
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths)).rstrip()

    rule = "-" * len(line(header))
    total = s.trainable + s.non_trainable
    lines = [
        f"{s.net}: input {_shape(s.input_shape)}, {s.dtype}",
        rule, line(header), rule, *map(line, body), rule,
        f"Total params: {total:,}",
        f"Trainable params: {s.trainable:,}",
        f"Non-trainable params: {s.non_trainable:,}",
        f"Parameter memory: {_human(total * s.itemsize, 'B')}",
        f"Forward MACs / FLOPs per example: {s.macs:,} / {s.flops:,} ({_human(s.flops)}FLOPs)",
        f"Forward activations per example: {s.forward_activations:,} ({_human(s.forward_activation_bytes, 'B')}; "
        "in-place elementwise layers not counted)",
        f"Training step estimate, batch {s.batch}: {_human(s.train_step_bytes, 'B')} "
        "(2x forward activations + 3x trainable params)",
    ]
    return "\n".join(lines)
