"""keep_freed_memory: large blocks come from the main heap and are reused, so freeing and reallocating one
faults no pages in again.

Each check runs in a fresh single-threaded Python process (glibc's settings are per process and must be made
before other threads allocate) and counts what the allocator did, never time: page faults of touching a
re-allocated 64 MB block, and the chunk header glibc keeps before every block (bit 1: served by its own mmap;
bit 2: from a thread arena). Both are the same on a busy machine as on an idle one.
"""
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")

PROGRAM = """
import ctypes, resource, sys, threading
from jaxcnn.hostmem import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
SIZE = 64 << 20  # XLA:CPU's per-step temporary buffer for the LeNet-BN step at batch 256 is 76 MB


def header(p):  # the size word glibc keeps just before the block: IS_MMAPPED = 2, NON_MAIN_ARENA = 4
    return ctypes.c_size_t.from_address(p - ctypes.sizeof(ctypes.c_size_t)).value


def cycle():  # allocate, touch every page, free: what XLA:CPU does with its temporaries on every step
    p = libc.malloc(SIZE)
    ctypes.memset(p, 1, SIZE)
    bits = header(p) & 6
    libc.free(p)
    return bits


cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
main_bits = [cycle() for _ in range(5)]
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
thread_bits = []
t = threading.Thread(target=lambda: thread_bits.append(cycle()))
t.start()
t.join()
print(applied, faults, main_bits[0], thread_bits[0])
"""

PAGES = (64 << 20) // 4096


def allocator(mode):
    out = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True)
    applied, faults, main_bits, thread_bits = out.stdout.split()
    return applied, int(faults), int(main_bits), int(thread_bits)


@pytest.mark.slow
def test_by_default_glibc_maps_large_blocks_afresh_every_time():
    _, faults, main_bits, thread_bits = allocator("default")
    assert main_bits == 2 and thread_bits & 2  # each one its own mmap, unmapped on free
    assert faults >= 5 * PAGES  # so every cycle faults all its pages in again


@pytest.mark.slow
def test_keep_freed_memory_serves_large_blocks_from_the_heap_and_reuses_them():
    applied, faults, main_bits, thread_bits = allocator("keep")
    assert applied == "True"
    assert main_bits == 0 and thread_bits == 0  # neither mmap'd nor in a thread arena: the one main heap
    assert faults < PAGES // 10  # the block's pages stay mapped between cycles: (almost) no faults after the first
