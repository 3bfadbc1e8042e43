"""Typed Arrow pages for Lytics tables: the shared :class:`~sources.common.arrow.TableSpec` plus
one column kind of its own, ``iso``: RFC 3339 strings with up to nanosecond fractions and a ``Z``
or an offset (``2026-01-05T10:00:00.123456789Z``), as Lytics (a Go service) renders times. They
are parsed column-wise by Arrow and load as UTC timestamps truncated to microseconds."""

from __future__ import annotations

import datetime as _dt
import math
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from sources.common.arrow import ARROW_TYPES, TIMESTAMP, TableSpec, rows_to_table
from sources.common.errors import MalformedResponse

_NS_TIMESTAMP = pa.timestamp("ns", tz="UTC")
#: where a value that does not read as its typed column's kind goes (a key of the extras column)
UNFIT_SUFFIX = "__v_text"
#: numbers sent as text that Arrow's cast reads exactly as Python's ``int()``/``float()`` do (Arrow
#: also reads ``0x1F`` as an int, Python does not: anything else takes the per-value path)
_INT_TEXT = "^-?[0-9]+$"
_FLOAT_TEXT = "^[+-]?(?:[0-9]+[.]?[0-9]*|[.][0-9]+)(?:[eE][+-]?[0-9]+)?$"
_OPT_SORT = orjson.OPT_SORT_KEYS


