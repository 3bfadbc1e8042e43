"""Event rows rendered once: the emulator's answer to "a page costs more than the latency".

A HogQL page of events is, for the emulator, ``LIMIT`` rows generated from the seed and rendered
as JSON arrays (ISO timestamps in the project's zone, canonical UUIDs, ``properties`` as a JSON
string). Rendering is most of a page's cost, and a walk reads the same rows again and again (every
run of a benchmark, every test that re-reads a window), so the rendered JSON of each *generated*
row is kept, in blocks of :data:`BLOCK` consecutive rows, per column list and time zone:

* Generated rows never change (row ``i`` is a function of the seed), so a kept block is never
  stale. Rows added through the control plane (``add_events``) live in the store's overlay; they
  are rendered when read and merged into the page in ``(timestamp, uuid)`` order, so a page
  changes as soon as the data does, exactly as a page built row by row would.
* Memory is bounded: blocks are dropped least recently used first beyond ``budget`` bytes (option
  ``render_cache_mb``; 0 keeps nothing and renders every page afresh).

The bytes are those ``orjson.dumps`` writes for the row's list of values, so a page assembled from
kept rows is byte for byte the page the general executor builds (the tests compare both).
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson

#: generated rows per kept block
BLOCK = 1024
#: bytes a kept row costs beyond its JSON (the ``bytes`` header and its slot in the block's list)
ROW_OVERHEAD = 41


class RenderedRows(Sequence):
    """Result rows already rendered as JSON arrays (one ``bytes`` each). The response carries them
    as they are (:meth:`fragment`); read in-process they behave as a list of row lists."""

    __slots__ = ("rows",)

    def __init__(self, rows: list[bytes]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return RenderedRows(self.rows[index])
        return orjson.loads(self.rows[index])

    def __iter__(self) -> Iterator[list[Any]]:
        return (orjson.loads(r) for r in self.rows)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RenderedRows):
            return self.rows == other.rows
        if isinstance(other, list):
            return list(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RenderedRows({len(self.rows)} rows)"

    def fragment(self) -> orjson.Fragment:
        return orjson.Fragment(b"[" + b",".join(self.rows) + b"]")


def json_default(value: Any) -> Any:
    """``orjson.dumps(..., default=json_default)``: rendered rows go out as they are."""
    if isinstance(value, RenderedRows):
        return value.fragment()
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


class RowCache:
    """Rendered blocks of generated rows, least recently used dropped first beyond ``budget``
    bytes. Thread-safe; a block is rendered outside the lock (two threads may render the same
    block at once: both get the same bytes, one is kept)."""

    def __init__(self, budget_bytes: int) -> None:
        self._lock = threading.Lock()
        self._blocks: OrderedDict[tuple[Any, ...], tuple[list[bytes], int]] = OrderedDict()
        self.budget = max(0, int(budget_bytes))
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Any, ...], render: Callable[[], list[bytes]]) -> list[bytes]:
        with self._lock:
            hit = self._blocks.get(key)
            if hit is not None:
                self._blocks.move_to_end(key)
                self.hits += 1
                return hit[0]
            self.misses += 1
        rows = render()
        size = sum(len(r) for r in rows) + ROW_OVERHEAD * len(rows)
        if size > self.budget:
            return rows
        with self._lock:
            if key not in self._blocks:
                self._blocks[key] = (rows, size)
                self.bytes += size
                while self.bytes > self.budget:
                    _, (_, dropped) = self._blocks.popitem(last=False)
                    self.bytes -= dropped
        return rows

    def resize(self, budget_bytes: int) -> None:
        with self._lock:
            self.budget = max(0, int(budget_bytes))
            while self.bytes > self.budget and self._blocks:
                _, (_, dropped) = self._blocks.popitem(last=False)
                self.bytes -= dropped

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"blocks": len(self._blocks), "bytes": self.bytes, "hits": self.hits, "misses": self.misses}


Renderer = Callable[[list[Any], dt.tzinfo], list[Any]]


class EventPages:
    """Pages of one project's event stream in ``(timestamp, uuid)`` order, as rendered rows.

    ``renderers`` maps a column name to ``fn(events, tz) -> [JSON value of each event]``: the
    values the general executor's plain-column renderers give, a list at a time."""

    def __init__(self, store: Any, renderers: dict[str, Renderer], cache: RowCache) -> None:
        self.store = store
        self.renderers = renderers
        self.cache = cache

    def supports(self, columns: Sequence[str]) -> bool:
        return all(c in self.renderers for c in columns)

    def render(self, columns: Sequence[str], events: list[Any], tz: dt.tzinfo) -> list[bytes]:
        """Each event as the JSON array of its ``columns``."""
        dumps = orjson.dumps
        return [dumps(row) for row in zip(*[self.renderers[c](events, tz) for c in columns], strict=True)]

    def page(self, columns: tuple[str, ...], tz: dt.tzinfo, lower: tuple[int, int, int] | None,
             upper: tuple[int, int, int] | None, want: int) -> RenderedRows:
        """The first ``want`` rows with ``lower <= (timestamp, low, high) < upper``."""
        store = self.store
        if want <= 0:
            return RenderedRows([])
        with store.lock:
            b0, o0 = store.position(lower) if lower is not None else (0, 0)
            b1, o1 = store.position(upper) if upper is not None else (store.n, len(store.overlay_keys))
            late = [(k, store.overlay[k]) for k in store.overlay_keys[o0:min(o1, o0 + want)]]
        rows: list[bytes] = []
        b = b0
        for key, event in late:
            # generated rows sort before an added row with a greater key; an equal key (never
            # generated in practice) puts the added row first, as the merged scan does
            at = bisect.bisect_left(store.keys, key, b, b1)
            if at > b:
                rows += self._base(columns, tz, b, min(at, b + want - len(rows)))
                b = at
            if len(rows) >= want:
                return RenderedRows(rows[:want])
            rows += self.render(columns, [event], tz)
            if len(rows) >= want:
                return RenderedRows(rows)
        if b < b1:
            rows += self._base(columns, tz, b, min(b1, b + want - len(rows)))
        return RenderedRows(rows)

    def _base(self, columns: tuple[str, ...], tz: dt.tzinfo, a: int, b: int) -> list[bytes]:
        """Rendered generated rows ``a … b - 1``."""
        out: list[bytes] = []
        if b <= a:
            return out
        store = self.store
        key = (store.project_id, columns, str(tz))
        for blk in range(a // BLOCK, (b - 1) // BLOCK + 1):
            lo = blk * BLOCK

            def render(lo: int = lo) -> list[bytes]:
                return self.render(columns, store.base_events(lo, lo + BLOCK), tz)

            rows = self.cache.get((*key, blk), render)
            out += rows[max(0, a - lo) : b - lo]
        return out
