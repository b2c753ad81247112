"""Grouped and depthwise convolution on the CPU (ops.conv_cpu): every form, in every direction, equals XLA's
feature_group_count convolution and PyTorch's conv2d, values and gradients, on odd shapes; the fixed rules; the
compiled size does not grow with the groups."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close
from jax.test_util import check_grads

from jaxcnn import ops
from jaxcnn.ops import conv_cpu
from jaxcnn.ops.conv import conv_geometry

GROUPED_CASES = {  # name: x shape, (KH, KW, C/groups, O), stride, padding, dilation
    "groups2": ((2, 7, 9, 6), (3, 2, 3, 4), 1, ((1, 0), (2, 1)), 1),
    "groups3_strided_dilated": ((3, 8, 9, 9), (2, 3, 3, 6), 2, 1, (1, 2)),
    "groups6": ((2, 6, 7, 12), (3, 3, 2, 6), (2, 1), "SAME", 1),  # more groups than PER_GROUP_MAX
    "depthwise": ((4, 9, 8, 5), (3, 3, 1, 5), 2, ((0, 2), (1, 0)), 1),
    "depthwise_multiplier2_dilated": ((3, 8, 9, 4), (3, 2, 1, 8), 1, ((1, 2), (2, 1)), 2),
    "depthwise_5x5": ((2, 11, 10, 3), (5, 5, 1, 3), (1, 2), 2, 1),
}


def case_args(rng, name, dtype=np.float64):
    """(x, w, b, stride, pads, dilation, groups) of a case, with explicit geometry."""
    x_shape, w_shape, stride, padding, dilation = GROUPED_CASES[name]
    _, pads, stride, dilation = conv_geometry(x_shape[1:], w_shape[:2], stride, padding, dilation)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in (x_shape, w_shape, w_shape[-1:]))
    return x, w, b, stride, pads, dilation, x_shape[-1] // w_shape[2]


def forms_for(pads):
    """Every form, but `wide_input` only with right padding (which it needs)."""
    return [name for name in conv_cpu.FORMS if name != "wide_input" or pads[1][1] >= 1]


def values_and_grads(conv, *args):
    """conv(*args[:-1]) and its gradients to each of those args for the cotangent args[-1], compiled as one
    function (op-by-op dispatch compiles every primitive on its own: slower)."""
    @jax.jit
    def run(g, *primals):
        y, pullback = jax.vjp(conv, *primals)
        return y, *pullback(g)

    return run(args[-1], *args[:-1])


def pytorch_values_and_grads(x, w, b, g, stride, pads, dilation, groups):
    """PyTorch's grouped conv2d (asymmetric padding as an explicit pad of the input) and its gradients for the
    cotangent g, in jaxcnn's layouts: (y, dx, dw[, db]) with db only when a bias b is given."""
    torch = pytest.importorskip("torch")
    tx, tw = (torch.tensor(a, requires_grad=True) for a in (x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1)))
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    (top, bottom), (left, right) = pads
    ty = torch.nn.functional.conv2d(torch.nn.functional.pad(tx, (left, right, top, bottom)), tw, tb, stride=stride,
                                    dilation=dilation, groups=groups)
    ty.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
    grads = (tx.grad.numpy().transpose(0, 2, 3, 1), tw.grad.numpy().transpose(2, 3, 1, 0))
    return ty.detach().numpy().transpose(0, 2, 3, 1), *grads, *(() if b is None else (tb.grad.numpy(),))


@pytest.mark.slow
@pytest.mark.parametrize("name", GROUPED_CASES)
def test_every_form_in_every_direction_equals_native(x64, rng, monkeypatch, name):
    """Each form computes all three directions (its transposes in the 'input' and 'weight' layouts give the
    gradients), with batch chunks of im2col_chunked and batch blocks of shifted's weight gradient of more than one
    image, but fewer than the batch."""
    monkeypatch.setattr(conv_cpu, "WEIGHT_BLOCKS", 2)
    x, w, _, stride, pads, dilation, _ = case_args(rng, name)
    monkeypatch.setattr(conv_cpu, "CHUNK_BYTES", 2 * conv_cpu._patch_bytes(x, w, stride, pads, dilation, 1))
    g = rng.standard_normal(conv_cpu.native(x, w, stride, pads, dilation).shape)
    expected = values_and_grads(lambda x, w: conv_cpu.native(x, w, stride, pads, dilation), x, w, g)
    for form in forms_for(pads):
        conv = functools.partial(conv_cpu.conv, stride=stride, pads=pads, dilation=dilation, forms=(form,) * 3)
        assert_close(values_and_grads(conv, x, w, g), expected, 1e-10)


