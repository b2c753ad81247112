"""Caffe's data layers: transform_param against a NumPy loop of Caffe's data_transformer.cpp rules, the LMDB,
image-list and HDF5 readers against files written without them (Datums encoded by hand, images by OpenCV, the
library Caffe uses), input shapes from the source, the prefetching stream, and `jaxcnn train` on such data."""
import json
import threading
from importlib.util import find_spec

import cv2
import jax
import numpy as np
import optax
import pytest
from dataset_writers import (
    datum_bytes,
    write_datum_lmdb,
    write_h5_list,
    write_images_and_list,
    write_mean_binaryproto,
)

from jaxcnn import plots
from jaxcnn.__main__ import main
from jaxcnn.caffe import CaffeFormatError, load_caffemodel, load_prototxt, parse_prototxt
from jaxcnn.caffe.data_layers import DataSource, Transform, mean_blob, read_mean_file
from jaxcnn.caffe.images import resize_linear
from jaxcnn.caffe.sources import open_source, write_lmdb
from jaxcnn.datasets.prefetch import Prefetch
from jaxcnn.train import Trainer, fit
from jaxcnn.train.caffe_data import load_data

# the data extra (lmdb, h5py; Pillow) and OpenCV, which writes the test images as Caffe's tools do
files = pytest.mark.skipif(not all(find_spec(m) for m in ("lmdb", "h5py", "PIL", "cv2")),
                           reason="needs jaxcnn[data] (lmdb, h5py, Pillow) and OpenCV")

# -- transform_param against Caffe's rules ------------------------------------------------------------

def caffe_transform(datum, *, scale=1.0, mean=None, mean_values=(), crop=0, h_off=0, w_off=0, mirror=False):
    """data_transformer.cpp's Transform(Datum) for one (C, H, W) datum, as a loop over Caffe's flat indices."""
    channels, height, width = datum.shape
    out_h, out_w = (crop, crop) if crop else (height, width)
    data, out = datum.ravel(), np.zeros(channels * out_h * out_w, np.float32)
    values = list(mean_values) * channels if len(mean_values) == 1 else list(mean_values)
    for c in range(channels):
        for h in range(out_h):
            for w in range(out_w):
                data_index = (c * height + h_off + h) * width + w_off + w
                top_index = (c * out_h + h) * out_w + (out_w - 1 - w if mirror else w)
                element = np.float32(data[data_index])
                if mean is not None:
                    out[top_index] = (element - np.float32(mean.ravel()[data_index])) * np.float32(scale)
                elif values:
                    out[top_index] = (element - np.float32(values[c])) * np.float32(scale)
                else:
                    out[top_index] = element * np.float32(scale)
    return out.reshape(channels, out_h, out_w)


@pytest.mark.parametrize("kind", ["mean_file", "mean_values", "one_mean_value"])
def test_transform_is_caffes_in_both_phases(tmp_path, rng, kind):
    """TRAIN: random crop, random mirror, mean (the mean image at the crop's offset) and scale; TEST: the centre
    crop; each equal to Caffe's loop over the datum with the offsets and flips the transform drew."""
    images = rng.integers(0, 256, (6, 3, 9, 11), np.uint8)  # (N, C, H, W) as Caffe holds them
    mean_chw = rng.random((3, 9, 11), np.float32) * 255
    mean_values = {"mean_file": (), "mean_values": (104.0, 117.0, 123.0), "one_mean_value": (110.0,)}[kind]
    mean_file = str(write_mean_binaryproto(tmp_path / "mean.binaryproto", mean_chw)) if kind == "mean_file" else None
    t = Transform(scale=0.017, mean_value=mean_values, mean_file=mean_file, crop_size=7, mirror=True)
    nhwc = images.transpose(0, 2, 3, 1)
    t.check(nhwc.shape[1:], "the test images")
    key = jax.random.key(3)
    top, left, flip = (np.asarray(a) for a in t.draw(key, 6, 9, 11))
    trained = np.asarray(t.augment(key, t.normalize(nhwc)))
    tested = np.asarray(t(nhwc))
    mean = mean_chw if kind == "mean_file" else None
    for i in range(6):
        want = caffe_transform(images[i], scale=0.017, mean=mean, mean_values=mean_values, crop=7, h_off=top[i],
                               w_off=left[i], mirror=flip[i])
        np.testing.assert_allclose(trained[i].transpose(2, 0, 1), want, rtol=1e-6, atol=1e-5)
        centre = caffe_transform(images[i], scale=0.017, mean=mean, mean_values=mean_values, crop=7, h_off=1,
                                 w_off=2)
        np.testing.assert_allclose(tested[i].transpose(2, 0, 1), centre, rtol=1e-6, atol=1e-5)


