"""The HogQL subset the emulator answers on ``POST /api/projects/{id}/query/`` (contract §3.2, §7.5–6).

Parsed with ``sqlglot`` (ClickHouse dialect) after ``{placeholder}`` values are bound, then
compiled into Python closures over typed values:

* ``SELECT <expressions> FROM events | persons | sessions [WHERE …] [GROUP BY …] [ORDER BY …] [LIMIT n]``
  (``sessions``: one row per ``$session_id``, aggregated from the events, :mod:`.sessions`; its
  sort key is ``($start_timestamp, session_id)``, the tie a text);
  expressions are columns, aliases, constants, ``{placeholders}``, tuples, comparisons,
  ``AND``/``OR``/``NOT``/``IN``/``IS [NOT] NULL``, ``+ - * /``, and the functions ``toDate``,
  ``toDateTime``, ``toDateTime64``, ``parseDateTimeBestEffort``, ``toUUID``, ``toString``,
  ``now``, ``today`` and the aggregates ``count()``, ``count(x)``, ``count(DISTINCT x)``,
  ``uniq``, ``uniqExact``, ``min``, ``max``, ``sum``, ``avg``.
* Types follow ClickHouse: ``timestamp``/``created_at`` are DateTime64(6) compared with strings
  by parsing them (a string **without** an offset is read in the project's time zone, as HogQL
  does); ``uuid``/``person_id``/``id`` are UUIDs compared in ClickHouse order (low 64 bits, then
  high); ``toDate`` takes the date in the project's time zone.
* The ``WHERE`` clause is searched for bounds on the sort key ``(timestamp, uuid)`` — time
  comparisons, ``toDate(timestamp)`` comparisons, the tuple predicate ``(timestamp, uuid) > (t, u)``
  and its expanded form ``timestamp > t OR (timestamp = t AND uuid > u)`` — which become a binary
  search; whatever else remains is evaluated per row. A page therefore costs O(log n + page).
* ``ORDER BY timestamp, uuid`` (either direction) streams in index order. ``ORDER BY timestamp``
  alone returns rows that tie on the timestamp in an arbitrary (hash) order, as ClickHouse may,
  so a keyset on ``timestamp`` alone is punished. Other orders sort the whole matching range.
* ``LIMIT`` defaults to 100 and is clamped **silently** to 50,000 (contract unknown #6: the stricter
  reading). ``hasMore`` is filled only when the query has no ``LIMIT``; with one it is ``null``.
* ``OFFSET`` anywhere (``LIMIT n OFFSET m``, ``LIMIT m, n``) is refused with the exact message of
  ``posthog/hogql/user_query_validator.py``.

Stricter than PostHog where this subset ends: anything else (joins, subqueries, other tables,
``properties.$x`` sugar …) is a 400 ``validation_error`` naming what is not supported, rather
than a guess.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import sqlglot
from sqlglot import exp

from .data import DAY_US, EPOCH, MASK64, US, from_datetime, iso_us, uuid_key, uuid_str

DEFAULT_LIMIT = 100
MAX_LIMIT = 50_000
#: the exact refusal of ``posthog/hogql/user_query_validator.py``
OFFSET_MESSAGE = (
    "OFFSET is not supported on queries made with a personal API key. For pagination, use keyset "
    "pagination on the `timestamp` column, e.g. `WHERE timestamp > :last_seen_timestamp ORDER BY "
    "timestamp LIMIT N`. For bulk data extraction, use batch exports: https://posthog.com/docs/cdp/batch-exports"
)
#: a sort over more rows than this is refused (the emulator's own limit, said so in the error)
MAX_SORT_ROWS = 500_000


class HogQLError(Exception):
    """A query the server refuses: 400 ``validation_error`` with ``code``."""

    def __init__(self, message: str, code: str = "invalid_input") -> None:
        super().__init__(message)
        self.code = code


class QueryTimeout(Exception):
    """The query would read more rows than the configured execution budget."""


# --------------------------------------------------------------------------- typed values


class TS(int):
    """A DateTime64(6) value: microseconds since the epoch, UTC."""

    __slots__ = ()


class UUIDV(tuple):
    """A UUID in ClickHouse order: ``(low 64 bits, high 64 bits)``."""

    __slots__ = ()


_ISO = re.compile(
    r"^\s*(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?\s*(Z|[+-]\d{2}:?\d{2})?\s*$"
)


@functools.lru_cache(maxsize=4096)
def parse_ts(text: str, tz: dt.tzinfo) -> TS:
    """A DateTime literal: ISO 8601 with or without an offset (without: read in ``tz``); the
    window bounds of a walk repeat on every page, so results are kept (a bounded LRU)."""
    m = _ISO.match(text)
    if not m:
        raise HogQLError(f"Cannot parse DateTime from string '{text}'", "invalid_input")
    y, mo, d, hh, mi, ss, frac, off = m.groups()
    micro = int((frac or "0").ljust(6, "0")[:6])
    try:
        naive = dt.datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0), micro)
    except ValueError:
        raise HogQLError(f"Cannot parse DateTime from string '{text}'") from None
    if off:
        if off == "Z":
            zone: dt.tzinfo = dt.UTC
        else:
            sign = -1 if off[0] == "-" else 1
            digits = off[1:].replace(":", "")
            zone = dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
        aware = naive.replace(tzinfo=zone)
    else:
        aware = naive.replace(tzinfo=tz)
    return TS(from_datetime(aware))


def parse_uuid(text: Any) -> UUIDV:
    try:
        return UUIDV(uuid_key(str(text)))
    except ValueError:
        raise HogQLError(f"Cannot parse UUID from String '{text}'") from None


_QUARTER_US = 900 * US


@functools.lru_cache(maxsize=1 << 17)
def _quarter_date(quarter: int, tz: dt.tzinfo) -> dt.date:
    return (EPOCH + dt.timedelta(microseconds=quarter * _QUARTER_US)).astimezone(tz).date()


def ts_to_date(v: TS, tz: dt.tzinfo) -> dt.date:
    """The date in ``tz`` (every zone offset in use is a multiple of 15 minutes, so the date is
    constant within a UTC quarter-hour)."""
    return _quarter_date(int(v) // _QUARTER_US, tz)


def date_start(d: dt.date, tz: dt.tzinfo) -> TS:
    return TS(from_datetime(dt.datetime(d.year, d.month, d.day, tzinfo=tz)))


def coerce(value: Any, like: Any, tz: dt.tzinfo) -> Any:
    """``value`` converted to the type of ``like`` for a comparison (ClickHouse casts constants)."""
    if value is None or like is None:
        return value
    if isinstance(like, TS):
        if isinstance(value, TS):
            return value
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return date_start(value, tz)
        if isinstance(value, str):
            return parse_ts(value, tz)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return TS(int(value * US))
    elif isinstance(like, UUIDV):
        if isinstance(value, str):
            return parse_uuid(value)
    elif isinstance(like, dt.date) and not isinstance(like, dt.datetime):
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value[:10])
            except ValueError:
                raise HogQLError(f"Cannot parse Date from string '{value}'") from None
        if isinstance(value, TS):
            return ts_to_date(value, tz)
    return value


def _cmp_pair(a: Any, b: Any, tz: dt.tzinfo) -> tuple[Any, Any]:
    if isinstance(a, tuple) and not isinstance(a, UUIDV) and isinstance(b, tuple) and not isinstance(b, UUIDV):
        if len(a) != len(b):
            raise HogQLError("Tuples of different sizes cannot be compared")
        pairs = [_cmp_pair(x, y, tz) for x, y in zip(a, b, strict=True)]
        return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
    if type(a) is not type(b):
        b2 = coerce(b, a, tz)
        if b2 is b:
            a = coerce(a, b, tz)
        else:
            b = b2
    return a, b


def _identity(value: Any, tz: dt.tzinfo) -> Any:
    return value


_RENDER: dict[type, Callable[[Any, dt.tzinfo], Any]] = {
    str: _identity,
    int: _identity,
    float: _identity,
    bool: _identity,
    type(None): _identity,
    TS: lambda v, tz: iso_us(int(v), tz),
    UUIDV: lambda v, tz: uuid_str(v[0], v[1]),
    dt.date: lambda v, tz: v.isoformat(),
}


def render(value: Any, tz: dt.tzinfo) -> Any:
    """A value as the API's JSON shows it: DateTime as ISO 8601 with microseconds and the
    project's offset, UUIDs canonical, dates ``YYYY-MM-DD``."""
    fn = _RENDER.get(type(value))
    if fn is not None:
        return fn(value, tz)
    if isinstance(value, tuple):
        return [render(v, tz) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Column:
    name: str
    ch_type: str
    get: Callable[[Any], Any]
    #: the value as the JSON shows it, straight from the row (skips the typed value)
    out: Callable[[Any, dt.tzinfo], Any] | None = None


@dataclass
class Table:
    """What the executor needs from a stored table: typed column getters and an index on
    ``(time column, tie column)`` (``position``/``scan``/``count_between`` as in ``EventStore``)."""

    name: str
    columns: dict[str, Column]
    time_column: str
    tie_column: str
    store: Any
    #: pages of already rendered rows (``rows.EventPages``) for plain-column selects read in key
    #: order without a residual filter; ``None``: every query runs the general executor
    pages: Any = None
    #: the tie column's constant as the key's tail (``None``: a UUID, ``(low, high)`` in
    #: ClickHouse order); the sessions table's tie is its ``session_id`` text, ``(text,)``
    tie_key: Callable[[Any], tuple | None] | None = None
    #: the smallest key tail: ``(t, *key_floor)`` sorts before every row of time ``t``
    key_floor: tuple = (0, 0)


@dataclass
class Context:
    tz: dt.tzinfo
    now_us: int
    max_scan_rows: int | None = None
    max_rows: int = MAX_LIMIT


# --------------------------------------------------------------------------- placeholders


_PLACEHOLDER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def bind_placeholders(sql: str, values: dict[str, Any]) -> str:
    """Replace ``{name}`` (outside string literals and quoted identifiers) by a marker call that
    the compiler resolves to ``values[name]``."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i : j + 1])
            i = j + 1
            continue
        if c == "{":
            j = sql.find("}", i)
            name = sql[i + 1 : j].strip() if j > 0 else ""
            if j < 0 or not _PLACEHOLDER_NAME.fullmatch(name):
                raise HogQLError(f"Syntax error: unsupported placeholder expression {sql[i : (j + 1) if j > 0 else n]!r}")
            if name not in values:
                available = ", ".join(sorted(values)) or "none"
                raise HogQLError(
                    f"Placeholder {{{name}}} is not available in this context. You can use the following: {available}"
                )
            out.append(f"hogql_placeholder('{name}')")
            i = j + 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


# --------------------------------------------------------------------------- compiler

Fn = Callable[[Any], Any]
_AGG_NAMES = {"count", "uniq", "uniqexact", "min", "max", "sum", "avg"}


class _NotConstant(Exception):
    pass


@dataclass
class _Agg:
    kind: str  # count, count_distinct, min, max, sum, avg
    arg: Fn | None


class Compiler:
    def __init__(self, table: Table, ctx: Context, values: dict[str, Any]) -> None:
        self.table = table
        self.ctx = ctx
        self.values = values
        self.aliases: dict[str, exp.Expression] = {}
        self.aggs: list[_Agg] | None = None  # set while compiling an aggregate context

    # -- constants -------------------------------------------------------------------------

    def const(self, node: exp.Expression) -> Any:
        """Evaluate an expression that references no column, or raise ``_NotConstant``."""
        if _has_column(node):
            raise _NotConstant
        program = _const_program(node)
        if program is not None:
            return program(self.values, self.ctx.tz)
        fn = self.compile(node)
        return fn(None)

    # -- expressions -----------------------------------------------------------------------

    def compile(self, node: exp.Expression) -> Fn:  # noqa: C901 - one dispatch table
        tz = self.ctx.tz
        if isinstance(node, exp.Paren):
            return self.compile(node.this)
        if isinstance(node, exp.Alias):
            return self.compile(node.this)
        if isinstance(node, exp.Column):
            return self.column(node)
        if isinstance(node, exp.Literal):
            v: Any = node.this
            if not node.is_string:
                v = float(v) if any(ch in v for ch in ".eE") else int(v)
            return lambda row, v=v: v
        if isinstance(node, exp.Boolean):
            return lambda row, v=bool(node.this): v
        if isinstance(node, exp.Null):
            return lambda row: None
        if isinstance(node, exp.Neg):
            inner = self.compile(node.this)
            return lambda row: -inner(row)
        if isinstance(node, exp.Tuple):
            parts = [self.compile(e) for e in node.expressions]
            return lambda row: tuple(p(row) for p in parts)
        if isinstance(node, exp.And):
            a, b = self.compile(node.this), self.compile(node.expression)
            return lambda row: bool(a(row)) and bool(b(row))
        if isinstance(node, exp.Or):
            a, b = self.compile(node.this), self.compile(node.expression)
            return lambda row: bool(a(row)) or bool(b(row))
        if isinstance(node, exp.Not):
            a = self.compile(node.this)
            return lambda row: not a(row)
        if isinstance(node, (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)):
            return self.comparison(node)
        if isinstance(node, exp.Is):
            a = self.compile(node.this)
            if not isinstance(node.expression, exp.Null):
                raise HogQLError("IS supports NULL only")
            return lambda row: a(row) is None
        if isinstance(node, exp.In):
            if node.args.get("query") is not None:
                raise HogQLError("Subqueries are not supported by this emulator", "unsupported")
            a = self.compile(node.this)
            options = [self.compile(e) for e in node.expressions]

            def _in(row: Any) -> bool:
                v = a(row)
                for o in options:
                    x, y = _cmp_pair(v, o(row), tz)
                    if x == y:
                        return True
                return False

            return _in
        if isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.Div)):
            a, b = self.compile(node.this), self.compile(node.expression)
            op = {exp.Add: lambda x, y: x + y, exp.Sub: lambda x, y: x - y, exp.Mul: lambda x, y: x * y,
                  exp.Div: lambda x, y: x / y}[type(node)]
            return lambda row: None if (x := a(row)) is None or (y := b(row)) is None else op(x, y)
        if isinstance(node, (exp.Count, exp.Min, exp.Max, exp.Sum, exp.Avg, exp.ApproxDistinct)):
            return self.aggregate(node)
        if isinstance(node, exp.Anonymous):
            return self.function(str(node.this), node.expressions)
        if isinstance(node, exp.Func):
            name = node.sql_name() if hasattr(node, "sql_name") else type(node).__name__
            args = [a for a in node.args.values() if isinstance(a, exp.Expression)]
            return self.function(name, args)
        raise HogQLError(f"Unsupported expression in this emulator: {node.sql(dialect='clickhouse')}", "unsupported")

    def column(self, node: exp.Column) -> Fn:
        name = node.name
        table = node.table
        if table and table != self.table.name:
            raise HogQLError(f"Unable to resolve field: {table}.{name} (not supported by this emulator)", "unknown_field")
        col = self.table.columns.get(name)
        if col is not None:
            return col.get
        if name in self.aliases:
            return self.compile(self.aliases[name])
        raise HogQLError(f"Unable to resolve field: {name}", "unknown_field")

    def comparison(self, node: exp.Expression) -> Fn:
        tz = self.ctx.tz
        a, b = self.compile(node.this), self.compile(node.expression)
        op: Callable[[Any, Any], bool] = {
            exp.EQ: lambda x, y: x == y,
            exp.NEQ: lambda x, y: x != y,
            exp.GT: lambda x, y: x > y,
            exp.GTE: lambda x, y: x >= y,
            exp.LT: lambda x, y: x < y,
            exp.LTE: lambda x, y: x <= y,
        }[type(node)]
        # fold a constant side once, converted to the type of the other side on first use
        try:
            b_const = self.const(node.expression)
        except _NotConstant:
            b_const = _MISSING

        if b_const is not _MISSING:
            cache: dict[type, Any] = {}

            def cmp_const(row: Any) -> bool:
                x = a(row)
                if x is None or b_const is None:
                    return False
                t = type(x)
                y = cache.get(t, _MISSING)
                if y is _MISSING:
                    y = _cmp_pair(x, b_const, tz)[1]
                    cache[t] = y
                try:
                    return op(x, y)
                except TypeError:
                    x2, y2 = _cmp_pair(x, b_const, tz)
                    return op(x2, y2)

            return cmp_const

        def cmp(row: Any) -> bool:
            x, y = a(row), b(row)
            if x is None or y is None:
                return False
            x, y = _cmp_pair(x, y, tz)
            try:
                return op(x, y)
            except TypeError:
                raise HogQLError(f"Illegal types for comparison: {node.sql(dialect='clickhouse')}") from None

        return cmp

    def function(self, name: str, args: list[exp.Expression]) -> Fn:
        tz = self.ctx.tz
        lname = name.lower()
        if lname == "hogql_placeholder":
            key = args[0].this
            v = self.values[key]
            return lambda row, v=v: v
        if lname in _AGG_NAMES:
            return self.aggregate_by_name(lname, args)
        fns = [self.compile(a) for a in args]
        if lname == "todate":
            (f,) = fns[:1]

            def to_date(row: Any) -> Any:
                v = f(row)
                if v is None:
                    return None
                if isinstance(v, TS):
                    return ts_to_date(v, tz)
                if isinstance(v, dt.date):
                    return v
                return coerce(str(v), dt.date(2000, 1, 1), tz)

            return to_date
        if lname in ("todatetime", "todatetime64", "parsedatetimebesteffort", "parsedatetime64besteffort"):
            f = fns[0]
            zone_arg = args[-1] if len(args) >= 2 and isinstance(args[-1], exp.Literal) and args[-1].is_string else None
            zone = ZoneInfo(zone_arg.this) if zone_arg is not None else tz

            def to_dt(row: Any) -> Any:
                v = f(row)
                if v is None or isinstance(v, TS):
                    return v
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    return TS(int(v * US))
                return parse_ts(str(v), zone)

            return to_dt
        if lname == "touuid":
            f = fns[0]
            return lambda row: None if (v := f(row)) is None else (v if isinstance(v, UUIDV) else parse_uuid(v))
        if lname == "tostring":
            f = fns[0]
            return lambda row: None if (v := f(row)) is None else str(render(v, tz))
        if lname in ("now", "now64", "currenttimestamp"):
            now = TS(self.ctx.now_us)
            return lambda row: now
        if lname in ("today", "currentdate"):
            today = ts_to_date(TS(self.ctx.now_us), tz)
            return lambda row: today
        raise HogQLError(f"Unsupported function in this emulator: {name}", "unsupported")

    # -- aggregates --------------------------------------------------------------------------

    def aggregate(self, node: exp.Expression) -> Fn:
        if isinstance(node, exp.Count):
            inner = node.this
            if inner is None or isinstance(inner, exp.Star):
                return self._agg("count", None)
            if isinstance(inner, exp.Distinct):
                if len(inner.expressions) != 1:
                    raise HogQLError("count(DISTINCT …) of one expression only", "unsupported")
                return self._agg("count_distinct", self.compile(inner.expressions[0]))
            return self._agg("count_value", self.compile(inner))
        if isinstance(node, exp.ApproxDistinct):
            return self._agg("count_distinct", self.compile(node.this))
        kind = {exp.Min: "min", exp.Max: "max", exp.Sum: "sum", exp.Avg: "avg"}[type(node)]
        return self._agg(kind, self.compile(node.this))

    def aggregate_by_name(self, name: str, args: list[exp.Expression]) -> Fn:
        if name in ("uniq", "uniqexact"):
            return self._agg("count_distinct", self.compile(args[0]))
        if name == "count":
            return self._agg("count" if not args else "count_value", self.compile(args[0]) if args else None)
        return self._agg(name, self.compile(args[0]))

    def _agg(self, kind: str, arg: Fn | None) -> Fn:
        if self.aggs is None:
            raise HogQLError("Aggregate functions are not allowed here", "invalid_input")
        slot = len(self.aggs)
        self.aggs.append(_Agg(kind, arg))
        return lambda group: group.values[slot]


_MISSING = object()
_COLUMN_MEMO: dict[int, tuple[exp.Expression, bool]] = {}


def _has_column(node: exp.Expression) -> bool:
    """Whether ``node`` references a column (memoised per node of the cached parse trees)."""
    hit = _COLUMN_MEMO.get(id(node))
    if hit is not None and hit[0] is node:
        return hit[1]
    found = next(node.find_all(exp.Column), None) is not None
    if len(_COLUMN_MEMO) > 50_000:
        _COLUMN_MEMO.clear()
    _COLUMN_MEMO[id(node)] = (node, found)
    return found


Program = Callable[[dict[str, Any], dt.tzinfo], Any]
_PROGRAM_MEMO: dict[int, tuple[exp.Expression, Program | None]] = {}
_TO_DATETIME = ("todatetime", "todatetime64", "parsedatetimebesteffort", "parsedatetime64besteffort")


def _const_program(node: exp.Expression) -> Program | None:
    """The constants every keyset page sends (``{placeholder}``, ``toDateTime({p})``,
    ``toUUID({p})``, literals) as a function of the query's values, made once per node of the
    cached parse trees; ``None`` for anything else (the compiler evaluates it). Each program does
    exactly what the compiled expression does."""
    hit = _PROGRAM_MEMO.get(id(node))
    if hit is not None and hit[0] is node:
        return hit[1]
    program = _make_program(node)
    if len(_PROGRAM_MEMO) > 50_000:
        _PROGRAM_MEMO.clear()
    _PROGRAM_MEMO[id(node)] = (node, program)
    return program


def _make_program(node: exp.Expression) -> Program | None:
    node = _unparen(node)
    if isinstance(node, exp.Literal):
        v: Any = node.this
        if not node.is_string:
            v = float(v) if any(ch in v for ch in ".eE") else int(v)
        return lambda values, tz, v=v: v
    if not isinstance(node, exp.Anonymous) or len(node.expressions) != 1:
        return None
    name = str(node.this).lower()
    arg = node.expressions[0]
    if name == "hogql_placeholder":
        if not isinstance(arg, exp.Literal):
            return None
        key = arg.this
        return lambda values, tz: values[key]
    inner = _make_program(arg)
    if inner is None:
        return None
    if name in _TO_DATETIME:
        def to_dt(values: dict[str, Any], tz: dt.tzinfo) -> Any:
            v = inner(values, tz)
            if v is None or isinstance(v, TS):
                return v
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return TS(int(v * US))
            return parse_ts(str(v), tz)

        return to_dt
    if name == "touuid":
        def to_uuid(values: dict[str, Any], tz: dt.tzinfo) -> Any:
            v = inner(values, tz)
            return None if v is None else (v if isinstance(v, UUIDV) else parse_uuid(v))

        return to_uuid
    return None


_NAME_MEMO: dict[int, tuple[exp.Expression, str | None]] = {}


def _column_name(node: exp.Expression) -> str | None:
    """The name of an unqualified column (parentheses ignored), else ``None``; memoised per node."""
    hit = _NAME_MEMO.get(id(node))
    if hit is not None and hit[0] is node:
        return hit[1]
    inner = _unparen(node)
    name = inner.name if isinstance(inner, exp.Column) and not inner.table else None
    if len(_NAME_MEMO) > 50_000:
        _NAME_MEMO.clear()
    _NAME_MEMO[id(node)] = (node, name)
    return name


_TODATE_MEMO: dict[int, tuple[exp.Expression, str | None]] = {}


def _todate_column(node: exp.Expression) -> str | None:
    """``c`` for ``toDate(c)`` of an unqualified column ``c``, else ``None``; memoised per node."""
    hit = _TODATE_MEMO.get(id(node))
    if hit is not None and hit[0] is node:
        return hit[1]
    inner = _unparen(node)
    name = None
    if isinstance(inner, exp.Anonymous) and str(inner.this).lower() == "todate" and len(inner.expressions) == 1:
        name = _column_name(inner.expressions[0])
    if len(_TODATE_MEMO) > 50_000:
        _TODATE_MEMO.clear()
    _TODATE_MEMO[id(node)] = (node, name)
    return name


# --------------------------------------------------------------------------- bounds


def _key_succ(key: tuple) -> tuple:
    """The smallest key after ``key``: a UUID tail counts up; a text tail gets a NUL appended."""
    if len(key) == 2 and isinstance(key[1], str):
        return (key[0], key[1] + "\x00")
    ts, low, high = key
    if high < MASK64:
        return (ts, low, high + 1)
    if low < MASK64:
        return (ts, low + 1, 0)
    return (ts + 1, 0, 0)


@dataclass
class Bounds:
    """Inclusive lower and exclusive upper sort keys ``(time, low, high)``; ``time_*`` are the same
    bounds from time comparisons only (what a ClickHouse scan of the window reads)."""

    lower: tuple[int, int, int] | None = None
    upper: tuple[int, int, int] | None = None
    time_lower: int | None = None
    time_upper: int | None = None
    empty: bool = False

    def raise_lower(self, key: tuple[int, int, int], time_only: bool = False) -> None:
        if self.lower is None or key > self.lower:
            self.lower = key
        if time_only and (self.time_lower is None or key[0] > self.time_lower):
            self.time_lower = key[0]

    def lower_upper(self, key: tuple[int, int, int], time_only: bool = False) -> None:
        if self.upper is None or key < self.upper:
            self.upper = key
        if time_only and (self.time_upper is None or key[0] < self.time_upper):
            self.time_upper = key[0]


def _flatten_and(node: exp.Expression) -> list[exp.Expression]:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        return _flatten_and(node.this) + _flatten_and(node.expression)
    return [node]


def _unparen(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


_FLIP = {exp.GT: exp.LT, exp.GTE: exp.LTE, exp.LT: exp.GT, exp.LTE: exp.GTE, exp.EQ: exp.EQ}


class BoundsFinder:
    def __init__(self, compiler: Compiler) -> None:
        self.c = compiler
        self.time = compiler.table.time_column
        self.tie = compiler.table.tie_column
        self.tz = compiler.ctx.tz

    def _is_col(self, node: exp.Expression, name: str) -> bool:
        return _column_name(node) == name

    def _is_todate_time(self, node: exp.Expression) -> bool:
        return _todate_column(node) == self.time

    def _ts(self, node: exp.Expression) -> TS | None:
        try:
            v = self.c.const(node)
        except _NotConstant:
            return None
        v = coerce(v, TS(0), self.tz)
        return v if isinstance(v, TS) else None

    def _uuid(self, node: exp.Expression) -> UUIDV | None:
        try:
            v = self.c.const(node)
        except _NotConstant:
            return None
        v = coerce(v, UUIDV((0, 0)), self.tz)
        return v if isinstance(v, UUIDV) else None

    def _tie(self, node: exp.Expression) -> tuple | None:
        """A constant of the tie column as the key's tail (``(low, high)`` of a UUID, or the
        table's own ``tie_key``), ``None`` when it is not one."""
        tie_key = self.c.table.tie_key
        if tie_key is None:
            u = self._uuid(node)
            return None if u is None else (u[0], u[1])
        try:
            v = self.c.const(node)
        except _NotConstant:
            return None
        return tie_key(v)

    def _date(self, node: exp.Expression) -> dt.date | None:
        try:
            v = self.c.const(node)
        except _NotConstant:
            return None
        v = coerce(v, dt.date(2000, 1, 1), self.tz)
        return v if isinstance(v, dt.date) and not isinstance(v, dt.datetime) else None

    def _orient(self, node: exp.Expression) -> tuple[type, exp.Expression, exp.Expression] | None:
        """(operator, column side, constant side) with the column on the left."""
        if type(node) not in _FLIP:
            return None
        left, right = node.this, node.expression
        try:
            self.c.const(left)
        except _NotConstant:
            return type(node), left, right
        return _FLIP[type(node)], right, left

    def absorb(self, node: exp.Expression, b: Bounds) -> bool:
        """Turn one conjunct into bounds; True if the bounds express it exactly."""
        node = _unparen(node)
        if isinstance(node, exp.Or):
            keyset = self._keyset_or(node)
            if keyset is not None:
                b.raise_lower(keyset)
                return True
            return False
        oriented = self._orient(node)
        if oriented is None:
            return False
        op, col, const = oriented
        col = _unparen(col)
        if self._is_col(col, self.time):
            t = self._ts(const)
            if t is None:
                return False
            self._time_bound(op, int(t), b)
            return True
        if self._is_todate_time(col):
            d = self._date(const)
            if d is None:
                return False
            start = int(date_start(d, self.tz))
            end = int(date_start(d + dt.timedelta(days=1), self.tz))
            floor = self.c.table.key_floor
            if op is exp.GTE:
                b.raise_lower((start, *floor), True)
            elif op is exp.GT:
                b.raise_lower((end, *floor), True)
            elif op is exp.LT:
                b.lower_upper((start, *floor), True)
            elif op is exp.LTE:
                b.lower_upper((end, *floor), True)
            else:
                b.raise_lower((start, *floor), True)
                b.lower_upper((end, *floor), True)
            return True
        if isinstance(col, exp.Tuple) and len(col.expressions) == 2 and self._is_col(col.expressions[0], self.time) \
                and self._is_col(col.expressions[1], self.tie):
            const = _unparen(const)
            if not isinstance(const, exp.Tuple) or len(const.expressions) != 2:
                return False
            t, u = self._ts(const.expressions[0]), self._tie(const.expressions[1])
            if t is None or u is None:
                return False
            key = (int(t), *u)
            if op is exp.GT:
                b.raise_lower(_key_succ(key))
            elif op is exp.GTE:
                b.raise_lower(key)
            elif op is exp.LT:
                b.lower_upper(key)
            elif op is exp.LTE:
                b.lower_upper(_key_succ(key))
            else:
                b.raise_lower(key)
                b.lower_upper(_key_succ(key))
            return True
        return False

    def _time_bound(self, op: type, t: int, b: Bounds) -> None:
        floor = self.c.table.key_floor
        if op is exp.GTE:
            b.raise_lower((t, *floor), True)
        elif op is exp.GT:
            b.raise_lower((t + 1, *floor), True)
        elif op is exp.LT:
            b.lower_upper((t, *floor), True)
        elif op is exp.LTE:
            b.lower_upper((t + 1, *floor), True)
        elif op is exp.EQ:
            b.raise_lower((t, *floor), True)
            b.lower_upper((t + 1, *floor), True)

    def _keyset_or(self, node: exp.Or) -> tuple[int, int, int] | None:
        """``time > t OR (time = t AND tie > u)`` (either operand order; ``>=`` on the tie)."""
        for first, second in ((node.this, node.expression), (node.expression, node.this)):
            gt = self._orient(_unparen(first))
            if gt is None or gt[0] is not exp.GT or not self._is_col(gt[1], self.time):
                continue
            t = self._ts(gt[2])
            inner = _flatten_and(second)
            if t is None or len(inner) != 2:
                continue
            eq_t: TS | None = None
            tie: tuple[type, tuple] | None = None
            for part in inner:
                o = self._orient(_unparen(part))
                if o is None:
                    continue
                if o[0] is exp.EQ and self._is_col(o[1], self.time):
                    eq_t = self._ts(o[2])
                elif o[0] in (exp.GT, exp.GTE) and self._is_col(o[1], self.tie):
                    u = self._tie(o[2])
                    if u is not None:
                        tie = (o[0], u)
            if eq_t is None or tie is None or int(eq_t) != int(t):
                continue
            key = (int(t), *tie[1])
            return _key_succ(key) if tie[0] is exp.GT else key
        return None


# --------------------------------------------------------------------------- execution


@dataclass
class _Group:
    values: list[Any]
    sample: Any


@dataclass
class Result:
    columns: list[str]
    types: list[list[str]]
    #: row lists, or ``rows.RenderedRows`` (the same rows, already JSON)
    results: Sequence[Any]
    has_more: bool | None
    limit: int
    hogql: str


def _select_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Alias):
        return node.alias
    if isinstance(node, exp.Column):
        return node.name
    return node.sql(dialect="clickhouse")


