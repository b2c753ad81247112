"""The data of a Caffe train/test net: its TRAIN and TEST data layers (Caffe's include { phase }) as the data fit
trains and evaluates on, and their transform_params as the Trainer's preprocessing: data = load_data(prototxt)
gives data.train, data.test (for fit), data.input_shape (for load_prototxt) and data.preprocessing() (the
Trainer's preprocess arguments); jaxcnn.train.caffe_run.load shows them together.

Where a layer's data comes from:
- `dataset` given ('mnist', 'fashion_mnist', 'cifar10'): that dataset (jaxcnn.datasets.load, from `data_dir`);
- else the layer's source, where it is on disk (as given, or beside the prototxt): an LMDB (Data), a list of images
  (ImageData) or of HDF5 files (HDF5Data), read by jaxcnn.caffe.sources;
- else, where the source's name contains fashion, mnist or cifar (as Caffe's examples name theirs), that dataset
  (also for a LevelDB so named, which jaxcnn does not read).
A source whose records take up to `memory_limit` bytes decoded (default $JAXCNN_IN_MEMORY_MB MiB, else 1024) is
read whole and put on the devices; a larger one stays on disk and fit streams it in batches, read ahead by a
background thread (jaxcnn.train.feed).
"""
import contextlib
import os
from typing import NamedTuple

from .. import datasets
from ..caffe import CaffeFormatError, load_prototxt
from ..caffe.data_layers import Transform
from ..caffe.sources import open_source

NAMED = (("fashion", "fashion_mnist"), ("mnist", "mnist"), ("cifar", "cifar10"))  # source substring -> dataset
IN_MEMORY_VAR = "JAXCNN_IN_MEMORY_MB"
IN_MEMORY_MB = 1024


class CaffeData(NamedTuple):
    """A train/test net's data. name: the dataset's, or the TRAIN source's path; train, test: (images, labels)
    arrays, or a source streamed from disk (jaxcnn.caffe.sources); input_shape: the per-example shape the net
    gets (after crop_size); train_transform, test_transform: the TRAIN and TEST layers' transform_param; bgr:
    whether the images come from the layers' own files, whose colour images are in Caffe's BGR order."""

    name: str
    train: object
    test: object
    input_shape: tuple
    train_transform: Transform
    test_transform: Transform
    bgr: bool = False

    def preprocessing(self) -> dict:
        """The Trainer's preprocess, augment and eval_preprocess: the TRAIN layer's mean and scale on whole images
        then its random crop and mirror; the TEST layer's mean, scale and centre crop for evaluation."""
        t = self.train_transform
        return {"preprocess": t.normalize, "augment": t.augment if t.random else None,
                "eval_preprocess": self.test_transform}


def named_dataset(source: str | None) -> str | None:
    """The dataset ('mnist', 'fashion_mnist', 'cifar10') a source's name points to, or None."""
    return next((name for key, name in NAMED if key in (source or "").lower()), None)


def memory_limit_bytes() -> int:
    """The largest source (bytes decoded) loaded into memory: $JAXCNN_IN_MEMORY_MB MiB, else 1024 MiB."""
    text = os.environ.get(IN_MEMORY_VAR, str(IN_MEMORY_MB))
    try:
        return int(float(text) * 2 ** 20)
    except ValueError:
        raise ValueError(f"${IN_MEMORY_VAR}: expected a number of MiB, got {text!r}") from None


def load_data(net_path, *, dataset: str | None = None, data_dir=None, memory_limit: int | None = None) -> CaffeData:
    """The TRAIN and TEST data of the Caffe net in `net_path` (see the module docstring). Errors name the file and
    layer: CaffeFormatError (no data layer; a source or mean file that is not what the layer reads; transforms
    that do not fit the images), FileNotFoundError (a source, image or mean file that is not there) and the
    datasets' errors (jaxcnn.datasets.load)."""
    where = str(net_path)
    train_net, test_net = load_prototxt(net_path, "TRAIN"), load_prototxt(net_path, "TEST")
    layer, test_layer = train_net.data, test_net.data
    if layer is None:
        raise CaffeFormatError(where, "the TRAIN phase has no Data, ImageData, HDF5Data or MemoryData layer")
    name = dataset or (None if layer.readable() else named_dataset(layer.source))
    train_t = train_net.transform
    test_t = test_net.transform if test_layer is not None else train_t
    if name is not None:
        train, test = datasets.load(name, "train", data_dir), datasets.load(name, "test", data_dir)
        shape = _checked(where, (train_t, test_t), (train[0].shape[1:], test[0].shape[1:]), (f"{name} train",
                                                                                            f"{name} test"))
        return CaffeData(name, train, test, shape, train_t, test_t)
    known = f"or name a dataset ({', '.join(n for _, n in NAMED)}) to train on"
    if test_layer is None:
        raise CaffeFormatError(where, f"the TEST phase has no data layer to evaluate on; {known}")
    if not layer.source:
        raise CaffeFormatError(where, f"a {layer.type} layer has no source; {known}", layer=layer.layer)
    limit = memory_limit_bytes() if memory_limit is None else memory_limit
    with contextlib.ExitStack() as opened:  # closed on an error; a source streamed stays open for fit
        readers = [opened.enter_context(open_source(layer)), opened.enter_context(open_source(test_layer))]
        shape = _checked(where, (train_t, test_t), [r.shape for r in readers], [str(r.path) for r in readers])
        train, test = (_loaded(r) if r.nbytes <= limit else r for r in readers)
        opened.pop_all()
    return CaffeData(str(readers[0].path), train, test, shape, train_t, test_t, bgr=True)


def _checked(where, transforms, shapes, sources) -> tuple:
    """The net's per-example input shape; CaffeFormatError unless each transform (TRAIN, TEST) fits the images of
    its source and both give inputs of that shape."""
    for t, shape, source in zip(transforms, shapes, sources):
        t.check(shape, source)
    train, test = (t.output_shape(shape) for t, shape in zip(transforms, shapes))
    if train != test:
        raise CaffeFormatError(where, f"the TRAIN data ({sources[0]}) gives the net inputs of shape {train}, the "
                                      f"TEST data ({sources[1]}) {test}")
    return train


def _loaded(source):
    with source:
        return source.load()
