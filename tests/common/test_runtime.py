"""Process-wide settings of a run (pipelines/runtime.py)."""

from __future__ import annotations

import gc
import os
import platform
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from pipelines.runtime import MALLOC_ARENAS, settle_heap, tune_malloc

ROOT = Path(__file__).resolve().parents[2]


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_settle_heap_freezes_what_is_alive_and_still_collects_new_cycles() -> None:
    before = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_threshold() == before, "the collector's thresholds stay CPython's"
        assert gc.get_freeze_count() > 10_000, "the imports' objects are out of the collector's reach"
        node = _Node()
        gone = weakref.ref(node)
        del node
        gc.collect()
        assert gone() is None, "a cycle made during the run is still collected"
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


_COUNT_HEAPS = r"""
import ctypes, os, sys, tempfile, threading
if sys.argv[1] == "settled":
    from pipelines.runtime import settle_heap
    settle_heap()
barrier = threading.Barrier(6)
def work():
    barrier.wait()  # all six start allocating at once
    keep = [bytearray(4096) for _ in range(2000)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(6)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
path = os.path.join(tempfile.mkdtemp(), "malloc_info.xml")
f = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(f))
libc.fclose(ctypes.c_void_p(f))
print(open(path).read().count("<heap nr="))
"""


def _probe(script: str, mode: str) -> int:
    """The number ``script`` prints in a fresh interpreter without any ``MALLOC_*`` variable;
    ``mode`` "settled" has it call ``settle_heap`` first, "plain" is the control."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", script, mode], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc arenas are a glibc setting")
def test_the_run_s_threads_share_two_malloc_heaps() -> None:
    assert _probe(_COUNT_HEAPS, "plain") > MALLOC_ARENAS, "control: each of six threads takes a heap of its own"
    assert _probe(_COUNT_HEAPS, "settled") == MALLOC_ARENAS


_MAPPED_AFTER_A_LARGE_FREE = r"""
import ctypes, sys
if sys.argv[1] == "settled":
    from pipelines.runtime import settle_heap
    settle_heap()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = Info
big = libc.malloc(16 << 20)  # mapped on its own; freeing it raises glibc's own threshold to 16 MiB
libc.free(ctypes.c_void_p(big))
before = libc.mallinfo2().hblks
block = libc.malloc(2 << 20)
print(libc.mallinfo2().hblks - before)
libc.free(ctypes.c_void_p(block))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc thresholds are a glibc setting")
def test_a_run_s_large_blocks_stay_mapped_after_a_larger_one_was_freed() -> None:
    assert _probe(_MAPPED_AFTER_A_LARGE_FREE, "plain") == 0, "control: glibc's raised threshold puts it on a heap"
    assert _probe(_MAPPED_AFTER_A_LARGE_FREE, "settled") == 1


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc settings are glibc's")
def test_malloc_settings_in_the_environment_win(monkeypatch) -> None:
    for name in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert tune_malloc() == ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]