def _type_of(node: exp.Expression, table: Table) -> str:
    node = _unparen(node.this if isinstance(node, exp.Alias) else node)
    if isinstance(node, exp.Column) and node.name in table.columns:
        return table.columns[node.name].ch_type
    if isinstance(node, (exp.Count, exp.ApproxDistinct)):
        return "UInt64"
    if isinstance(node, exp.Anonymous):
        name = str(node.this).lower()
        if name == "todate":
            return "Date"
        if name in ("uniq", "uniqexact", "count"):
            return "UInt64"
        if name.startswith("todatetime") or name.startswith("parsedatetime") or name in ("now", "now64"):
            return "DateTime64(6, 'UTC')"
        if name == "touuid":
            return "UUID"
    if isinstance(node, (exp.Min, exp.Max)):
        return _type_of(node.this, table)
    if isinstance(node, exp.Literal):
        return "String" if node.is_string else "Int64"
    return "String"


def parse(sql: str, values: dict[str, Any]) -> exp.Select:
    return _parse_bound(_bind_cached(sql, tuple(sorted(values))))


@functools.lru_cache(maxsize=256)
def _bind_cached(sql: str, names: tuple[str, ...]) -> str:
    """:func:`bind_placeholders` depends on the text and the names of the values only."""
    return bind_placeholders(sql, dict.fromkeys(names))


