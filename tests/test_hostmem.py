"""keep_freed_memory: a jitted function with a 64 MB temporary buffer stops page-faulting it in on every call."""
import platform
import subprocess
import sys

import pytest

PROGRAM = """
import resource, sys
from jaxcnn.hostmem import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
import jax, jax.numpy as jnp
f = jax.jit(lambda x, w: (x * 2.0) @ w)  # x * 2 is materialised: a 64 MB temporary
x, w = jnp.ones((8192, 2048)), jnp.ones((2048, 8))
temp = f.lower(x, w).compile().memory_analysis().temp_size_in_bytes
for _ in range(3):
    f(x, w).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    f(x, w).block_until_ready()
print(applied, temp, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode):
    out = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True)
    applied, temp, n = out.stdout.split()
    return applied, int(temp), int(n)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_keep_freed_memory_stops_the_per_call_page_faults():
    _, temp, default = faults("default")
    assert temp >= 64 << 20
    assert default >= 20 * temp // 4096 // 2  # at least half the buffer's pages faulted in on every call
    applied, _, kept = faults("keep")
    assert applied == "True"
    assert kept * 3 < default  # the heap grows a few times to hold the buffers alive at once, then is reused
