"""The part of Caffe's schema (src/caffe/proto/caffe.proto, package `caffe`) that jaxcnn reads and writes,
declared with protobuf's descriptor API: no protoc step and no Caffe install.

Message, field and enum names and numbers are Caffe's. Fields that Caffe has but jaxcnn does not implement are
declared too where models commonly set them, so that a file using them parses and the loader can name the
field it does not support. Two forks of PoolingParameter use number 13 for different fields: BVLC's
`ceil_mode` (bool) and the `round_mode` enum ({CEIL, FLOOR}) of other forks; prototxt files name them, so
`round_mode` is declared under a number of its own, 1013, and is read from text only.
"""
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"string": F.TYPE_STRING, "bool": F.TYPE_BOOL, "float": F.TYPE_FLOAT, "double": F.TYPE_DOUBLE,
            "int32": F.TYPE_INT32, "int64": F.TYPE_INT64, "uint32": F.TYPE_UINT32, "uint64": F.TYPE_UINT64,
            "bytes": F.TYPE_BYTES}
_ENGINE = {"DEFAULT": 0, "CAFFE": 1, "CUDNN": 2}

# message -> (fields, enums); a field is (name, number, type, label, default); label '?' optional, '*' repeated,
# '*p' repeated packed; a type that is not a scalar names a message, or an enum when it starts with '.'.
MESSAGES = {
    "BlobShape": ([("dim", 1, "int64", "*p", None)], {}),
    "BlobProto": ([
        ("shape", 7, "BlobShape", "?", None), ("data", 5, "float", "*p", None), ("diff", 6, "float", "*p", None),
        ("double_data", 8, "double", "*p", None), ("double_diff", 9, "double", "*p", None),
        ("num", 1, "int64", "?", None), ("channels", 2, "int64", "?", None), ("height", 3, "int64", "?", None),
        ("width", 4, "int64", "?", None)], {}),
    "Datum": ([
        ("channels", 1, "int32", "?", None), ("height", 2, "int32", "?", None), ("width", 3, "int32", "?", None),
        ("data", 4, "bytes", "?", None), ("label", 5, "int32", "?", None), ("float_data", 6, "float", "*", None),
        ("encoded", 7, "bool", "?", "false")], {}),
    "FillerParameter": ([
        ("type", 1, "string", "?", "constant"), ("value", 2, "float", "?", "0"), ("min", 3, "float", "?", "0"),
        ("max", 4, "float", "?", "1"), ("mean", 5, "float", "?", "0"), ("std", 6, "float", "?", "1"),
        ("sparse", 7, "int32", "?", "-1"), ("variance_norm", 8, ".VarianceNorm", "?", "FAN_IN")],
        {"VarianceNorm": {"FAN_IN": 0, "FAN_OUT": 1, "AVERAGE": 2}}),
    "NetState": ([("phase", 1, ".caffe.Phase", "?", "TEST"), ("level", 2, "int32", "?", "0"),
                  ("stage", 3, "string", "*", None)], {}),
    "NetStateRule": ([
        ("phase", 1, ".caffe.Phase", "?", None), ("min_level", 2, "int32", "?", None),
        ("max_level", 3, "int32", "?", None), ("stage", 4, "string", "*", None),
        ("not_stage", 5, "string", "*", None)], {}),
    "ParamSpec": ([
        ("name", 1, "string", "?", None), ("share_mode", 2, ".DimCheckMode", "?", None),
        ("lr_mult", 3, "float", "?", "1"), ("decay_mult", 4, "float", "?", "1")],
        {"DimCheckMode": {"STRICT": 0, "PERMISSIVE": 1}}),
    "NetParameter": ([
        ("name", 1, "string", "?", None), ("input", 3, "string", "*", None),
        ("input_shape", 8, "BlobShape", "*", None), ("input_dim", 4, "int32", "*", None),
        ("force_backward", 5, "bool", "?", "false"), ("state", 6, "NetState", "?", None),
        ("debug_info", 7, "bool", "?", "false"), ("layer", 100, "LayerParameter", "*", None),
        ("layers", 2, "V1LayerParameter", "*", None)], {}),
    "SolverParameter": ([
        ("net", 24, "string", "?", None), ("net_param", 25, "NetParameter", "?", None),
        ("train_net", 1, "string", "?", None), ("test_net", 2, "string", "*", None),
        ("train_net_param", 21, "NetParameter", "?", None), ("test_net_param", 22, "NetParameter", "*", None),
        ("train_state", 26, "NetState", "?", None), ("test_state", 27, "NetState", "*", None),
        ("test_iter", 3, "int32", "*", None), ("test_interval", 4, "int32", "?", "0"),
        ("test_compute_loss", 19, "bool", "?", "false"), ("test_initialization", 32, "bool", "?", "true"),
        ("base_lr", 5, "float", "?", None), ("display", 6, "int32", "?", None),
        ("average_loss", 33, "int32", "?", "1"), ("max_iter", 7, "int32", "?", None),
        ("iter_size", 36, "int32", "?", "1"), ("lr_policy", 8, "string", "?", None),
        ("gamma", 9, "float", "?", None), ("power", 10, "float", "?", None),
        ("momentum", 11, "float", "?", None), ("weight_decay", 12, "float", "?", None),
        ("regularization_type", 29, "string", "?", "L2"), ("stepsize", 13, "int32", "?", None),
        ("stepvalue", 34, "int32", "*", None), ("clip_gradients", 35, "float", "?", "-1"),
        ("snapshot", 14, "int32", "?", "0"), ("snapshot_prefix", 15, "string", "?", None),
        ("snapshot_diff", 16, "bool", "?", "false"), ("snapshot_format", 37, ".SnapshotFormat", "?", "BINARYPROTO"),
        ("solver_mode", 17, ".SolverMode", "?", "GPU"), ("device_id", 18, "int32", "?", "0"),
        ("random_seed", 20, "int64", "?", "-1"), ("type", 40, "string", "?", "SGD"),
        ("delta", 31, "float", "?", "1e-8"), ("momentum2", 39, "float", "?", "0.999"),
        ("rms_decay", 38, "float", "?", "0.99"), ("debug_info", 23, "bool", "?", "false"),
        ("snapshot_after_train", 28, "bool", "?", "true"), ("solver_type", 30, ".SolverType", "?", "SGD"),
        ("layer_wise_reduce", 43, "bool", "?", "true")],
        {"SnapshotFormat": {"HDF5": 0, "BINARYPROTO": 1}, "SolverMode": {"CPU": 0, "GPU": 1},
         "SolverType": {"SGD": 0, "NESTEROV": 1, "ADAGRAD": 2, "RMSPROP": 3, "ADADELTA": 4, "ADAM": 5}}),
    "SolverState": ([
        ("iter", 1, "int32", "?", None), ("learned_net", 2, "string", "?", None),
        ("history", 3, "BlobProto", "*", None), ("current_step", 4, "int32", "?", "0")], {}),
    "TransformationParameter": ([
        ("scale", 1, "float", "?", "1"), ("mirror", 2, "bool", "?", "false"), ("crop_size", 3, "uint32", "?", "0"),
        ("crop_h", 11, "uint32", "?", "0"), ("crop_w", 12, "uint32", "?", "0"), ("mean_file", 4, "string", "?", None),
        ("mean_value", 5, "float", "*", None), ("force_color", 6, "bool", "?", "false"),
        ("force_gray", 7, "bool", "?", "false")], {}),
    "LossParameter": ([
        ("ignore_label", 1, "int32", "?", None), ("normalization", 3, ".NormalizationMode", "?", "VALID"),
        ("normalize", 2, "bool", "?", None)],
        {"NormalizationMode": {"FULL": 0, "VALID": 1, "BATCH_SIZE": 2, "NONE": 3}}),
    "AccuracyParameter": ([("top_k", 1, "uint32", "?", "1"), ("axis", 2, "int32", "?", "1"),
                           ("ignore_label", 3, "int32", "?", None)], {}),
    "BatchNormParameter": ([("use_global_stats", 1, "bool", "?", None),
                            ("moving_average_fraction", 2, "float", "?", "0.999"), ("eps", 3, "float", "?", "1e-5")],
                           {}),
    "BiasParameter": ([("axis", 1, "int32", "?", "1"), ("num_axes", 2, "int32", "?", "1"),
                       ("filler", 3, "FillerParameter", "?", None)], {}),
    "ConcatParameter": ([("axis", 2, "int32", "?", "1"), ("concat_dim", 1, "uint32", "?", "1")], {}),
    "ConvolutionParameter": ([
        ("num_output", 1, "uint32", "?", None), ("bias_term", 2, "bool", "?", "true"), ("pad", 3, "uint32", "*", None),
        ("kernel_size", 4, "uint32", "*", None), ("stride", 6, "uint32", "*", None),
        ("dilation", 18, "uint32", "*", None), ("pad_h", 9, "uint32", "?", "0"), ("pad_w", 10, "uint32", "?", "0"),
        ("kernel_h", 11, "uint32", "?", None), ("kernel_w", 12, "uint32", "?", None),
        ("stride_h", 13, "uint32", "?", None), ("stride_w", 14, "uint32", "?", None),
        ("group", 5, "uint32", "?", "1"), ("weight_filler", 7, "FillerParameter", "?", None),
        ("bias_filler", 8, "FillerParameter", "?", None), ("engine", 15, ".Engine", "?", "DEFAULT"),
        ("axis", 16, "int32", "?", "1"), ("force_nd_im2col", 17, "bool", "?", "false")], {"Engine": _ENGINE}),
    "DataParameter": ([
        ("source", 1, "string", "?", None), ("batch_size", 4, "uint32", "?", None),
        ("rand_skip", 7, "uint32", "?", "0"), ("backend", 8, ".DB", "?", "LEVELDB"), ("scale", 2, "float", "?", "1"),
        ("mean_file", 3, "string", "?", None), ("crop_size", 5, "uint32", "?", "0"),
        ("mirror", 6, "bool", "?", "false"), ("force_encoded_color", 9, "bool", "?", "false"),
        ("prefetch", 10, "uint32", "?", "4")], {"DB": {"LEVELDB": 0, "LMDB": 1}}),
    "DropoutParameter": ([("dropout_ratio", 1, "float", "?", "0.5")], {}),
    "EltwiseParameter": ([("operation", 1, ".EltwiseOp", "?", "SUM"), ("coeff", 2, "float", "*", None),
                          ("stable_prod_grad", 3, "bool", "?", "true")],
                         {"EltwiseOp": {"PROD": 0, "SUM": 1, "MAX": 2}}),
    "ELUParameter": ([("alpha", 1, "float", "?", "1")], {}),
    "FlattenParameter": ([("axis", 1, "int32", "?", "1"), ("end_axis", 2, "int32", "?", "-1")], {}),
    "HDF5DataParameter": ([("source", 1, "string", "?", None), ("batch_size", 2, "uint32", "?", None),
                           ("shuffle", 3, "bool", "?", "false")], {}),
    "ImageDataParameter": ([
        ("source", 1, "string", "?", None), ("batch_size", 4, "uint32", "?", "1"),
        ("rand_skip", 7, "uint32", "?", "0"), ("shuffle", 8, "bool", "?", "false"),
        ("new_height", 9, "uint32", "?", "0"), ("new_width", 10, "uint32", "?", "0"),
        ("is_color", 11, "bool", "?", "true"), ("scale", 2, "float", "?", "1"), ("mean_file", 3, "string", "?", None),
        ("crop_size", 5, "uint32", "?", "0"), ("mirror", 6, "bool", "?", "false"),
        ("root_folder", 12, "string", "?", "")], {}),
    "InnerProductParameter": ([
        ("num_output", 1, "uint32", "?", None), ("bias_term", 2, "bool", "?", "true"),
        ("weight_filler", 3, "FillerParameter", "?", None), ("bias_filler", 4, "FillerParameter", "?", None),
        ("axis", 5, "int32", "?", "1"), ("transpose", 6, "bool", "?", "false")], {}),
    "InputParameter": ([("shape", 1, "BlobShape", "*", None)], {}),
    "LRNParameter": ([
        ("local_size", 1, "uint32", "?", "5"), ("alpha", 2, "float", "?", "1"), ("beta", 3, "float", "?", "0.75"),
        ("norm_region", 4, ".NormRegion", "?", "ACROSS_CHANNELS"), ("k", 5, "float", "?", "1"),
        ("engine", 6, ".Engine", "?", "DEFAULT")],
        {"NormRegion": {"ACROSS_CHANNELS": 0, "WITHIN_CHANNEL": 1}, "Engine": _ENGINE}),
    "MemoryDataParameter": ([("batch_size", 1, "uint32", "?", None), ("channels", 2, "uint32", "?", None),
                             ("height", 3, "uint32", "?", None), ("width", 4, "uint32", "?", None)], {}),
    "PoolingParameter": ([
        ("pool", 1, ".PoolMethod", "?", "MAX"), ("pad", 4, "uint32", "?", "0"), ("pad_h", 9, "uint32", "?", "0"),
        ("pad_w", 10, "uint32", "?", "0"), ("kernel_size", 2, "uint32", "?", None),
        ("kernel_h", 5, "uint32", "?", None), ("kernel_w", 6, "uint32", "?", None),
        ("stride", 3, "uint32", "?", "1"), ("stride_h", 7, "uint32", "?", None),
        ("stride_w", 8, "uint32", "?", None), ("engine", 11, ".Engine", "?", "DEFAULT"),
        ("global_pooling", 12, "bool", "?", "false"), ("ceil_mode", 13, "bool", "?", "true"),
        ("round_mode", 1013, ".RoundMode", "?", "CEIL")],
        {"PoolMethod": {"MAX": 0, "AVE": 1, "STOCHASTIC": 2}, "Engine": _ENGINE,
         "RoundMode": {"CEIL": 0, "FLOOR": 1}}),
    "PReLUParameter": ([("filler", 1, "FillerParameter", "?", None), ("channel_shared", 2, "bool", "?", "false")],
                       {}),
    "ReLUParameter": ([("negative_slope", 1, "float", "?", "0"), ("engine", 2, ".Engine", "?", "DEFAULT")],
                      {"Engine": _ENGINE}),
    "ScaleParameter": ([
        ("axis", 1, "int32", "?", "1"), ("num_axes", 2, "int32", "?", "1"), ("filler", 3, "FillerParameter", "?", None),
        ("bias_term", 4, "bool", "?", "false"), ("bias_filler", 5, "FillerParameter", "?", None)], {}),
    "SigmoidParameter": ([("engine", 1, ".Engine", "?", "DEFAULT")], {"Engine": _ENGINE}),
    "SliceParameter": ([("axis", 3, "int32", "?", "1"), ("slice_point", 2, "uint32", "*", None),
                        ("slice_dim", 1, "uint32", "?", "1")], {}),
    "SoftmaxParameter": ([("engine", 1, ".Engine", "?", "DEFAULT"), ("axis", 2, "int32", "?", "1")],
                         {"Engine": _ENGINE}),
    "TanHParameter": ([("engine", 1, ".Engine", "?", "DEFAULT")], {"Engine": _ENGINE}),
}

