"""Per-layer summary of a net: output shape, parameters, activation memory and FLOPs.

Shapes come from jax.eval_shape, so summarising VGG16 allocates no weights and spends no FLOPs.
A convolution's MACs count every kernel tap, taps on zero padding included (as Caffe, torchinfo and the
cs231n notes count); XLA's cost analysis skips padding taps, so it reports up to ~12% fewer FLOPs for padded nets.
"""
import math
from dataclasses import asdict, dataclass

import numpy as np

from .net import Graph, count


@dataclass(frozen=True)
class Row:
    """One layer, per example: activations are its outputs' element count; output_shape is a tuple of shapes
    for a layer with several outputs; inputs names the blobs it reads."""

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
    inputs: tuple = ()


@dataclass(frozen=True)
class Summary:
    """Per-layer rows and totals for one input shape, batch and dtype.

    forward_activation_bytes (per example): the inputs plus every output that needs a buffer of its own;
    elementwise layers (ReLU, BatchNorm, Scale, Dropout, Flatten) run in place, as Caffe's in-place layers,
    and add nothing, unless a later layer still reads their input (a branch). input_shape: one shape, or a
    dict {blob: shape} for a net with several inputs; branched: whether to show each layer's input blobs.
    train_step_bytes (for `batch`): forward activations kept for the backward pass plus their
    gradients (2x), the weights with their gradients and one optimizer slot such as SGD momentum (3x trainable
    parameters), and the non-trainable statistics.
    """

    net: str
    input_shape: tuple
    batch: int
    dtype: str
    rows: tuple
    branched: bool = False

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
        inputs = self.input_shape.values() if isinstance(self.input_shape, dict) else [self.input_shape]
        return sum(map(math.prod, inputs)) + sum(r.activations for r in self.rows if not r.inplace)

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
        shape = ({k: list(v) for k, v in self.input_shape.items()} if isinstance(self.input_shape, dict)
                 else list(self.input_shape))
        return {"net": self.net, "input_shape": shape, "batch": self.batch, "dtype": self.dtype,
                "layers": [asdict(r) | {"output_shape": _listed(r.output_shape), "inputs": list(r.inputs)}
                           for r in self.rows], "totals": totals}

    def __str__(self):
        return format_table(self)


def summary(net: Graph, input_shape=None, *, batch=1, dtype="float32") -> Summary:
    """Summarise `net` (a Net or any Graph) for a per-example input_shape (default the net's; a dict {blob:
    shape} for several input blobs), e.g. print(summary(net))."""
    dtype = np.dtype(dtype)
    shapes, rows = net.shapes(input_shape), []
    read_later = _read_later(net)
    for i, s in enumerate(shapes):
        macs, flops = s.layer.cost(s.in_shape, s.out_shape)
        outs = s.out_shape if s.layer.multi_output else (s.out_shape,)
        acts = sum(map(math.prod, outs))
        inplace = s.layer.inplace and not ((set(s.inputs) - set(s.outputs)) & read_later[i])
        rows.append(Row(s.layer.name, type(s.layer).__name__, s.out_shape, count(s.params), count(s.state),
                        acts, acts * dtype.itemsize, macs, flops, inplace, s.inputs))
    inputs = net.input_shapes(input_shape)
    shape = next(iter(inputs.values())) if len(inputs) == 1 else inputs
    return Summary(net.name, shape, batch, dtype.name, tuple(rows), not net.is_chain)


def _read_later(net):
    """[set of blobs that layers after layer i read, before anything writes them again] for each i: a layer
    may overwrite its input in place only if it is not among them (or the layer writes that blob itself)."""
    after, live = [], set()
    for node in reversed(net.nodes):
        after.append(set(live))
        live -= set(node.outputs)
        live |= set(node.inputs)
    return after[::-1]


def _listed(shape):
    return [list(s) for s in shape] if shape and isinstance(shape[0], tuple) else list(shape)


def _human(n, unit=""):
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n}{unit}"


def _shape(shape):
    if isinstance(shape, dict):
        return ", ".join(f"{k} {tuple(v)}" for k, v in shape.items())
    if shape and isinstance(shape[0], tuple):
        return " ".join(str(tuple(s)) for s in shape)
    return str(tuple(shape))


def format_table(s: Summary) -> str:
    """The summary as a text table; a branched net gets an `inputs` column naming the blobs each layer reads."""
    header = ("layer", "type", "output shape", "params", "non-train", "activations", "memory", "MACs", "FLOPs")
    body = [(r.name, r.type, _shape(r.output_shape), f"{r.trainable:,}", f"{r.non_trainable:,}",
             f"{r.activations:,}", _human(r.activation_bytes, "B"), _human(r.macs), _human(r.flops)) for r in s.rows]
    align = ["<", "<", "<", ">", ">", ">", ">", ">", ">"]
    if s.branched:
        header, align = (*header[:2], "inputs", *header[2:]), [*align[:2], "<", *align[2:]]
        body = [(*b[:2], ", ".join(r.inputs), *b[2:]) for b, r in zip(body, s.rows)]
    widths = [max(len(str(row[i])) for row in [header, *body]) for i in range(len(header))]

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