def test_training_draws_every_offset_and_both_flips():
    t = Transform(crop_size=5, mirror=True)
    top, left, flip = (np.asarray(a) for a in t.draw(jax.random.key(0), 400, 8, 6))
    assert sorted(set(top)) == [0, 1, 2, 3] and sorted(set(left)) == [0, 1]  # Caffe: Rand(H - crop + 1)
    assert 120 < flip.sum() < 280
    assert not np.asarray(Transform(crop_size=5).draw(jax.random.key(0), 50, 8, 6)[2]).any()


def test_transform_errors_name_the_layer_and_file(tmp_path, rng):
    mean = write_mean_binaryproto(tmp_path / "mean.binaryproto", rng.random((3, 8, 8), np.float32))
    t = Transform(mean_file=str(mean), layer="data", file=str(tmp_path / "net.prototxt"))
    with pytest.raises(CaffeFormatError, match=r"mean.binaryproto: layer 'data': a mean of shape 3x8x8 \(C x H x W\) "
                                               r"does not fit the 3x10x10 images of src"):
        t.check((10, 10, 3), "src")
    with pytest.raises(CaffeFormatError, match=r"net.prototxt: layer 'data': transform_param: crop_size 12 is "
                                               "larger than the 10x10 images of src"):
        Transform(crop_size=12, layer="data", file=str(tmp_path / "net.prototxt")).check((10, 10, 3), "src")
    with pytest.raises(CaffeFormatError, match="2 mean_value entries for the 3 channels of src"):
        Transform(mean_value=(1.0, 2.0)).check((10, 10, 3), "src")
    (tmp_path / "bad.binaryproto").write_bytes(b"\xff\xff\xff")
    with pytest.raises(CaffeFormatError, match=r"bad.binaryproto: layer 'data': not a mean file \(a BlobProto\)"):
        read_mean_file(str(tmp_path / "bad.binaryproto"), None, "data")
    with pytest.raises(FileNotFoundError, match=r"net.prototxt: layer 'data': no such mean_file 'gone.binaryproto'"):
        read_mean_file("gone.binaryproto", str(tmp_path / "net.prototxt"), "data")


def test_mean_file_round_trip(tmp_path, rng):
    mean = rng.random((3, 5, 4), np.float32)
    write_mean_binaryproto(tmp_path / "a.binaryproto", mean)
    np.testing.assert_array_equal(read_mean_file(str(tmp_path / "a.binaryproto")), mean.transpose(1, 2, 0))
    (tmp_path / "b.binaryproto").write_bytes(mean_blob(mean.transpose(1, 2, 0)))
    assert (tmp_path / "b.binaryproto").read_bytes() == (tmp_path / "a.binaryproto").read_bytes()


# -- the readers ----------------------------------------------------------------------------------------

def _source(kind, path, **options):
    return DataSource(kind, str(path), 4, ("data", "label"), "data", None, options)


