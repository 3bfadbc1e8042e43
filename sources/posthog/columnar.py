"""HogQL pages of events as Arrow, column by column, and the run's set of event uuids.

HogQL answers ``{"columns": [...], "results": [[...], ...]}``: positional rows. The events path
never turns them into one dict per row: each run of :data:`CHUNK_ROWS` rows becomes one Arrow list
array in one call and each column is taken out of it, typed as :data:`~sources.posthog.settings.EVENTS`
declares (timestamps with their offsets parsed by Arrow's cast, ``properties`` kept as the JSON
text PostHog sent, ``project_id`` repeated). A page that does not fit that fast path (a value of
another type than the contract's, a timestamp Arrow cannot read, a ``properties`` value that is
not a JSON object's text) is converted by the general per-row path instead
(:func:`sources.common.arrow.rows_to_table` over the same rows), so both paths load the same data.

:class:`EventPage` gives the rows back as PostHog sent them (the timestamps' text is kept beside
the table, everything else is in it as sent): the few rows that need dicts (the rows of the
lookback window, whose fingerprints are kept in state, and the rows of
:func:`~sources.posthog.read_events_window`) are built as before, one dict per row with
``properties`` parsed, so fingerprints do not change with the fast path.

:class:`UuidSet` keeps a run's event uuids (ClickHouse returns an event stored twice as two rows
until it merges them) as 16 bytes each in sorted Arrow arrays; a page is checked with Arrow's
``search_sorted`` and no Python object per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from sources.common.arrow import TIMESTAMP, TableSpec, rows_to_table

from .settings import EVENTS

_STRING = pa.string()
_NULL_TEXT = pa.scalar(None, _STRING)


class _NotFast(Exception):
    """A page the column-wise path does not convert; the per-row path does."""


def _iso_column(text: pa.Array) -> pa.Array:
    try:
        return text.cast(TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # "", no offset
        raise _NotFast from None


def _json_object_column(arr: pa.Array) -> pa.Array:
    """JSON objects sent as their text (``properties``): kept as sent; ``""`` is null. Any other
    value (an array, text that is not an object's) is not fast."""
    empty = pc.equal(arr, "")
    if pc.any(empty).as_py():
        arr = pc.if_else(empty, _NULL_TEXT, arr)
    valid = arr.drop_null() if arr.null_count else arr
    if len(valid) and not (pc.all(pc.starts_with(valid, "{")).as_py() and pc.all(pc.ends_with(valid, "}")).as_py()):
        raise _NotFast
    return arr


def dict_rows(columns: Sequence[str], results: Sequence[Sequence[Any]], project_id: int) -> list[dict[str, Any]]:
    """The positional rows as dicts, ``properties`` parsed and ``project_id`` added: the shape every
    events row had before the column-wise path (fingerprints are taken of it)."""
    loads = orjson.loads
    out = []
    for r in results:
        row = dict(zip(columns, r, strict=True))
        props = row.get("properties")
        if isinstance(props, str):
            row["properties"] = loads(props) if props else None
        row["project_id"] = project_id
        out.append(row)
    return out


#: rows converted per Arrow call: a page of any size becomes tables of at most this many rows, so
#: the page's intermediate buffers (the list array the rows become, the columns taken out of it)
#: stay the same size whatever the page size (see :func:`hogql_table`)
CHUNK_ROWS = 2048


def hogql_table(columns: Sequence[str], results: Sequence[Sequence[Any]], spec: TableSpec,
                constants: dict[str, Any]) -> tuple[pa.Table, dict[str, pa.ChunkedArray]] | None:
    """``results`` as a table of ``spec`` column by column (``constants``: columns with one value
    for the page) and, for the timestamp columns, their text as sent; ``None`` when a value does
    not fit the fast path. Every value HogQL sends for these columns is text (or null): each run
    of :data:`CHUNK_ROWS` rows becomes one Arrow list array in one call, and each column is taken
    out of it, so the table's columns are chunked arrays of at most that many rows each. A page
    of 10,000 rows converted in one piece needed a list array as large as the page beside its
    columns (about 8 MB with the system allocator, several at once in the reading threads), and
    those large blocks, freed out of order, left the C library's heap fragmented."""
    n = len(results)
    where = {name: j for j, name in enumerate(columns)}
    pieces: dict[str, list[pa.Array]] = {}
    sent_pieces: dict[str, list[pa.Array]] = {}
    row_type = pa.list_(_STRING, len(columns))
    for start in range(0, n, CHUNK_ROWS) if n else (0,):
        chunk = results[start:start + CHUNK_ROWS]
        m = len(chunk)
        try:
            grid = pa.array(chunk, type=row_type)
        except (pa.ArrowTypeError, pa.ArrowInvalid):  # a number or an object where text is declared
            return None
        try:
            for name, kind in spec.columns.items():
                field_type = spec.schema.field(name).type
                if name in constants:
                    arr = pa.repeat(pa.scalar(constants[name], field_type), m)
                elif name not in where:
                    arr = pa.nulls(m, field_type)
                else:
                    arr = pc.list_element(grid, where[name])
                    if kind == "iso":  # typed by Arrow's cast; the text is kept for the rows as sent
                        sent_pieces.setdefault(name, []).append(arr)
                        arr = _iso_column(arr)
                    elif kind == "json":
                        arr = _json_object_column(arr)
                    elif kind != "text":
                        raise _NotFast
                pieces.setdefault(name, []).append(arr)
        except _NotFast:
            return None
        del grid, chunk
    arrays = [pa.chunked_array(pieces[name], type=spec.schema.field(name).type) for name in spec.columns]
    sent = {name: pa.chunked_array(p, type=_STRING) for name, p in sent_pieces.items()}
    return pa.Table.from_arrays(arrays, schema=spec.schema), sent


@dataclass(eq=False)
class EventPage:
    """One page of one project's events: the typed table, and what gives back the rows as PostHog
    sent them: the timestamps' text (``sent``) beside the table, or the positional rows
    themselves (``results``) for a page the fast path did not convert. ``columns`` is the order
    PostHog sent the columns in."""

    project_id: int
    columns: list[str]
    table: pa.Table
    sent: dict[str, pa.Array | pa.ChunkedArray]
    results: list[list[Any]] | None = None

    @classmethod
    def build(cls, columns: Sequence[str], results: list[list[Any]], project_id: int) -> EventPage:
        fast = hogql_table(columns, results, EVENTS, {"project_id": project_id}) \
            if sorted(columns) == _EVENT_COLUMNS else None
        if fast is None:  # the general path, row by row
            table = rows_to_table(dict_rows(columns, results, project_id), EVENTS)
            return cls(project_id, list(columns), table, {}, results)
        return cls(project_id, list(columns), fast[0], fast[1])

    def __len__(self) -> int:
        return self.table.num_rows

    def rows(self, indices: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """The rows (or those at ``indices``) as dicts, in the shape of :func:`dict_rows`."""
        if self.results is not None:
            results = self.results if indices is None else [self.results[i] for i in indices]
            return dict_rows(self.columns, results, self.project_id)
        at = None if indices is None else pa.array(indices, type=pa.int64())
        values = []
        for name in self.columns:
            arr = self.sent[name] if name in self.sent else self.table.column(name)
            values.append((arr if at is None else arr.take(at)).to_pylist())
        return dict_rows(self.columns, list(zip(*values, strict=True)), self.project_id)

    def where(self, mask: pa.BooleanArray) -> EventPage:
        """The rows where ``mask`` is true."""
        at = pc.indices_nonzero(mask)
        results = None if self.results is None else [self.results[i] for i in at.to_pylist()]
        return EventPage(self.project_id, self.columns, self.table.take(at),
                         {k: v.take(at) for k, v in self.sent.items()}, results)


_EVENT_COLUMNS = sorted(c for c in EVENTS.columns if c != "project_id")


# -- the run's uuids -------------------------------------------------------------------------------

_HEX_POSITIONS = (0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34)
_DASHES = (8, 13, 18, 23)
_U64 = pa.uint64()
#: Arrow's binary search over a sorted array (recent pyarrow releases; pyproject allows older ones)
_SEARCH_SORTED = hasattr(pc, "search_sorted")
_B = {v: pa.scalar(v, pa.uint8()) for v in (0x0F, 0x20, 0x2D, 0x30, 0x39, 0x61, 0x66, 4, 6, 9)}


class _Layout:
    """Index arrays for pages of up to ``rows`` canonical UUID texts (36 bytes each), grown on demand
    and sliced for shorter pages."""

    def __init__(self) -> None:
        self.rows = 0
        self.dash = pa.array([], type=pa.bool_())
        self.high = pa.array([], type=pa.int64())
        self.low = pa.array([], type=pa.int64())

    def ensure(self, rows: int) -> None:
        if rows <= self.rows:
            return
        rows = max(rows, 2 * self.rows, 1024)
        block = bytes(1 if i in _DASHES else 0 for i in range(36))
        self.dash = pa.Array.from_buffers(pa.uint8(), 36 * rows, [None, pa.py_buffer(block * rows)]).cast(pa.bool_())
        self.high = pa.array([36 * r + p for r in range(rows) for p in _HEX_POSITIONS[:8]], type=pa.int64())
        self.low = pa.array([36 * r + p for r in range(rows) for p in _HEX_POSITIONS[8:]], type=pa.int64())
        self.rows = rows


def uuid_words(values: pa.Array, layout: _Layout | None = None) -> tuple[pa.Array, pa.Array] | None:
    """Canonical UUID texts (``8-4-4-4-12`` hex, any case) as two ``uint64`` arrays holding their
    16 bytes (the same two words for two spellings of one UUID), computed column-wise; ``None``
    when any value is null or not a canonical UUID text."""
    n = len(values)
    if not pa.types.is_string(values.type) or values.null_count:
        return None
    if n == 0:
        empty = pa.array([], type=_U64)
        return empty, empty
    lengths = pc.min_max(pc.binary_length(values)).as_py()
    if lengths["min"] != 36 or lengths["max"] != 36:
        return None
    offsets = pa.Array.from_buffers(pa.int32(), n + 1, [None, values.buffers()[1]], offset=values.offset)
    start = offsets[0].as_py()
    chars = pa.Array.from_buffers(pa.uint8(), 36 * n, [None, values.buffers()[2]], offset=start)
    layout = layout or _Layout()
    layout.ensure(n)
    folded = pc.bit_wise_or(chars, _B[0x20])  # 'A'-'F' as 'a'-'f'; digits and '-' unchanged
    is_hex = pc.or_(pc.and_(pc.greater_equal(chars, _B[0x30]), pc.less_equal(chars, _B[0x39])),
                    pc.and_(pc.greater_equal(folded, _B[0x61]), pc.less_equal(folded, _B[0x66])))
    ok = pc.if_else(layout.dash.slice(0, 36 * n), pc.equal(chars, _B[0x2D]), is_hex)
    if not pc.all(ok).as_py():
        return None
    # a hex digit's value: its low nibble, plus 9 for a letter (the only characters with bit 6);
    # every step stays uint8, so the gathered bytes are the UUID's bytes
    nibble = pc.add(pc.bit_wise_and(chars, _B[0x0F]), pc.multiply(pc.shift_right(chars, _B[6]), _B[9]))
    byte = pc.bit_wise_or(pc.shift_left(nibble.slice(0, 36 * n - 1), _B[4]), nibble.slice(1))
    assert byte.type == pa.uint8()

    def word(index: pa.Array) -> pa.Array:
        taken = pc.take(byte, index.slice(0, 8 * n))
        return pa.Array.from_buffers(_U64, n, [None, taken.buffers()[1]], offset=0)

    return word(layout.high), word(layout.low)


class UuidSet:
    """The event uuids a run has read, 16 bytes each, for one project.

    :meth:`first_seen` takes a page's ``uuid`` column and marks the values neither an earlier page
    nor an earlier row of the page held (``None``: all of them, the common case). A canonical UUID
    text is kept as two ``uint64`` words: ``key`` (its two 8-byte halves xor-ed, so UUIDs that
    share a prefix, such as time-ordered ones, still spread) and ``low`` (its second half), from
    which the UUID is whole again. They sit in runs sorted on ``key``, checked with Arrow's
    ``search_sorted``; runs of similar size merge, up to :attr:`max_run` keys, so each value is
    re-sorted about log2(max_run / page) times and a page meets that many runs plus one per
    ``max_run`` values held. The bound keeps a merge's copies (both runs concatenated, the sort's
    indices, the sorted result: about 40 bytes per key) near 20 MB; merged without it, the runs'
    last doublings made the set alone peak at ~80 MB for 1,000,000 uuids (now ~40 MB) and ~310 MB
    for 5,000,000 (now ~135 MB, for ~2 s more CPU: more runs to search). Equal keys are confirmed
    on ``low`` (a repeat, or once in 2^64 two UUIDs). Any other text is kept as it is in a Python
    set (the two never hold the same value)."""

    #: keys in one merged run at most (8 MB of words; see above)
    max_run = 1 << 19

    def __init__(self) -> None:
        self._runs: list[tuple[pa.Array, pa.Array]] = []  # (keys sorted, low words alike)
        self._other: set[str] = set()
        self._layout = _Layout()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def first_seen(self, values: pa.Array | pa.ChunkedArray) -> pa.BooleanArray | None:
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
        words = uuid_words(values, self._layout)
        if words is None:
            return self._mixed(values)
        high, low = words
        return self._first_of_words(pc.bit_wise_xor(high, low), low)

    def _first_of_words(self, key: pa.Array, low: pa.Array) -> pa.BooleanArray | None:
        n = len(key)
        if n == 0:
            return None
        order = pc.sort_indices(key)  # stable: of two copies in one page, the first read stays first
        sk, sl = pc.take(key, order), pc.take(low, order)
        inner = n > 1 and pc.any(pc.equal(sk.slice(1), sk.slice(0, n - 1))).as_py()
        earlier = self._candidates(sk)
        if not inner and not earlier:
            self._add(sk, sl)
            return None
        # a repeat, or (once in 2^64) two UUIDs with one key: decided value by value
        keys, lows = sk.to_pylist(), sl.to_pylist()
        repeat = [False] * n
        for k in range(1, n) if inner else ():
            if keys[k] == keys[k - 1]:
                j = k - 1
                while j >= 0 and keys[j] == keys[k]:
                    if lows[j] == lows[k]:
                        repeat[k] = True
                        break
                    j -= 1
        for k in earlier:
            if not repeat[k] and self._holds(keys[k], lows[k]):
                repeat[k] = True
        mask = pa.array(repeat, type=pa.bool_())
        keep = pc.invert(mask)
        self._add(sk.filter(keep), sl.filter(keep))
        first = [True] * n
        for k, i in enumerate(order.to_pylist()):
            first[i] = not repeat[k]
        return None if all(first) else pa.array(first, type=pa.bool_())

    def _candidates(self, sk: pa.Array) -> list[int]:
        """Positions of the sorted page keys ``sk`` that some earlier run holds as a key."""
        out: set[int] = set()
        for rk, _ in self._runs:
            if _SEARCH_SORTED:
                m = len(rk)
                at = pc.search_sorted(rk, sk, side="left")
                clamped = pc.min_element_wise(at, pa.scalar(m - 1, at.type))
                equal = pc.and_(pc.less(at, m), pc.equal(pc.take(rk, clamped), sk))
            else:  # an Arrow before search_sorted: a hash of the run each time (slower, as exact)
                equal = pc.is_in(sk, value_set=rk)
            if pc.any(equal).as_py():
                out.update(pc.indices_nonzero(equal).to_pylist())
        return sorted(out)

    def _holds(self, key: int, low: int) -> bool:
        for rk, rl in self._runs:
            i = pc.search_sorted(rk, pa.scalar(key, _U64), side="left").as_py() if _SEARCH_SORTED \
                else max(0, pc.index(rk, pa.scalar(key, _U64)).as_py())
            while i < len(rk) and rk[i].as_py() == key:
                if rl[i].as_py() == low:
                    return True
                i += 1
        return False

    def _add(self, sk: pa.Array, sl: pa.Array) -> None:
        if not len(sk):
            return
        self._count += len(sk)
        self._runs.append((sk, sl))
        while (len(self._runs) > 1 and len(self._runs[-2][0]) <= 2 * len(self._runs[-1][0])
               and len(self._runs[-2][0]) + len(self._runs[-1][0]) <= self.max_run):
            (ak, al), (bk, bl) = self._runs[-2], self._runs[-1]
            k, lo = pa.concat_arrays([ak, bk]), pa.concat_arrays([al, bl])
            order = pc.sort_indices(k)
            self._runs[-2:] = [(pc.take(k, order), pc.take(lo, order))]

    def _mixed(self, values: pa.Array) -> pa.BooleanArray | None:
        """A page with values that are not canonical UUID texts (or nulls): those go by the
        Python set, the canonical ones by the words, in one pass that keeps the page's order."""
        texts = values.to_pylist()
        canonical = [i for i, v in enumerate(texts) if isinstance(v, str) and _canonical(v)]
        first = [True] * len(texts)
        if canonical:
            sub = pa.array([texts[i] for i in canonical], type=_STRING)
            words = uuid_words(sub, self._layout)
            assert words is not None
            marks = self._first_of_words(pc.bit_wise_xor(words[0], words[1]), words[1])
            if marks is not None:
                for i, new in zip(canonical, marks.to_pylist(), strict=True):
                    first[i] = new
        canon = set(canonical)
        for i, v in enumerate(texts):
            if i in canon:
                continue
            key = v if v is None or isinstance(v, str) else repr(v)
            if key in self._other:
                first[i] = False
            else:
                self._other.add(key)
                self._count += 1
        return None if all(first) else pa.array(first, type=pa.bool_())


def _canonical(text: str) -> bool:
    if len(text) != 36 or any(text[i] != "-" for i in _DASHES):
        return False
    try:
        bytes.fromhex(text.replace("-", ""))
    except ValueError:
        return False
    return True


def batched_tables(tables: Any, rows: int) -> Any:
    """Tables re-chunked into tables of at least ``rows`` rows (the last may be smaller): small
    pages are concatenated without copying (``pa.concat_tables``), large ones pass as they are."""
    buf: list[pa.Table] = []
    held = 0
    for table in tables:
        if not buf and table.num_rows >= rows:
            yield table
            continue
        buf.append(table)
        held += table.num_rows
        if held >= rows:
            yield pa.concat_tables(buf)
            buf, held = [], 0
    if buf:
        yield pa.concat_tables(buf)
