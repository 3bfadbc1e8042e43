"""Typed Arrow tables from pages of vendor rows.

Every source declares, per table, the columns it knows and their kinds; a batch of rows (dicts
as the API sent them, numbers possibly as strings) becomes one ``pyarrow.Table`` with a fixed
schema. Yielding Arrow tables lets dlt write parquet during extract and skip row-by-row
normalisation, which is the fastest path into DuckDB and the warehouses (see DESIGN.md,
"Fast by construction").

Open-ended attributes (keys a table spec does not declare) are collected into one JSON column
(``extras_column``), so a busy account does not create thousands of columns.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .errors import MalformedResponse

#: The kinds a column may be declared as, and their Arrow types.
TIMESTAMP = pa.timestamp("us", tz="UTC")
ARROW_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "text": pa.string(),
    "unix_s": TIMESTAMP,
    "unix_ms": TIMESTAMP,
    "datetime": TIMESTAMP,
    "json": pa.string(),
    # ISO 8601 strings with a zone offset (``2026-11-20T08:15:30.123456-05:00``, ``…Z``), parsed
    # column-wise by Arrow; values without an offset are read in the table's ``tz``
    "iso": TIMESTAMP,
    # calendar dates (``YYYY-MM-DD``)
    "date": pa.date32(),
}
ZERO_DATES = frozenset({"0000-00-00 00:00:00", "0000-00-00", ""})
_TRUE = frozenset({"1", "true", "yes", "y", "t", "on"})
_FALSE = frozenset({"0", "false", "no", "n", "f", "off"})


class _ValueError(ValueError):
    pass


def _int(v: Any) -> int | None:
    if v is None or v == "":
        return None
    if type(v) is int:
        return v
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float):
        if v.is_integer():
            return int(v)
        raise _ValueError(v)
    try:
        return int(v)
    except (TypeError, ValueError):
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise _ValueError(v) from None
        if f.is_integer():
            return int(f)
        raise _ValueError(v) from None


def _float(v: Any) -> float | None:
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        raise _ValueError(v) from None


def _bool(v: Any) -> bool | None:
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise _ValueError(v)


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, (dict, list)):
        return orjson.dumps(v).decode()
    return str(v)


def _json(v: Any) -> str | None:
    if v is None:
        return None
    return orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode()


def _unix_s_micros(v: Any) -> int | None:
    if v is None or v == "":
        return None
    try:
        secs = int(v)
    except (TypeError, ValueError):
        try:
            secs = float(v)
        except (TypeError, ValueError):
            raise _ValueError(v) from None
        return None if secs == 0 else round(secs * 1_000_000)
    return None if secs == 0 else secs * 1_000_000


def _unix_ms_micros(v: Any) -> int | None:
    if v is None or v == "":
        return None
    try:
        ms = int(v)
    except (TypeError, ValueError):
        try:
            ms = float(v)
        except (TypeError, ValueError):
            raise _ValueError(v) from None
        return None if ms == 0 else round(ms * 1000)
    return None if ms == 0 else ms * 1000


_SCALAR: dict[str, Callable[[Any], Any]] = {
    "int": _int,
    "float": _float,
    "bool": _bool,
    "text": _text,
    "json": _json,
    "unix_s": _unix_s_micros,
    "unix_ms": _unix_ms_micros,
}


def _datetime_array(values: list[Any], tz: str) -> pa.Array:
    """`YYYY-MM-DD HH:MM:SS` (naive, in ``tz``), date-only or ISO 8601 strings → UTC timestamps.

    MySQL zero dates become null. Parsing is vectorised with Arrow's strptime; values that do not
    match the fixed layout fall back to ISO 8601 parsing one by one."""
    cleaned = [None if (v is None or v in ZERO_DATES) else str(v) for v in values]
    arr = pa.array(cleaned, type=pa.string())
    try:
        parsed = pc.strptime(arr, format="%Y-%m-%d %H:%M:%S", unit="us", error_is_null=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _datetime_fallback(cleaned, tz)
    if tz == "UTC":
        return parsed.cast(TIMESTAMP)
    return pc.assume_timezone(parsed, timezone=tz, ambiguous="earliest", nonexistent="earliest").cast(TIMESTAMP)


def _iso_array(values: list[Any], tz: str) -> pa.Array:
    """ISO 8601 strings with an offset (or ``Z``) → UTC timestamps, vectorised by Arrow's cast;
    any other layout (no offset, a space separator Arrow refuses …) falls back to pendulum."""
    cleaned = [None if (v is None or v == "") else str(v) for v in values]
    try:
        return pa.array(cleaned, type=pa.string()).cast(TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _datetime_fallback(cleaned, tz)


def _date_array(values: list[Any]) -> pa.Array:
    """``YYYY-MM-DD`` strings (or date/datetime objects, or ISO timestamps: their date part)."""
    import datetime as _dt

    out: list[_dt.date | None] = []
    for v in values:
        if v is None or v == "" or v in ZERO_DATES:
            out.append(None)
        elif isinstance(v, _dt.datetime):
            out.append(v.date())
        elif isinstance(v, _dt.date):
            out.append(v)
        else:
            try:
                out.append(_dt.date.fromisoformat(str(v)[:10]))
            except ValueError:
                raise _ValueError(v) from None
    return pa.array(out, type=pa.date32())


def _datetime_fallback(values: list[str | None], tz: str) -> pa.Array:
    import pendulum

    micros: list[int | None] = []
    for v in values:
        if v is None:
            micros.append(None)
            continue
        try:
            dt = pendulum.parse(v, tz=tz, strict=False)
        except Exception:
            raise _ValueError(v) from None
        if not isinstance(dt, pendulum.DateTime):
            dt = pendulum.datetime(dt.year, dt.month, dt.day, tz=tz)  # a bare date
        micros.append(int(dt.in_timezone("UTC").timestamp() * 1_000_000))
    return pa.array(micros, type=pa.int64()).cast(TIMESTAMP)


@dataclass(frozen=True)
class TableSpec:
    """The declared columns of one table, in order, each with its kind.

    ``extras_column`` names the JSON column that receives every key not declared (``None`` drops
    them). ``primary_key`` columns are non-nullable in the Arrow schema."""

    name: str
    columns: dict[str, str]
    primary_key: tuple[str, ...] = ()
    extras_column: str | None = "attributes"
    tz: str = "UTC"
    _schema: pa.Schema = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = {k for k in self.columns.values() if k not in ARROW_TYPES}
        if unknown:
            raise ValueError(f"unknown column kinds {sorted(unknown)} in table spec {self.name!r}")
        fields = [
            pa.field(c, ARROW_TYPES[k], nullable=c not in self.primary_key) for c, k in self.columns.items()
        ]
        if self.extras_column:
            fields.append(pa.field(self.extras_column, pa.string()))
        object.__setattr__(self, "_schema", pa.schema(fields))

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def with_tz(self, tz: str) -> TableSpec:
        return TableSpec(self.name, self.columns, self.primary_key, self.extras_column, tz)

    def dlt_columns(self) -> dict[str, dict[str, Any]]:
        """Column hints for ``@dlt.resource(columns=...)``: JSON kinds as dlt ``json`` and every
        declared column's type, so an empty first page still creates the right table."""
        dlt_types = {
            "int": "bigint",
            "float": "double",
            "bool": "bool",
            "text": "text",
            "unix_s": "timestamp",
            "unix_ms": "timestamp",
            "datetime": "timestamp",
            "json": "json",
            "iso": "timestamp",
            "date": "date",
        }
        hints: dict[str, dict[str, Any]] = {}
        for c, k in self.columns.items():
            hint: dict[str, Any] = {"data_type": dlt_types[k], "nullable": c not in self.primary_key}
            if dlt_types[k] == "timestamp":
                hint["timezone"] = True
            hints[c] = hint
        if self.extras_column:
            hints[self.extras_column] = {"data_type": "json", "nullable": True}
        return hints

    def to_arrow(self, rows: Sequence[dict[str, Any]]) -> pa.Table:
        return rows_to_table(rows, self)