@files
def test_lmdb_of_raw_float_and_encoded_datums(tmp_path, rng):
    """Records in key order as (H, W, C): raw bytes and float_data transposed from (C, H, W), encoded images
    decoded as OpenCV decodes them (BGR, or one channel), labels (negative ones too)."""
    raw = rng.integers(0, 256, (5, 3, 4, 6), np.uint8)
    floats = rng.random((3, 2, 4, 6), np.float32)
    write_datum_lmdb(tmp_path / "raw", [(f"{i:08d}_x".encode(), datum_bytes(i - 1, chw=raw[i])) for i in (3, 1, 0,
                                                                                                          4, 2)])
    write_datum_lmdb(tmp_path / "float", [(f"{i}".encode(), datum_bytes(7, float_chw=floats[i])) for i in range(3)])
    bgr = rng.integers(0, 256, (2, 4, 6, 3), np.uint8)
    gray = rng.integers(0, 256, (1, 4, 6), np.uint8)
    write_datum_lmdb(tmp_path / "png", [(b"a", datum_bytes(0, encoded=cv2.imencode(".png", bgr[0])[1].tobytes())),
                                        (b"b", datum_bytes(1, encoded=cv2.imencode(".png", bgr[1])[1].tobytes()))])
    write_datum_lmdb(tmp_path / "gray", [(b"a", datum_bytes(2, encoded=cv2.imencode(".png", gray[0])[1].tobytes()))])
    with open_source(_source("Data", tmp_path / "raw")) as s:
        assert (len(s), s.shape, s.dtype, s.nbytes) == (5, (4, 6, 3), np.uint8, 5 * 72)
        images, labels = s.load()
        np.testing.assert_array_equal(images, raw.transpose(0, 2, 3, 1))
        np.testing.assert_array_equal(labels, [-1, 0, 1, 2, 3])
        picked, picked_labels = s.read([4, 0, 2])
        np.testing.assert_array_equal(picked, images[[4, 0, 2]])
        np.testing.assert_array_equal(picked_labels, [3, -1, 1])
    with open_source(_source("Data", tmp_path / "float")) as s:
        assert s.dtype == np.float32
        np.testing.assert_array_equal(s.load()[0], floats.transpose(0, 2, 3, 1))
    with open_source(_source("Data", tmp_path / "png")) as s:
        np.testing.assert_array_equal(s.load()[0], bgr)  # BGR stays BGR, as cv2.imdecode gives it
    with open_source(_source("Data", tmp_path / "png", force="gray")) as s:
        want = [cv2.imdecode(cv2.imencode(".png", b)[1], cv2.IMREAD_GRAYSCALE) for b in bgr]
        assert np.abs(s.load()[0][..., 0].astype(int) - want).max() <= 1  # Pillow's and OpenCV's gray rounding
    with open_source(_source("Data", tmp_path / "gray", force="color")) as s:
        np.testing.assert_array_equal(s.load()[0], np.repeat(gray[..., None], 3, axis=-1))


@files
def test_write_lmdb_is_read_back(tmp_path, rng):
    images = rng.integers(0, 256, (3, 5, 4, 3), np.uint8)
    write_lmdb(tmp_path / "raw", images, [2, 0, 1])
    write_lmdb(tmp_path / "png", images, [2, 0, 1], encode="png")
    for name in ("raw", "png"):
        with open_source(_source("Data", tmp_path / name)) as s:
            got, labels = s.load()
            np.testing.assert_array_equal(got, images)
            np.testing.assert_array_equal(labels, [2, 0, 1])


@files
def test_bad_lmdbs_are_one_line_errors_naming_file_record_and_layer(tmp_path, rng):
    write_datum_lmdb(tmp_path / "json", [(b"00000000", b'{"label": 1, "pixels": [1, 2, 3]}')])
    write_datum_lmdb(tmp_path / "shapes", [(b"0", datum_bytes(0, chw=np.zeros((1, 4, 4)))),
                                           (b"1", datum_bytes(0, chw=np.zeros((1, 4, 5))))])
    write_datum_lmdb(tmp_path / "jpeg", [(b"00000000", datum_bytes(0, encoded=b"\xff\xd8 cut short"))])
    (tmp_path / "leveldb").mkdir()
    (tmp_path / "leveldb" / "CURRENT").write_text("MANIFEST-000001\n")
    cases = [("json", r"json: layer 'data': record '00000000': not a Caffe Datum"),
             ("leveldb", r"leveldb: layer 'data': not an LMDB: a LevelDB \(convert it to LMDB"),
             ("jpeg", r"jpeg: layer 'data': record '00000000': not an image Pillow can decode"),
             ("shapes", r"shapes: layer 'data': record '1': 1x4x5 \(C x H x W\) uint8 where the first record is "
                        r"1x4x4 \(C x H x W\) uint8")]
    for name, message in cases:
        with pytest.raises(CaffeFormatError, match=message) as e:
            with open_source(_source("Data", tmp_path / name)) as s:
                s.load()
        assert "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match=r"layer 'data': no such source '.*nowhere'"):
        open_source(_source("Data", tmp_path / "nowhere"))