def parse_iso_column(values: pa.Array | pa.ChunkedArray, where: str) -> pa.Array | pa.ChunkedArray:
    """RFC 3339 text → UTC microsecond timestamps (vectorised; one-by-one for odd layouts)."""
    try:
        return values.cast(_NS_TIMESTAMP).cast(TIMESTAMP, safe=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    out: list[int | None] = []
    for v in values.to_pylist():
        out.append(None if v in (None, "") else iso_to_micros(v, where))
    return pa.array(out, type=pa.int64()).cast(TIMESTAMP)


def iso_to_micros(text: str, where: str = "timestamp") -> int:
    """One RFC 3339 string as epoch microseconds (fractions past 6 digits are truncated)."""
    s = str(text).strip().replace(" ", "T", 1)
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    if "." in s:
        head, rest = s.split(".", 1)
        digits = len(rest) - len(rest.lstrip("0123456789"))
        s = head + "." + rest[:digits][:6].ljust(6, "0") + rest[digits:]
    try:
        dt = _dt.datetime.fromisoformat(s)
    except ValueError:
        raise MalformedResponse(f"{where}: cannot read {text!r} as an RFC 3339 time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_dt.UTC)
    delta = dt - _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


#: values counted per pass of :func:`distinct_hashes` (its memory is flat in the number of keys)
DISTINCT_PART_ROWS = 1 << 16
#: passes at most (beyond 4 million keys a pass counts more than ``DISTINCT_PART_ROWS``)
DISTINCT_MAX_PARTS = 64


def distinct_hashes(hashes: array, part_rows: int = DISTINCT_PART_ROWS) -> int:
    """How many distinct values an ``array("q")`` of hashes holds, counted by Arrow over the
    array's own buffer (no Python object per value).

    The int64 range is cut into equal parts with about ``part_rows`` of the values each (hashes
    spread evenly); a value lies in exactly one part, so the parts' distinct counts add up to the
    whole's. Each part is sorted and counted where a value differs from its predecessor. A pass
    needs about 24 bytes per value of its part plus a bit per value: a million profiles count in
    about 2 MB (``count_distinct``'s hash table over the whole array needed 108 MB, and a sort of
    it 16 MB)."""
    n = len(hashes)
    if n < 2:
        return n
    column = pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(hashes)])
    parts = min(DISTINCT_MAX_PARTS, -(-n // max(1, part_rows)))
    if parts == 1:
        return _distinct_sorted(column)
    edges = [-(2**63) + (2**64 * j) // parts for j in range(1, parts)]
    total = 0
    for j in range(parts):
        if j == 0:
            inside = pc.less(column, pa.scalar(edges[0], pa.int64()))
        elif j == parts - 1:
            inside = pc.greater_equal(column, pa.scalar(edges[-1], pa.int64()))
        else:
            inside = pc.and_(pc.greater_equal(column, pa.scalar(edges[j - 1], pa.int64())),
                             pc.less(column, pa.scalar(edges[j], pa.int64())))
        total += _distinct_sorted(column.filter(inside))
    return total


def _distinct_sorted(column: pa.Array) -> int:
    n = len(column)
    if n < 2:
        return n
    ordered = column.take(pc.array_sort_indices(column))
    return 1 + int(pc.sum(pc.not_equal(ordered.slice(1), ordered.slice(0, n - 1))).as_py())


def _without_empty(arr: pa.Array) -> pa.Array:
    """``""`` as null: every kind but ``text`` reads an empty string as no value."""
    empty = pc.equal(arr, "")
    if not pc.any(empty).as_py():
        return arr
    return pc.if_else(empty, pa.scalar(None, arr.type), arr)


def _all_match(arr: pa.Array, pattern: str) -> bool:
    return bool(pc.all(pc.match_substring_regex(arr, pattern)).as_py() is not False)


def _vectorised(kind: str, values: list[Any], where: str) -> pa.Array | None:
    """``values`` as a column of ``kind`` read by Arrow in one pass, exactly as the per-value
    converters of :func:`~sources.common.arrow.rows_to_table` read them; ``None`` when this batch
    of the column needs those converters (mixed types, numbers in a layout Arrow and Python might
    read differently, floats in an int column, text in a bool column …). An ``iso`` value that
    reads as no time raises :class:`MalformedResponse`, as the per-value path does."""
    if kind not in ("text", "int", "float", "bool", "iso"):
        return None
    try:
        arr = pa.array(values)  # types inferred in one pass: a mixed column raises
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None
    return _typed(kind, arr, where)


def _typed(kind: str, arr: pa.Array, where: str) -> pa.Array | None:
    """An array Arrow built from a column's values (their inferred type: ``null``, ``string``,
    ``bool``, ``int64``, ``double`` …) as a column of ``kind``; ``None`` where the per-value
    converters must decide (see :func:`_vectorised`)."""
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), TIMESTAMP if kind == "iso" else ARROW_TYPES[kind])
    if kind == "text" or kind == "bool":
        return arr if t == ARROW_TYPES[kind] else None
    if kind == "iso":
        return parse_iso_column(_without_empty(arr), where) if t == pa.string() else None
    try:
        if kind == "int":
            if t == pa.int64():
                return arr
            if t == pa.string():
                arr = _without_empty(arr)
                return arr.cast(pa.int64()) if _all_match(arr, _INT_TEXT) else None
            return None
        # float
        if t == pa.float64():
            return arr
        if t == pa.int64():
            return arr.cast(pa.float64())  # a safe cast: an int a double cannot hold exactly raises
        if t == pa.string():
            arr = _without_empty(arr)
            return arr.cast(pa.float64()) if _all_match(arr, _FLOAT_TEXT) else None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return None


#: the kinds a batch can read in one struct pass over its rows, with the Arrow type that pass
#: asks for. Only ``string`` and ``bool`` are asked for: Arrow refuses anything else for them
#: (an int, a float, a list, a dict), exactly as type inference would tell them apart, whereas a
#: column asked for as ``int64`` silently truncates ``1.5`` and one asked for as ``double`` takes
#: ``true`` as ``1.0``. Numbers usually arrive as text from Lytics (the contract's "numbers as
#: strings"); a number column sent as JSON numbers leaves the pass at its first batch.
_ONE_PASS_TYPES = {"text": pa.string(), "iso": pa.string(), "int": pa.string(), "float": pa.string(),
                   "bool": pa.bool_()}


def _number(text: str, conv: Callable[[float], Any]) -> Any:
    """``conv(float(text))``, refusing what JSON cannot hold (``nan``, ``inf``, ints beyond 64 bits)."""
    f = float(text)
    if not math.isfinite(f):
        raise ValueError(text)
    out = conv(f)
    if isinstance(out, int) and not -(2**63) <= out < 2**64:
        raise ValueError(text)
    return out


def _int_or_float(f: float) -> int | float:
    return int(f) if f.is_integer() else f


def typed_value(kind: str, v: Any) -> Any:
    """A value of an undeclared (extras) field, typed as the account schema says (``int``,
    ``float``, ``bool``, ``map[string]int|number``, ``[]int|number``); left as sent when it does
    not read as that type, or as nothing JSON can hold (it is still loaded, as JSON). Never
    changes ``v`` itself."""
    try:
        if kind == "int" and isinstance(v, str):
            return _number(v, _int_or_float)
        if kind == "float" and isinstance(v, str):
            return _number(v, float)
        if kind == "bool" and isinstance(v, str) and v.lower() in ("true", "false"):
            return v.lower() == "true"
        if kind in ("map[string]int", "map[string]number") and isinstance(v, dict):
            if not any(isinstance(x, str) for x in v.values()):
                return v  # already numbers (the usual case): nothing to convert
            conv = int if kind.endswith("int") else float
            return {k: (_number(x, conv) if isinstance(x, str) else x) for k, x in v.items()}
        if kind in ("[]int", "[]number") and isinstance(v, list):
            if not any(isinstance(x, str) for x in v):
                return v
            conv = int if kind.endswith("int") else float
            return [_number(x, conv) if isinstance(x, str) else x for x in v]
    except (TypeError, ValueError, OverflowError):
        return v
    return v


@dataclass(frozen=True)
class Table:
    """Declared columns (``TableSpec`` kinds plus ``iso``), primary key and extras column.

    ``extras_kinds`` (field -> schema kind): undeclared fields typed by :func:`typed_value`
    before they go to the extras column (the users table: numbers the account schema types)."""

    name: str
    columns: dict[str, str]
    primary_key: tuple[str, ...] = ()
    extras_column: str | None = "attributes"
    extras_kinds: dict[str, str] = field(default_factory=dict, compare=False)
    spec: TableSpec = field(init=False, repr=False, compare=False)
    iso: tuple[str, ...] = field(init=False, repr=False, compare=False)
    schema: pa.Schema = field(init=False, repr=False, compare=False)
    _single: dict[str, TableSpec] = field(init=False, repr=False, compare=False)
    #: (column, Arrow type) read in one struct pass per batch; a column whose values once do not
    #: all have that type leaves it (replaced whole, never mutated: tables are shared by threads)
    _one_pass: tuple[tuple[str, pa.DataType], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        base = {c: ("text" if k == "iso" else k) for c, k in self.columns.items()}
        spec = TableSpec(self.name, base, self.primary_key, self.extras_column)
        object.__setattr__(self, "spec", spec)
        object.__setattr__(self, "iso", tuple(c for c, k in self.columns.items() if k == "iso"))
        fields = [pa.field(c, TIMESTAMP, nullable=c not in self.primary_key) if c in self.iso else f
                  for c, f in zip(self.columns, spec.schema, strict=False)]
        if self.extras_column:
            fields.append(spec.schema.field(self.extras_column))
        object.__setattr__(self, "schema", pa.schema(fields))
        object.__setattr__(self, "_single", {
            c: TableSpec(self.name, {c: k}, self.primary_key if c in self.primary_key else (), None)
            for c, k in base.items()})
        convert = {c: k for c, k in self.extras_kinds.items() if c not in self.columns and k not in ("text", "iso")}
        object.__setattr__(self, "extras_kinds", convert)
        object.__setattr__(self, "_one_pass", tuple((c, _ONE_PASS_TYPES[k]) for c, k in self.columns.items()
                                                    if k in _ONE_PASS_TYPES))

    def with_columns(self, extra: dict[str, str]) -> Table:
        return Table(self.name, {**self.columns, **extra}, self.primary_key, self.extras_column, self.extras_kinds)

    def dlt_columns(self) -> dict[str, dict[str, Any]]:
        hints = self.spec.dlt_columns()
        for c in self.iso:
            hints[c] = {"data_type": "timestamp", "timezone": True, "nullable": c not in self.primary_key}
        return hints

    def to_arrow(self, rows: Sequence[dict[str, Any]], unfit: Counter[str] | None = None) -> pa.Table:
        """The rows as one Arrow table, column by column: Arrow reads each column in one pass
        (:func:`_vectorised`); only a column it refuses in this batch goes value by value
        through the shared converters (numbers sent as strings become numbers, ``iso`` text UTC
        timestamps). Undeclared keys go to the extras column as JSON (sorted keys).

        A value that does not read as its column's kind raises :class:`MalformedResponse`; with
        ``unfit`` given (not for primary-key, ``text`` and ``json`` columns) it goes to the
        extras column as ``<column>__v_text`` instead (the column is NULL in that row), counted
        in ``unfit`` for one warning per column. The rows are never changed."""
        set_aside: dict[int, dict[str, Any]] = {}
        read = self._read_in_one_pass(rows)
        arrays = []
        for c, kind in self.columns.items():
            arr = read.get(c)
            if arr is not None:
                try:
                    arr = _typed(kind, arr, f"{self.name}.{c}")
                except MalformedResponse:
                    arr = None  # the column's own path raises or sets the value aside
            if arr is None:
                arr = self._column(c, kind, [r.get(c) for r in rows], set_aside, unfit)
            arrays.append(arr)
        if self.extras_column:
            arrays.append(self._extras(rows, set_aside))
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def _read_in_one_pass(self, rows: Sequence[dict[str, Any]]) -> dict[str, pa.Array]:
        """The columns of :attr:`_one_pass` read from ``rows`` by Arrow in one pass over the rows
        (a struct array asked for those fields only: Arrow looks each one up in every row, in
        C++), each as Arrow would have typed that column's values on its own. Empty when a value
        does not have its column's type: that batch goes column by column, and the columns
        that refused leave the pass."""
        fields = self._one_pass
        if not fields or not rows:
            return {}
        try:
            struct = pa.array(rows, type=pa.struct([pa.field(c, t) for c, t in fields]))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
            keep = []
            for c, t in fields:
                try:
                    pa.array([r.get(c) for r in rows], type=t)
                except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
                    continue
                keep.append((c, t))
            object.__setattr__(self, "_one_pass", tuple(keep))
            return {}
        read = {}
        for i, (c, _) in enumerate(fields):
            arr = struct.field(i)
            # a column without one value is what inference calls null (typed nulls downstream)
            read[c] = pa.nulls(len(arr)) if arr.null_count == len(arr) else arr
        return read

    def _column(self, c: str, kind: str, values: list[Any], set_aside: dict[int, dict[str, Any]],
                unfit: Counter[str] | None) -> pa.Array:
        if kind == "json":
            # decoded at once: orjson's bytes are allocated large and only shrunk, so keeping
            # thousands of them alive costs twenty times the encoding itself
            return pa.array([None if v is None else orjson.dumps(v, option=_OPT_SORT).decode() for v in values],
                            pa.string())
        where = f"{self.name}.{c}"
        try:
            arr = _vectorised(kind, values, where)
            return arr if arr is not None else self._per_value(c, kind, values)
        except MalformedResponse:
            if unfit is None or kind == "text" or c in self.primary_key:
                raise
        bad = [i for i, v in enumerate(values) if v is not None and v != "" and not self._reads(c, kind, v)]
        if not bad:
            return self._per_value(c, kind, values)  # refused only together: let the error stand
        values = list(values)
        for i in bad:
            v = values[i]
            set_aside.setdefault(i, {})[c + UNFIT_SUFFIX] = v if isinstance(v, str) else orjson.dumps(v).decode()
            values[i] = None
        unfit[c] += len(bad)
        return self._per_value(c, kind, values)

    def _per_value(self, c: str, kind: str, values: list[Any]) -> pa.Array:
        try:
            arr = rows_to_table([{c: v} for v in values], self._single[c]).column(0).combine_chunks()
        except (OverflowError, pa.ArrowInvalid) as exc:  # an int beyond 64 bits
            raise MalformedResponse(f"{self.name}.{c}: a value does not read as {kind} ({exc})") from None
        return parse_iso_column(arr, f"{self.name}.{c}") if kind == "iso" else arr

    def _reads(self, c: str, kind: str, v: Any) -> bool:
        try:
            self._per_value(c, kind, [v])
        except MalformedResponse:
            return False
        return True

    def _extras(self, rows: Sequence[dict[str, Any]], set_aside: dict[int, dict[str, Any]]) -> pa.Array:
        declared = self.columns
        # the undeclared keys of this batch, found once (a C loop over every row's keys): each
        # row then picks those few instead of walking all of its fields
        extra = [k for k in set().union(*rows) if k not in declared]
        if not extra and not set_aside:
            return pa.nulls(len(rows), pa.string())
        convert = [(k, self.extras_kinds[k]) for k in extra if k in self.extras_kinds]
        dumps = orjson.dumps
        out: list[str | None] = []
        for i, r in enumerate(rows):
            rest = {k: r[k] for k in extra if k in r}
            for k, kind in convert:
                if k in rest:
                    rest[k] = typed_value(kind, rest[k])
            if set_aside:
                rest.update(set_aside.get(i) or ())
            out.append(dumps(rest, option=_OPT_SORT).decode() if rest else None)
        return pa.array(out, pa.string())
