"""ImageNet-sized Caffe nets written as prototxt text, and random weights for them, for the inference benchmark
(experiments.bench) against OpenCV's dnn module.

The layer structure follows each net's published Caffe deploy file (names, kernels, strides, pads, channels;
weights are not needed):
- MobileNet v1 (Howard et al. 2017) as its Caffe port lays it out (shicai/MobileNet-Caffe,
  mobilenet_deploy.prototxt): conv1 32@3x3/2, thirteen depthwise separable blocks (3x3 convolution with
  group = channels, then 1x1), each convolution followed by BatchNorm + Scale + ReLU, global average pooling,
  fc7 as a 1x1 convolution to 1000 classes, softmax.
- GoogLeNet (Szegedy et al. 2014) as Caffe's models/bvlc_googlenet/deploy.prototxt: 7x7/2 and 3x3 convolutions
  with LRN and 3x3/2 max pooling, nine inception modules (1x1; 1x1 -> 3x3; 1x1 -> 5x5; 3x3 max pool -> 1x1;
  joined by Concat), 7x7 average pooling, dropout, a 1000-way InnerProduct, softmax.
- ResNet-50 (He et al. 2015) as KaimingHe/deep-residual-networks' ResNet-50-deploy.prototxt: conv1 7x7/2 and
  3x3/2 max pooling, 3 + 4 + 6 + 3 bottleneck blocks (1x1, 3x3, 1x1; the stride in the first 1x1 and in the
  projection shortcut), every convolution without bias and followed by BatchNorm + Scale, Eltwise sums, 7x7
  average pooling, fc1000, softmax.
All take 224x224x3 images; the batch comes from the input at run time.
"""
import jax
import numpy as np

SIZE = 224


def _input(name):
    return f'name: "{name}"\ninput: "data"\ninput_shape {{ dim: 1 dim: 3 dim: {SIZE} dim: {SIZE} }}\n'


def layer(name, kind, bottoms, tops=None, body=""):
    """One prototxt layer; bottoms and tops a blob name or a list of them (tops default: the layer's name)."""
    bottoms = [bottoms] if isinstance(bottoms, str) else bottoms
    tops = [name] if tops is None else [tops] if isinstance(tops, str) else tops
    wiring = " ".join([*(f'bottom: "{b}"' for b in bottoms), *(f'top: "{t}"' for t in tops)])
    return f'layer {{ name: "{name}" type: "{kind}" {wiring} {body} }}\n'


def conv(name, bottom, num, kernel, stride=1, pad=0, group=1, bias=True, top=None):
    return layer(name, "Convolution", bottom, top or name,
                 f"convolution_param {{ num_output: {num} kernel_size: {kernel} stride: {stride} pad: {pad} "
                 f"group: {group} bias_term: {str(bias).lower()} }}")


def relu(name, blob):
    return layer(name, "ReLU", blob, blob)


def pool(name, bottom, kind, kernel, stride, pad=0):
    return layer(name, "Pooling", bottom, name,
                 f"pooling_param {{ pool: {kind} kernel_size: {kernel} stride: {stride} pad: {pad} }}")


def bn_scale(bn, scale, blob):
    """BatchNorm and Scale (with bias), in place on `blob` (BatchNorm uses its stored statistics in deploy nets:
    Caffe's default in the TEST phase)."""
    return (layer(bn, "BatchNorm", blob, blob, "batch_norm_param { eps: 1e-5 }")
            + layer(scale, "Scale", blob, blob, "scale_param { bias_term: true }"))


def lrn(name, bottom):
    return layer(name, "LRN", bottom, name, "lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 }")


def classifier(bottom, name, num=1000):
    return (layer(name, "InnerProduct", bottom, name, f"inner_product_param {{ num_output: {num} }}")
            + layer("prob", "Softmax", name, "prob"))


