"""experiments/colab_tpu.ipynb: its parameters cell, its Colab-only cells (which do nothing elsewhere), the checks
of its install cell, jaxcnn.notebook's sentences, and the notebook executed headless with nbclient on CPU (CI runs
it with Colab's versions too): a run to results.json, a resume, and bad inputs that each end in one sentence."""
import importlib.machinery
import importlib.metadata
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import jax
import pytest

from experiments import mnist
from jaxcnn.notebook import describe_devices, message, speed_check
from jaxcnn.train import ConfigError, Interrupted, RunExists, RunMismatch

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "experiments" / "colab_tpu.ipynb"
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"
PLACEHOLDER = "https://github.com/YOUR-ACCOUNT/jaxcnn"


def cells() -> dict:
    """The notebook's code cells by id: their sources."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    return {c.id: c.source for c in nb.cells if c.cell_type == "code"}


def colab_cells(**parameters) -> dict:
    """The namespace after the parameters, Drive and install cells ran here (not on Colab), with `parameters`."""
    ns = {}
    source = cells()
    exec(source["parameters"], ns)
    ns.update(parameters)
    exec(source["drive"], ns)
    exec(source["install"], ns)
    return ns


# -- the cells -----------------------------------------------------------------------------------------------------
def test_parameters_cell_is_tagged_and_defines_the_parameters():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert [c.id for c in tagged] == ["parameters"]
    ns = {}
    exec(tagged[0].source, ns)
    assert ns["DATA_DIR"] is None and ns["SOURCE"] == PLACEHOLDER and ns["OVERWRITE"] is False
    command = mnist.arguments([])  # the notebook's defaults are the command's
    assert (ns["EPOCHS"], ns["BATCH_SIZE"], ns["DTYPE"]) == (command.epochs, command.batch_size, command.dtype)
    assert isinstance(ns["OUT_DIR"], str)
    assert nb.metadata.kernelspec.name == "python3"


def test_colab_only_cells_do_nothing_elsewhere(monkeypatch, capsys):
    """Off Colab the Drive cell mounts nothing and the install cell runs no pip, even for a Drive OUT_DIR."""
    assert "google.colab" not in sys.modules

    def no_subprocess(*args, **kwargs):
        raise AssertionError("pip ran off Colab")

    monkeypatch.setattr("subprocess.run", no_subprocess)
    ns = colab_cells(OUT_DIR="/content/drive/MyDrive/run")
    assert ns["ON_COLAB"] is False and "drive" not in ns
    assert "Not on Colab: using the jaxcnn this Python has" in capsys.readouterr().out


def test_install_cell_explains_a_placeholder_or_a_missing_source_in_one_line(monkeypatch):
    ns = colab_cells()
    monkeypatch.setitem(ns, "subprocess", SimpleNamespace(run=None))  # pip must not be reached
    with pytest.raises(ns["Stop"], match=r"^SOURCE is still the placeholder https://github.com/YOUR-ACCOUNT/jaxcnn: "
                                         "set it to the git URL of your copy"):
        ns["install"](PLACEHOLDER)
    with pytest.raises(ns["Stop"], match=r"^SOURCE '/no/such/jaxcnn' is neither a git URL nor an existing folder"):
        ns["install"]("/no/such/jaxcnn")
    assert ns["Stop"]("x")._render_traceback_() == ["Stopped: x"]  # what IPython shows in place of a traceback


@pytest.mark.parametrize("source, target", [
    ("https://github.com/someone/jaxcnn", "git+https://github.com/someone/jaxcnn"),
    ("git+https://github.com/someone/jaxcnn@v1", "git+https://github.com/someone/jaxcnn@v1"),
    ("{folder}", "{folder}"),
    ("{wheel}", "{wheel}"),
])
def test_install_cell_runs_pip_not_editable_with_the_stack_pinned(monkeypatch, tmp_path, capsys, source, target):
    (tmp_path / "jaxcnn").mkdir()
    (tmp_path / "jaxcnn-0.1.0-py3-none-any.whl").write_bytes(b"")
    paths = {"folder": str(tmp_path / "jaxcnn"), "wheel": str(tmp_path / "jaxcnn-0.1.0-py3-none-any.whl")}
    ns = colab_cells()
    calls = []

    def pip(argv, **kwargs):
        calls.append((argv, Path(argv[argv.index("-c") + 1]).read_text()))
        return SimpleNamespace(returncode=0, stderr="")

    monkeypatch.setitem(ns, "subprocess", SimpleNamespace(run=pip))
    ns["install"](source.format(**paths))
    (argv, pins), = calls
    assert argv[:4] == [sys.executable, "-m", "pip", "install"] and target.format(**paths) in argv
    assert "-e" not in argv and "--editable" not in argv
    assert f"jax=={jax.__version__}\n" in pins and f"numpy=={importlib.metadata.version('numpy')}\n" in pins
    out = capsys.readouterr().out
    assert f"before: jax {jax.__version__}" in out and f"after:  jax {jax.__version__}" in out


def test_install_cell_stops_when_the_stack_changed_or_pip_failed(monkeypatch, capsys):
    ns = colab_cells()
    seen = iter([{"jax": "0.7.2", "jaxlib": "0.7.2", "libtpu": "0.0.21.1", "flax": "0.11.2"},
                 {"jax": "0.10.2", "jaxlib": "0.10.2", "libtpu": "0.0.21.1", "flax": "0.12.8"}])
    monkeypatch.setitem(ns, "versions", lambda: {**dict.fromkeys(ns["STACK"]), **next(seen)})
    monkeypatch.setitem(ns, "subprocess", SimpleNamespace(run=lambda *a, **k: SimpleNamespace(returncode=0, stderr="")))
    with pytest.raises(ns["Stop"], match=r"^the install changed jax 0.7.2 -> 0.10.2, jaxlib 0.7.2 -> 0.10.2, flax "
                                         r"0.11.2 -> 0.12.8, which no longer match this runtime's TPU"):
        ns["install"]("https://github.com/someone/jaxcnn")
    ns = colab_cells()
    failed = SimpleNamespace(returncode=1, stderr="Collecting jaxcnn\nERROR: Cannot install jaxcnn because these "
                                                  "package versions have conflicting dependencies.\n")
    monkeypatch.setitem(ns, "subprocess", SimpleNamespace(run=lambda *a, **k: failed))
    with pytest.raises(ns["Stop"], match=r"^pip could not install jaxcnn from https://github.com/someone/jaxcnn with "
                                         "these versions kept: ERROR: Cannot install jaxcnn because"):
        ns["install"]("https://github.com/someone/jaxcnn")


# -- jaxcnn.notebook -----------------------------------------------------------------------------------------------
def device(platform, kind):
    return SimpleNamespace(platform=platform, device_kind=kind)


@pytest.mark.parametrize("devices, batch, text", [
    ([device("tpu", "TPU v2")] * 8, 64, "TPU v2 (v2-8): 8 cores; each batch of 64 is split over them, 8 images per "
                                        "core."),
    ([device("tpu", "TPU v3")] * 8, 60, "TPU v3 (v3-8): 8 cores; BATCH_SIZE 60 does not divide over them: use a "
                                        "multiple of 8."),
    ([device("tpu", "TPU v5 lite")], 64, "TPU v5 lite (v5e-1): 1 core; each batch of 64 runs on it whole."),
    ([device("tpu", "TPU v4")] * 4, 64, "TPU v4: 4 cores; each batch of 64 is split over them, 16 images per core."),
    ([device("cpu", "cpu")], 64, "No TPU: JAX sees 1 CPU device (cpu) and trains there, far slower than on a TPU (on "
                                 "Colab: Runtime > Change runtime type > TPU, then run all cells again); each batch "
                                 "of 64 runs on it whole."),
    ([device("gpu", "NVIDIA H200")] * 2, 64, "No TPU: JAX sees 2 GPU devices (NVIDIA H200) and trains there, far "
                                             "slower than on a TPU (on Colab: Runtime > Change runtime type > TPU, "
                                             "then run all cells again); each batch of 64 is split over them, 32 "
                                             "images per device."),
])
def test_describe_devices(devices, batch, text):
    assert describe_devices(devices, batch) == text


@pytest.mark.parametrize("error, text", [
    (ConfigError("batch_size", 60, "does not divide over 8 devices; use a multiple of 8"),
     "BATCH_SIZE = 60: does not divide over 8 devices; use a multiple of 8."),
    (ConfigError("dtype", "float16", "expected one of float32, bfloat16"),
     "DTYPE = 'float16': expected one of float32, bfloat16."),
    (RunMismatch("runs/x/manifest.json: ...", [("batch_size", 64, 128), ("dtype", "float32", "bfloat16")]),
     "OUT_DIR holds a run made with BATCH_SIZE 64, DTYPE 'float32', not BATCH_SIZE 128, DTYPE 'bfloat16': set "
     "OUT_DIR to another folder to keep that run, or OVERWRITE = True to replace it."),
    (RunExists("runs/x holds notes.txt but no manifest.json: not a run that can be resumed"),
     "OUT_DIR: runs/x holds notes.txt but no manifest.json: not a run that can be resumed; set OUT_DIR to a new or "
     "empty folder."),
    (Interrupted(2, 150, "runs/x/checkpoints/150"),
     "stopped by SIGINT at step 150; checkpoint saved in runs/x/checkpoints/150; run this cell again to continue "
     "from there."),
    (FileNotFoundError("data_dir=/x: no such directory"), "data_dir=/x: no such directory"),
])
def test_message_names_the_parameter(error, text):
    assert message(error) == text


@pytest.mark.slow
@pytest.mark.colab
def test_speed_check_compiles_the_bfloat16_step_once():
    r = speed_check(chunks=3, steps=4, per_core=8)
    assert (r["platform"], r["devices"], r["batch_size"], r["dtype"]) == (jax.devices()[0].platform,
                                                                          jax.device_count(), 8 * jax.device_count(),
                                                                          "bfloat16")
    assert r["compiles"] > 0 and r["compiles_after_first"] == 0
    assert r["images_per_second"] > 0 and 0 < r["loss"] < 10


# -- the notebook executed ---------------------------------------------------------------------------------------
@pytest.fixture
def execute(tmp_path, monkeypatch):
    """execute(**parameters) -> (outputs by cell id, the error of the cell that stopped or None): the notebook run
    by nbclient in a kernel of this Python, in a fresh working directory, with `parameters` injected after the
    parameters cell as papermill does. Where jaxcnn is not installed, the kernel imports it from the repository."""
    kernels = tmp_path / "jupyter" / "kernels" / "jaxcnn-test"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "jaxcnn test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    elsewhere = [p for p in sys.path if Path(p or ".").resolve() != REPO]
    if importlib.machinery.PathFinder.find_spec("jaxcnn", elsewhere) is None:  # not installed
        monkeypatch.setenv("PYTHONPATH", str(REPO))
    work = tmp_path / "work"
    work.mkdir()

    def run(**parameters):
        nb = nbformat.read(NOTEBOOK, as_version=4)
        at = next(i for i, c in enumerate(nb.cells) if c.id == "parameters") + 1
        nb.cells.insert(at, nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in parameters.items()),
                                                      id="injected-parameters"))
        client = nbclient.NotebookClient(nb, timeout=900, kernel_name="jaxcnn-test",
                                         resources={"metadata": {"path": str(work)}})
        try:
            client.execute()
            error = None
        except nbclient.exceptions.CellExecutionError as e:
            error = e
        return {c.id: c.get("outputs", []) for c in nb.cells if c.cell_type == "code"}, error

    run.work = work
    return run


def text(outputs) -> str:
    """The text a cell showed: its streams, printed results and errors (as IPython renders them)."""
    parts = []
    for o in outputs:
        if o.output_type == "stream":
            parts.append(o.text)
        elif o.output_type == "error":
            parts.extend(o.traceback)
        elif "text/plain" in o.get("data", {}):
            parts.append(o.data["text/plain"])
    return "".join(parts)


def stopped(outputs) -> str:
    """The one line a Stop showed (and that there was no traceback)."""
    errors = [o for o in outputs if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].ename == "Stop" and len(errors[0].traceback) == 1, errors
    return errors[0].traceback[0]


def tree(root: Path) -> dict:
    """Every file under root with its bytes (the lock's content excepted: it names the last holder)."""
    return {str(p.relative_to(root)): p.read_bytes() if p.name != ".lock" else b""
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.colab
@pytest.mark.skipif(not MNIST_DIR.exists(), reason=f"real MNIST not at {MNIST_DIR}")
def test_notebook_trains_resumes_and_keeps_a_stale_run(execute):
    """One epoch on the 24,000-image MNIST copy: results.json's test accuracy >= 0.97 and the plots shown; run
    again with other settings it stops with one sentence and leaves OUT_DIR as it was; with 2 epochs it continues
    the run from its checkpoint."""
    out = execute.work / "run"
    outputs, error = execute(DATA_DIR=str(MNIST_DIR), EPOCHS=1, OUT_DIR=str(out))
    assert error is None, error
    assert "Not on Colab" in text(outputs["install"])
    assert text(outputs["device"]).startswith("No TPU: JAX sees")
    train = text(outputs["train"])
    assert "Total params: 431,362" in train and "24,000 training / 10,000 test images" in train
    assert "epoch   1  step    375" in train
    results = json.loads((out / "results.json").read_text())
    assert results["test_accuracy"] >= 0.97 and results["epochs"] == 1
    assert f"test accuracy {100 * results['test_accuracy']:.2f}% after 1 epochs" in text(outputs["results"])
    assert [o.output_type for o in outputs["results"] if "image/png" in o.get("data", {})] == ["display_data"] * 3

    before = tree(out)
    outputs, error = execute(DATA_DIR=str(MNIST_DIR), EPOCHS=1, BATCH_SIZE=128, OUT_DIR=str(out))
    assert error is not None and "results" not in [k for k, v in outputs.items() if v]
    assert stopped(outputs["train"]) == ("Stopped: OUT_DIR holds a run made with BATCH_SIZE 64, steps_per_epoch "
                                         "375, not BATCH_SIZE 128, steps_per_epoch 187: set OUT_DIR to another "
                                         "folder to keep that run, or OVERWRITE = True to replace it.")
    assert tree(out) == before

    outputs, error = execute(DATA_DIR=str(MNIST_DIR), EPOCHS=2, OUT_DIR=str(out))
    assert error is None, error
    train = text(outputs["train"])
    assert f"Continuing the run in {out}" in train and "epoch   2  step    750" in train
    assert "epoch   1 " not in train  # the first epoch came from the checkpoint
    assert json.loads((out / "results.json").read_text())["epochs"] == 2


@pytest.mark.slow
@pytest.mark.colab
def test_notebook_stops_on_a_data_dir_that_does_not_exist(execute):
    outputs, error = execute(DATA_DIR="/no/such/mnist", EPOCHS=1, OUT_DIR=str(execute.work / "run"))
    assert error is not None
    assert stopped(outputs["train"]) == ("Stopped: DATA_DIR = '/no/such/mnist' is not a folder: give the folder "
                                         "that holds MNIST's IDX files (train-images-idx3-ubyte, ...), or None to "
                                         "download MNIST.")
    assert not (execute.work / "run").exists()
