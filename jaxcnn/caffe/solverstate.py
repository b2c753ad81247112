"""Caffe's solver snapshots, .solverstate files (caffe.proto's SolverState, binary): the iteration, the caffemodel
that holds the net's weights then (learned_net) and the solver's history blobs, as data. Which param each history
blob belongs to is the net's (jaxcnn.caffe.weights.param_blobs: every blob of every layer with blobs, in layer
order, BatchNorm's statistics included); what it holds is the solver type's (Caffe's sgd_solver.cpp and the others;
jaxcnn.train.caffe_start maps them to Optax's state). For a net of N such blobs, history holds:

    SGD, Nesterov   N momentum buffers h <- momentum h + lr lr_mult g (Caffe's update is w <- w - h)
    AdaGrad         N sums of squared gradients
    RMSProp         N running means of squared gradients (rms_decay)
    AdaDelta        N running means of squared gradients, then N of squared updates (momentum)
    Adam            N first moments m, then N second moments v

    >>> import numpy as np
    >>> from jaxcnn.caffe.solverstate import SolverState, read_solverstate, write_solverstate
    >>> write_solverstate(SolverState(500, "lenet_iter_500.caffemodel", (np.zeros((20, 1, 5, 5)), np.ones(20))),
    ...                   "lenet_iter_500.solverstate")
    >>> state = read_solverstate("lenet_iter_500.solverstate")
    >>> state.iter, state.learned_net, [h.shape for h in state.history]
    (500, 'lenet_iter_500.caffemodel', [(20, 1, 5, 5), (20,)])
"""
from dataclasses import dataclass
from pathlib import Path

from ..errors import CaffeFormatError, existing_file
from . import schema
from .blobs import blob_array, blob_proto

HISTORY_SETS = {"SGD": 1, "Nesterov": 1, "AdaGrad": 1, "RMSProp": 1, "AdaDelta": 2, "Adam": 2}
"""Caffe solver type -> history blobs per learnable blob (the sets follow each other, see the module docstring)."""


@dataclass(frozen=True)
class SolverState:
    """A .solverstate's contents. iter: optimizer updates done; learned_net: the caffemodel's path as written;
    history: float32 arrays in Caffe's layout and order; current_step: the multistep policy's stepvalues passed;
    path: the file it was read from (None for one made here)."""

    iter: int
    learned_net: str
    history: tuple
    current_step: int = 0
    path: str | None = None

    def learned_net_path(self) -> Path:
        """The caffemodel: learned_net as given if it exists, else beside the solverstate (its path relative to
        the solverstate's directory, then its name); FileNotFoundError naming both places otherwise."""
        here = Path(self.path).parent if self.path else Path(".")
        for candidate in (Path(self.learned_net), here / self.learned_net, here / Path(self.learned_net).name):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"{self.path}: learned_net {self.learned_net!r} not found (looked in the working "
                                f"directory and in {here})")


def read_solverstate(path) -> SolverState:
    """Read a binary .solverstate. FileNotFoundError when there is none; CaffeFormatError naming the file when it
    is not a SolverState (an HDF5 one, a text file) or a history blob is malformed."""
    path = existing_file(path, "solverstate")
    proto = schema.SolverState()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as e:  # protobuf's DecodeError and friends
        raise CaffeFormatError(str(path), f"not a binary Caffe SolverState ({type(e).__name__}: {e})") from e
    if not proto.HasField("iter") or proto.iter < 0:
        raise CaffeFormatError(str(path), "not a binary Caffe SolverState (no iter)")
    history = []
    for i, blob in enumerate(proto.history):
        try:
            history.append(blob_array(blob))
        except CaffeFormatError as e:
            raise CaffeFormatError(str(path), f"history blob {i}: {e.message}") from None
    return SolverState(int(proto.iter), proto.learned_net, tuple(history), int(proto.current_step), str(path))


def write_solverstate(state: SolverState, path) -> None:
    """Write `state` as a binary .solverstate that Caffe's `caffe train -snapshot` reads, whole or not at all."""
    from ..export import write_atomic
    proto = schema.SolverState(iter=state.iter, learned_net=state.learned_net, current_step=state.current_step)
    proto.history.extend(blob_proto(array) for array in state.history)
    write_atomic(path, proto.SerializeToString())
