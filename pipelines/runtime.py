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
"""

from __future__ import annotations

import gc

import pyarrow as pa


def settle_heap() -> None:
    """Freeze what the imports left alive (see the module doc). Call it once the pipeline and
    source are built, before the run starts."""
    gc.collect()
    gc.freeze()


def release_freed_memory() -> None:
    """Hand the memory the extract freed back to the system (see the module doc)."""
    pa.default_memory_pool().release_unused()