@files
def test_image_list_with_root_folder_resize_and_gray(tmp_path, rng):
    """ImageData's list: root_folder joined as a string, the label after the last space, images as OpenCV reads
    them (BGR; IMREAD_GRAYSCALE with is_color false), new_height/new_width as cv2.resize."""
    bgr = rng.integers(0, 256, (3, 9, 13, 3), np.uint8)
    listing = write_images_and_list(tmp_path / "imgs", bgr, [2, 0, 1])
    (tmp_path / "list.txt").write_text("".join(f"imgs/{line}\n" for line in listing.read_text().splitlines()))
    with open_source(_source("ImageData", tmp_path / "list.txt", root_folder=f"{tmp_path}/")) as s:
        images, labels = s.load()
        np.testing.assert_array_equal(images, bgr)
        np.testing.assert_array_equal(labels, [2, 0, 1])
    with open_source(_source("ImageData", listing, new_size=(6, 20))) as s:  # paths beside the list
        want = [cv2.resize(cv2.imread(str(tmp_path / "imgs" / f"img_{i}.png")), (20, 6)) for i in range(3)]
        assert s.shape == (6, 20, 3) and np.abs(s.load()[0].astype(int) - want).max() <= 1
    with open_source(_source("ImageData", listing, is_color=False)) as s:
        want = [cv2.imread(str(tmp_path / "imgs" / f"img_{i}.png"), cv2.IMREAD_GRAYSCALE) for i in range(3)]
        assert s.shape == (9, 13, 1) and np.abs(s.load()[0][..., 0].astype(int) - want).max() <= 1


@files
def test_resize_is_opencvs_bilinear(rng):
    image = rng.integers(0, 256, (17, 23, 3), np.uint8)
    for size in [(9, 11), (34, 46), (17, 8), (40, 23), (5, 5)]:
        want = cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR)
        assert np.abs(resize_linear(image, *size).astype(int) - want).max() <= 1, size


@files
def test_image_list_errors(tmp_path, rng):
    listing = write_images_and_list(tmp_path, rng.integers(0, 256, (2, 4, 4, 3), np.uint8), [0, 1])
    listing.write_text(listing.read_text() + "gone.png 3\n")
    with pytest.raises(FileNotFoundError, match=r"list.txt: line 3: no such image 'gone.png' \(root_folder '';.*"
                                                r"layer 'data'"):
        open_source(_source("ImageData", listing))
    listing.write_text("img_0.png\n")
    with pytest.raises(CaffeFormatError, match=r"list.txt: layer 'data': line 1: expected 'path label'"):
        open_source(_source("ImageData", listing))
    (tmp_path / "img_0.png").write_bytes(b"not a png")
    listing.write_text("img_0.png 0\n")
    with pytest.raises(CaffeFormatError, match=r"list.txt: layer 'data': line 1: .*img_0.png: not an image Pillow "
                                               r"can decode"):
        open_source(_source("ImageData", listing))