# LayerParameter: the generic fields, then one *_param message per layer type (name, number, message).
LAYER_PARAMS = [
    ("accuracy_param", 102, "AccuracyParameter"), ("batch_norm_param", 139, "BatchNormParameter"),
    ("bias_param", 141, "BiasParameter"), ("concat_param", 104, "ConcatParameter"),
    ("convolution_param", 106, "ConvolutionParameter"), ("data_param", 107, "DataParameter"),
    ("dropout_param", 108, "DropoutParameter"), ("eltwise_param", 110, "EltwiseParameter"),
    ("elu_param", 140, "ELUParameter"), ("flatten_param", 135, "FlattenParameter"),
    ("hdf5_data_param", 112, "HDF5DataParameter"), ("image_data_param", 115, "ImageDataParameter"),
    ("inner_product_param", 117, "InnerProductParameter"),
    ("input_param", 143, "InputParameter"), ("lrn_param", 118, "LRNParameter"),
    ("memory_data_param", 119, "MemoryDataParameter"), ("pooling_param", 121, "PoolingParameter"),
    ("prelu_param", 131, "PReLUParameter"), ("relu_param", 123, "ReLUParameter"),
    ("scale_param", 142, "ScaleParameter"), ("sigmoid_param", 124, "SigmoidParameter"),
    ("softmax_param", 125, "SoftmaxParameter"), ("slice_param", 126, "SliceParameter"),
    ("tanh_param", 127, "TanHParameter"), ("transform_param", 100, "TransformationParameter"),
    ("loss_param", 101, "LossParameter"),
]
MESSAGES["LayerParameter"] = ([
    ("name", 1, "string", "?", None), ("type", 2, "string", "?", None), ("bottom", 3, "string", "*", None),
    ("top", 4, "string", "*", None), ("phase", 10, ".caffe.Phase", "?", None), ("loss_weight", 5, "float", "*", None),
    ("param", 6, "ParamSpec", "*", None), ("blobs", 7, "BlobProto", "*", None),
    ("propagate_down", 11, "bool", "*", None), ("include", 8, "NetStateRule", "*", None),
    ("exclude", 9, "NetStateRule", "*", None),
    *((name, number, message, "?", None) for name, number, message in LAYER_PARAMS)], {})