@functools.lru_cache(maxsize=256)
def _parse_bound(bound: str) -> exp.Select:
    """Parsed once per distinct text (pages of one walk share it; only ``values`` change).
    The compiler never mutates the tree."""
    try:
        statements = sqlglot.parse(bound, read="clickhouse")
    except sqlglot.errors.ParseError as e:
        first = e.errors[0] if getattr(e, "errors", None) else {}
        where = f" at line {first.get('line')}, column {first.get('col')}" if first else ""
        raise HogQLError(f"Syntax error{where}: {str(e).splitlines()[0]}", "syntax_error") from None
    statements = [s for s in statements if s is not None]
    if len(statements) != 1:
        raise HogQLError("Expected exactly one SELECT statement", "syntax_error")
    tree = statements[0]
    # OFFSET from a personal API key is refused, wherever it appears (select and set queries)
    if any(True for _ in tree.find_all(exp.Offset)):
        raise HogQLError(OFFSET_MESSAGE)
    if not isinstance(tree, exp.Select):
        raise HogQLError(f"Unsupported statement in this emulator: {type(tree).__name__}", "unsupported")
    if tree.args.get("joins") or any(True for _ in tree.find_all(exp.Subquery)):
        raise HogQLError("Joins and subqueries are not supported by this emulator", "unsupported")
    return tree


