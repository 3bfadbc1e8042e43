"""Process-wide settings of a cdp-sync run, applied once its imports are done.

**The cyclic garbage collector.** A load builds millions of short-lived objects (every JSON
response becomes dicts and strings before it becomes Arrow). CPython frees them by reference
counting, but the allocations also drive the cyclic collector, and each of its full collections
walks every object alive, most of which the imports created (dlt, pyarrow, httpx: over 100,000
objects that live until the process ends). Measured on a Lytics load of 100,000 profiles: 0.84–1.02 s
of collector CPU, of which 0.54–0.69 s full collections (benchmarks/README.md).

:func:`settle_heap` moves everything alive at the start of the run out of the collector's reach
(``gc.freeze``; those objects are still freed as usual when nothing refers to them any more). The
collector's thresholds stay CPython's: raising them was measured too, and it let reference cycles
that hold a whole response body (an httpx response and its stream refer to each other) pile up
between collections: PostHog's peak at a million events went from about 430 MB to 815 MB.

**Memory freed by the extract.** The pages are read and converted by pool threads, each with its
own C heap (Arrow runs on the C library's malloc), and a heap keeps what its threads freed for
reuse: resident into the load step, where a full load's peak is (DuckDB's inserts).
:func:`release_freed_memory`, called once the packages are normalized and before the load,
hands it back (Arrow's ``release_unused``: ``malloc_trim`` under glibc). Measured on a first
Synerise run of profiles, events and catalog items, at the start of the load: about 242 -> 230 MB
at 1,070,000 rows, 218 -> 211 MB at 100,000.

**Two malloc arenas, fixed thresholds.** glibc gives each new thread a heap of its own, up to
eight per core, and a heap keeps the pages its threads' freed chunks sit on as long as one live
chunk shares the page: the extract's reading and converting threads left each of their heaps
fragmented, resident into the load. :func:`settle_heap` limits the process to two heaps
(``mallopt(M_ARENA_MAX, 2)``), before the run starts its threads. Measured on first loads of
100,000 and 1,000,000 rows, one run each (benchmarks/README.md): PostHog 271 -> 257 and 317 -> 303
MB, Synerise 272 -> 253 and 322 -> 281 MB, the same CPU seconds. One heap saved 0-13 MB more, with
every thread queueing on its one lock.

glibc also raises its mmap threshold each time a large mmapped block is freed (up to 32 MB) and
its trim threshold with it (twice that): after the first large page buffers, buffers of several MB
come from the threads' heaps, and a thread heap's free top is handed back only beyond the trim
threshold (``malloc_trim`` does not shrink it). :func:`settle_heap` fixes both (blocks of 1 MiB and
more are mapped on their own and unmapped when freed; a heap's free top beyond 4 MiB goes back):
PostHog's million events 313-328 -> 276-290 MB (100,000: 247-251 -> 242 MB), Lytics' the same,
the same CPU; a 128 KiB threshold (glibc's start) saved as much for 30 % more CPU.

A ``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` in the environment
wins over its setting here. DuckDB allocates with its own allocator (jemalloc), which none of this
touches. These are glibc settings: elsewhere they do nothing.
"""

from __future__ import annotations

import gc
import os
import platform

import pyarrow as pa

#: glibc's malloc for the run (see the module doc): heaps (arenas) for the process's threads,
#: the size from which a block is mapped on its own, a heap's free top kept at most
MALLOC_ARENAS = 2
MALLOC_MMAP_THRESHOLD = 1 << 20
MALLOC_TRIM_THRESHOLD = 4 << 20
#: mallopt's parameter numbers (malloc.h) and the environment variable that wins over each
_MALLOPT = (("MALLOC_ARENA_MAX", -8, MALLOC_ARENAS),
            ("MALLOC_MMAP_THRESHOLD_", -3, MALLOC_MMAP_THRESHOLD),
            ("MALLOC_TRIM_THRESHOLD_", -1, MALLOC_TRIM_THRESHOLD))


def settle_heap() -> None:
    """Freeze what the imports left alive and set malloc's arenas and thresholds (see the module
    doc). Call it once the pipeline and source are built, before the run starts its threads."""
    tune_malloc()
    gc.collect()
    gc.freeze()


def tune_malloc() -> list[str]:
    """Set glibc's malloc for the run (see the module doc); returns the environment names of the
    settings made (none elsewhere than glibc; one the environment sets is left to it)."""
    if platform.libc_ver()[0] != "glibc":
        return []
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return []
    return [name for name, param, value in _MALLOPT if not os.environ.get(name) and mallopt(param, value)]


def release_freed_memory() -> None:
    """Hand the memory the extract freed back to the system (see the module doc)."""
    pa.default_memory_pool().release_unused()
