"""The classic networks, layer for layer, with the names their sources use.

Every constructor returns a Net whose input_shape is the size the source trains at.
"""
from .fillers import gaussian
from .layers import (
    LRN,
    BatchNorm,
    Conv,
    Dense,
    Dropout,
    Flatten,
    Local,
    MaxPool,
    ReLU,
    Scale,
)
from .net import Net

CAFFE_BIAS = {"lr_mult": {"b": 2.0}}  # Caffe's usual param { lr_mult: 1 } param { lr_mult: 2 }


def lenet_caffe(num_classes: int = 10, input_shape: tuple[int, int, int] = (28, 28, 1)) -> Net:
    """Caffe's MNIST LeNet (examples/mnist/lenet_train_test.prototxt) with BatchNorm + Scale after each conv.

    conv1 20@5x5 -> bn -> scale -> pool 2/2 -> relu -> conv2 50@5x5 -> bn -> scale -> pool -> relu
    -> ip1 500 -> relu -> ip2. Xavier weights, zero biases with lr_mult 2. Inputs are pixels scaled to
    [0, 1) (Caffe's scale 0.00390625).
    """
    def block(i, features):
        return [
            Conv(f"conv{i}", features, 5, w_init="xavier", **CAFFE_BIAS),
            BatchNorm(f"bn_conv{i}"),
            Scale(f"scale_conv{i}"),
            MaxPool(f"pool{i}", 2, 2),
            ReLU(f"relu_pool{i}"),
        ]

    layers = [*block(1, 20), *block(2, 50), Flatten("flatten"),
              Dense("ip1", 500, **CAFFE_BIAS), ReLU("relu1"), Dense("ip2", num_classes, **CAFFE_BIAS)]
    return Net(layers, input_shape, "lenet_caffe")


def lenet5(num_classes: int = 10, input_shape: tuple[int, int, int] = (28, 28, 1)) -> Net:
    """LeNet-5 as it is usually written in Keras (any input size; 32x32 gives the classic 61,706 params).

    conv 6@5 -> maxpool 2 -> relu -> conv 16@5 -> maxpool 2 -> relu -> fc 120 -> relu -> fc 84 -> relu -> fc.
    Glorot-uniform weights and zero biases, as Keras.
    """
    layers = [
        Conv("conv1", 6, 5, w_init="glorot"), MaxPool("pool1", 2), ReLU("relu1"),
        Conv("conv2", 16, 5, w_init="glorot"), MaxPool("pool2", 2), ReLU("relu2"),
        Flatten("flatten"),
        Dense("fc1", 120, w_init="glorot"), ReLU("relu3"),
        Dense("fc2", 84, w_init="glorot"), ReLU("relu4"),
        Dense("fc3", num_classes, w_init="glorot"),
    ]
    return Net(layers, input_shape, "lenet5")


def cifar10_local(num_classes: int = 10, input_shape: tuple[int, int, int] = (32, 32, 3)) -> Net:
    """cuda-convnet's CIFAR-10 net with locally-connected layers (its layers-conv-local-11pct.cfg).

    conv1 64@5x5 pad 2 -> relu -> pool1 3/2 (ceil) -> rnorm1 -> conv2 64@5x5 pad 2 -> relu -> rnorm2
    -> pool2 3/2 (ceil) -> local3 64@3x3 pad 1 -> relu -> local4 32@3x3 pad 1 -> relu -> fc10.
    rnorm: cross-map, size 9, alpha 0.001, beta 0.75. Gaussian weights with cuda-convnet's initW.
    """
    rnorm = dict(size=9, alpha=0.001, beta=0.75)
    layers = [
        Conv("conv1", 64, 5, padding=2, w_init=gaussian(1e-4)), ReLU("conv1_neuron"),
        MaxPool("pool1", 3, 2, ceil_mode=True), LRN("rnorm1", **rnorm),
        Conv("conv2", 64, 5, padding=2, w_init=gaussian(1e-2)), ReLU("conv2_neuron"), LRN("rnorm2", **rnorm),
        MaxPool("pool2", 3, 2, ceil_mode=True),
        Local("local3", 64, 3, padding=1, w_init=gaussian(0.04)), ReLU("local3_neuron"),
        Local("local4", 32, 3, padding=1, w_init=gaussian(0.04)), ReLU("local4_neuron"),
        Flatten("flatten"), Dense("fc10", num_classes, w_init=gaussian(0.01)),
    ]
    return Net(layers, input_shape, "cifar10_local")


def alexnet(num_classes: int = 1000, input_shape: tuple[int, int, int] = (227, 227, 3)) -> Net:
    """Caffe's AlexNet (bvlc_alexnet): grouped conv2/conv4/conv5 (groups=2), LRN after conv1 and conv2,
    3/2 max pooling with ceil rounding (55 -> 27 -> 13 -> 6), dropout 0.5 on fc6 and fc7."""
    lrn = dict(size=5, alpha=1e-4, beta=0.75)
    conv = dict(w_init=gaussian(0.01), **CAFFE_BIAS)
    fc = dict(w_init=gaussian(0.005), b_init=0.1, **CAFFE_BIAS)
    layers = [
        Conv("conv1", 96, 11, stride=4, **conv), ReLU("relu1"), LRN("norm1", **lrn),
        MaxPool("pool1", 3, 2, ceil_mode=True),
        Conv("conv2", 256, 5, padding=2, groups=2, b_init=0.1, **conv), ReLU("relu2"), LRN("norm2", **lrn),
        MaxPool("pool2", 3, 2, ceil_mode=True),
        Conv("conv3", 384, 3, padding=1, **conv), ReLU("relu3"),
        Conv("conv4", 384, 3, padding=1, groups=2, b_init=0.1, **conv), ReLU("relu4"),
        Conv("conv5", 256, 3, padding=1, groups=2, b_init=0.1, **conv), ReLU("relu5"),
        MaxPool("pool5", 3, 2, ceil_mode=True), Flatten("flatten"),
        Dense("fc6", 4096, **fc), ReLU("relu6"), Dropout("drop6", 0.5),
        Dense("fc7", 4096, **fc), ReLU("relu7"), Dropout("drop7", 0.5),
        Dense("fc8", num_classes, w_init=gaussian(0.01), **CAFFE_BIAS),
    ]
    return Net(layers, input_shape, "alexnet")


def vgg16(num_classes: int = 1000, input_shape: tuple[int, int, int] = (224, 224, 3)) -> Net:
    """VGG16 (configuration D): 13 3x3 convs in 5 blocks with 2/2 max pooling, fc6/fc7 4096 with dropout,
    fc8. He (msra) conv weights, xavier FC weights; 138,357,544 parameters for 1000 classes."""
    layers = []
    for block, (features, repeat) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], start=1):
        for i in range(1, repeat + 1):
            layers += [Conv(f"conv{block}_{i}", features, 3, padding=1, w_init="msra"), ReLU(f"relu{block}_{i}")]
        layers.append(MaxPool(f"pool{block}", 2))
    layers += [
        Flatten("flatten"),
        Dense("fc6", 4096), ReLU("relu6"), Dropout("drop6", 0.5),
        Dense("fc7", 4096), ReLU("relu7"), Dropout("drop7", 0.5),
        Dense("fc8", num_classes),
    ]
    return Net(layers, input_shape, "vgg16")


MODELS = {f.__name__: f for f in (lenet_caffe, lenet5, cifar10_local, alexnet, vgg16)}


def get(name: str, **kwargs) -> Net:
    """A zoo net by name: one of MODELS."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return MODELS[name](**kwargs)