@dataclass
class _Static:
    """What a parsed query means for one table, whatever its values: worked out once per cached
    tree (a walk sends one text with new values on every page)."""

    tree: exp.Select
    table: Table
    selects: list[exp.Expression]
    aliases: dict[str, exp.Expression]
    names: list[str]
    types: list[list[str]]
    hogql: str
    is_aggregate: bool
    group_node: Any
    limit_node: Any
    where_parts: list[exp.Expression]
    #: the selected columns when every select item is a plain column of the table
    plain: tuple[str, ...] | None
    #: rows stream forward in index order (no ORDER BY, or ascending on (time, tie))
    forward: bool


_STATIC: dict[tuple[int, int], _Static] = {}


def _static(tree: exp.Select, tables: dict[str, Table]) -> _Static:
    source = tree.args.get("from_") or tree.args.get("from")
    if source is None or not isinstance(source.this, exp.Table):
        raise HogQLError("A FROM events or FROM persons clause is required by this emulator", "unsupported")
    table_name = source.this.name
    table = tables.get(table_name)
    if table is None:
        raise HogQLError(f'Unknown table "{table_name}".', "unknown_table")
    hit = _STATIC.get((id(tree), id(table)))
    if hit is not None and hit.tree is tree and hit.table is table:
        return hit

    if tree.args.get("having") is not None or tree.args.get("distinct") is not None:
        raise HogQLError("HAVING and SELECT DISTINCT are not supported by this emulator", "unsupported")
    selects = tree.expressions
    if any(isinstance(s, exp.Star) for s in selects):
        raise HogQLError("SELECT * is not supported by this emulator; name the columns", "unsupported")
    aliases = {s.alias: s.this for s in selects if isinstance(s, exp.Alias)}
    limit_node = tree.args.get("limit")
    if limit_node is not None and limit_node.expressions:
        raise HogQLError("LIMIT … BY is not supported by this emulator", "unsupported")
    where = tree.args.get("where")
    group_node = tree.args.get("group")
    names = [_select_name(s) for s in selects]
    plain: list[str] = []
    for s in selects:
        name = _column_name(s.this if isinstance(s, exp.Alias) else s)
        col = table.columns.get(name) if name is not None else None
        if col is None or col.out is None:
            break
        plain.append(col.name)
    static = _Static(
        tree=tree,
        table=table,
        selects=selects,
        aliases=aliases,
        names=names,
        types=[[name, _type_of(s, table)] for name, s in zip(names, selects, strict=True)],
        hogql=_normalized(tree),
        is_aggregate=group_node is not None or _has_aggregate(tree),
        group_node=group_node,
        limit_node=limit_node,
        where_parts=_flatten_and(where.this) if where is not None else [],
        plain=tuple(plain) if len(plain) == len(selects) else None,
        forward=_streams_forward(tree, table, aliases),
    )
    if len(_STATIC) > 512:
        _STATIC.clear()
    _STATIC[(id(tree), id(table))] = static
    return static