# MobileNet v1's depthwise separable blocks: (name, channels in, channels out, stride of the depthwise layer)
MOBILENET_BLOCKS = [("conv2_1", 32, 64, 1), ("conv2_2", 64, 128, 2), ("conv3_1", 128, 128, 1),
                    ("conv3_2", 128, 256, 2), ("conv4_1", 256, 256, 1), ("conv4_2", 256, 512, 2),
                    *((f"conv5_{i}", 512, 512, 1) for i in range(1, 6)), ("conv5_6", 512, 1024, 2),
                    ("conv6", 1024, 1024, 1)]


def _mobilenet_conv(name, bottom, num, kernel, stride=1, pad=0, group=1):
    return (conv(name, bottom, num, kernel, stride, pad, group, bias=False)
            + bn_scale(f"{name}/bn", f"{name}/scale", name) + relu(f"{name}/relu", name))


def mobilenet_v1() -> str:
    text = _input("MobileNet") + _mobilenet_conv("conv1", "data", 32, 3, stride=2, pad=1)
    bottom = "conv1"
    for name, c_in, c_out, stride in MOBILENET_BLOCKS:
        text += _mobilenet_conv(f"{name}/dw", bottom, c_in, 3, stride=stride, pad=1, group=c_in)
        text += _mobilenet_conv(f"{name}/sep", f"{name}/dw", c_out, 1)
        bottom = f"{name}/sep"
    return (text + layer("pool6", "Pooling", bottom, "pool6", "pooling_param { pool: AVE global_pooling: true }")
            + conv("fc7", "pool6", 1000, 1) + layer("prob", "Softmax", "fc7", "prob"))


# GoogLeNet's inception modules: (name, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection), Table 1 of the paper
INCEPTIONS = [("3a", 64, 96, 128, 16, 32, 32), ("3b", 128, 128, 192, 32, 96, 64), "pool3",
              ("4a", 192, 96, 208, 16, 48, 64), ("4b", 160, 112, 224, 24, 64, 64), ("4c", 128, 128, 256, 24, 64, 64),
              ("4d", 112, 144, 288, 32, 64, 64), ("4e", 256, 160, 320, 32, 128, 128), "pool4",
              ("5a", 256, 160, 320, 32, 128, 128), ("5b", 384, 192, 384, 48, 128, 128)]


def _inception(name, bottom, n1, r3, n3, r5, n5, proj):
    p = f"inception_{name}"
    branches = [(f"{p}/1x1", bottom, n1, 1, 0), (f"{p}/3x3_reduce", bottom, r3, 1, 0),
                (f"{p}/3x3", f"{p}/3x3_reduce", n3, 3, 1), (f"{p}/5x5_reduce", bottom, r5, 1, 0),
                (f"{p}/5x5", f"{p}/5x5_reduce", n5, 5, 2)]
    text = "".join(conv(c, b, n, k, pad=pad) + relu(f"{p}/relu_{c.split('/')[1]}", c) for c, b, n, k, pad in branches)
    text += pool(f"{p}/pool", bottom, "MAX", 3, 1, pad=1)
    text += conv(f"{p}/pool_proj", f"{p}/pool", proj, 1) + relu(f"{p}/relu_pool_proj", f"{p}/pool_proj")
    return text + layer(f"{p}/output", "Concat", [f"{p}/1x1", f"{p}/3x3", f"{p}/5x5", f"{p}/pool_proj"])


