"""Small Caffe nets in the shapes of the classic models, as prototxt text with a 2-example input, for comparing
jaxcnn with OpenCV's Caffe runtime (each runs in milliseconds)."""


def _input(c, h, w, name="data"):
    return f'input: "{name}"\ninput_shape {{ dim: 2 dim: {c} dim: {h} dim: {w} }}\n'


def conv(name, bottom, num, k, top=None, pad=0, stride=1, group=1, extra=""):
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{top or name}"\n'
            f'  param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }}\n'
            f'  convolution_param {{ num_output: {num} kernel_size: {k} pad: {pad} stride: {stride} group: {group}'
            f' weight_filler {{ type: "xavier" }} {extra}}} }}\n')


def layer(name, kind, bottoms, tops=None, body=""):
    bottoms = [bottoms] if isinstance(bottoms, str) else bottoms
    tops = [name] if tops is None else [tops] if isinstance(tops, str) else tops
    wiring = " ".join(f'bottom: "{b}"' for b in bottoms) + " " + " ".join(f'top: "{t}"' for t in tops)
    return f'layer {{ name: "{name}" type: "{kind}" {wiring} {body} }}\n'


def relu(name, blob):
    return layer(name, "ReLU", blob, blob)


def bn_scale(prefix, blob):
    return (layer(f"{prefix}_bn", "BatchNorm", blob, blob, "batch_norm_param { eps: 1e-5 }")
            + layer(f"{prefix}_scale", "Scale", blob, blob, "scale_param { bias_term: true }"))


def pool(name, bottom, kind, k, stride, pad=0, top=None):
    return layer(name, "Pooling", bottom, top or name,
                 f"pooling_param {{ pool: {kind} kernel_size: {k} stride: {stride} pad: {pad} }}")


def ip(name, bottom, num):
    return layer(name, "InnerProduct", bottom, name,
                 f'inner_product_param {{ num_output: {num} weight_filler {{ type: "xavier" }} }}')


def lrn(name, bottom, region="ACROSS_CHANNELS", size=5):
    return layer(name, "LRN", bottom, name,
                 f"lrn_param {{ local_size: {size} alpha: 0.3 beta: 0.75 norm_region: {region} }}")


# AlexNet (bvlc_alexnet's layers: 11x11/4 conv, LRN, 3x3/2 ceil max pooling, grouped convs, fc with dropout)
ALEXNET_SMALL = ('name: "alexnet_small"\n' + _input(3, 67, 67)
                 + conv("conv1", "data", 8, 11, stride=4) + relu("relu1", "conv1") + lrn("norm1", "conv1")
                 + pool("pool1", "norm1", "MAX", 3, 2)
                 + conv("conv2", "pool1", 12, 5, pad=2, group=2) + relu("relu2", "conv2") + lrn("norm2", "conv2")
                 + pool("pool2", "norm2", "MAX", 3, 2)
                 + conv("conv3", "pool2", 8, 3, pad=1) + relu("relu3", "conv3")
                 + conv("conv4", "conv3", 8, 3, pad=1, group=2) + relu("relu4", "conv4")
                 + pool("pool5", "conv4", "MAX", 3, 2)
                 + ip("fc6", "pool5", 16) + relu("relu6", "fc6")
                 + layer("drop6", "Dropout", "fc6", "fc6", "dropout_param { dropout_ratio: 0.5 }")
                 + ip("fc8", "fc6", 5) + layer("prob", "Softmax", "fc8"))


def _inception(prefix, bottom):
    return (conv(f"{prefix}/1x1", bottom, 4, 1) + relu(f"{prefix}/relu_1x1", f"{prefix}/1x1")
            + conv(f"{prefix}/3x3_reduce", bottom, 3, 1) + relu(f"{prefix}/relu_3x3_reduce", f"{prefix}/3x3_reduce")
            + conv(f"{prefix}/3x3", f"{prefix}/3x3_reduce", 5, 3, pad=1) + relu(f"{prefix}/relu_3x3", f"{prefix}/3x3")
            + conv(f"{prefix}/5x5_reduce", bottom, 2, 1) + conv(f"{prefix}/5x5", f"{prefix}/5x5_reduce", 3, 5, pad=2)
            + pool(f"{prefix}/pool", bottom, "MAX", 3, 1, pad=1)
            + conv(f"{prefix}/pool_proj", f"{prefix}/pool", 2, 1)
            + layer(f"{prefix}/output", "Concat",
                    [f"{prefix}/1x1", f"{prefix}/3x3", f"{prefix}/5x5", f"{prefix}/pool_proj"]))


# GoogLeNet: an inception block (four branches joined by Concat), then average pooling and a classifier
GOOGLENET_BLOCK = ('name: "inception_block"\n' + _input(6, 9, 9) + _inception("inception_3a", "data")
                   + pool("pool", "inception_3a/output", "AVE", 3, 2) + ip("loss3/classifier", "pool", 7))

# ResNet: a bottleneck with projection shortcut, BatchNorm + Scale after each conv, in-place ReLUs, Eltwise sum
RESNET_BOTTLENECK = ('name: "resnet_bottleneck"\n' + _input(8, 7, 7)
                     + conv("res2a_branch1", "data", 16, 1, extra="bias_term: false")
                     + bn_scale("bn2a_branch1", "res2a_branch1")
                     + conv("res2a_branch2a", "data", 4, 1, extra="bias_term: false")
                     + bn_scale("bn2a_branch2a", "res2a_branch2a") + relu("res2a_branch2a_relu", "res2a_branch2a")
                     + conv("res2a_branch2b", "res2a_branch2a", 4, 3, pad=1, extra="bias_term: false")
                     + bn_scale("bn2a_branch2b", "res2a_branch2b") + relu("res2a_branch2b_relu", "res2a_branch2b")
                     + conv("res2a_branch2c", "res2a_branch2b", 16, 1, extra="bias_term: false")
                     + bn_scale("bn2a_branch2c", "res2a_branch2c")
                     + layer("res2a", "Eltwise", ["res2a_branch1", "res2a_branch2c"])
                     + relu("res2a_relu", "res2a"))

