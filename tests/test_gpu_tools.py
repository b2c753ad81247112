"""The GPU check's tools, on the CPU: experiments.epoch_time and experiments.step_profile (its trace reading on a
written perfetto trace)."""
import gzip
import json

import pytest

from experiments import epoch_time, step_profile


def write_trace(directory, events):
    path = directory / "plugins" / "profile" / "run"
    path.mkdir(parents=True)
    (path / "perfetto_trace.json.gz").write_bytes(gzip.compress(json.dumps({"traceEvents": events}).encode()))


def test_step_profile_counts_the_device_kernels_and_the_union_of_their_intervals(tmp_path):
    meta = [{"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/host:CPU"}},
            {"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "/device:GPU:0"}},
            {"ph": "M", "pid": 2, "tid": 7, "name": "thread_name", "args": {"name": "Stream #7(Kernel)"}},
            {"ph": "M", "pid": 2, "tid": 8, "name": "thread_name", "args": {"name": "Stream #8(Kernel)"}},
            {"ph": "M", "pid": 2, "tid": 9, "name": "thread_name", "args": {"name": "XLA Ops"}}]
    kernel = lambda name, tid, ts, dur: {"ph": "X", "pid": 2, "tid": tid, "name": name, "ts": ts, "dur": dur}  # noqa: E731
    events = [*meta, kernel("conv", 7, 0, 10), kernel("conv", 7, 30, 10), kernel("reduce", 8, 5, 10),
              kernel("fusion.1", 9, 0, 40),  # an op line, not a kernel
              {"ph": "X", "pid": 1, "tid": 3, "name": "host work", "ts": 0, "dur": 100}]
    write_trace(tmp_path, events)
    kernels, threads = step_profile.device_kernels(tmp_path)
    assert sorted(kernels) == [("conv", 0.0, 10.0), ("conv", 30.0, 10.0), ("reduce", 5.0, 10.0)]
    assert threads == ["Stream #7(Kernel)", "Stream #8(Kernel)", "XLA Ops"]
    report = step_profile.kernel_report(kernels, steps=2, top=1)
    assert report["kernels_per_step"] == 1.5 and report["kernel_us_per_step"] == 15
    assert report["busy_us_per_step"] == 12.5  # [0, 15] and [30, 40]
    assert report["span_us_per_step"] == 20
    assert report["top"] == [{"name": "conv", "per_step": 1.0, "us_per_step": 10.0, "mean_us": 10.0}]


@pytest.mark.slow
def test_epoch_time_and_step_profile_run_on_the_cpu(tmp_path, capsys):
    report = epoch_time.main(["--images", "128", "--rounds", "1", "--settings", "dispatch 50", "--out", str(tmp_path)])
    assert report["steps"] == 2 and len(report["seconds"]["dispatch 50"]) == 1
    assert json.loads((tmp_path / "epoch_time.json").read_text())["median_seconds"]["dispatch 50"] > 0
    results = step_profile.main(["--variants", "recipe", "--steps", "2", "--rounds", "1", "--out", str(tmp_path)])
    assert results["recipe"]["wall_us_per_step"] > 0 and results["recipe"]["kernels_per_step"] == 0  # no device
    assert "no device kernels in the trace" in capsys.readouterr().out