def _native(values: list[Any], kind: str) -> pa.Array | None:
    """``values`` as ``kind``'s Arrow array when Arrow can take them as they are — every value
    already of the column's Python type (or None), which is what JSON gives for most columns — so
    no Python function runs per value; None when any value needs :data:`_SCALAR`'s conversion
    (numbers sent as strings, booleans as ``"yes"``, floats in an int column, zero timestamps
    written as strings ...). Arrow's type inference decides, in C; the answer is then exactly the
    per-value conversion's."""
    try:
        arr = pa.array(values)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        return None
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(values), type=ARROW_TYPES[kind]) if kind in _NATIVE else None
    if kind == "int":
        return arr if pa.types.is_int64(t) else None
    if kind == "float":
        if pa.types.is_float64(t):
            return arr
        if pa.types.is_int64(t):
            try:  # ints beyond 2**53 are refused by the safe cast: float() rounds them instead
                return arr.cast(pa.float64(), safe=True)
            except pa.ArrowInvalid:
                return None
        return None
    if kind == "bool":
        return arr if pa.types.is_boolean(t) else None
    if kind == "text":
        return arr if pa.types.is_string(t) else None
    if kind in ("unix_s", "unix_ms") and pa.types.is_int64(t):
        try:
            micros = pc.multiply_checked(arr, 1_000_000 if kind == "unix_s" else 1000)
        except pa.ArrowInvalid:
            return None
        zero = pc.equal(arr, 0)
        return pc.if_else(zero, pa.scalar(None, pa.int64()), micros).cast(TIMESTAMP)
    return None


