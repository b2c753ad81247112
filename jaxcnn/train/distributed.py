"""Multi-process set-up: one process per host (or per test), CPU collectives over gloo."""
import jax

from .errors import ConfigError


def initialize(coordinator: str, num_processes: int, process_id: int) -> None:
    """jax.distributed.initialize for `num_processes` processes meeting at `coordinator` (host:port).
    On CPU, cross-process collectives go through gloo. Call before anything touches a device.
    Raises ConfigError for num_processes < 1 or a process_id outside [0, num_processes)."""
    if num_processes < 1:
        raise ConfigError("num_processes", num_processes, "must be at least 1")
    if not 0 <= process_id < num_processes:
        raise ConfigError("process_id", process_id, f"must lie in [0, {num_processes}) for {num_processes} processes")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes, process_id)
