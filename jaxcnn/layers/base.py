"""The layer contract: Layer, its errors, and the traits that tools read instead of testing a layer's class.

Traits describe a layer in evaluation (train=False); tests/test_traits.py checks each against the forward of
every layer class:
  elementwise        one function applied to each element on its own (ReLU, Dropout): any shape, any layout
  stochastic         random in training, with the rng it is given (Dropout)
  batch_statistics   in training it normalises with the batch's statistics and updates its state (BatchNorm)
  window(shape)      the layer as a sliding window over (H, W), or None where it does not slide
  as_sliding(...)    its form in a head that jaxcnn.convert.fc_to_conv turns into convolutions
  probe_input(c)     an input with c channels on which init makes the params of any such input (jaxcnn.nnx)
  affine             y = x * factor + shift per channel (the last axis), as affine_terms gives them (BatchNorm,
                     Scale, Bias)
  absorbing()        the layer that also computes such a map of its output, with the params absorb makes (Conv,
                     Dense), or None (jaxcnn.fold folds a BatchNorm into the layer before it with these)
and inplace, arity and multi_output (see jaxcnn.layers).
"""
import contextlib
import math
from dataclasses import dataclass, field
from typing import ClassVar, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from ..errors import LayerError
from ..ops.geometry import Pair

Shape = tuple[int, ...]


@contextlib.contextmanager
def named(layer):
    """Re-raise ValueError / KeyError / TypeError from inside `layer` as a LayerError that names it."""
    try:
        yield
    except LayerError:
        raise
    except (ValueError, TypeError) as e:
        raise LayerError(str(e), layer) from e
    except KeyError as e:
        raise LayerError(f"missing parameter or state {e}", layer) from e


def positive_int(value, what):
    """value if it is a positive int, else ValueError naming `what`."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return value


def axis_index(axis, rank):
    """A per-example axis (negative counts from the end) -> its index in the batched array, or ValueError."""
    if not -rank <= axis < rank:
        raise ValueError(f"axis {axis} is out of range for a per-example input of rank {rank}")
    return axis % rank + 1


def along_channels(axis, shape) -> "Window | None":
    """The window of a layer that works along a per-example `axis` of `shape`, each position on its own where
    that is the last axis (channels): POINTWISE there, None along H or W."""
    return POINTWISE if axis_index(axis, len(shape)) == len(shape) else None


class Window(NamedTuple):
    """A layer as a sliding window over the (H, W) of its input, at one input shape: output position (i, j) is
    one function, the same at every position, of the input rows i * stride[0] - pads[0][0] + [0, kernel[0]) and
    the columns likewise, reading zeros where they fall outside the input. pads are ((top, bottom), (left, right)),
    ceil rounding's overhang included, so that the output has (H + top + bottom - kernel[0]) // stride[0] + 1 rows."""

    kernel: Pair
    stride: Pair
    pads: tuple[Pair, Pair]

    @property
    def padded(self) -> bool:
        """Whether the windows reach outside the input (padding or overhang)."""
        return any(p for side in self.pads for p in side)


POINTWISE = Window((1, 1), (1, 1), ((0, 0), (0, 0)))  # output (i, j) from input (i, j) only