#: the kinds :func:`_native` can take without a Python call per value
_NATIVE = frozenset({"int", "float", "bool", "text", "unix_s", "unix_ms"})


def rows_to_table(rows: Sequence[dict[str, Any]], spec: TableSpec) -> pa.Table:
    """Convert API rows to an Arrow table with ``spec``'s schema.

    Numbers sent as strings become numbers, Unix seconds/milliseconds and date strings become UTC
    timestamps (zero dates and 0 become null), undeclared keys go to the extras JSON column. A value
    that cannot be converted raises :class:`MalformedResponse` naming the table and column.

    A column whose values Arrow can take as they are is converted in C (:func:`_native`); only the
    others go through a Python conversion per value."""
    arrays: list[pa.Array] = []
    present = set(chain.from_iterable(rows))  # the keys any row has: one pass in C
    for name, kind in spec.columns.items():
        if name not in present:  # a declared column no row of this batch carries
            arrays.append(pa.nulls(len(rows), type=ARROW_TYPES[kind]))
            continue
        values = [r.get(name) for r in rows]
        if kind in _NATIVE:
            native = _native(values, kind)
            if native is not None:
                arrays.append(native)
                continue
        arrays.append(_convert(values, kind, name, spec))
    if spec.extras_column and not present <= spec.columns.keys():
        declared = spec.columns.keys()
        extras: list[str | None] = []
        for r in rows:
            if r.keys() <= declared:
                extras.append(None)
            else:
                rest = {k: v for k, v in r.items() if k not in declared}
                extras.append(orjson.dumps(rest, option=orjson.OPT_SORT_KEYS).decode())
        arrays.append(pa.array(extras, type=pa.string()))
    elif spec.extras_column:
        arrays.append(pa.nulls(len(rows), type=pa.string()))
    return pa.Table.from_arrays(arrays, schema=spec.schema)


def _convert(values: list[Any], kind: str, name: str, spec: TableSpec) -> pa.Array:
    """One column through the per-value conversion of its kind."""
    try:
        if kind == "datetime":
            return _datetime_array(values, spec.tz)
        if kind == "iso":
            return _iso_array(values, spec.tz)
        if kind == "date":
            return _date_array(values)
        conv = _SCALAR[kind]
        converted = [conv(v) for v in values]
    except _ValueError as e:
        raise MalformedResponse(
            f"{spec.name}.{name}: cannot read {e.args[0]!r} as {kind}", body=None
        ) from None
    try:
        if kind in ("unix_s", "unix_ms"):
            return pa.array(converted, type=pa.int64()).cast(TIMESTAMP)
        return pa.array(converted, type=ARROW_TYPES[kind])
    except (OverflowError, pa.ArrowInvalid):  # an integer beyond int64 (or its microseconds)
        big = next((v for v in values if isinstance(v, (int, str)) and _beyond_int64(v)), "a value")
        raise MalformedResponse(f"{spec.name}.{name}: cannot read {big!r} as {kind}", body=None) from None


def _beyond_int64(v: Any) -> bool:
    try:
        return not -(2**63) <= int(v) < 2**63
    except (TypeError, ValueError):
        return False


def batched(pages: Iterable[list[dict[str, Any]]], size: int) -> Iterable[list[dict[str, Any]]]:
    """Re-chunk pages of rows into batches of about ``size`` rows (the last one may be smaller)."""
    buf: list[dict[str, Any]] = []
    for page in pages:
        buf.extend(page)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


