"""Process-wide settings of a cdp-sync run, applied once its imports are done.

**The cyclic garbage collector.** A load builds millions of short-lived objects (every JSON
response becomes dicts and strings before it becomes Arrow), which CPython frees by reference
counting; but every allocation also counts towards the cyclic collector's thresholds, so a load of
100,000 profiles triggers some 700 young and a handful of full collections. A full collection walks
every object alive, and most of those are what the imports created (dlt, pyarrow, httpx: about
100,000 objects) and will live until the process ends. Measured on a Lytics load of 100,000
profiles: 0.8–1.0 s of collector CPU, of which 0.5–0.7 s full collections (benchmarks/README.md).

:func:`settle_heap` moves everything alive at the start of the run out of the collector's reach
(``gc.freeze``: those objects are still freed as usual when nothing refers to them) and lets the
young generation grow to 50,000 objects before it is examined (CPython's default is 700), which
together bring the collector's time to about a tenth. Reference cycles created during the run are
still collected, a little later; the memory they hold meanwhile is small against a load's
batches.
"""

from __future__ import annotations

import gc

#: young, middle, old generation thresholds (CPython's defaults: 700, 10, 10)
GC_THRESHOLDS = (50_000, 20, 20)


def settle_heap() -> None:
    """Freeze what the imports left alive and raise the collector's thresholds (see the module
    doc). Call it once the pipeline and source are built, before the run starts."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