def googlenet() -> str:
    text = (_input("GoogleNet") + conv("conv1/7x7_s2", "data", 64, 7, stride=2, pad=3)
            + relu("conv1/relu_7x7", "conv1/7x7_s2") + pool("pool1/3x3_s2", "conv1/7x7_s2", "MAX", 3, 2)
            + lrn("pool1/norm1", "pool1/3x3_s2") + conv("conv2/3x3_reduce", "pool1/norm1", 64, 1)
            + relu("conv2/relu_3x3_reduce", "conv2/3x3_reduce") + conv("conv2/3x3", "conv2/3x3_reduce", 192, 3, pad=1)
            + relu("conv2/relu_3x3", "conv2/3x3") + lrn("conv2/norm2", "conv2/3x3")
            + pool("pool2/3x3_s2", "conv2/norm2", "MAX", 3, 2))
    bottom = "pool2/3x3_s2"
    for spec in INCEPTIONS:
        if isinstance(spec, str):
            text += pool(f"{spec}/3x3_s2", bottom, "MAX", 3, 2)
            bottom = f"{spec}/3x3_s2"
        else:
            text += _inception(*spec[:1], bottom, *spec[1:])
            bottom = f"inception_{spec[0]}/output"
    return (text + pool("pool5/7x7_s1", bottom, "AVE", 7, 1)
            + layer("pool5/drop_7x7_s1", "Dropout", "pool5/7x7_s1", "pool5/7x7_s1",
                    "dropout_param { dropout_ratio: 0.4 }")
            + classifier("pool5/7x7_s1", "loss3/classifier"))


RESNET50_STAGES = [(2, 3, 64), (3, 4, 128), (4, 6, 256), (5, 3, 512)]  # (stage, blocks, bottleneck channels)


def _resnet_conv(name, bottom, num, kernel, stride=1, pad=0, relu_after=True):
    suffix = name[len("res"):]
    text = conv(name, bottom, num, kernel, stride, pad, bias=False) + bn_scale(f"bn{suffix}", f"scale{suffix}", name)
    return text + (relu(f"{name}_relu", name) if relu_after else "")


def resnet50() -> str:
    text = (_input("ResNet-50") + conv("conv1", "data", 64, 7, stride=2, pad=3, bias=False)
            + bn_scale("bn_conv1", "scale_conv1", "conv1") + relu("conv1_relu", "conv1")
            + pool("pool1", "conv1", "MAX", 3, 2))
    bottom = "pool1"
    for stage, blocks, width in RESNET50_STAGES:
        for i in range(blocks):
            block = f"res{stage}{'abcdef'[i]}"
            stride = 2 if i == 0 and stage > 2 else 1
            if i == 0:
                text += _resnet_conv(f"{block}_branch1", bottom, 4 * width, 1, stride, relu_after=False)
            text += (_resnet_conv(f"{block}_branch2a", bottom, width, 1, stride)
                     + _resnet_conv(f"{block}_branch2b", f"{block}_branch2a", width, 3, pad=1)
                     + _resnet_conv(f"{block}_branch2c", f"{block}_branch2b", 4 * width, 1, relu_after=False))
            shortcut = f"{block}_branch1" if i == 0 else bottom
            text += layer(block, "Eltwise", [shortcut, f"{block}_branch2c"]) + relu(f"{block}_relu", block)
            bottom = block
    return text + pool("pool5", bottom, "AVE", 7, 1) + classifier("pool5", "fc1000")


def random_weights(net, seed=0, batch=4):
    """Weights for `net` that keep activations in range: every weight `w` normal with variance 2 / fan-in (He et
    al.'s), the other params as net.init makes them (zero biases, unit scales), and BatchNorm statistics those of
    one training-mode pass over `batch` standard-normal images (Caffe's first-batch statistics), so that each
    BatchNorm standardises what reaches it. -> (params, state) as NumPy arrays."""
    _, params, state = jax.jit(net.init)(jax.random.key(seed))  # one compilation, not one per initialiser
    rng = np.random.default_rng(seed)
    params = {name: {k: (rng.normal(0, np.sqrt(2 / np.prod(v.shape[:-1])), v.shape) if k == "w" else np.asarray(v))
                     .astype(np.float32) for k, v in p.items()} for name, p in params.items()}
    if state:
        x = rng.standard_normal((batch, *net.input_shape)).astype(np.float32)
        state = jax.jit(lambda p, s, x: net.apply(p, s, x, train=True, rng=jax.random.key(seed))[1])(params, state, x)
    return params, jax.tree.map(np.asarray, state)


NETS = {"mobilenet_v1": mobilenet_v1, "googlenet": googlenet, "resnet50": resnet50}