class _ArrowJsonHintFilter(logging.Filter):
    """dlt warns on every run that an Arrow string column carries a ``json`` hint. That is
    deliberate here (open-ended attributes are JSON text in Arrow, JSON in the destination), so
    the warning would only teach users to ignore warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "when merging arrow schema with dlt schema" not in record.getMessage()


def quiet_arrow_hint_warning() -> None:
    logger = logging.getLogger("dlt")
    if not any(isinstance(f, _ArrowJsonHintFilter) for f in logger.filters):
        logger.addFilter(_ArrowJsonHintFilter())


# -- values that do not fit their column never fail a run ------------------------------------------

#: where a value goes that its declared column cannot hold: dlt's name for a variant column
VARIANT_SUFFIX = "__v_text"


def _as_text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (dict, list)):
        return orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode()
    return str(v)


class TolerantConverter:
    """``spec.to_arrow`` that never fails a run on a value its column cannot hold.

    Columns are typed as the vendor's contract documents them; a value the declared type cannot
    hold (a text ``"CRM-000042"`` in an int column, a date nobody can parse, ``"maybe"`` for a
    boolean) is not an error: the row loads with that column null and the value, as text, in
    ``<column>__v_text`` — a column of its own (dlt's name for a variant), or, with
    ``into_extras``, a key of the table's extras JSON column (for wide tables that must not grow
    a column per misfit). :meth:`warn` then logs **one** line for the resource naming every such
    column and how many values went there. Only a primary-key value that does not fit stops the
    run: a row without its key cannot be merged.

    The fast path is :func:`rows_to_table` (column-wise, no per-row work); the per-value search
    runs only for a batch the fast path refused, and only on the columns that failed. One
    converter serves one resource; it is safe to share between threads."""

    def __init__(self, spec: TableSpec, vendor: str, *, into_extras: bool = False,
                 log: logging.Logger | None = None) -> None:
        if into_extras and not spec.extras_column:
            raise ValueError(f"table spec {spec.name!r} has no extras column to put misfits into")
        self.spec = spec
        self.vendor = vendor
        self.into_extras = into_extras
        self.log = log or logging.getLogger("cdp_sync.progress")
        self.misfits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._single = {
            name: TableSpec(spec.name, {name: kind}, extras_column=None, tz=spec.tz)
            for name, kind in spec.columns.items()
        }

    def __call__(self, rows: Sequence[dict[str, Any]]) -> pa.Table:
        try:
            return rows_to_table(rows, self.spec)
        except MalformedResponse:
            return self._set_aside(rows)

    def _fits(self, column: str, cells: list[dict[str, Any]]) -> bool:
        try:
            rows_to_table(cells, self._single[column])
        except MalformedResponse:
            return False
        return True

    def _set_aside(self, rows: Sequence[dict[str, Any]]) -> pa.Table:
        fixed: list[dict[str, Any]] | None = None
        variants: dict[str, list[str | None]] = {}
        counts: Counter[str] = Counter()
        for column in self.spec.columns:
            cells = [{column: r.get(column)} for r in rows]
            if self._fits(column, cells):
                continue
            bad = [i for i, cell in enumerate(cells) if not self._fits(column, [cell])]
            if not bad:  # refused only together: nothing to set aside, let the error stand
                continue
            if column in self.spec.primary_key:
                raise MalformedResponse(
                    f"{self.vendor} {self.spec.name}: primary key {column} {rows[bad[0]].get(column)!r} does not "
                    f"read as {self.spec.columns[column]}; the row cannot be merged",
                    vendor=self.vendor,
                )
            if fixed is None:
                fixed = [dict(r) for r in rows]
            texts: list[str | None] = [None] * len(rows)
            for i in bad:
                texts[i] = _as_text(fixed[i][column])
                fixed[i][column] = None
                if self.into_extras:
                    fixed[i][column + VARIANT_SUFFIX] = texts[i]
            variants[column + VARIANT_SUFFIX] = texts
            counts[column] += len(bad)
        table = rows_to_table(fixed if fixed is not None else rows, self.spec)
        if not self.into_extras:
            for name, texts in variants.items():
                table = table.append_column(pa.field(name, pa.string()), pa.array(texts, type=pa.string()))
        with self._lock:
            self.misfits.update(counts)
        return table

    def warn(self) -> None:
        """One line for the whole resource if any value was set aside (then the count restarts)."""
        with self._lock:
            misfits, self.misfits = self.misfits, Counter()
        if not misfits:
            return
        total = sum(misfits.values())
        into = f"{self.spec.extras_column}." if self.into_extras else ""
        detail = ", ".join(
            f"{column} ({n:,} in {into}{column}{VARIANT_SUFFIX}, declared {self.spec.columns[column]})"
            for column, n in sorted(misfits.items())
        )
        self.log.warning(
            "%s.%s: %s value%s did not fit the column type and loaded as text: %s",
            self.vendor, self.spec.name, f"{total:,}", "" if total == 1 else "s", detail,
        )
