"""Process-wide settings of a run (pipelines/runtime.py)."""

from __future__ import annotations

import gc
import weakref

from pipelines.runtime import settle_heap


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