@files
def test_hdf5_list_by_the_layers_tops(tmp_path, rng):
    data = rng.random((7, 2, 3, 4), np.float32)
    labels = np.arange(7, dtype=np.float32)[:, None] % 3  # Caffe's HDF5 labels are floats, (N, 1) or (N,)
    listing = write_h5_list(tmp_path, [{"pix": data[:4], "cls": labels[:4]}, {"pix": data[4:], "cls": labels[4:]}])
    with open_source(DataSource("HDF5Data", str(listing), 2, ("pix", "cls"), "h5", None, {})) as s:
        assert (len(s), s.shape, s.dtype) == (7, (3, 4, 2), np.float32)
        np.testing.assert_array_equal(s.load()[0], data.transpose(0, 2, 3, 1))
        images, got = s.read([6, 1, 4, 0])
        np.testing.assert_array_equal(images, data[[6, 1, 4, 0]].transpose(0, 2, 3, 1))
        np.testing.assert_array_equal(got, [0, 1, 1, 0])
    with pytest.raises(CaffeFormatError, match=r"part_0.h5: layer 'h5': no dataset 'label' \(the layer's top"):
        open_source(DataSource("HDF5Data", str(listing), 2, ("pix", "label"), "h5", None, {}))
    write_h5_list(tmp_path / "f", [{"data": data, "label": labels + 0.5}])
    with pytest.raises(CaffeFormatError, match="holds labels that are not integers"):
        open_source(DataSource("HDF5Data", str(tmp_path / "f" / "list.txt"), 2, ("data", "label"), "h", None,
                               {})).load()


# -- nets: shapes from the source, the layers' fields -------------------------------------------------------

@files
def test_a_data_layer_with_a_source_needs_no_input_shape(tmp_path, rng, monkeypatch):
    """crop_size gives height and width, the source's first record the channels: Caffe shapes the data top from
    the first Datum. A source that is not there leaves the shape to input_shape, as before."""
    write_datum_lmdb(tmp_path / "db", [(b"0", datum_bytes(0, chw=rng.integers(0, 256, (3, 12, 10))))])
    layer = ('layer {{ name: "data" type: "Data" top: "data" top: "label" transform_param {{ {t} }} '
             'data_param {{ source: "{src}" batch_size: 2 backend: LMDB }} }}\n'
             'layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param {{ '
             'num_output: 2 }} }}\n')
    monkeypatch.chdir(tmp_path)
    assert parse_prototxt(layer.format(t="crop_size: 8", src="db")).input_shape == (8, 8, 3)
    assert parse_prototxt(layer.format(t="", src="db")).input_shape == (12, 10, 3)
    assert parse_prototxt(layer.format(t="crop_size: 8", src="elsewhere")).input_shape is None
    assert parse_prototxt(layer.format(t="crop_size: 8 mean_value: 1 mean_value: 2 mean_value: 3",
                                       src="elsewhere")).input_shape == (8, 8, 3)
    hdf5 = ('layer { name: "d" type: "HDF5Data" top: "data" top: "label" hdf5_data_param { source: "h5/list.txt" '
            'batch_size: 2 } }\nlayer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
            'inner_product_param { num_output: 2 } }\n')
    write_h5_list(tmp_path / "h5", [{"data": np.zeros((3, 5), np.float32), "label": np.zeros(3)}])
    assert parse_prototxt(hdf5).input_shape == (5,)
    with pytest.raises(CaffeFormatError, match="HDF5Data layer applies no transform_param"):
        parse_prototxt(hdf5.replace("hdf5_data_param", "transform_param { scale: 2 } hdf5_data_param"))


# -- streaming ------------------------------------------------------------------------------------------

def test_prefetch_keeps_order_bounds_the_queue_and_raises_where_the_read_failed():
    started, gate = [], threading.Event()

    def read(i):
        started.append(i)
        gate.wait(10)
        if i == 5:
            raise ValueError("record 5 is bad")
        return i * 10

    with Prefetch(read, range(100), depth=3, workers=2) as batches:
        gate.set()
        assert [next(batches) for _ in range(5)] == [0, 10, 20, 30, 40]
        assert len(started) <= 3 + 5  # never more than `depth` reads ahead of what was taken
        with pytest.raises(ValueError, match="record 5 is bad"):
            next(batches)
    with Prefetch(lambda i: i * 10, range(4), depth=2) as batches:
        assert list(batches) == [0, 10, 20, 30]