V1_TYPES = {
    "NONE": 0, "ABSVAL": 35, "ACCURACY": 1, "ARGMAX": 30, "BNLL": 2, "CONCAT": 3, "CONTRASTIVE_LOSS": 37,
    "CONVOLUTION": 4, "DATA": 5, "DECONVOLUTION": 39, "DROPOUT": 6, "DUMMY_DATA": 32, "EUCLIDEAN_LOSS": 7,
    "ELTWISE": 25, "EXP": 38, "FLATTEN": 8, "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "HINGE_LOSS": 28, "IM2COL": 11,
    "IMAGE_DATA": 12, "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15, "MEMORY_DATA": 29,
    "MULTINOMIAL_LOGISTIC_LOSS": 16, "MVN": 34, "POOLING": 17, "POWER": 26, "RELU": 18, "SIGMOID": 19,
    "SIGMOID_CROSS_ENTROPY_LOSS": 27, "SILENCE": 36, "SOFTMAX": 20, "SOFTMAX_LOSS": 21, "SPLIT": 22, "SLICE": 33,
    "TANH": 23, "WINDOW_DATA": 24, "THRESHOLD": 31,
}
V1_PARAMS = [
    ("accuracy_param", 27, "AccuracyParameter"), ("concat_param", 9, "ConcatParameter"),
    ("convolution_param", 10, "ConvolutionParameter"), ("data_param", 11, "DataParameter"),
    ("dropout_param", 12, "DropoutParameter"), ("eltwise_param", 24, "EltwiseParameter"),
    ("hdf5_data_param", 13, "HDF5DataParameter"), ("image_data_param", 15, "ImageDataParameter"),
    ("inner_product_param", 17, "InnerProductParameter"),
    ("lrn_param", 18, "LRNParameter"), ("memory_data_param", 22, "MemoryDataParameter"),
    ("pooling_param", 19, "PoolingParameter"), ("relu_param", 30, "ReLUParameter"),
    ("sigmoid_param", 38, "SigmoidParameter"), ("softmax_param", 39, "SoftmaxParameter"),
    ("slice_param", 31, "SliceParameter"), ("tanh_param", 37, "TanHParameter"),
    ("transform_param", 36, "TransformationParameter"), ("loss_param", 42, "LossParameter"),
]
MESSAGES["V1LayerParameter"] = ([
    ("bottom", 2, "string", "*", None), ("top", 3, "string", "*", None), ("name", 4, "string", "?", None),
    ("include", 32, "NetStateRule", "*", None), ("exclude", 33, "NetStateRule", "*", None),
    ("type", 5, ".LayerType", "?", None), ("blobs", 6, "BlobProto", "*", None),
    ("param", 1001, "string", "*", None), ("blobs_lr", 7, "float", "*", None),
    ("weight_decay", 8, "float", "*", None), ("loss_weight", 35, "float", "*", None),
    *((name, number, message, "?", None) for name, number, message in V1_PARAMS)], {"LayerType": V1_TYPES})

