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
"""

from __future__ import annotations

import gc


def settle_heap() -> None:
    """Freeze what the imports left alive (see the module doc). Call it once the pipeline and
    source are built, before the run starts."""
    gc.collect()
    gc.freeze()