QUICK = ("groups3_strided_dilated", "depthwise_multiplier2_dilated")  # the others in the slow suite


@pytest.mark.parametrize("name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow) for n in GROUPED_CASES])
def test_conv2d_cpu_lowering_equals_native_and_pytorch(x64, rng, name):
    """ops.conv2d with the fixed rules ('cpu') and with XLA's convolution ('native') against PyTorch's conv2d
    (asymmetric padding as an explicit pad of the input), values and gradients, in float64."""
    x, w, b, stride, pads, dilation, groups = case_args(rng, name)
    g = rng.standard_normal(conv_cpu.native(x, w, stride, pads, dilation).shape)
    theirs = pytorch_values_and_grads(x, w, b, g, stride, pads, dilation, groups)
    for lowering in ("cpu", "native"):
        conv = functools.partial(ops.conv2d, stride=stride, padding=pads, dilation=dilation, groups=groups,
                                 lowering=lowering)
        assert_close(values_and_grads(conv, x, w, b, g), theirs, 1e-10)


@pytest.mark.parametrize("name", QUICK)
def test_shifted_rows_output_equals_pytorch(x64, rng, name):
    """The output form shifted_rows (with shifted's transposes for the gradients, as the tuner pairs them) against
    PyTorch's grouped conv2d, values and gradients, in float64."""
    x, w, _, stride, pads, dilation, groups = case_args(rng, name)
    g = rng.standard_normal(conv_cpu.native(x, w, stride, pads, dilation).shape)
    theirs = pytorch_values_and_grads(x, w, None, g, stride, pads, dilation, groups)
    conv = functools.partial(conv_cpu.conv, stride=stride, pads=pads, dilation=dilation,
                             forms=("shifted_rows", "shifted", "shifted"))
    assert_close(values_and_grads(conv, x, w, g), theirs, 1e-10)


@pytest.mark.parametrize("name", ["groups3_strided_dilated", "depthwise_multiplier2_dilated"])
def test_float32_equals_pytorch_relative_to_magnitude(rng, name):
    """In float32 the CPU kernels (XLA's, YNNPACK's, PyTorch's) sum in orders and with FMA contractions that
    depend on the vector width (AVX2 or AVX-512) and the form: an element's error is a few roundings of the
    largest terms summed into it, not of the element itself, which may be near zero. So values and gradients are
    compared to 1e-5 of each array's largest magnitude (assert_close's default), which holds on any x86 CPU."""
    x, w, _, stride, pads, dilation, groups = case_args(rng, name, np.float32)
    g = rng.standard_normal(conv_cpu.native(x, w, stride, pads, dilation).shape).astype(np.float32)
    theirs = pytorch_values_and_grads(x, w, None, g, stride, pads, dilation, groups)
    conv = functools.partial(ops.conv2d, stride=stride, padding=pads, dilation=dilation, groups=groups,
                             lowering="cpu")
    assert_close(values_and_grads(conv, x, w, g), theirs, 1e-5)


@pytest.mark.slow
def test_depthwise_forward_mode_and_vmap(x64, rng):
    """The shifted form under a numerical gradient check in both modes (forward mode evaluates its 'weight'
    layout), and per-example gradients by vmap equal the native op's."""
    x, w, _, stride, pads, dilation, groups = case_args(rng, "depthwise_multiplier2_dilated")
    conv = functools.partial(ops.conv2d, stride=stride, padding=pads, dilation=dilation, groups=groups)
    check_grads(functools.partial(conv, lowering="cpu"), (x, w), order=1, modes=("fwd", "rev"), atol=1e-6,
                rtol=1e-6)
    per_example = {lowering: jax.vmap(jax.grad(lambda x, w: jnp.sum(conv(x[None], w, lowering=lowering) ** 2),
                                               argnums=1), in_axes=(0, None))(x, w)
                   for lowering in ("cpu", "native")}
    assert_close(per_example["cpu"], per_example["native"], 1e-10)


# ---------------------------------------------------------------------------------------------- rules

def abstract(x_shape, w_shape, stride=1, padding=1):
    x, w = jax.ShapeDtypeStruct(x_shape, jnp.float32), jax.ShapeDtypeStruct(w_shape, jnp.float32)
    _, pads, stride, dilation = conv_geometry(x_shape[1:], w_shape[:2], stride, padding)
    return x, w, stride, pads, dilation


@pytest.mark.parametrize("x_shape, w_shape, forms", [
    ((8, 56, 56, 128), (3, 3, 1, 128), ("shifted",) * 3),  # MobileNet v1's depthwise layer
    ((8, 28, 28, 16), (3, 3, 1, 32), ("shifted",) * 3),  # depthwise with channel multiplier 2
    ((8, 27, 27, 96), (5, 5, 48, 256), ("per_group",) * 3),  # AlexNet's conv2
    ((8, 56, 56, 128), (3, 3, 4, 128), ("shifted", "im2col_chunked", "im2col_chunked")),  # ResNeXt's 32 groups
    ((8, 28, 28, 256), (3, 3, 8, 256), ("im2col_chunked",) * 3),  # ... of 8 channels
    ((1, 720, 720, 256), (3, 3, 8, 256), ("native",) * 3),  # one image's patches over IM2COL_BYTES
    ((8, 14, 14, 64), (9, 9, 1, 64), ("im2col_chunked",) * 3),  # depthwise, too many taps for `shifted`
])
def test_fixed_rules_for_groups(x_shape, w_shape, forms):
    args = abstract(x_shape, w_shape)
    assert tuple(conv_cpu.form(d, None, *args).__name__ for d in conv_cpu.DIRECTIONS) == forms


def test_candidates_for_groups():
    """per_group for a few groups only, shifted for groups of few taps and channels, wide only for one group."""
    shapes = {"depthwise": ((8, 14, 14, 512), (3, 3, 1, 512)), "alexnet": ((8, 27, 27, 96), (5, 5, 48, 256)),
              "resnext": ((8, 56, 56, 128), (3, 3, 4, 128)), "rgb": ((8, 28, 28, 3), (3, 3, 3, 16), 1, 0),
              "one": ((8, 27, 27, 48), (5, 5, 48, 128))}
    for direction in conv_cpu.DIRECTIONS:
        candidates = {name: set(conv_cpu.candidates(direction, *abstract(*s))) for name, s in shapes.items()}
        assert {name for name, c in candidates.items() if "per_group" in c} == {"alexnet"}  # not 512 convolutions
        assert {name for name, c in candidates.items() if "shifted" in c} == {"depthwise", "resnext"}
        assert {name for name, c in candidates.items() if "shifted_rows" in c} == (  # an output form only
            {"depthwise", "resnext"} if direction == "forward" else set())
        assert {name for name, c in candidates.items() if "wide" in c} == {"rgb", "one"}


@pytest.mark.parametrize("w_in, multiplier", [(1, 1), (1, 2), (4, 1)])
def test_compiled_size_does_not_grow_with_the_groups(w_in, multiplier):
    """The 'cpu' lowering of a grouped convolution with 8 and with 256 groups traces to as many operations, in
    training: compile time is bounded whatever the groups (the per-group form, which is not, is no fixed rule
    beyond PER_GROUP_MAX groups)."""
    def size(groups):
        x = jnp.ones((2, 6, 6, groups * w_in))
        w = jnp.ones((3, 3, w_in, groups * w_in * multiplier))
        loss = lambda x, w: jnp.sum(ops.conv2d(x, w, padding=1, groups=groups, lowering="cpu"))  # noqa: E731
        return len(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(x, w).eqns)

    assert size(256) == size(8)
