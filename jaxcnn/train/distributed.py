"""Multi-process set-up: one process per host (or per test), CPU collectives over gloo."""
import jax


def initialize(coordinator: str, num_processes: int, process_id: int) -> None:
    """jax.distributed.initialize for `num_processes` processes meeting at `coordinator` (host:port).
    On CPU, cross-process collectives go through gloo. Call before anything touches a device."""
    if not 0 <= process_id < num_processes:
        raise ValueError(f"--process-id {process_id} must be in [0, {num_processes})")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes, process_id)