def _streams_forward(tree: exp.Select, table: Table, aliases: dict[str, exp.Expression]) -> bool:
    """Whether ``_select_rows`` streams the rows in ascending index order."""
    order = _order_spec(tree)
    if not order:
        return True
    if any(desc for _, desc in order):
        return False
    names = []
    for node, _ in order:
        node = _unparen(node)
        if isinstance(node, exp.Column) and not node.table and node.name in aliases and node.name not in table.columns:
            node = _unparen(aliases[node.name])
        names.append(node.name if isinstance(node, exp.Column) and not node.table else None)
    return names == [table.time_column, table.tie_column]


def execute(sql: str, values: dict[str, Any], tables: dict[str, Table], ctx: Context) -> Result:
    tree = parse(sql, values)
    st = _static(tree, tables)
    table = st.table
    comp = Compiler(table, ctx, values)
    selects = st.selects
    comp.aliases.update(st.aliases)

    limit_node = st.limit_node
    has_limit = limit_node is not None
    if has_limit:
        try:
            requested = int(comp.const(limit_node.expression))
        except (_NotConstant, TypeError, ValueError):
            raise HogQLError("LIMIT must be a constant integer") from None
        if requested < 0:
            raise HogQLError("LIMIT must not be negative")
        limit = min(requested, ctx.max_rows)
    else:
        limit = DEFAULT_LIMIT

    # WHERE: bounds on the sort key + a residual predicate
    bounds = Bounds()
    residual: list[exp.Expression] = []
    if st.where_parts:
        finder = BoundsFinder(comp)
        for part in st.where_parts:
            if not finder.absorb(part, bounds):
                residual.append(part)
    residual_fns = [comp.compile(p) for p in residual]
    store = table.store
    if ctx.max_scan_rows is not None:
        floor = table.key_floor
        lo = (bounds.time_lower, *floor) if bounds.time_lower is not None else None
        hi = (bounds.time_upper, *floor) if bounds.time_upper is not None else None
        if store.count_between(lo, hi) > ctx.max_scan_rows:
            raise QueryTimeout()

    group_node = st.group_node
    is_aggregate = st.is_aggregate
    names = st.names
    types = [list(t) for t in st.types]
    hogql = st.hogql

    def rows_in_range(reverse: bool = False) -> Iterator[Any]:
        if reverse:
            start = store.position(bounds.upper) if bounds.upper is not None else store.end()
        else:
            start = store.position(bounds.lower) if bounds.lower is not None else store.begin()
        lower, upper = bounds.lower, bounds.upper
        for row in store.scan(start, reverse=reverse):
            key = row.key
            if reverse:
                if lower is not None and key < lower:
                    return
            elif upper is not None and key >= upper:
                return
            if residual_fns and not all(f(row) for f in residual_fns):
                continue
            yield row

    if bounds.lower is not None and bounds.upper is not None and bounds.lower >= bounds.upper:
        bounds.empty = True

    want = limit + (0 if has_limit else 1)
    fetched: Any
    if is_aggregate:
        rows = [] if bounds.empty else _aggregate(comp, selects, group_node, rows_in_range, bounds, store,
                                                  bool(residual_fns))
        rows = _order_rows(comp, tree, names, selects, rows)
        fetched = rows[:want]
    elif st.plain is not None and st.forward and not residual_fns and table.pages is not None \
            and table.pages.supports(st.plain):
        # plain columns in key order: the rows as rendered once (``rows.EventPages``), the same
        # bytes the general executor below would build
        fetched = [] if bounds.empty else table.pages.page(st.plain, ctx.tz, bounds.lower, bounds.upper, want)
    else:
        fns = [_output_fn(comp, s) for s in selects]
        fetched = [] if bounds.empty else _select_rows(comp, tree, table, fns, names, rows_in_range, want)
    has_more: bool | None = None
    if not has_limit:
        has_more = len(fetched) > limit
        fetched = fetched[:limit]
    tz = ctx.tz
    results = [[render(v, tz) for v in r] for r in fetched] if is_aggregate else fetched
    return Result(names, types, results, has_more, limit, hogql)