@files
@pytest.mark.slow
def test_a_streamed_source_trains_as_the_same_records_in_memory(tmp_path, rng):
    """fit on an LMDB streamed from disk (prefetched batches, one step each) and on its records loaded into memory
    takes the same batches in the same order: the same losses and params."""
    net_path = _tiny_net(tmp_path, rng, n_train=24, n_test=10)
    results = []
    for limit in (0, None):
        data = load_data(net_path, memory_limit=limit)
        assert hasattr(data.train, "read") == (limit == 0) and data.input_shape == (8, 8, 3)
        assert (data.train_transform.mirror, data.test_transform.mirror) == (True, False)  # each phase's layer
        net = load_prototxt(net_path, "TRAIN", input_shape=data.input_shape)
        trainer = Trainer(net, optax.sgd(0.1, momentum=0.9), batch_size=8, eval_batch_size=5,
                          **data.preprocessing())
        ts, history = fit(trainer, data.train, data.test, epochs=2, seed=1)
        results.append((jax.device_get(ts.params), history))
    (p_stream, h_stream), (p_memory, h_memory) = results
    for key in ("train_loss", "test_loss", "test_accuracy"):
        np.testing.assert_allclose([h[key] for h in h_stream], [h[key] for h in h_memory], rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), p_stream, p_memory)


# -- jaxcnn train ---------------------------------------------------------------------------------------

TINY_NET = """name: "tiny"
layer {{ name: "data" type: "{kind}" top: "data" top: "label" include {{ phase: TRAIN }} {train_transform}
  {param} {{ source: "{train}" batch_size: 8 {extra} }} }}
layer {{ name: "data" type: "{kind}" top: "data" top: "label" include {{ phase: TEST }} {test_transform}
  {param} {{ source: "{test}" batch_size: 4 {extra} }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 4 kernel_size: 3 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1"
  inner_product_param {{ num_output: 3 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "accuracy" type: "Accuracy" bottom: "ip1" bottom: "label" top: "accuracy" include {{ phase: TEST }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }}
"""
TRANSFORMS = {"train_transform": 'transform_param { scale: 0.00390625 crop_size: 8 mirror: true mean_file: '
                                 '"mean.binaryproto" }',
              "test_transform": 'transform_param { scale: 0.00390625 crop_size: 8 mean_file: "mean.binaryproto" }'}
SOLVER = 'net: "tiny.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\nmomentum: 0.9\nmax_iter: {iters}\n' \
         'snapshot_prefix: "tiny"\n'


def _tiny_net(directory, rng, n_train=16, n_test=8, kind="Data", iters=2):
    """A LeNet-like train/test net on 3x10x12 images of 3 classes (TRAIN: random 8x8 crops and mirror, mean file;
    TEST: centre crops), its data in an LMDB ("Data") or as PNG files and list files ("ImageData"), and its solver
    (max_iter `iters`). Returns the net's path."""
    images = rng.integers(0, 256, (n_train + n_test, 10, 12, 3), np.uint8)
    labels = rng.integers(0, 3, n_train + n_test)
    write_mean_binaryproto(directory / "mean.binaryproto", images[:n_train].mean(0).transpose(2, 0, 1))
    if kind == "Data":
        for name, part in (("train_lmdb", slice(0, n_train)), ("test_lmdb", slice(n_train, None))):
            write_datum_lmdb(directory / name, [(f"{i:08d}".encode(), datum_bytes(label, chw=image.transpose(2, 0, 1)))
                                                for i, (image, label) in enumerate(zip(images[part], labels[part]))])
        fields = {"param": "data_param", "train": "train_lmdb", "test": "test_lmdb", "extra": "backend: LMDB"}
    else:
        write_images_and_list(directory / "train", images[:n_train], labels[:n_train])
        write_images_and_list(directory / "test", images[n_train:], labels[n_train:])
        fields = {"param": "image_data_param", "train": "train/list.txt", "test": "test/list.txt",
                  "extra": "shuffle: true"}
    text = TINY_NET.format(kind=kind, **TRANSFORMS, **fields)
    (directory / "tiny.prototxt").write_text(text)
    (directory / "solver.prototxt").write_text(SOLVER.format(iters=iters))
    return directory / "tiny.prototxt"


