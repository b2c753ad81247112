"""Crash safety: a training run killed with SIGKILL anywhere (during a step, a checkpoint write, a metrics write,
the manifest or the results) and resumed each time ends exactly as an uninterrupted run.

The kill points are the library's named fault points (jaxcnn.train.rundir.fault_point), found by tracing an
uninterrupted run through the hook the program below installs; each interrupted process kills itself at one of
them, so nothing depends on timing. The
processes share a persistent compilation cache to keep the whole test to about a minute of CPU.
"""
import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import without_timings

from jaxcnn.train import rundir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILL_AT_VAR, TRACE_VAR = "FAULT_TEST_KILL_AT", "FAULT_TEST_TRACE"
PROGRAM = f"""
import os, signal, sys
import jax.numpy as jnp
import numpy as np
from jaxcnn import Conv, Dense, Flatten, Net, ReLU
from jaxcnn.train import SolverConfig, rundir
from jaxcnn.train.run import RunConfig, RunSpec, run_training


def hook(label):  # ${TRACE_VAR}: append each point's label to that file; ${KILL_AT_VAR}: SIGKILL at that point
    if os.environ.get("{TRACE_VAR}"):
        with open(os.environ["{TRACE_VAR}"], "a") as f:
            f.write(label + "\\n")
    if os.environ.get("{KILL_AT_VAR}") == label:
        os.kill(os.getpid(), signal.SIGKILL)


rundir.fault_hook = hook

rng = np.random.default_rng(0)
labels = rng.integers(0, 10, 48).astype(np.int32)
images = rng.integers(0, 100, (48, 12, 12, 1)).astype(np.uint8)
images[np.arange(48), labels, labels, 0] = 255  # a bright pixel on the diagonal at the label's place
net = Net([Conv("conv1", 4, 3, stride=2), ReLU("relu1"), Flatten("flatten"), Dense("fc", 10)], (12, 12, 1), "tiny")
config = RunConfig(model="tiny", dataset="synthetic", batch_size=8, epochs=3, steps_per_dispatch=2,
                   solver=SolverConfig(lr=0.05, schedule="cosine"))
spec = RunSpec(config, net, (images[:32], labels[:32]), (images[32:], labels[32:]),
               preprocess=lambda x: x.astype(jnp.float32) / 255)
run_training(spec, sys.argv[1], resume=True)
"""


def _run(out, env):
    return subprocess.run([sys.executable, "-c", PROGRAM, str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": ROOT, **env})


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sigkill_at_every_fault_point_then_resume_gives_the_uninterrupted_run(tmp_path):
    cache = {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "cache"), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
             "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    trace = tmp_path / "trace"
    reference = _run(tmp_path / "reference", {**cache, TRACE_VAR: str(trace)})
    assert reference.returncode == 0, reference.stderr
    points = trace.read_text().split()
    assert len(points) >= 20
    kinds = {p.split("-")[0] for p in points}
    assert kinds == {"manifest", "step", "checkpoint", "metrics", "results"}, points

    out = tmp_path / "interrupted"
    for point in points:
        killed = _run(out, {**cache, KILL_AT_VAR: point})
        assert killed.returncode == -signal.SIGKILL, f"not killed at {point}: {killed.stderr}"
        checkpoints = rundir.RunDir(out, primary=False).checkpoints
        steps = sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()) if checkpoints.exists() else []
        if (out / "metrics.jsonl").exists():  # whole lines, one per epoch, at most one epoch behind the checkpoint
            epochs = [r["epoch"] for r in _metrics(out)]
            done = steps[-1] // 4 if steps else 0
            assert epochs == list(range(1, len(epochs) + 1)) and done - 1 <= len(epochs) <= done, (point, epochs)
    resumed = _run(out, cache)
    assert resumed.returncode == 0, resumed.stderr
    assert "left its lock behind; taking it over" in resumed.stderr  # the killed run's lock: a notice, no refusal
    assert not (out / rundir.LOCK).exists()

    expected, got = rundir.load(tmp_path / "reference"), rundir.load(out)
    assert got.step == expected.step == 12
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(got.params), jax.device_get(expected.params))
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(got.state), jax.device_get(expected.state))
    assert [r["epoch"] for r in _metrics(out)] == [1, 2, 3]
    assert without_timings(_metrics(out)) == without_timings(_metrics(tmp_path / "reference"))
    results = json.loads((out / "results.json").read_text())
    expected_results = json.loads((tmp_path / "reference" / "results.json").read_text())
    assert results["test_accuracy"] == expected_results["test_accuracy"]
    assert not list(out.glob(".*.tmp"))