def _output_fn(comp: Compiler, node: exp.Expression) -> Fn:
    """A select item as its rendered JSON value: plain columns straight from the row."""
    tz = comp.ctx.tz
    inner = _unparen(node.this if isinstance(node, exp.Alias) else node)
    if isinstance(inner, exp.Column) and not inner.table:
        col = comp.table.columns.get(inner.name)
        if col is not None and col.out is not None:
            out = col.out
            return lambda row: out(row, tz)
    fn = comp.compile(node)
    return lambda row: render(fn(row), tz)


_NORMALIZED: dict[int, tuple[exp.Select, str]] = {}


def _normalized(tree: exp.Select) -> str:
    """The normalised HogQL text of a (cached, shared) parsed tree; rendering copies the tree, so
    it is done once per tree."""
    hit = _NORMALIZED.get(id(tree))
    if hit is not None and hit[0] is tree:
        return hit[1]
    text = tree.sql(dialect="clickhouse")
    if len(_NORMALIZED) > 512:
        _NORMALIZED.clear()
    _NORMALIZED[id(tree)] = (tree, text)
    return text


_AGG_MEMO: dict[int, tuple[exp.Select, bool]] = {}


def _has_aggregate(tree: exp.Select) -> bool:
    hit = _AGG_MEMO.get(id(tree))
    if hit is not None and hit[0] is tree:
        return hit[1]
    found = any(
        isinstance(n, (exp.Count, exp.Min, exp.Max, exp.Sum, exp.Avg, exp.ApproxDistinct))
        or (isinstance(n, exp.Anonymous) and str(n.this).lower() in _AGG_NAMES)
        for s in tree.expressions
        for n in s.walk()
    )
    if len(_AGG_MEMO) > 512:
        _AGG_MEMO.clear()
    _AGG_MEMO[id(tree)] = (tree, found)
    return found


