"""run_flow fixes glibc's mmap threshold, so a large block freed after a larger one still goes back
to the OS (flows/pipeline.py, MMAP_THRESHOLD_BYTES). Each case runs in a fresh interpreter: the
threshold is process-wide and glibc only raises it, never lowers it."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs glibc's malloc (mallopt, mallinfo2)")

ROOT = Path(__file__).resolve().parents[3]

# Frees a 4 MiB block (which raises glibc's dynamic threshold past 1 MiB), then holds a 1 MiB block
# and prints how many bytes glibc holds in mmapped blocks meanwhile, beyond what it held before.
PROBE = textwrap.dedent("""
    import ctypes, sys
    sys.path.insert(0, {root!r})
    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                    "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Info
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    if {fix}:
        from flows.pipeline import _return_large_blocks_to_the_os
        print("set", _return_large_blocks_to_the_os())
    libc.free(libc.malloc(4 << 20))
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(1 << 20)
    print("mmapped", libc.mallinfo2().hblkhd - before)
    libc.free(block)
""")


def _probe(fix: bool, **env: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env
    done = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT), fix=fix)], capture_output=True,
                          text=True, env=environment, timeout=120, check=True)
    return dict(line.split(" ", 1) for line in done.stdout.splitlines())


def test_without_the_fix_glibc_serves_a_large_block_from_the_heap_after_a_larger_one_was_freed():
    assert int(_probe(fix=False)["mmapped"]) == 0


def test_with_the_fix_a_large_block_is_its_own_mapping_and_goes_back_to_the_os_when_freed():
    out = _probe(fix=True)
    assert out["set"] == "True"
    assert int(out["mmapped"]) >= 1 << 20


def test_a_threshold_chosen_in_the_environment_is_left_as_it_is():
    out = _probe(fix=True, MALLOC_MMAP_THRESHOLD_=str(8 << 20))
    assert out["set"] == "False"
    assert int(out["mmapped"]) == 0  # 1 MiB is under the 8 MiB the environment chose