@dataclass(frozen=True)
class Layer:
    """Base class. Subclasses set `input_rank` and their traits, normalise their fields in `configure` and
    implement `create` (params, state) and `forward`."""

    name: str
    lr_mult: Mapping[str, float] = field(default_factory=dict, kw_only=True, hash=False)
    decay_mult: Mapping[str, float] = field(default_factory=dict, kw_only=True, hash=False)

    input_rank: ClassVar[int | None] = None  # per-example rank the layer needs (3: H, W, C; 1: features)
    inplace: ClassVar[bool] = False  # may overwrite its input (Caffe's in-place layers): as many outputs as inputs
    arity: ClassVar[int | None] = 1  # 1: one input array; None: a tuple of one or more (each of input_rank)
    multi_output: ClassVar[bool] = False  # True: forward returns a tuple of `num_outputs` arrays
    elementwise: ClassVar[bool] = False  # y = f(x) element by element, one f for all (no per-channel parameters)
    stochastic: ClassVar[bool] = False  # random in training (needs rng there)
    batch_statistics: ClassVar[bool] = False  # in training: the batch's statistics, and the state updated
    affine: ClassVar[bool] = False  # y = x * factor + shift per channel (the last axis): affine_terms

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise LayerError(f"a layer name must be a non-empty string, got {self.name!r}")
        with named(self):
            object.__setattr__(self, "lr_mult", dict(self.lr_mult))
            object.__setattr__(self, "decay_mult", dict(self.decay_mult))
            self.configure()

    def _set(self, **values):
        """Store normalised field values (the dataclass is frozen)."""
        for k, v in values.items():
            object.__setattr__(self, k, v)

    def _error(self, message) -> LayerError:
        return LayerError(message, self)

    def configure(self) -> None:
        """Check and normalise the configuration; raise ValueError for a bad one."""

    @property
    def num_outputs(self) -> int:
        """How many arrays the layer returns (1 unless multi_output)."""
        return 1

    def init(self, rng: jax.Array, input_shape: Shape) -> tuple[Shape, dict, dict]:
        """Make the layer's parameters and state for one input shape.

        Args:
          rng: a jax.random key for the fillers.
          input_shape: per-example input shape, (H, W, C) or (F,).

        Returns:
          (output_shape, params, state): the per-example output shape and two dicts of arrays.
        """
        input_shape = self.check_shape(input_shape)
        with named(self):
            params, state = self.create(rng, input_shape)
        return self.output_shape(params, state, input_shape), params, state

    def abstract_init(self, input_shape: Shape) -> tuple[Shape, dict, dict]:
        """init without making arrays: (output_shape, params, state) with ShapeDtypeStructs for arrays."""
        input_shape = self.check_shape(input_shape)
        with named(self):
            params, state = jax.eval_shape(lambda key: self.create(key, input_shape), jax.random.key(0))
        return self.output_shape(params, state, input_shape), params, state

    def check_shape(self, input_shape) -> Shape:
        """The per-example input shape as a tuple (a tuple of them for arity None), or LayerError if a rank is
        not the layer's."""
        if self.arity == 1:
            return self._check_rank(tuple(input_shape))
        try:
            shapes = tuple(tuple(s) for s in input_shape)
        except TypeError:
            shapes = ()
        if not shapes:
            raise self._error(f"expected a tuple of per-example input shapes, got {input_shape!r}")
        return tuple(self._check_rank(s) for s in shapes)

    def _check_rank(self, input_shape):
        if self.input_rank is not None and len(input_shape) != self.input_rank:
            want = "(H, W, C)" if self.input_rank == 3 else "(features,); add a Flatten layer before it"
            raise self._error(f"expected a per-example input shape {want}, got {input_shape}")
        return input_shape

    def output_shape(self, params, state, input_shape: Shape) -> Shape:
        """Per-example output shape for params and state (arrays or ShapeDtypeStructs), computed abstractly; a
        tuple of shapes for a multi-output layer."""
        def spec(shape):
            return jax.ShapeDtypeStruct((1, *shape), jnp.float32)

        x = spec(input_shape) if self.arity == 1 else tuple(map(spec, input_shape))
        y = jax.eval_shape(lambda p, s, x: self.apply(p, s, x)[0], params, state, x)
        if self.multi_output:
            return tuple(tuple(v.shape[1:]) for v in y)
        return tuple(y.shape[1:])

    def apply(self, params: dict, state: dict, x: jax.Array, *, train: bool = False, rng: jax.Array | None = None,
              lowering: str = "auto") -> tuple[jax.Array, dict]:
        """Run the layer on a batch.

        Args:
          params, state: the dicts init made (or trained versions of them).
          x: (N, *input_shape), floating point; for arity None a tuple of such arrays with the same N.
          train: training mode (batch statistics, dropout).
          rng: a jax.random key; needed by Dropout in training.
          lowering: 'auto', 'native' or 'cpu' (jaxcnn.ops.lowering).

        Returns:
          (y, new_state): y (N, *output_shape) (a tuple of arrays for a multi-output layer) and the updated
          state (unchanged outside training).
        """
        with named(self):
            if self.arity == 1:
                xs = [self._check_input(x)]
            elif isinstance(x, (tuple, list)) and x:
                xs = [self._check_input(v) for v in x]
                if len({v.shape[0] for v in xs}) > 1:
                    raise ValueError(f"inputs have different batch sizes: {[tuple(v.shape) for v in xs]}")
            else:
                raise ValueError(f"expected a tuple of one or more input arrays, got {type(x).__name__}")
            shapes = xs[0].shape[1:] if self.arity == 1 else tuple(v.shape[1:] for v in xs)
            self.check_params(params, shapes)
            dtype = next((p.dtype for p in jax.tree.leaves(params)), None)
            if dtype is not None:
                xs = [v if v.dtype == dtype else v.astype(dtype) for v in xs]
            return self.forward(params, state, xs[0] if self.arity == 1 else tuple(xs), train=train, rng=rng,
                                lowering=lowering)

    def _check_input(self, x):
        x = jnp.asarray(x)
        if x.ndim == 0:
            raise ValueError("expected a batched input (N, ...), got a scalar")
        if self.input_rank is not None and x.ndim != self.input_rank + 1:
            raise ValueError(f"expected a {self.input_rank + 1}-d batched input, got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"empty batch: input shape {tuple(x.shape)}")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"expected a floating-point input, got {x.dtype} (scale or cast it to float first)")
        return x

    def check_params(self, params, input_shape: Shape) -> None:
        """ValueError unless params have exactly the names and shapes create() gives for input_shape."""
        if not isinstance(params, Mapping):
            raise ValueError(f"params must be a dict, got {type(params).__name__}")
        want = jax.eval_shape(lambda: self.create(jax.random.key(0), tuple(input_shape))[0])
        missing, extra = sorted(set(want) - set(params)), sorted(set(params) - set(want))
        if missing or extra:
            raise ValueError(f"params have {sorted(params) or 'none'}, the layer needs {sorted(want) or 'none'}")
        for k, spec in want.items():
            if tuple(jnp.shape(params[k])) != spec.shape:
                raise ValueError(f"parameter {k!r} has shape {tuple(jnp.shape(params[k]))}, but on a per-example "
                                 f"input {tuple(input_shape)} the layer needs {spec.shape}")

    def create(self, rng, input_shape: Shape) -> tuple[dict, dict]:
        """(params, state) for a per-example input shape (already checked for rank)."""
        return {}, {}

    def forward(self, params, state, x, *, train, rng, lowering):
        raise NotImplementedError

    def cost(self, in_shape: Shape, out_shape: Shape) -> tuple[int, int]:
        """Forward (multiply-accumulates, FLOPs) for one example; elementwise work counts one FLOP."""
        return 0, math.prod(out_shape)

    def mults(self, param_name: str) -> tuple[float, float]:
        """(lr_mult, decay_mult) of one parameter."""
        return self.lr_mult.get(param_name, 1.0), self.decay_mult.get(param_name, 1.0)

    # -- traits read by tools ------------------------------------------------------------------------------------
    def window(self, input_shape: Shape) -> Window | None:
        """The layer as a sliding window over the (H, W) of a per-example input shape (a tuple of shapes for
        several inputs; a (features,) input counts as a 1x1 map), or None where the layer does not slide: its
        output depends on where its input lies or on all of it (Dense, Local, Flatten, global pooling), so a
        larger input makes it another function. jaxcnn.convert slides a net up to its first such layer.
        The base class knows POINTWISE for an elementwise layer; any other class declares its own."""
        if self.elementwise:
            return POINTWISE
        raise self._error("not a layer whose sliding stride is known (its class declares no window)")

    def as_sliding(self, params: dict, input_shape: Shape, window: Pair) -> tuple["Layer | None", dict]:
        """This layer inside a head that fc_to_conv converts -> (layer, params), or (None, {}) to drop it.

        There the layer reads a map of `window` (H, W) positions with size(input_shape) / (H * W) channels that
        holds its per-example input flattened row-major. The layer returned must give this layer's output,
        flattened likewise, on that map, and on a larger map the same for each window (stride 1). The base class
        keeps a layer whose window on that map is POINTWISE: an elementwise one on any map, another (per-channel
        parameters, mixed channels) where those channels are its input's last axis. LayerError otherwise.
        """
        if self.arity == 1 and not self.multi_output:
            channels = math.prod(input_shape) // math.prod(window)
            try:
                pointwise = self.window((*window, channels)) == POINTWISE
            except ValueError:  # no window on that map, or none declared
                pointwise = False
            if pointwise:
                if self.elementwise or channels == input_shape[-1]:
                    return self, params
                raise self._error(f"a per-channel layer on a {tuple(input_shape)} input inside the head cannot be "
                                  "converted; only on a flat (features,) input after a Dense or Local")
        raise self._error("cannot be converted; from the first layer that does not slide (Flatten, Dense, Local, "
                          "global pooling) on, only such layers, elementwise layers, and per-channel ones on a flat "
                          "input may follow")

    def probe_input(self, channels: int) -> Shape | None:
        """A small per-example input with `channels` channels on which init makes the params that every input
        with those channels gets (an NNX module, told channels only, makes its params there); None when they
        depend on more (a Local's on (H, W)). The base class: (channels,) for a layer of any rank."""
        return (channels,) if self.input_rank != 3 and self.arity == 1 else None

    def affine_terms(self, params: dict, state: dict) -> tuple[jax.Array, jax.Array]:
        """For an `affine` layer: (factor, shift), each (C,), with y = x * factor + shift along the last axis."""
        raise self._error("not a per-channel affine map (its class is not affine)")

    def absorbing(self) -> "Layer | None":
        """The layer (of this one's name) computing this one's output times a per-output-channel factor plus a
        shift, with the params `absorb` makes; None (the base class) where no such layer is known."""
        return None

    def absorb(self, params: dict, factor: jax.Array, shift: jax.Array) -> dict:
        """The params of absorbing() for this layer's params followed by y * factor + shift, factor and shift
        (C,) along the last axis of the output."""
        raise self._error("cannot take a per-channel affine map of its output into its params")