def _order_spec(tree: exp.Select) -> list[tuple[exp.Expression, bool]]:
    order = tree.args.get("order")
    if order is None:
        return []
    return [(o.this, bool(o.args.get("desc"))) for o in order.expressions]


def _select_rows(comp: Compiler, tree: exp.Select, table: Table, fns: list[Fn], names: list[str],
                 rows_in_range: Callable[..., Iterator[Any]], want: int) -> list[list[Any]]:
    order = _order_spec(tree)

    def resolved(node: exp.Expression) -> exp.Expression:
        node = _unparen(node)
        if isinstance(node, exp.Column) and not node.table and node.name in comp.aliases \
                and node.name not in table.columns:
            return _unparen(comp.aliases[node.name])
        return node

    cols = [resolved(n) for n, _ in order]
    col_names = [c.name if isinstance(c, exp.Column) and not c.table else None for c in cols]
    descs = {d for _, d in order}
    time, tie = table.time_column, table.tie_column
    streaming = not order or (
        len(descs) == 1 and col_names in ([time], [time, tie])
    )
    if streaming:
        reverse = bool(order) and order[0][1]
        out: list[list[Any]] = []
        if col_names == [time]:
            # rows that tie on the timestamp come back in an arbitrary order, as ClickHouse may
            # return them, and the LIMIT cuts through that order
            rows: list[Any] = []
            for row in rows_in_range(reverse):
                if len(rows) >= want and row.key[0] != rows[-1].key[0]:
                    break
                rows.append(row)
            rows.sort(key=lambda r: (r.key[0], _tie_hash(r.key)), reverse=reverse)
            return [[f(r) for f in fns] for r in rows[:want]]
        for row in rows_in_range(reverse):
            out.append([f(row) for f in fns])
            if len(out) >= want:
                break
        return out
    # a general sort: read the whole matching range (bounded), then sort
    keyfns = [comp.compile(c) for c in cols]
    collected = []
    for row in rows_in_range(False):
        collected.append(row)
        if len(collected) > MAX_SORT_ROWS:
            raise HogQLError(
                f"This emulator sorts at most {MAX_SORT_ROWS:,} rows by an arbitrary ORDER BY; "
                "order by the sort key (timestamp, uuid) or narrow the WHERE clause",
                "unsupported",
            )
    for keyfn, (_, desc) in reversed(list(zip(keyfns, order, strict=True))):
        collected.sort(key=lambda r, k=keyfn: _sortable(k(r)), reverse=desc)
    return [[f(r) for f in fns] for r in collected[:want]]


