"""Every 'cpu' lowering against the 'native' one (XLA's own ops), forward and gradient, on odd shapes; the policy."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_close
from jax import lax
from jax.test_util import check_grads

from jaxcnn import ops, zoo
from jaxcnn.ops import conv_cpu, lowering
from jaxcnn.ops.conv import conv_geometry
from jaxcnn.train import Trainer


def f64(rng, *shape):
    return jnp.asarray(rng.standard_normal(shape), jnp.float64)


def assert_lowerings_agree(op, args, rng, rtol=1e-10):
    """op(*args, lowering='cpu') equals lowering='native', and so do the gradients to every arg of
    <op(*args), a random cotangent>."""
    cotangent = f64(rng, *jax.eval_shape(op, *args).shape)

    @functools.partial(jax.jit, static_argnums=0)
    def value_and_grads(name):
        fn = functools.partial(op, lowering=name)
        loss = lambda *a: jnp.vdot(fn(*a), cotangent)  # noqa: E731
        return fn(*args), jax.grad(loss, argnums=tuple(range(len(args))))(*args)

    assert_close(value_and_grads("cpu"), value_and_grads("native"), rtol)


# ---------------------------------------------------------------------------------------------- policy

def test_auto_resolves_from_the_devices():
    x = jax.device_put(jnp.ones((1, 2, 2, 1)), jax.devices("cpu")[0])
    assert lowering.resolve("auto", x) == "cpu"  # a concrete array: its device's platform
    default = lowering.for_platform("auto", jax.default_backend())  # abstract (inside jit): the default backend
    assert lowering.resolve("auto", jax.ShapeDtypeStruct(x.shape, x.dtype)) == default
    assert lowering.resolve("native", x) == "native" and lowering.resolve("cpu", x) == "cpu"
    assert [lowering.for_platform("auto", p) for p in ("cpu", "gpu", "tpu")] == ["cpu", "native", "native"]
    assert lowering.for_platform("cpu", "gpu") == "cpu"  # an explicit choice is kept on any platform
    with pytest.raises(ValueError, match="must be one of 'auto', 'native', 'cpu' or a Tuned lowering, got 'fast'"):
        ops.conv2d(jnp.ones((1, 3, 3, 1)), jnp.ones((2, 2, 1, 1)), lowering="fast")


def test_the_lowering_is_an_explicit_static_argument():
    """Each lowering is its own trace: a jitted function taking it as a static argument compiles both, and no
    setting made between calls changes what an existing trace computes."""
    x = jnp.ones((1, 4, 4, 1))
    pool = jax.jit(lambda x, lowering: ops.max_pool(x, 2, lowering=lowering), static_argnums=1)
    assert "reduce_window" in pool.lower(x, "native").as_text()
    assert "reduce_window" not in pool.lower(x, "cpu").as_text()
    auto_is_native = jax.default_backend() != "cpu"
    assert ("reduce_window" in pool.lower(x, "auto").as_text()) == auto_is_native


def test_net_and_trainer_pass_their_lowering_to_every_layer(lenet_caffe_init):
    net, params, state = lenet_caffe_init
    x = jnp.ones((2, 28, 28, 1))
    hlo = {name: jax.jit(lambda p: net.apply(p, state, x, lowering=name)[0]).lower(params).as_text()
           for name in ("native", "cpu")}
    assert "reduce_window" in hlo["native"] and "reduce_window" not in hlo["cpu"]
    cpu_mesh = jax.sharding.Mesh(np.asarray(jax.devices("cpu")[:1]), ("data",))
    trainer = Trainer(net, optax.sgd(0.1), batch_size=2, preprocess=lambda x: x, mesh=cpu_mesh)
    assert trainer.lowering == "cpu"  # 'auto' resolved from the mesh's devices
    assert Trainer(net, optax.sgd(0.1), batch_size=2, preprocess=lambda x: x, mesh=cpu_mesh,
                   lowering="native").lowering == "native"


# ---------------------------------------------------------------------------------------------- conv2d

CONV_CASES = [  # x shape, (KH, KW, C/groups, O), stride, padding, dilation, groups
    ((2, 7, 9, 3), (3, 2, 3, 4), 1, "VALID", 1, 1),
    ((2, 8, 7, 18), (3, 3, 18, 5), 1, "SAME", 1, 1),  # >= 16 channels: the wide forward
    ((2, 5, 6, 16), (4, 4, 16, 3), 1, "VALID", 1, 1),  # a kernel nearly as large as the input: im2col forward
    ((1, 9, 10, 2), (2, 3, 2, 3), 3, "SAME", 1, 1),
    ((2, 6, 5, 4), (3, 3, 2, 4), (2, 1), 2, 1, 2),
    ((3, 5, 8, 3), (3, 4, 1, 6), (1, 3), (1, 2), 1, 3),
    ((2, 7, 6, 32), (3, 3, 16, 4), 2, ((0, 2), (1, 0)), 1, 2),
    ((2, 9, 8, 17), (3, 2, 17, 3), 1, "SAME", (2, 1), 1),
    ((1, 11, 10, 2), (3, 3, 2, 2), 2, ((1, 2), (2, 1)), 2, 1),
    ((2, 8, 7, 1), (3, 3, 1, 4), 1, ((1, 0), (0, 2)), (1, 2), 1),  # one input channel: the wide weight gradient
]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", CONV_CASES)
def test_conv2d_cpu_equals_native(x64, rng, x_shape, w_shape, stride, padding, dilation, groups):
    args = (f64(rng, *x_shape), f64(rng, *w_shape), f64(rng, w_shape[-1]))
    op = functools.partial(ops.conv2d, stride=stride, padding=padding, dilation=dilation, groups=groups)
    assert_lowerings_agree(op, args, rng)


@pytest.mark.parametrize("form", [conv_cpu.wide, conv_cpu.wide_input, conv_cpu.im2col, conv_cpu.im2col_chunked,
                                  conv_cpu.shifted])
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation", [  # right padding >= 1 for wide_input
    ((4, 7, 9, 3), (3, 2, 3, 4), (2, 1), ((1, 0), (0, 2)), (1, 2)),
    ((6, 5, 5, 2), (3, 3, 2, 3), 1, ((0, 0), (0, 1)), 1),
    ((3, 6, 7, 5), (2, 3, 5, 2), 3, "SAME", 1),
])
@pytest.mark.slow
def test_each_conv_form_and_its_transposes_equal_native(x64, rng, form, x_shape, w_shape, stride, padding,
                                                        dilation, monkeypatch):
    monkeypatch.setattr(conv_cpu, "CHUNK_BYTES", 3000)  # batch chunks of one image, and of two (6 x 5 x 5)
    x, w = f64(rng, *x_shape), f64(rng, *w_shape)
    _, pads, stride, dilation = conv_geometry(x_shape[1:], w_shape[:2], stride, padding, dilation)
    conv = lambda form: lambda x, w: form(x, w, stride, pads, dilation)  # noqa: E731
    y, pullback = jax.vjp(conv(form), x, w)
    y_native, pullback_native = jax.vjp(conv(conv_cpu.native), x, w)
    g = f64(rng, *y.shape)
    assert_close((y, pullback(g)), (y_native, pullback_native(g)), 1e-10)


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, form", [
    ((2, 8, 7, 3), (3, 3, 3, 5), 1, 1, conv_cpu.native),  # few input channels
    ((2, 8, 7, 18), (3, 3, 18, 5), 2, 1, conv_cpu.native),  # strided
    ((2, 8, 7, 18), (3, 3, 18, 5), 1, 1, conv_cpu.wide),
    ((1, 8, 65, 18), (3, 3, 18, 5), 1, 1, conv_cpu.native),  # wider than WIDE_MAX_WIDTH
    ((1, 12, 12, 32), (7, 7, 32, 8), 1, 0, conv_cpu.im2col),  # fc6 as a convolution, slid over a larger map
])
def test_conv_forward_form(x_shape, w_shape, stride, padding, form):
    x, w = jax.ShapeDtypeStruct(x_shape, jnp.float32), jax.ShapeDtypeStruct(w_shape, jnp.float32)
    _, pads, stride, dilation = conv_geometry(x_shape[1:], w_shape[:2], stride, padding)
    assert conv_cpu.forward_form(x, w, stride, pads, dilation) is form


@pytest.mark.parametrize("padding, form", [(((1, 2), (1, 1)), conv_cpu.wide_input),
                                           (((1, 2), (1, 0)), conv_cpu.native)])
def test_conv_gradients_without_im2col_for_large_patches(x64, rng, monkeypatch, padding, form):
    x, w = f64(rng, 2, 6, 6, 3), f64(rng, 3, 3, 3, 2)
    args = (x, w, (1, 1), padding, (1, 1))
    assert conv_cpu.input_form(*args) is conv_cpu.im2col
    assert conv_cpu.weight_form(*args) is conv_cpu.im2col_chunked
    monkeypatch.setattr(conv_cpu, "IM2COL_BYTES", 0)
    monkeypatch.setattr(conv_cpu, "CHUNK_BYTES", 0)
    assert conv_cpu.input_form(*args) is form
    assert conv_cpu.weight_form(*args) is form
    assert_lowerings_agree(functools.partial(ops.conv2d, padding=padding), (x, w), rng)


@pytest.mark.parametrize("x_shape, w_shape, padding, form", [
    ((256, 12, 12, 20), (5, 5, 20, 50), 0, conv_cpu.im2col),  # LeNet's conv2: 33 MB of small patches
    ((1024, 12, 12, 20), (5, 5, 20, 50), 0, conv_cpu.native),  # 131 MB: over IM2COL_BYTES
    ((8, 27, 27, 48), (5, 5, 48, 128), 2, conv_cpu.wide_input),  # AlexNet's conv2 group: 3.5 MB per image
])
def test_conv_input_gradient_form(x_shape, w_shape, padding, form):
    x, w = jax.ShapeDtypeStruct(x_shape, jnp.float32), jax.ShapeDtypeStruct(w_shape, jnp.float32)
    _, pads, stride, dilation = conv_geometry(x_shape[1:], w_shape[:2], 1, padding)
    assert conv_cpu.input_form(x, w, stride, pads, dilation) is form


def test_conv_weight_gradient_of_single_channel_input_is_wide():
    x, w = jax.ShapeDtypeStruct((8, 28, 28, 1), jnp.float32), jax.ShapeDtypeStruct((5, 5, 1, 20), jnp.float32)
    assert conv_cpu.weight_form(x, w, (1, 1), ((0, 0), (0, 0)), (1, 1)) is conv_cpu.wide


@pytest.mark.slow
def test_conv2d_cpu_forward_mode_and_vmap(x64, rng):
    x, w = f64(rng, 2, 6, 5, 3), f64(rng, 3, 3, 3, 4)
    conv = functools.partial(ops.conv2d, padding="SAME", lowering="cpu")
    check_grads(conv, (x, w), order=1, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)
    per_example = jax.vmap(jax.grad(lambda x, w: jnp.sum(conv(x[None], w) ** 2), argnums=1), in_axes=(0, None))
    native = jax.vmap(jax.grad(lambda x, w: jnp.sum(ops.conv2d(x[None], w, padding="SAME", lowering="native") ** 2),
                               argnums=1), in_axes=(0, None))
    assert_close(per_example(x, w), native(x, w), 1e-10)


# ---------------------------------------------------------------------------------------------- max_pool

POOL_CASES = [  # x shape, kernel, stride, padding, ceil_mode
    ((2, 8, 8, 3), 2, None, 0, False),
    ((2, 9, 7, 2), (2, 3), None, 0, False),  # non-overlapping windows, a remainder that no window reads
    ((1, 7, 8, 2), 3, 3, 1, True),  # non-overlapping, padded, the last window overhanging
    ((2, 7, 9, 2), 3, 2, 0, True),
    ((1, 9, 8, 2), (3, 2), (2, 3), ((1, 0), (0, 1)), True),
    ((2, 6, 7, 3), 3, 1, 1, False),
    ((2, 11, 10, 1), (2, 4), (3, 2), 1, True),
    ((3, 5, 5, 2), 5, 1, 0, False),
]


# The native max-pool gradient is exact on the CPU; on a GPU, JAX computes some float64 reduce_window max
# derivatives at reduced precision ("missing XLA support for pair-reductions", its warning says): 1e-6 there.
NATIVE_POOL_RTOL = 0 if jax.default_backend() == "cpu" else 1e-6


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("x_shape, kernel, stride, padding, ceil_mode", POOL_CASES)
def test_max_pool_cpu_equals_native(x64, rng, x_shape, kernel, stride, padding, ceil_mode, ties):
    """Ties (values from {0, 1, 2}, as after ReLU) route the gradient to the first maximum, as native does."""
    x = jnp.asarray(rng.integers(0, 3, x_shape), jnp.float64) if ties else f64(rng, *x_shape)
    op = functools.partial(ops.max_pool, kernel=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
    assert_lowerings_agree(op, (x,), rng, rtol=NATIVE_POOL_RTOL)


@pytest.mark.slow
def test_max_pool_cpu_forward_mode_and_vmap(x64, rng):
    x = f64(rng, 2, 7, 7, 2)
    pool = functools.partial(ops.max_pool, kernel=3, stride=2, ceil_mode=True)
    t = f64(rng, *x.shape)
    rtol = max(NATIVE_POOL_RTOL, 1e-10)
    assert_close(jax.jvp(functools.partial(pool, lowering="cpu"), (x,), (t,)),
                jax.jvp(functools.partial(pool, lowering="native"), (x,), (t,)), rtol)
    grads = lambda low: jax.vmap(jax.grad(lambda x: jnp.sum(pool(x[None], lowering=low) ** 3)))(x)  # noqa: E731
    assert_close(grads("cpu"), grads("native"), rtol)


# ---------------------------------------------------------------------------------------------- local2d

@pytest.mark.parametrize("x_shape, kernel, out, stride, padding, bias", [
    ((2, 5, 6, 3), (3, 2), (3, 5), 1, 0, (3, 5, 4)),
    ((3, 7, 7, 2), 3, (3, 3), 2, 0, (4,)),
    ((2, 6, 5, 4), (2, 3), (4, 2), (2, 3), ((1, 2), (0, 2)), None),
])
def test_local2d_cpu_equals_native(x64, rng, x_shape, kernel, out, stride, padding, bias):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    args = (f64(rng, *x_shape), f64(rng, *out, kh, kw, x_shape[-1], 4))
    args += (f64(rng, *bias),) if bias else ()
    op = functools.partial(ops.local2d, stride=stride, padding=padding)
    assert_lowerings_agree(op, args, rng)


# ---------------------------------------------------------------------------------------------- whole nets

@pytest.mark.slow
@pytest.mark.parametrize("name, input_shape", [("lenet_caffe", (28, 28, 1)), ("cifar10_local", (32, 32, 3))])
def test_zoo_training_loss_and_gradients_equal_across_lowerings(x64, rng, name, input_shape):
    net = zoo.get(name)
    _, params, state = net.init(jax.random.key(0), input_shape)
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
    x, labels = f64(rng, 3, *input_shape), jnp.asarray([1, 7, 3])

    def loss(params, low):
        logits, _ = net.apply(params, state, x, train=True, lowering=low)
        return ops.softmax_cross_entropy(logits, labels)

    value_and_grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)
    # atol: conv biases feeding BatchNorm get gradients that are zero up to rounding
    assert_close(value_and_grad(params, "cpu"), value_and_grad(params, "native"), 1e-8, 1e-12)


@pytest.mark.parametrize("forms, pads", [(("native", "native", "native"), ((1, 1), (1, 1))),
                                         (("wide", "wide", "wide"), ((0, 0), (0, 0))),
                                         (("wide", "wide_input", "wide_input"), ((1, 1), (1, 1)))])
def test_gradient_convolutions_stay_canonical_inside_a_scan(forms, pads):
    """XLA:CPU emits a convolution whose layout is not its canonical NHWC/HWIO one as a slow naive loop when it
    sits inside a while loop (JAX's transpose rules make such convolutions). The CPU lowering's gradients are
    canonical convolutions, also in a scanned training step."""
    x, w = jnp.ones((4, 9, 8, 3)), jnp.ones((3, 3, 3, 5))

    def step(w, _):
        loss = lambda x, w: jnp.sum(conv_cpu.conv(x, w, (1, 1), pads, (1, 1), forms) ** 2)  # noqa: E731
        dx, dw = jax.grad(loss, argnums=(0, 1))(x * w[0, 0, 0, 0], w)
        return w - 1e-3 * dw + jnp.sum(dx), None

    hlo = jax.jit(lambda w: lax.scan(step, w, None, length=2)[0]).lower(w).compile().as_text()
    convolutions = [line for line in hlo.splitlines() if " convolution(" in line]
    assert len(convolutions) == 3  # the output and both gradients
    for line in convolutions:
        assert "dim_labels=b01f_01io->b01f" in line and "outer_dimension_partitions" not in line, line


def test_no_weight_gradient_form_whose_convolution_xla_would_swap():
    """'wide' on a padded input makes the weight gradient's window (the output, widened) larger than x, and XLA
    then swaps the convolution's operands into a layout it runs slowly inside while loops: not a candidate."""
    x, w = jax.ShapeDtypeStruct((4, 9, 8, 1), jnp.float32), jax.ShapeDtypeStruct((3, 3, 1, 5), jnp.float32)
    same, valid = ((1, 1), (1, 1)), ((0, 0), (0, 0))
    assert "wide" not in conv_cpu.candidates("weight", x, w, (1, 1), same, (1, 1))
    assert "wide" in conv_cpu.candidates("weight", x, w, (1, 1), valid, (1, 1))
    assert "wide" in conv_cpu.candidates("forward", x, w, (1, 1), same, (1, 1))
    assert conv_cpu.weight_form(x, w, (1, 1), valid, (1, 1)) is conv_cpu.wide  # one input channel, as MNIST's conv1
    assert conv_cpu.weight_form(x, w, (1, 1), same, (1, 1)) is not conv_cpu.wide
