"""Model files from the command line: summary and draw of .prototxt / .cfg files, fc_as_conv on a Caffe net, and
training a Caffe train/test net with its solver."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import caffe_nets
import numpy as np
import pytest
from conftest import random_params
from dataset_writers import write_mnist
from synthetic import write_mnist_like
from test_caffe import lenet_deploy_text

from experiments import fc_as_conv
from jaxcnn import summary, zoo
from jaxcnn.__main__ import main
from jaxcnn.caffe import load_caffemodel, load_prototxt, save_caffemodel
from jaxcnn.cli import entry

ROOT = Path(__file__).resolve().parents[1]
CAFFE_DIR, CONVNET_DIR = ROOT / "experiments" / "caffe", ROOT / "experiments" / "cudaconvnet"


@pytest.mark.slow
def test_reading_model_files_imports_no_training():
    """The readers and the layers depend on nets only: reading a prototxt or a cfg loads neither jaxcnn.train nor
    Optax nor orbax (a fresh process)."""
    prototxt = str(CAFFE_DIR / "lenet_bn_deploy.prototxt")
    code = (f"import sys; import jaxcnn.caffe, jaxcnn.cudaconvnet; jaxcnn.caffe.load_prototxt({prototxt!r}); "
            "print(sorted(m for m in ('jaxcnn.train', 'optax', 'orbax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


def test_summary_of_caffes_bvlc_alexnet_deploy(capsys):
    main(["summary", str(CAFFE_DIR / "bvlc_alexnet_deploy.prototxt")])
    out = capsys.readouterr().out
    assert "Total params: 60,965,224" in out
    assert re.search(r"^conv2\s+Conv\s+\(27, 27, 256\)\s+307,456 ", out, re.M)


def test_summary_of_a_cuda_convnet_file(capsys):
    main(["summary", str(CONVNET_DIR / "layers-conv-local-11pct.cfg"), "--input-shape", "32,32,3", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["trainable"] == summary(zoo.cifar10_local()).trainable
    with pytest.raises(SystemExit):
        main(["summary", str(CONVNET_DIR / "layers-conv-local-11pct.cfg")])
    assert "cuda-convnet files do not give the input size: pass --input-shape" in capsys.readouterr().err


def test_summary_of_a_branched_prototxt_shows_each_layers_inputs(tmp_path, capsys):
    (tmp_path / "fire.prototxt").write_text(caffe_nets.SQUEEZENET_FIRE)
    main(["summary", str(tmp_path / "fire.prototxt")])
    out = capsys.readouterr().out
    assert re.search(r"^fire2/concat\s+Concat\s+fire2/expand1x1, fire2/expand3x3\s+\(10, 10, 8\)", out, re.M)


@pytest.mark.parametrize("text, message", [
    (caffe_nets._input(1, 4, 4) + 'layer { name: "x" type: "Deconvolution" bottom: "data" top: "x" }',
     "layer 'x' (Deconvolution): layer type 'Deconvolution' is not supported"),
    (caffe_nets._input(1, 4, 4) + "layer {", "3:7 : Expected \"}\"."),
    (b"\n\x05lenet\x1a\x00\xff\xfe", "not a text prototxt (a .caffemodel?)"),  # a binary NetParameter
    ('name: "n"\ninput: "data"\nlayer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
     "inner_product_param { num_output: 3 } }", "n: the net has no default input shape: give --input-shape H,W,C"),
])
def test_summary_of_a_bad_file_is_a_one_line_error_naming_it_once(tmp_path, capsys, text, message):
    path = tmp_path / "net.prototxt"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(SystemExit) as exit_info:
        main(["summary", str(path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {path}: {message}\n"


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed (apt-get install graphviz)")
def test_draw_writes_the_graph(tmp_path, capsys):
    (tmp_path / "inception.prototxt").write_text(caffe_nets.GOOGLENET_BLOCK)
    main(["draw", str(tmp_path / "inception.prototxt"), "--out", str(tmp_path / "net.svg")])
    svg = (tmp_path / "net.svg").read_text()
    assert "inception_3a/output" in svg and "Concat" in svg and "9x9x14" in svg
    assert svg.count("class=\"edge\"") == 17  # one per blob a layer reads: four branches fork and join
    main(["draw", "lenet_caffe", "--out", str(tmp_path / "lenet.png")])
    assert (tmp_path / "lenet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_fc_as_conv_slides_a_caffe_net_with_its_caffemodel(tmp_path):
    (tmp_path / "deploy.prototxt").write_text(lenet_deploy_text(1))
    net = load_prototxt(tmp_path / "deploy.prototxt")
    params, state = random_params(net, 4)
    save_caffemodel(net, params, state, tmp_path / "w.caffemodel")
    rng = np.random.default_rng(0)
    write_mnist(tmp_path / "mnist", "test", (rng.random((4, 28, 28)) > 0.8).astype(np.uint8) * 255, np.arange(4))
    results = fc_as_conv.main(["--prototxt", str(tmp_path / "deploy.prototxt"), "--caffemodel",
                               str(tmp_path / "w.caffemodel"), "--size", "44", "--digits", "1", "--repeats", "1",
                               "--data-dir", str(tmp_path / "mnist")])
    assert results["weights"] == f"caffemodel {tmp_path / 'w.caffemodel'}"
    assert results["score_map_shape"] == [5, 5, 10] and results["padded_layers"] == []
    assert results["rel_max_abs_diff"] < 1e-4


def test_fc_as_conv_prototxt_flag_errors(tmp_path, capsys):
    (tmp_path / "deploy.prototxt").write_text(lenet_deploy_text(1))
    for argv, message in [(["--prototxt", "x.prototxt", "--model", "vgg16"], "--prototxt replaces --model"),
                          (["--caffemodel", "w.caffemodel"], "--caffemodel needs --prototxt"),
                          (["--prototxt", str(tmp_path / "deploy.prototxt"), "--caffemodel", str(tmp_path / "no")],
                           f"--caffemodel {tmp_path / 'no'}")]:
        with pytest.raises(SystemExit):
            fc_as_conv.main(argv)
        assert message in capsys.readouterr().err


@pytest.mark.slow
def test_train_runs_caffes_lenet_solver_on_its_train_test_net(tmp_path, capsys):
    """Caffe's LeNet-BN train/test net with lenet_solver's settings (fewer iterations) on small synthetic
    MNIST-format data: a run directory with metrics and checkpoints, and the trained weights as a caffemodel."""
    for name in ("lenet_bn_train_test.prototxt", "lenet_solver.prototxt"):
        shutil.copy(CAFFE_DIR / name, tmp_path / name)
    solver = (tmp_path / "lenet_solver.prototxt").read_text().replace("max_iter: 10000", "max_iter: 48")
    (tmp_path / "lenet_solver.prototxt").write_text(solver)
    data = write_mnist_like(tmp_path / "mnist", n_train=1024, n_test=256)
    out = tmp_path / "run"
    main(["train", "--solver", str(tmp_path / "lenet_solver.prototxt"), "--data-dir", str(data), "--out", str(out)])
    text = capsys.readouterr().out
    assert "max_iter 48 -> 3 epochs" in text  # 1024 // 64 = 16 steps an epoch
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [16, 32, 48]
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"] and metrics[-1]["test_accuracy"] > 0.5
    net = load_prototxt(tmp_path / "lenet_bn_train_test.prototxt", input_shape=(28, 28, 1))
    params, state = load_caffemodel(net, out / "lenet_bn_iter_48.caffemodel")
    assert float(state["bn_conv1"]["count"]) > 1  # trained statistics
    assert any((out / "checkpoints").iterdir())
    # The manifest holds the solver's settings, so a solver edited since is told apart on --resume.
    (tmp_path / "lenet_solver.prototxt").write_text(solver.replace("base_lr: 0.01", "base_lr: 0.02"))
    with pytest.raises(SystemExit) as err:
        entry(lambda: main(["train", "--solver", str(tmp_path / "lenet_solver.prototxt"), "--data-dir", str(data),
                            "--out", str(out), "--resume"]))
    last = capsys.readouterr().err.splitlines()[-1]
    assert err.value.code == 2 and "made with solver setting lr 0.01, not solver setting lr 0.02;" in last


def test_train_errors_are_one_line_and_leave_out_untouched(tmp_path, capsys):
    """Each input (solver, net, data) is read before --out is touched: a failed start creates nothing there."""
    for name in ("lenet_bn_train_test.prototxt", "lenet_solver.prototxt"):
        shutil.copy(CAFFE_DIR / name, tmp_path / name)
    net = tmp_path / "lenet_bn_train_test.prototxt"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "lenet_bn_train_test.prototxt").write_text(net.read_text().replace('top: "loss"',
                                                                              'top: "loss"\n  loss_weight: 2'))
    shutil.copy(tmp_path / "lenet_solver.prototxt", bad / "lenet_solver.prototxt")
    (tmp_path / "binary.prototxt").write_bytes(b"\n\x05lenet\x1a\x00\xff\xfe")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "runs" / "caffe"
    for argv, code, line in [
        (["--solver", str(tmp_path / "missing.prototxt")], 2, f"{tmp_path / 'missing.prototxt'}: no such solver file"),
        (["--solver", str(tmp_path / "binary.prototxt")], 2,
         f"{tmp_path / 'binary.prototxt'}: not a text solver prototxt (a .solverstate or .caffemodel?)"),
        (["--solver", str(bad / "lenet_solver.prototxt")], 2,
         f"{bad / 'lenet_bn_train_test.prototxt'}: layer 'loss': loss_weight 2.0 is not supported for training (the "
         "Trainer minimises the loss itself)"),
        (["--solver", str(tmp_path / "lenet_solver.prototxt"), "--data-dir", str(tmp_path / "empty")], 2,
         f"no local copy of mnist 'train' found: nothing usable in --data-dir {tmp_path / 'empty'}."),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(["train", *argv, "--out", str(out)])
        err = capsys.readouterr().err.splitlines()
        assert (exit_info.value.code, err[-1]) == (code, f"error: {line}")
        assert not any("Traceback" in e or "data_dir" in e for e in err)
        assert not (tmp_path / "runs").exists()