def _tie_hash(key: tuple) -> int:
    """An arbitrary but fixed order of rows that tie on the time column."""
    if len(key) == 3 and isinstance(key[2], int):
        return (key[2] * 7919) & MASK64
    return zlib.crc32(repr(key[1:]).encode())


def _sortable(v: Any) -> tuple[int, Any]:
    return (0, 0) if v is None else (1, v)


def _aggregate(comp: Compiler, selects: list[exp.Expression], group_node: Any,
               rows_in_range: Callable[..., Iterator[Any]], bounds: Bounds, store: Any,
               has_residual: bool) -> list[list[Any]]:
    comp.aggs = []
    select_fns = [comp.compile(s) for s in selects]
    aggs = comp.aggs
    comp.aggs = None
    group_fns: list[Fn] = []
    if group_node is not None:
        for g in group_node.expressions:
            g = _unparen(g)
            if isinstance(g, exp.Column) and not g.table and g.name in comp.aliases and g.name not in comp.table.columns:
                g = comp.aliases[g.name]
            group_fns.append(comp.compile(g))
    # fast path: count() / min(time) / max(time) over the index range, nothing else to evaluate
    time_getter = comp.table.columns[comp.table.time_column].get
    if not group_fns and not has_residual and all(
        a.kind == "count" or (a.kind in ("min", "max") and a.arg is time_getter) for a in aggs
    ):
        values: list[Any] = []
        for a in aggs:
            if a.kind == "count":
                values.append(store.count_between(bounds.lower, bounds.upper))
            else:
                values.append(_edge_time(store, bounds, last=a.kind == "max"))
        return [[_eval_group(f, _Group(values, None)) for f in select_fns]]
    groups: dict[tuple, _Group] = {}
    for row in rows_in_range(False):
        gkey = tuple(f(row) for f in group_fns)
        g = groups.get(gkey)
        if g is None:
            g = _Group([_init(a) for a in aggs], row)
            groups[gkey] = g
        vals = g.values
        for i, a in enumerate(aggs):
            kind = a.kind
            if kind == "count":
                vals[i] += 1
                continue
            v = a.arg(row)  # type: ignore[misc]
            if v is None:
                continue
            if kind == "count_value":
                vals[i] += 1
            elif kind == "count_distinct":
                vals[i].add(v)
            elif kind == "min":
                vals[i] = v if vals[i] is None or v < vals[i] else vals[i]
            elif kind == "max":
                vals[i] = v if vals[i] is None or v > vals[i] else vals[i]
            elif kind == "sum":
                vals[i] += v
            elif kind == "avg":
                vals[i][0] += v
                vals[i][1] += 1
    if not groups and not group_fns:
        groups[()] = _Group([_init(a) for a in aggs], None)
    out = []
    for g in groups.values():
        for i, a in enumerate(aggs):
            if a.kind == "count_distinct":
                g.values[i] = len(g.values[i])
            elif a.kind == "avg":
                total, n = g.values[i]
                g.values[i] = (total / n) if n else None
        out.append([_eval_group(f, g) for f in select_fns])
    return out


def _edge_time(store: Any, bounds: Bounds, last: bool) -> Any:
    if last:
        start = store.position(bounds.upper) if bounds.upper is not None else store.end()
        row = next(store.scan(start, reverse=True), None)
        if row is None or (bounds.lower is not None and row.key < bounds.lower):
            return None
    else:
        row = next(store.scan(store.position(bounds.lower) if bounds.lower is not None else store.begin()), None)
        if row is None or (bounds.upper is not None and row.key >= bounds.upper):
            return None
    return TS(row.key[0])


def _init(a: _Agg) -> Any:
    return {"count": 0, "count_value": 0, "count_distinct": set(), "min": None, "max": None, "sum": 0,
            "avg": [0, 0]}[a.kind]


def _eval_group(f: Fn, g: _Group) -> Any:
    try:
        return f(_GroupRow(g))
    except AttributeError:
        return None


class _GroupRow:
    """A group seen by select expressions: aggregates read ``values``; plain columns read the
    group's first row (they are GROUP BY keys)."""

    __slots__ = ("values", "_sample")

    def __init__(self, g: _Group) -> None:
        self.values = g.values
        self._sample = g.sample

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sample, name)


def _order_rows(comp: Compiler, tree: exp.Select, names: list[str], selects: list[exp.Expression],
                rows: list[list[Any]]) -> list[list[Any]]:
    order = _order_spec(tree)
    if not order:
        return rows
    texts = [(_unparen(s.this) if isinstance(s, exp.Alias) else _unparen(s)).sql(dialect="clickhouse") for s in selects]
    for node, desc in reversed(order):
        node = _unparen(node)
        idx = None
        if isinstance(node, exp.Column) and not node.table and node.name in names:
            idx = names.index(node.name)
        elif isinstance(node, exp.Literal) and not node.is_string:
            idx = int(node.this) - 1
        else:
            text = node.sql(dialect="clickhouse")
            if text in texts:
                idx = texts.index(text)
        if idx is None or not 0 <= idx < len(names):
            raise HogQLError(
                f"ORDER BY {node.sql(dialect='clickhouse')} must name a selected column in this emulator", "unsupported"
            )
        rows.sort(key=lambda r, i=idx: _sortable(r[i]), reverse=desc)
    return rows


def json_text(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()


__all__ = ["DAY_US", "Column", "Context", "HogQLError", "QueryTimeout", "Result", "TS", "Table", "UUIDV",
           "execute", "json_text", "parse", "render"]