_LABELS = {"?": F.LABEL_OPTIONAL, "*": F.LABEL_REPEATED, "*p": F.LABEL_REPEATED}


def _file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(name="jaxcnn_caffe.proto", package="caffe", syntax="proto2")
    phase = f.enum_type.add(name="Phase")
    for name, number in (("TRAIN", 0), ("TEST", 1)):
        phase.value.add(name=name, number=number)
    for message, (fields, enums) in MESSAGES.items():
        m = f.message_type.add(name=message)
        for enum, values in enums.items():
            e = m.enum_type.add(name=enum)
            for name, number in values.items():
                e.value.add(name=name, number=number)
        for name, number, kind, label, default in fields:
            field = m.field.add(name=name, number=number, label=_LABELS[label])
            if kind in _SCALARS:
                field.type = _SCALARS[kind]
            elif kind.startswith(".caffe."):
                field.type, field.type_name = F.TYPE_ENUM, kind
            elif kind.startswith("."):
                field.type, field.type_name = F.TYPE_ENUM, f".caffe.{message}{kind}"
            else:
                field.type, field.type_name = F.TYPE_MESSAGE, f".caffe.{kind}"
            if default is not None:
                field.default_value = default
            if label == "*p":
                field.options.packed = True
    return f


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())


def message(name: str):
    """The generated message class caffe.<name>, e.g. message('NetParameter')()."""
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"caffe.{name}"))


NetParameter = message("NetParameter")
SolverParameter = message("SolverParameter")
SolverState = message("SolverState")
BlobProto = message("BlobProto")
Datum = message("Datum")
LayerParameter = message("LayerParameter")
V1LayerParameter = message("V1LayerParameter")


def enum_name(message, field: str) -> str:
    """The name of an enum field's value, as Caffe's files write it: enum_name(pooling_param, 'pool') -> 'MAX'."""
    return message.DESCRIPTOR.fields_by_name[field].enum_type.values_by_number[getattr(message, field)].name