# SqueezeNet: a fire module (1x1 squeeze, 1x1 and 3x3 expand joined by Concat)
SQUEEZENET_FIRE = ('name: "fire_module"\n' + _input(8, 10, 10)
                   + conv("fire2/squeeze1x1", "data", 3, 1) + relu("fire2/relu_squeeze1x1", "fire2/squeeze1x1")
                   + conv("fire2/expand1x1", "fire2/squeeze1x1", 4, 1) + relu("fire2/relu_expand1x1", "fire2/expand1x1")
                   + conv("fire2/expand3x3", "fire2/squeeze1x1", 4, 3, pad=1)
                   + relu("fire2/relu_expand3x3", "fire2/expand3x3")
                   + layer("fire2/concat", "Concat", ["fire2/expand1x1", "fire2/expand3x3"]))

# NIN: mlpconv (conv + 1x1 cccp layers) and global average pooling as the classifier
NIN_GLOBAL_POOL = ('name: "nin"\n' + _input(3, 12, 12)
                   + conv("conv1", "data", 8, 5, stride=2) + relu("relu0", "conv1")
                   + conv("cccp1", "conv1", 6, 1) + relu("relu1", "cccp1")
                   + conv("cccp2", "cccp1", 5, 1) + relu("relu2", "cccp2")
                   + layer("pool4", "Pooling", "cccp2", "pool4", "pooling_param { pool: AVE global_pooling: true }")
                   + layer("prob", "Softmax", "pool4"))

# MobileNet: a depthwise separable block (3x3 conv with group = channels, then 1x1), BatchNorm + Scale + ReLU
MOBILENET_DEPTHWISE = ('name: "mobilenet_block"\n' + _input(8, 9, 9)
                       + conv("conv2_1/dw", "data", 8, 3, pad=1, group=8, extra="bias_term: false")
                       + bn_scale("conv2_1/dw", "conv2_1/dw") + relu("relu2_1/dw", "conv2_1/dw")
                       + conv("conv2_1/sep", "conv2_1/dw", 12, 1, extra="bias_term: false")
                       + bn_scale("conv2_1/sep", "conv2_1/sep") + relu("relu2_1/sep", "conv2_1/sep"))

# Every other supported type OpenCV runs: Slice, Split, PReLU, ELU, leaky ReLU, Sigmoid, TanH, AbsVal, Eltwise PROD
# and MAX and SUM with coefficients, within-channel LRN, average pooling with padding and ceil rounding, Flatten
# (OpenCV has no Bias layer: tests/test_caffe.py checks it alone)
OTHER_LAYERS = ('name: "other_layers"\n' + _input(6, 8, 8)
                + conv("conv", "data", 6, 3, pad=1)
                + layer("slice", "Slice", "conv", ["a", "b", "c"], "slice_param { slice_point: 2 slice_point: 4 }")
                + layer("prelu", "PReLU", "a", "a") + layer("elu", "ELU", "b", "b", "elu_param { alpha: 0.7 }")
                + layer("leaky", "ReLU", "c", "c", "relu_param { negative_slope: 0.1 }")
                + layer("split", "Split", "a", ["a1", "a2"])
                + layer("sig", "Sigmoid", "a1", "sig") + layer("tanh", "TanH", "b", "tanh")
                + layer("prod", "Eltwise", ["sig", "tanh"], "prod", "eltwise_param { operation: PROD }")
                + layer("max", "Eltwise", ["prod", "c"], "max", "eltwise_param { operation: MAX }")
                + layer("sum", "Eltwise", ["max", "a2"], "sum", "eltwise_param { operation: SUM coeff: 1 coeff: -0.5 }")
                + layer("abs", "AbsVal", "sum", "abs")
                + lrn("norm", "abs", "WITHIN_CHANNEL", 3)
                + pool("pool", "norm", "AVE", 3, 2, pad=1)
                + layer("flatten", "Flatten", "pool", "flat") + ip("fc", "flat", 4))

# The legacy V1 format: `layers` with enum types and blobs_lr / weight_decay
V1_NET = ('name: "v1_net"\n' + _input(3, 10, 10) + """
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1" blobs_lr: 1 blobs_lr: 2 weight_decay: 1
  weight_decay: 0 convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layers { name: "norm1" type: LRN bottom: "pool1" top: "norm1" lrn_param { local_size: 3 alpha: 0.1 beta: 0.75 } }
layers { name: "ip1" type: INNER_PRODUCT bottom: "norm1" top: "ip1" inner_product_param { num_output: 6 } }
layers { name: "tanh1" type: TANH bottom: "ip1" top: "ip1" }
layers { name: "prob" type: SOFTMAX bottom: "ip1" top: "prob" }
""")

NETS = {"alexnet": ALEXNET_SMALL, "googlenet_inception": GOOGLENET_BLOCK, "resnet_bottleneck": RESNET_BOTTLENECK,
        "squeezenet_fire": SQUEEZENET_FIRE, "nin_global_pool": NIN_GLOBAL_POOL,
        "mobilenet_depthwise": MOBILENET_DEPTHWISE, "other_layers": OTHER_LAYERS, "v1_format": V1_NET}