@files
@pytest.mark.slow
@pytest.mark.parametrize("kind,stream", [("Data", True), ("ImageData", False)])
def test_train_on_a_tiny_lmdb_and_image_list(tmp_path, rng, capsys, monkeypatch, kind, stream):
    """`jaxcnn train --solver` on the net's own TRAIN and TEST sources (the LMDB streamed from disk, the image list
    loaded): a run directory with metrics and the trained caffemodel, which the TEST net loads; the plot of the
    test images shows them in RGB, as the image files hold them (the net reads BGR)."""
    monkeypatch.setenv("JAXCNN_IN_MEMORY_MB", "0" if stream else "64")
    net_path = _tiny_net(tmp_path, rng, kind=kind, iters=4)
    out = tmp_path / "run"
    shown = {}
    monkeypatch.setattr(plots, "misclassified", lambda images, *args: shown.update(images=images) or 0)
    main(["train", "--solver", str(tmp_path / "solver.prototxt"), "--out", str(out)])
    if kind == "ImageData":
        from PIL import Image
        files = [Image.open(tmp_path / "test" / f"img_{i}.png") for i in range(8)]
        np.testing.assert_array_equal(shown["images"], [np.asarray(f.convert("RGB")) for f in files])
    text = capsys.readouterr().out
    source = tmp_path / ("train_lmdb" if kind == "Data" else "train/list.txt")
    assert f"{source}: 16 training / 8 test images; batch 8" in text and "max_iter 4 -> 2 epochs" in text
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [2, 4] and all(np.isfinite(m["test_loss"]) for m in metrics)
    net = load_prototxt(net_path)  # TEST phase: its input shape from the TEST source and crop_size
    assert net.input_shape == (8, 8, 3)
    params, _ = load_caffemodel(net, out / "tiny_iter_4.caffemodel")
    assert params["conv1"]["w"].shape == (3, 3, 3, 4)


@files
@pytest.mark.parametrize("case", ["not_datums", "missing_image", "mean_shape", "h5_dataset"])
def test_train_bad_data_is_a_one_line_usage_error(tmp_path, rng, capsys, case):
    """Each bad input is named (file, record or line, layer) before --out is touched."""
    kind = "ImageData" if case == "missing_image" else "Data"
    net_path = _tiny_net(tmp_path, rng, kind=kind)
    if case == "not_datums":
        write_datum_lmdb(tmp_path / "bad_lmdb", [(b"k1", b"\x89PNG not a datum")])
        net_path.write_text(net_path.read_text().replace('"test_lmdb"', '"bad_lmdb"'))
        line = f"{tmp_path / 'bad_lmdb'}: layer 'data': record 'k1': not a Caffe Datum"
    elif case == "missing_image":
        (tmp_path / "train" / "img_3.png").unlink()
        line = f"{tmp_path / 'train' / 'list.txt'}: line 4: no such image 'img_3.png'"
    elif case == "mean_shape":
        write_mean_binaryproto(tmp_path / "mean.binaryproto", np.zeros((3, 8, 8), np.float32))
        line = (f"{tmp_path / 'mean.binaryproto'}: layer 'data': a mean of shape 3x8x8 (C x H x W) does not fit the "
                f"3x10x12 images of {tmp_path / 'train_lmdb'}")
    else:
        write_h5_list(tmp_path / "h5", [{"data": np.zeros((4, 3, 8, 8), np.float32), "labels": np.zeros(4)}])
        net_path.write_text(TINY_NET.format(kind="HDF5Data", param="hdf5_data_param", train="h5/list.txt",
                                            test="h5/list.txt", extra="", train_transform="", test_transform=""))
        line = f"{tmp_path / 'h5' / 'part_0.h5'}: layer 'data': no dataset 'label' (the layer's top 'label')"
    out = tmp_path / "runs" / "x"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--solver", str(tmp_path / "solver.prototxt"), "--out", str(out)])
    err = capsys.readouterr().err.splitlines()
    assert exit_info.value.code == 2 and err[-1].startswith(f"error: {line}"), err
    assert not any("Traceback" in e for e in err) and not (tmp_path / "runs").exists()
