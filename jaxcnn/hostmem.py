"""Host memory for XLA:CPU processes on Linux (glibc): keep freed memory for reuse.

XLA:CPU allocates every execution's temporary buffer afresh (the LeNet-BN training step at batch 256: 76 MB).
glibc serves blocks over 32 MB, and any block of a thread's arena over 64 MB, with a fresh mmap and unmaps it
on free, so each step faults the buffer's pages in again (measurements: docs/performance.md). keep_freed_memory()
serves every allocation from the main heap and never gives freed memory back to the OS: no faults after the first
step. The process keeps its peak footprint until it exits.
"""
import ctypes
import platform

M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Set glibc's malloc to one arena, no mmap'd blocks and no trimming. Returns whether it was set (False on
    other C libraries, which this leaves alone). Call it before JAX's first computation: XLA's threads pick
    their arena at their first allocation and keep it."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    settings = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))
    return all([mallopt(param, value) == 1 for param, value in settings])
