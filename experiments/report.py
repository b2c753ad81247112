"""What the CPU measurement scripts (conv_forms, mobilenet_layers, data_speed) print and write about the
machine they ran on: the processor, the JAX versions and the 1-minute load averages sampled during the run."""
import json
from importlib import metadata
from pathlib import Path

import jax

from jaxcnn import tuning


def machine_line(load: list) -> str:
    """'Intel(R) Xeon(R) Processor, 2 cores; jax 0.10.2; 1-min load average 0.8-1.2'."""
    return f"{tuning.processor()}; jax {jax.__version__}; 1-min load average {min(load):.1f}-{max(load):.1f}"


def write(out_dir, name: str, load: list, **fields) -> Path:
    """OUT_DIR/NAME as JSON: processor, jax, jaxlib, load_average_1min, then `fields`; prints and returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {"processor": tuning.processor(), "jax": jax.__version__, "jaxlib": metadata.version("jaxlib"),
              "load_average_1min": load, **fields}
    (out / name).write_text(json.dumps(report, indent=1))
    print(f"wrote {out / name}")
    return out / name
