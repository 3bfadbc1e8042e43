"""The Personyze REST engine: storage, indexes, query planning and the vendor's rules.

:class:`PersonyzeEngine` answers ``handle(method, raw_path, body)`` with ``(status, body,
content_type)``. ``raw_path`` is the percent-encoded path after ``/rest/`` exactly as on the wire;
it is parsed by :func:`emulators.personyze.grammar.parse_path`. The engine knows nothing about HTTP
servers, auth, TLS, faults or latency (the backend and the shared harness do those).

What it reproduces (``api/personyze.md`` §9; tags as in the contract):

* responses: GET → JSON array of objects (``[]`` when nothing matches); single-id form → one
  object or ``400 Row not found``; ``column`` → flat array; POST → bare number (new or merged id);
  PUT/DELETE → bare number (rows affected); every error is plain text (``text/plain``);
* limits: at most 1,000 rows per request, ``offset + count > 1000`` → 400; no ``limit`` means
  1,000 (so the caps still apply) [I];
* the indexed-column requirement on large tables (default users, events, sessions_archive,
  summary_actions): a read whose ``where`` is not anchored on an indexed column in every OR
  branch and whose first ``order_by`` column is not indexed → ``400 Cannot do this operation on
  whole table: column '<c>' is not indexed. Indexed columns: a, b, [c, d]`` — the list format is
  **[A]**. Only the leading column of a composite counts alone; a later composite column counts
  when every column before it is pinned with ``=`` or ``:`` in the same branch;
* the slow-query rule (§5.3, [I]): on a large table, a ``where`` with any of ``> >= < <= != !:``
  or naming a column that is not indexed makes the query slow, and a slow query whose
  ``offset + count`` passes 50 is a bare 400 with an **empty** body;
* ordering: a stable sort on the requested columns only, nulls first ascending and last
  descending (MySQL); ties are shuffled per request (seeded by the request number) — never a
  hidden tie-breaker. Without ``order_by`` the order is unspecified: with shuffling on, a limited
  read returns a random subset of the matches [A, stricter];
* numbers as strings (§3): by default the declared int/float cells of a deterministic ~30 % of
  rows (chosen per row) are rendered as JSON strings; ``"all"`` / ``"none"`` switch it.
  Account-defined (undeclared) keys keep the JSON type they were written with [A];
* writes: any POST/PUT touching users sets ``data_last_modified`` to the server clock; POST users
  merges on a matching ``user_id`` or ``email`` (not ``internal_id``, configurable); empty values
  (``null``, ``""``) are ignored on write; POST products/articles upserts on ``internal_id``
  (patch); ``user_lists`` names are not unique.

Stricter or assumed choices (where the contract is silent), each a plain-text 400 unless noted:

* unknown column in ``where``/``order_by``/``columns``/``column`` (``Unknown column '<c>'``);
  camelCase names are accepted for ``columns``/``column`` and writes on users only [D S7];
* a value that is not a number (date) compared with ``> >= < <=`` to a numeric (date) column;
  with ``=``/``:`` such a value simply matches nothing;
* ``null`` never matches a condition (SQL): ``x!=5`` does not return rows where ``x`` is null;
* an OR branch without an indexable condition (``= : > >= < <=`` on an indexed column) leaves
  the ``where`` un-anchored; ``!=``/``!:`` never anchor;
* ``limit`` with count 0; ``where``/``order_by``/``limit`` together with a row id; the single-id
  form on an object without a primary key (summary_actions, user_list_users);
* writes to read-only objects (events, sessions_archive, summary_actions, actions, conditions,
  account): ``Object '<name>' is read-only``; POST with path parameters; PUT/DELETE without an
  id or a ``where``, or with other modifiers; PUT/DELETE of a missing id (``Row not found``); a body that
  is not a JSON object (``Malformed JSON``); a write with nothing left after dropping empty values;
  a value that does not fit the column's type; changing a primary key; a duplicate value of a
  unique column (``Duplicate entry '<v>' for key '<c>'``); an undeclared column on an object
  without dynamic columns; POST users with a ``user_id`` that does not exist;
  POST products/articles without ``internal_id``;
* the index requirement also applies to the ``where`` of PUT/DELETE on large tables;
* rows affected = rows matched (every matched users row changes anyway: its
  ``data_last_modified`` moves);
* text comparison is binary (no case-insensitive collation); date columns compare as their
  ``YYYY-MM-DD HH:MM:SS`` text (a bare ``YYYY-MM-DD`` value means midnight);
* ``do`` answers the number of commands it ran; ``user_list_users`` POST answers a meaningless
  counter; ``account`` answers ``{"id": ..., "name": "Emulated account"}``.

Storage: generated rows are never materialised (see :mod:`emulators.personyze.data`); a modified
or added row lives in the table's overlay. Each indexed leading column gets a lazily built sorted
index (base part: sorted arrays over the generated rows, built once; delta part: a sorted list
of the overlay rows' keys), so keyset pages cost a bisect plus the rows they return.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
import operator
import random
import re
import threading
from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

from emulators.common.backend import MutationError

from .grammar import Condition, GrammarError, Query, parse_path

__all__ = [
    "NULL_INT",
    "TableSpec",
    "EngineError",
    "PersonyzeEngine",
    "DEFAULT_LARGE_TABLES",
    "MAX_ROWS",
    "SLOW_QUERY_ROWS",
]

#: the null marker inside ``array('q')`` columns (the smallest signed 64-bit integer)
NULL_INT = -(2**63)
MAX_ROWS = 1000
SLOW_QUERY_ROWS = 50
DEFAULT_LARGE_TABLES = ("users", "events", "sessions_archive", "summary_actions")
#: indexes built when a table is generated (the keyset cursors of the source), not on first use
HOT_INDEXES = {
    "users": ("user_id", "data_last_modified"),
    "events": ("id",),
    "sessions_archive": ("id", "end_time"),
    "summary_actions": ("date",),
    "products": ("id",),
    "articles": ("id",),
}

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"

RANGE_OPS = frozenset({">", ">=", "<", "<=", "!=", "!:"})
INDEXABLE_OPS = frozenset({"=", ":", ">", ">=", "<", "<="})
PIN_OPS = frozenset({"=", ":"})
USER_KEYS = ("user_id", "internal_id", "email")
PRODUCT_INTERACTIONS = frozenset(
    {
        "Product Viewed",
        "Product Added to cart",
        "Product Removed from cart",
        "Product Liked",
        "Product Unliked",
        "Product Purchased",
    }
)
ARTICLE_INTERACTIONS = frozenset(
    {"Article Viewed", "Article Liked", "Article Unliked", "Article Commented", "Article Goal"}
)

_INF = float("inf")
_INVALID = object()
_UNSET = object()
_IDENT = re.compile(r"[A-Za-z0-9_]+\Z")
_INT_TEXT = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT_TEXT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")
_DATE_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}( [0-9]{2}:[0-9]{2}:[0-9]{2})?\Z")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Za-z])(?=[0-9])")
_MASK64 = 0xFFFFFFFFFFFFFFFF
#: the "visible at request n" of a row held by ``hold_rows`` (released only by ``release_rows``)
_HELD = 2**62


@dataclass
class TableSpec:
    """One object's schema. ``columns`` maps names to kinds (``int text float date json``);
    ``indexes`` are tuples (one column, or a composite); ``order_key`` orders the export of a
    table without a primary key; ``upsert_key`` makes POST an upsert (patch) on that column."""

    name: str
    columns: dict[str, str]
    pk: str | None
    indexes: list[tuple[str, ...]] = field(default_factory=list)
    unique: tuple[str, ...] = ()
    dynamic: bool = False
    readonly: bool = False
    order_key: tuple[str, ...] | None = None
    upsert_key: str | None = None

    @property
    def leading(self) -> frozenset[str]:
        """Columns usable alone: single-column indexes and the leading column of composites."""
        return frozenset(ix[0] for ix in self.indexes)

    @property
    def key(self) -> tuple[str, ...]:
        """The export order."""
        if self.order_key:
            return self.order_key
        return (self.pk,) if self.pk else tuple(self.columns)

    def describe_indexes(self) -> str:
        """``user_id, email, [user_id, start_time]`` — the list format is [A]."""
        return ", ".join(ix[0] if len(ix) == 1 else "[" + ", ".join(ix) + "]" for ix in self.indexes)


class EngineError(Exception):
    """A request the API refuses: ``status`` with ``message`` as its plain-text body."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _mix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _is_sorted(arr: Any) -> bool:
    return all(map(operator.le, arr, itertools.islice(arr, 1, None)))


def _sort_key(v: Any) -> tuple:
    """Nulls first, then numbers, then text (each column's values share one kind in practice)."""
    if v is None:
        return (0, 0)
    t = type(v)
    if t is int or t is float:
        return (1, v)
    if t is str:
        return (2, v)
    return (3, orjson.dumps(v, option=orjson.OPT_SORT_KEYS))


def _snake(name: str) -> str:
    """``firstName`` → ``first_name``, ``customT1`` → ``custom_t_1`` (only names with capitals)."""
    if name.islower() or not any(c.isupper() for c in name):
        return name
    return _CAMEL.sub("_", name).lower()


# --------------------------------------------------------------------------- value conversion


def _where_value(kind: str | None, text: str) -> Any:
    """A ``where`` value (text) as the column's key type, or ``_INVALID``."""
    if kind == "int":
        if _INT_TEXT.match(text):
            return int(text)
        if _FLOAT_TEXT.match(text):
            return float(text)
        return _INVALID
    if kind == "float":
        return float(text) if _FLOAT_TEXT.match(text) else _INVALID
    if kind == "date":
        if not _DATE_TEXT.match(text):
            return _INVALID
        return text if len(text) > 10 else text + " 00:00:00"
    return text


def _coerce(kind: str, column: str, v: Any) -> Any:
    """A written value as the column's stored type (400 when it does not fit)."""
    t = type(v)
    if kind == "int":
        if t is bool:
            return int(v)
        if t is int and -(2**63) < v < 2**63:
            return v
        if t is float and v.is_integer():
            return int(v)
        if t is str and _INT_TEXT.match(v.strip()):
            return int(v.strip())
    elif kind == "float":
        if t in (int, float) and t is not bool:
            return float(v)
        if t is str and _FLOAT_TEXT.match(v.strip()):
            return float(v.strip())
    elif kind == "text":
        if t is str:
            return v
        if t is bool:
            return "1" if v else "0"
        if t in (int, float):
            return str(v)
    elif kind == "date":
        if t is str and _DATE_TEXT.match(v.strip()):
            v = v.strip()
            return v if len(v) > 10 else v + " 00:00:00"
    elif kind == "json":
        return v
    raise EngineError(f"Invalid value for column '{column}'")


def _coerce_dynamic(v: Any) -> Any:
    return int(v) if type(v) is bool else v


# --------------------------------------------------------------------------- index


class Index:
    """A sorted index on one column: an immutable base part over the generated rows and a
    sorted delta part over the overlay (modified and added rows). Base entries of ``touched``
    slots (modified or deleted) are skipped. Null keys are kept apart (they never match a
    condition; they sort first).

    The base part is one of: ``bkeys`` sorted with ``bslots`` aligned (``bslots is None``: the
    column is already sorted in slot order, slot == position); or, for integer columns,
    ``bpacked``: one sorted ``array('q')`` of ``(key - vmin) << shift | slot`` (sorted without a
    key function, which makes building it at a million rows take well under a second)."""

    __slots__ = ("column", "bkeys", "bslots", "bpacked", "vmin", "shift", "bnulls", "dkeys", "dnulls", "touched")

    def __init__(self, column: str, bnulls: Any, touched: set[int]) -> None:
        self.column = column
        self.bkeys: Any = []
        self.bslots: Any = None
        self.bpacked: Any = None
        self.vmin = 0
        self.shift = 0
        #: generated slots whose key is null, ascending
        self.bnulls = bnulls
        self.dkeys: list[tuple[Any, int]] = []
        self.dnulls: list[int] = []
        self.touched = touched

    @classmethod
    def pairs(cls, column: str, bkeys: Any, bslots: Any, bnulls: Any, touched: set[int]) -> Index:
        idx = cls(column, bnulls, touched)
        idx.bkeys, idx.bslots = bkeys, bslots
        return idx

    @classmethod
    def packed(cls, column: str, values: Any, slots: Any, bnulls: Any, touched: set[int]) -> Index | None:
        """``values[i]`` is the (non-null, int) key of slot ``slots[i]``; None if they do not
        fit in 63 bits packed."""
        idx = cls(column, bnulls, touched)
        if not values:
            return None
        vmin, vmax = min(values), max(values)
        shift = max(1, (max(slots) if slots else 0).bit_length())
        if (vmax - vmin).bit_length() + shift > 62:
            return None
        packed = [((v - vmin) << shift) | s for v, s in zip(values, slots, strict=True)]
        packed.sort()
        idx.bpacked, idx.vmin, idx.shift = array("q", packed), vmin, shift
        return idx

    # -- delta maintenance
    def add(self, slot: int, key: Any) -> None:
        if key is None:
            insort(self.dnulls, slot)
        else:
            insort(self.dkeys, (key, slot))

    def remove(self, slot: int, key: Any) -> None:
        seq: list[Any] = self.dnulls if key is None else self.dkeys
        item: Any = slot if key is None else (key, slot)
        i = bisect_left(seq, item)
        if i < len(seq) and seq[i] == item:
            del seq[i]
        else:  # pragma: no cover - an internal invariant
            raise AssertionError(f"index {self.column}: {item!r} missing")

    # -- ranges
    def _brange(self, lo: Any, lo_inc: bool, hi: Any, hi_inc: bool) -> tuple[int, int]:
        p = self.bpacked
        if p is not None:
            vmin, shift = self.vmin, self.shift
            i0 = 0
            if lo is not None:
                k = math.ceil(lo) if lo_inc else math.floor(lo) + 1
                i0 = bisect_left(p, (k - vmin) << shift) if k > vmin else 0
            i1 = len(p)
            if hi is not None:
                k = math.floor(hi) if hi_inc else math.ceil(hi) - 1
                i1 = bisect_left(p, (k - vmin + 1) << shift) if k >= vmin else 0
            return i0, max(i0, i1)
        keys = self.bkeys
        i0 = 0 if lo is None else (bisect_left(keys, lo) if lo_inc else bisect_right(keys, lo))
        i1 = len(keys) if hi is None else (bisect_right(keys, hi) if hi_inc else bisect_left(keys, hi))
        return i0, max(i0, i1)

    def _drange(self, lo: Any, lo_inc: bool, hi: Any, hi_inc: bool) -> tuple[int, int]:
        d = self.dkeys
        j0 = 0 if lo is None else bisect_left(d, (lo,) if lo_inc else (lo, _INF))
        j1 = len(d) if hi is None else bisect_left(d, (hi, _INF) if hi_inc else (hi,))
        return j0, max(j0, j1)

    def count(self, lo: Any, lo_inc: bool, hi: Any, hi_inc: bool, nulls: bool = False) -> int:
        """Entries in the range (an estimate: skipped base entries are still counted)."""
        i0, i1 = self._brange(lo, lo_inc, hi, hi_inc)
        j0, j1 = self._drange(lo, lo_inc, hi, hi_inc)
        n = i1 - i0 + j1 - j0
        if nulls:
            n += len(self.bnulls) + len(self.dnulls)
        return n

    def _base(self, i0: int, i1: int, desc: bool) -> Iterator[tuple[Any, int]]:
        touched = self.touched
        positions = range(i1 - 1, i0 - 1, -1) if desc else range(i0, i1)
        p = self.bpacked
        if p is not None:
            vmin, shift = self.vmin, self.shift
            mask = (1 << shift) - 1
            for i in positions:
                x = p[i]
                s = x & mask
                if s not in touched:
                    yield (x >> shift) + vmin, s
            return
        keys, slots = self.bkeys, self.bslots
        if slots is None:
            if touched:
                for i in positions:
                    if i not in touched:
                        yield keys[i], i
            else:
                for i in positions:
                    yield keys[i], i
        elif touched:
            for i in positions:
                s = slots[i]
                if s not in touched:
                    yield keys[i], s
        else:
            for i in positions:
                yield keys[i], slots[i]

    def _nulls(self, desc: bool) -> Iterator[tuple[Any, int]]:
        touched = self.touched
        base = (s for s in (reversed(self.bnulls) if desc else self.bnulls) if s not in touched)
        delta = reversed(self.dnulls) if desc else iter(self.dnulls)
        for s in heapq.merge(base, delta, reverse=desc):
            yield None, s

    def scan(
        self, lo: Any, lo_inc: bool, hi: Any, hi_inc: bool, nulls: bool, desc: bool
    ) -> Iterator[tuple[Any, int]]:
        """Live ``(key, slot)`` entries in key order (nulls first ascending, last descending)."""
        if nulls and not desc:
            yield from self._nulls(False)
        i0, i1 = self._brange(lo, lo_inc, hi, hi_inc)
        j0, j1 = self._drange(lo, lo_inc, hi, hi_inc)
        base = self._base(i0, i1, desc)
        if j0 == j1:
            yield from base
        else:
            d = self.dkeys
            delta = (d[j] for j in (range(j1 - 1, j0 - 1, -1) if desc else range(j0, j1)))
            yield from heapq.merge(base, delta, reverse=desc)
        if nulls and desc:
            yield from self._nulls(True)


# --------------------------------------------------------------------------- table


class Table:
    """One object's rows: ``n_base`` generated rows (slots ``0 .. n_base-1``) plus stored rows
    (slots from ``n_base``), with modified and stored rows in ``over`` (slot → full row)."""

    def __init__(
        self,
        spec: TableSpec,
        loader: Callable[[], Any],
        size_hint: int = 0,
        extras: tuple[str, ...] = (),
        hot: tuple[str, ...] = (),
    ) -> None:
        self.spec = spec
        self._hot = hot
        self._loader: Callable[[], Any] | None = loader
        self._size_hint = size_hint
        self.loaded = False
        self.extra_columns: dict[str, None] = dict.fromkeys(extras)
        self.indexes: dict[str, Index] = {}
        self.touched: set[int] = set()
        self.deleted: set[int] = set()
        self.over: dict[int, dict[str, Any]] = {}
        self.n_base = 0
        self.n_slots = 0
        self.eager: dict[str, array] = {}
        self.derive: dict[str, Callable[[int], Any]] = {}
        self.gen: Callable[[int], dict[str, Any]] | None = None
        self.next_pk = 1
        self._getters: dict[str, Callable[[int], Any]] = {}
        #: declared int/float columns (the ones numbers-as-strings may render as text)
        self.numeric_columns = frozenset(c for c, k in spec.columns.items() if k in ("int", "float"))

    def load(self) -> Table:
        if self.loaded:
            return self
        td = self._loader()  # type: ignore[misc]
        self._loader = None
        self.n_base = td.n_base
        self.eager, self.derive, self.gen = td.eager, td.derive, td.gen
        for i, row in enumerate(td.rows):
            self.over[self.n_base + i] = row
        self.n_slots = self.n_base + len(td.rows)
        pk = self.spec.pk
        if pk:
            top = 0
            if self.n_base:
                arr = self.eager.get(pk)
                top = max(arr) if arr is not None else max(self.base_value(pk)(s) for s in range(self.n_base))
            if td.rows:
                top = max(top, max(r[pk] for r in td.rows))
            self.next_pk = top + 1
        self.loaded = True
        for column in self._hot:  # the cursor columns sources walk: build their indexes now
            self.index(column)
        return self

    # -- reading
    @property
    def live_count(self) -> int:
        return self.n_slots - len(self.deleted) if self.loaded else self._size_hint

    def kind(self, column: str) -> str | None:
        return self.spec.columns.get(column)

    def known(self, column: str) -> bool:
        return column in self.spec.columns or column in self.extra_columns

    def base_value(self, column: str) -> Callable[[int], Any]:
        """The generated value of ``column`` (ignores the overlay)."""
        if column in self.eager:
            arr = self.eager[column]
            return lambda s: None if arr[s] == NULL_INT else arr[s]
        if column in self.derive:
            return self.derive[column]
        gen = self.gen
        return lambda s: gen(s).get(column)  # type: ignore[misc]

    def getter(self, column: str) -> Callable[[int], Any]:
        """``slot → current value`` of ``column``."""
        g = self._getters.get(column)
        if g is not None:
            return g
        over = self.over
        if column in self.eager:
            arr = self.eager[column]

            def g(s: int) -> Any:
                r = over.get(s)
                if r is not None:
                    return r.get(column)
                v = arr[s]
                return None if v == NULL_INT else v

        elif self.gen is None and column not in self.derive:

            def g(s: int) -> Any:
                return over[s].get(column)

        else:
            src = self.base_value(column)

            def g(s: int) -> Any:
                r = over.get(s)
                if r is not None:
                    return r.get(column)
                return src(s)

        self._getters[column] = g
        return g

    def row(self, s: int) -> dict[str, Any]:
        """The current row (do not mutate it)."""
        r = self.over.get(s)
        return r if r is not None else self.gen(s)  # type: ignore[misc]

    def live_slots(self) -> Iterator[int]:
        deleted = self.deleted
        if not deleted:
            return iter(range(self.n_slots))
        return (s for s in range(self.n_slots) if s not in deleted)

    def index(self, column: str) -> Index:
        idx = self.indexes.get(column)
        if idx is None:
            idx = self._build_index(column)
            self.indexes[column] = idx
        return idx

    def _build_index(self, column: str) -> Index:
        n = self.n_base
        kind = self.kind(column)
        idx: Index | None = None
        if n == 0:
            idx = Index.pairs(column, [], None, array("i"), self.touched)
        elif column in self.eager:
            arr = self.eager[column]
            if arr[0] != NULL_INT and _is_sorted(arr):
                idx = Index.pairs(column, arr, None, array("i"), self.touched)
            else:
                nulls = array("i")
                if NULL_INT in arr:
                    nulls = array("i", (s for s, v in enumerate(arr) if v == NULL_INT))
                    slots: Any = [s for s, v in enumerate(arr) if v != NULL_INT]
                    values: Any = [arr[s] for s in slots]
                else:
                    slots, values = range(n), arr
                idx = Index.packed(column, values, slots, nulls, self.touched)
                if idx is None:
                    order = sorted(slots, key=arr.__getitem__)
                    idx = Index.pairs(
                        column, array("q", [arr[s] for s in order]), array("i", order), nulls, self.touched
                    )
        else:
            f = self.base_value(column)
            vals = [f(s) for s in range(n)]
            nulls = array("i", (s for s, v in enumerate(vals) if v is None))
            slots = [s for s, v in enumerate(vals) if v is not None]
            if kind == "int" and all(type(vals[s]) is int for s in slots):
                idx = Index.packed(column, [vals[s] for s in slots], slots, nulls, self.touched)
            if idx is None:
                slots.sort(key=vals.__getitem__)
                idx = Index.pairs(column, [vals[s] for s in slots], array("i", slots), nulls, self.touched)
        # the overlay (modified and stored rows) goes to the delta part
        dkeys, dnulls = [], []
        for s, r in self.over.items():
            v = r.get(column)
            if v is None:
                dnulls.append(s)
            else:
                dkeys.append((v, s))
        dkeys.sort()
        dnulls.sort()
        idx.dkeys, idx.dnulls = dkeys, dnulls
        return idx

    # -- writing (keeps every built index correct)
    def _in_delta(self, s: int) -> bool:
        return s >= self.n_base or s in self.touched

    def set_row(self, s: int, new: dict[str, Any]) -> None:
        if self._in_delta(s):
            old = self.over[s]
            for col, idx in self.indexes.items():
                idx.remove(s, old.get(col))
        if s < self.n_base:
            self.touched.add(s)
        for col, idx in self.indexes.items():
            idx.add(s, new.get(col))
        self.over[s] = new
        for k in new:
            if k not in self.spec.columns and k not in self.extra_columns:
                self.extra_columns[k] = None

    def insert(self, row: dict[str, Any]) -> int:
        s = self.n_slots
        self.n_slots += 1
        self.over[s] = row
        for col, idx in self.indexes.items():
            idx.add(s, row.get(col))
        for k in row:
            if k not in self.spec.columns and k not in self.extra_columns:
                self.extra_columns[k] = None
        return s

    def delete(self, s: int) -> None:
        if self._in_delta(s):
            old = self.over[s]
            for col, idx in self.indexes.items():
                idx.remove(s, old.get(col))
        if s < self.n_base:
            self.touched.add(s)
        self.over.pop(s, None)
        self.deleted.add(s)

    def assign_pk(self) -> int:
        v = self.next_pk
        self.next_pk += 1
        return v


# --------------------------------------------------------------------------- options


@dataclass
class EngineOptions:
    #: ``"mixed"`` (the int/float cells of a deterministic share of rows), ``"all"`` or ``"none"``
    numbers_as_strings: str = "mixed"
    #: the share of rows (percent) rendered with numbers as strings in ``"mixed"`` mode
    numbers_as_strings_percent: int = 30
    #: shuffle rows that tie on the requested order (and unordered results), per request
    shuffle_ties: bool = True
    #: rows a slow query may read (``offset + count``); 0 switches the rule off
    slow_query_cap: int = SLOW_QUERY_ROWS
    #: refuse un-anchored reads on large tables (the indexed-column requirement)
    index_rule: bool = True
    #: the objects the index requirement and the slow-query rule apply to
    large_tables: tuple[str, ...] = DEFAULT_LARGE_TABLES
    #: rows per request, and the bound on ``offset + count``
    max_rows: int = MAX_ROWS
    #: POST users merges on a match of one of these (the docs also name internal_id and fb_id,
    #: the vendor's own node observed internal_id not matching)
    user_merge_keys: tuple[str, ...] = ("user_id", "email")
    #: the vendor's bad days (see :meth:`PersonyzeEngine._hostile_before`), seeded by hostile_seed
    hostile: bool = False
    hostile_seed: int | None = None
    #: a list read asking for more rows than this gets only this many (0: off) [A, stricter]
    clamp_rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "hostile": int(self.hostile),
            "hostile_seed": self.hostile_seed,
            "clamp_rows": self.clamp_rows,
            "numbers_as_strings": self.numbers_as_strings,
            "numbers_as_strings_percent": self.numbers_as_strings_percent,
            "shuffle_ties": self.shuffle_ties,
            "slow_query_cap": self.slow_query_cap,
            "index_rule": self.index_rule,
            "large_tables": list(self.large_tables),
            "max_rows": self.max_rows,
            "user_merge_keys": list(self.user_merge_keys),
        }


def _apply_option(opts: EngineOptions, name: str, value: Any, tables: set[str]) -> None:
    def bad(expected: str) -> MutationError:
        return MutationError(f"option {name!r} must be {expected}, not {value!r}")

    if name == "numbers_as_strings":
        if value is True:
            value = "all"
        elif value is False or value is None:
            value = "none"
        if value not in ("mixed", "all", "none"):
            raise bad("'mixed', 'all', 'none' or a boolean")
        opts.numbers_as_strings = value
    elif name == "numbers_as_strings_percent":
        if type(value) is not int or not 0 <= value <= 100:
            raise bad("an integer 0..100")
        opts.numbers_as_strings_percent = value
    elif name in ("shuffle_ties", "index_rule"):
        if type(value) is not bool:
            raise bad("a boolean")
        setattr(opts, name, value)
    elif name == "slow_query_cap":
        if value is None or value is False:
            value = 0
        if type(value) is not int or value < 0:
            raise bad("a non-negative integer (0 or null switches the rule off)")
        opts.slow_query_cap = value
    elif name == "max_rows":
        if type(value) is not int or value < 1:
            raise bad("a positive integer")
        opts.max_rows = value
    elif name == "large_tables":
        if isinstance(value, str) or not all(isinstance(v, str) for v in value or ()):
            raise bad("a list of object names")
        unknown = sorted(set(value) - tables)
        if unknown:
            raise MutationError(f"option 'large_tables' names unknown objects: {', '.join(unknown)}")
        opts.large_tables = tuple(value)
    elif name == "hostile":
        if value is None or type(value) not in (bool, int) or value not in (0, 1):
            raise bad("0/1 or a boolean")
        opts.hostile = bool(value)
    elif name == "hostile_seed":
        if value is not None and type(value) is not int:
            raise bad("an integer or null")
        opts.hostile_seed = value
    elif name == "clamp_rows":
        if type(value) is not int or value < 0:
            raise bad("a non-negative integer (0 switches it off)")
        opts.clamp_rows = value
    elif name == "user_merge_keys":
        allowed = {"user_id", "email", "internal_id", "fb_id"}
        if isinstance(value, str) or not value or not set(value) <= allowed:
            raise bad(f"a non-empty list drawn from {sorted(allowed)}")
        opts.user_merge_keys = tuple(value)
    else:
        known = ", ".join(EngineOptions().as_dict())
        raise MutationError(f"unknown personyze option {name!r} (known: {known})")


# --------------------------------------------------------------------------- engine


class PersonyzeEngine:
    """The whole emulated account; thread-safe (one lock around every call)."""

    def __init__(
        self,
        seed: int = 1,
        scale: int = 1000,
        *,
        now: int | None = None,
        ticking: bool = True,
        preload: bool = False,
        **options: Any,
    ) -> None:
        from . import data as D

        self._D = D
        self.seed = seed
        self.scale = scale
        self.clock = D.Clock(now, ticking=ticking)
        self.data = D.PersonyzeData(seed, scale, self.clock.start)
        self.options = EngineOptions()
        self._lock = threading.RLock()
        self._requests = 0
        self._mutations = 0
        self._insert_counter = 0
        self._interactions = 0
        self._hostile_rng = random.Random(0)
        #: rows whose id is taken but that become visible only later: (visible at request n, table, row)
        self._pending: list[tuple[int, str, dict[str, Any]]] = []
        #: what hostile mode changed, by kind (``mutate({"op": "hostile_log"})``)
        self.hostile_log: dict[str, int] = {}
        self._shuffle_salt = D.derive_seed(seed, "shuffle")
        self._nas_salts = {name: D.derive_seed(seed, "numbers_as_strings", name) for name in D.SPECS}
        self.account_id = 10_000 + D.derive_seed(seed, "account") % 90_000
        #: index or table entries examined by the last request (a speed sanity counter)
        self.last_scanned = 0
        d = self.data
        specs = D.SPECS

        def summary() -> Any:
            return d.summary_actions([r["id"] for r in d.actions().rows])

        loaders: dict[str, tuple[Callable[[], Any], int]] = {
            "users": (d.users, d.n_users),
            "events": (d.events, d.n_events),
            "sessions_archive": (d.sessions, d.n_sessions),
            "summary_actions": (summary, 0),
            "products": (d.products, d.n_products),
            "articles": (d.articles, d.n_articles),
            "placeholders": (d.placeholders, 0),
            "actions": (d.actions, 0),
            "conditions": (d.conditions, 0),
            "user_lists": (d.user_lists, 0),
            "user_list_users": (d.user_list_users, 0),
        }
        self.tables: dict[str, Table] = {}
        for name, spec in specs.items():
            loader, hint = loaders[name]
            extras = D.USER_EXTRA_COLUMNS if name == "users" else ()
            self.tables[name] = Table(spec, loader, hint, extras, HOT_INDEXES.get(name, ()))
        self.configure(options)
        # users first (the other tables draw user ids from it); the big append-only tables
        # (events, sessions_archive) load on first use unless ``preload``
        for name, table in self.tables.items():
            if preload or name not in ("events", "sessions_archive"):
                table.load()

    # ------------------------------------------------------------------ public API

    @property
    def api_key(self) -> str:
        """40 uppercase hex characters derived from the seed."""
        return hashlib.sha1(f"personyze-emulator:{self.seed}".encode()).hexdigest().upper()

    def configure(self, options: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(options, dict):
            raise MutationError("options must be an object")
        with self._lock:
            trial = EngineOptions(**vars(self.options))
            for name, value in options.items():
                _apply_option(trial, name, value, set(self.tables))
            self.options = trial
            if "hostile_seed" in options or "hostile" in options:
                self._hostile_rng = random.Random(self._D.derive_seed(self.seed, "hostile", trial.hostile_seed))
            if not trial.hostile and self._pending:  # a quiet emulator shows every row it took
                due = [p for p in self._pending if p[0] < _HELD]
                self._pending = [p for p in self._pending if p[0] >= _HELD]  # hold_rows: until released
                for _at, table, row in due:
                    self.tables[table].insert(row)
            return trial.as_dict()

    def state(self) -> dict[str, int]:
        with self._lock:
            return {name: t.live_count for name, t in self.tables.items()}

    def export(self, table: str) -> list[dict[str, Any]]:
        with self._lock:
            if table not in self.tables:
                raise KeyError(table)
            t = self.tables[table].load()
            rows = [dict(t.row(s)) for s in t.live_slots()]
            key = t.spec.key
            rows.sort(key=lambda r: tuple(_sort_key(r.get(c)) for c in key))
            return rows

    def handle(
        self, method: str, raw_path: str, body: bytes = b"", content_type: str | None = None
    ) -> tuple[int, bytes, str]:
        """One API request. ``raw_path`` is the percent-encoded path after ``/rest/``."""
        method = method.upper()
        if method == "HEAD":
            method = "GET"
        with self._lock:
            self.last_scanned = 0
            self._requests += 1
            try:
                query = parse_path(raw_path)
                self._release_pending()
                if self.options.hostile and method == "GET" and query.id is None and query.object in self.tables:
                    self._hostile_before(query.object)
                return self._dispatch(method, query, body or b"", content_type)
            except GrammarError as e:
                return 400, str(e).encode(), TEXT
            except EngineError as e:
                return e.status, e.message.encode(), TEXT

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, method: str, q: Query, body: bytes, ctype: str | None) -> tuple[int, bytes, str]:
        name = q.object
        if name == "account":
            if method != "GET":
                raise EngineError("Object 'account' is read-only")
            if q.id is not None or q.modifiers:
                raise EngineError("Object 'account' takes no path parameters")
            return 200, orjson.dumps({"id": self.account_id, "name": "Emulated account"}), JSON
        if name == "do":
            if method != "POST":
                raise EngineError("Object 'do' accepts POST only")
            if q.id is not None or q.modifiers:
                raise EngineError("Object 'do' takes no path parameters")
            return 200, str(self._do(body)).encode(), JSON
        table = self.tables.get(name)
        if table is None:
            raise EngineError(f"Unknown object '{name}'")
        t = table.load()
        if method == "GET":
            return 200, self._get(t, q), JSON
        if method not in ("POST", "PUT", "DELETE"):
            raise EngineError(f"Method {method} is not allowed", 405)
        if t.spec.readonly:
            raise EngineError(f"Object '{name}' is read-only")
        if method == "POST":
            return 200, str(self._post(t, q, body, ctype)).encode(), JSON
        return 200, str(self._put_or_delete(method, t, q, body, ctype)).encode(), JSON

    # ------------------------------------------------------------------ reads

    def _get(self, t: Table, q: Query) -> bytes:
        spec = t.spec
        if q.id is not None:
            for m in q.modifiers:
                if m not in ("columns", "column"):
                    raise EngineError(f"Modifier '{m}' cannot be used with a row id")
            if spec.pk is None:
                raise EngineError(f"Object '{spec.name}' has no primary key")
            columns, column = self._projection(t, q)
            s = self._find_pk(t, q.id)
            if s is None:
                raise EngineError("Row not found")
            out = self._render(t, [s], columns, column)
            return orjson.dumps(out[0])
        large = spec.name in self.options.large_tables
        if large and self.options.index_rule:
            self._check_index_rule(t, q.where, q.order_by)
        self._check_where_columns(t, q.where)
        for c in q.order_by or ():
            if not t.known(c):
                raise EngineError(f"Unknown column '{c}'")
        columns, column = self._projection(t, q)
        count = self.options.max_rows if q.count is None else q.count
        if count < 1:
            raise EngineError("Invalid limit: count must be at least 1")
        if q.offset + count > self.options.max_rows:
            raise EngineError(
                f"Limit exceeded: offset + count may not pass {self.options.max_rows} rows "
                f"(got {q.offset} + {count})"
            )
        cap = self.options.slow_query_cap
        if large and cap and q.offset + count > cap and self._is_slow(spec, q.where):
            raise EngineError("")  # the vendor's bare 400 [O S9]
        slots = self._select(t, q.where, q.order_by, q.descending, q.offset, count)
        slots = slots[: self._served_rows(len(slots))]
        return orjson.dumps(self._render(t, slots, columns, column))

    def _projection(self, t: Table, q: Query) -> tuple[list[str] | None, str | None]:
        users = t.spec.name == "users"
        columns = column = None
        if q.columns is not None:
            columns = [_snake(c) if users else c for c in q.columns]
            for c in columns:
                if not t.known(c):
                    raise EngineError(f"Unknown column '{c}'")
        if q.column is not None:
            column = _snake(q.column) if users else q.column
            if not t.known(column):
                raise EngineError(f"Unknown column '{column}'")
        return columns, column

    def _check_where_columns(self, t: Table, where: list[list[Condition]] | None) -> None:
        for branch in where or ():
            for c in branch:
                if not t.known(c.column):
                    raise EngineError(f"Unknown column '{c.column}'")
                kind = t.kind(c.column)
                if c.op in (">", ">=", "<", "<=") and kind in ("int", "float", "date"):
                    if _where_value(kind, c.value) is _INVALID:  # type: ignore[arg-type]
                        raise EngineError(f"Invalid value '{c.value}' for column '{c.column}'")

    @staticmethod
    def _usable(spec: TableSpec, column: str, branch: list[Condition]) -> bool:
        """Whether ``column`` can use an index within ``branch``."""
        pinned = None
        for ix in spec.indexes:
            if ix[0] == column:
                return True
            if column in ix:
                if pinned is None:
                    pinned = {c.column for c in branch if c.op in PIN_OPS}
                if all(p in pinned for p in ix[: ix.index(column)]):
                    return True
        return False

    def _check_index_rule(
        self, t: Table, where: list[list[Condition]] | None, order_by: list[str] | None
    ) -> None:
        spec = t.spec

        def anchored(branch: list[Condition]) -> bool:
            return any(c.op in INDEXABLE_OPS and self._usable(spec, c.column, branch) for c in branch)

        if where and all(anchored(b) for b in where):
            return
        if order_by and order_by[0] in spec.leading:
            return
        column = None
        if where:
            branch = next(b for b in where if not anchored(b))
            column = next((c.column for c in branch if not self._usable(spec, c.column, branch)), branch[0].column)
        elif order_by:
            column = order_by[0]
        listing = f"Indexed columns: {spec.describe_indexes()}"
        if column is None:
            raise EngineError(
                f"Cannot do this operation on whole table: no where or order_by on an indexed column. {listing}"
            )
        raise EngineError(f"Cannot do this operation on whole table: column '{column}' is not indexed. {listing}")

    def _is_slow(self, spec: TableSpec, where: list[list[Condition]] | None) -> bool:
        return any(
            c.op in RANGE_OPS or not self._usable(spec, c.column, b) for b in (where or ()) for c in b
        )

    # ------------------------------------------------------------------ where → predicate

    def _cond_pred(self, t: Table, cond: Condition) -> Callable[[int], bool]:
        g = t.getter(cond.column)
        kind = t.kind(cond.column)
        op = cond.op
        if kind is None:
            return self._dynamic_pred(g, cond)
        if kind == "json":
            raw = g

            def g(s: int) -> Any:
                v = raw(s)
                return None if v is None else orjson.dumps(v).decode()

            kind = "text"
        if op in (":", "!:"):
            vals = frozenset(v for v in (_where_value(kind, x) for x in cond.value) if v is not _INVALID)
            if op == ":":
                return lambda s: g(s) in vals

            def not_in(s: int) -> bool:
                x = g(s)
                return x is not None and x not in vals

            return not_in
        v = _where_value(kind, cond.value)  # type: ignore[arg-type]
        if v is _INVALID:  # only = and != get here (ranges were refused)
            if op == "=":
                return lambda s: False
            return lambda s: g(s) is not None
        if op == "=":
            return lambda s: g(s) == v
        cmp = {"!=": operator.ne, ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}[op]

        def compare(s: int) -> bool:
            x = g(s)
            return x is not None and cmp(x, v)

        return compare

    @staticmethod
    def _dynamic_pred(g: Callable[[int], Any], cond: Condition) -> Callable[[int], bool]:
        """Undeclared (account-defined) columns: numbers compare as numbers, the rest as text."""
        values = cond.value if isinstance(cond.value, tuple) else (cond.value,)
        nums = [float(v) if _FLOAT_TEXT.match(v) else None for v in values]
        op = cond.op

        def as_pair(x: Any) -> list[tuple[Any, Any]]:
            if type(x) in (int, float):
                return [(x, n) for n in nums if n is not None]
            text = x if isinstance(x, str) else orjson.dumps(x).decode()
            return [(text, v) for v in values]

        def pred(s: int) -> bool:
            x = g(s)
            if x is None:
                return False
            pairs = as_pair(x)
            if op == ":":
                return any(a == b for a, b in pairs)
            if op == "!:":
                return all(a != b for a, b in pairs)
            if not pairs:
                return op == "!="
            a, b = pairs[0]
            return {"=": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge,
                    "<": operator.lt, "<=": operator.le}[op](a, b)

        return pred

    def _compile(self, t: Table, where: list[list[Condition]] | None) -> Callable[[int], bool] | None:
        if not where:
            return None
        branches = [[self._cond_pred(t, c) for c in b] for b in where]
        if len(branches) == 1:
            preds = branches[0]
            if len(preds) == 1:
                return preds[0]

            def all_of(s: int) -> bool:
                for p in preds:
                    if not p(s):
                        return False
                return True

            return all_of

        def any_of(s: int) -> bool:
            for preds in branches:
                for p in preds:
                    if not p(s):
                        break
                else:
                    return True
            return False

        return any_of

    # ------------------------------------------------------------------ planning

    @staticmethod
    def _branch_bounds(t: Table, branch: list[Condition], column: str) -> tuple | None:
        """``(lo, lo_inc, hi, hi_inc, nulls)`` the branch allows on ``column``; None: nothing."""
        kind = t.kind(column)
        lo = hi = None
        lo_inc = hi_inc = True
        constrained = False

        def raise_lo(v: Any, inc: bool) -> None:
            nonlocal lo, lo_inc
            if lo is None or v > lo:
                lo, lo_inc = v, inc
            elif v == lo:
                lo_inc = lo_inc and inc

        def lower_hi(v: Any, inc: bool) -> None:
            nonlocal hi, hi_inc
            if hi is None or v < hi:
                hi, hi_inc = v, inc
            elif v == hi:
                hi_inc = hi_inc and inc

        for c in branch:
            if c.column != column:
                continue
            constrained = True
            op = c.op
            if op in ("!=", "!:"):
                continue
            if op == ":":
                vals = [v for v in (_where_value(kind, x) for x in c.value) if v is not _INVALID]
                if not vals:
                    return None
                raise_lo(min(vals), True)
                lower_hi(max(vals), True)
                continue
            v = _where_value(kind, c.value)  # type: ignore[arg-type]
            if v is _INVALID:
                return None
            if op == "=":
                raise_lo(v, True)
                lower_hi(v, True)
            elif op in (">", ">="):
                raise_lo(v, op == ">=")
            else:
                lower_hi(v, op == "<=")
        if lo is not None and hi is not None and (lo > hi or (lo == hi and not (lo_inc and hi_inc))):
            return None
        return (lo, lo_inc, hi, hi_inc, not constrained)

    def _order_bounds(self, t: Table, where: list[list[Condition]] | None, column: str) -> tuple | None:
        if not where:
            return (None, True, None, True, True)
        parts = [b for b in (self._branch_bounds(t, br, column) for br in where) if b is not None]
        if not parts:
            return None
        lo = lo_inc = hi = hi_inc = None
        if all(p[0] is not None for p in parts):
            lo = min(p[0] for p in parts)
            lo_inc = any(p[1] for p in parts if p[0] == lo)
        if all(p[2] is not None for p in parts):
            hi = max(p[2] for p in parts)
            hi_inc = any(p[3] for p in parts if p[2] == hi)
        return (lo, bool(lo_inc) if lo is not None else True, hi, bool(hi_inc) if hi is not None else True,
                any(p[4] for p in parts))

    def _collect_plan(self, t: Table, where: list[list[Condition]] | None) -> tuple[int, list] | None:
        """Per OR branch, the cheapest index ranges holding all its matches (None: a branch
        has no indexable condition)."""
        if not where:
            return None
        lead = t.spec.leading
        total = 0
        plan = []
        for branch in where:
            best: tuple[int, Index, list] | None = None
            for column in dict.fromkeys(c.column for c in branch if c.op in INDEXABLE_OPS and c.column in lead):
                bounds = self._branch_bounds(t, branch, column)
                idx = t.index(column)
                if bounds is None:
                    ranges: list[tuple] = []
                else:
                    lo, lo_inc, hi, hi_inc, _ = bounds
                    kind = t.kind(column)
                    points = None
                    for c in branch:
                        if c.column == column and c.op == ":":
                            vals = {v for v in (_where_value(kind, x) for x in c.value) if v is not _INVALID}
                            points = vals if points is None else points & vals
                    if points is not None:
                        ranges = [(v, True, v, True) for v in sorted(points)]
                    else:
                        ranges = [(lo, lo_inc, hi, hi_inc)]
                size = sum(idx.count(*r) for r in ranges)
                if best is None or size < best[0]:
                    best = (size, idx, ranges)
            if best is None:
                return None
            total += best[0]
            plan.append((best[1], best[2]))
        return total, plan

    def _select(
        self,
        t: Table,
        where: list[list[Condition]] | None,
        order_by: list[str] | None,
        desc: bool,
        offset: int,
        count: int,
    ) -> list[int]:
        need = offset + count
        pred = self._compile(t, where)
        collect = self._collect_plan(t, where)
        if order_by and order_by[0] in t.spec.leading:
            bounds = self._order_bounds(t, where, order_by[0])
            if bounds is None:
                return []
            idx = t.index(order_by[0])
            span = idx.count(*bounds)
            use_collect = collect is not None and collect[0] < min(span, need * span / max(1, collect[0]))
            if not use_collect:
                hits: list[int] = []
                boundary: Any = _UNSET
                scanned = 0
                for key, s in idx.scan(*bounds, desc):
                    scanned += 1
                    if boundary is not _UNSET and key != boundary:
                        break
                    if pred is None or pred(s):
                        hits.append(s)
                        if len(hits) == need:
                            boundary = key
                self.last_scanned += scanned
                return self._finish(t, hits, order_by, desc, offset, count)
        if collect is not None:
            seen: set[int] = set()
            matches = []
            for idx, ranges in collect[1]:
                for r in ranges:
                    for _key, s in idx.scan(*r, False, False):
                        self.last_scanned += 1
                        if s not in seen:
                            seen.add(s)
                            if pred is None or pred(s):
                                matches.append(s)
        else:
            matches = []
            for s in t.live_slots():
                self.last_scanned += 1
                if pred is None or pred(s):
                    matches.append(s)
        return self._finish(t, matches, order_by, desc, offset, count)

    def _finish(
        self, t: Table, slots: list[int], order_by: list[str] | None, desc: bool, offset: int, count: int
    ) -> list[int]:
        """Order the candidates on the requested columns only (ties shuffled) and cut the page."""
        shuffle = self.options.shuffle_ties
        if not order_by:
            if shuffle:
                r = random.Random(self._shuffle_salt ^ self._requests)
                return r.sample(slots, min(len(slots), offset + count))[offset:]
            slots.sort()
            return slots[offset : offset + count]
        if shuffle:
            random.Random(self._shuffle_salt ^ self._requests).shuffle(slots)
        else:
            slots.sort()
        getters = [t.getter(c) for c in order_by]
        if len(getters) == 1:
            g = getters[0]
            slots.sort(key=lambda s: _sort_key(g(s)), reverse=desc)
        else:
            slots.sort(key=lambda s: tuple(_sort_key(g(s)) for g in getters), reverse=desc)
        return slots[offset : offset + count]

    def _matching(self, t: Table, where: list[list[Condition]]) -> list[int]:
        """Every slot matching ``where`` (writes), in slot order."""
        shuffle, self.options.shuffle_ties = self.options.shuffle_ties, False
        try:
            return self._select(t, where, None, False, 0, max(1, t.n_slots))
        finally:
            self.options.shuffle_ties = shuffle

    def _find_pk(self, t: Table, value: Any) -> int | None:
        pk = t.spec.pk
        assert pk is not None
        v = _where_value(t.kind(pk), str(value))
        if v is _INVALID:
            return None
        for _key, s in t.index(pk).scan(v, True, v, True, False, False):
            return s
        return None

    def _find_eq(self, t: Table, column: str, value: Any) -> list[int]:
        """Live slots whose ``column`` equals ``value`` (an already coerced value)."""
        if value is None:
            return []
        if column in t.spec.leading:
            return [s for _k, s in t.index(column).scan(value, True, value, True, False, False)]
        g = t.getter(column)
        return [s for s in t.live_slots() if g(s) == value]

    # ------------------------------------------------------------------ rendering

    def _render(self, t: Table, slots: list[int], columns: list[str] | None, column: str | None) -> list[Any]:
        """Rows as the API shows them. Numbers as strings apply to the declared int/float
        columns only: account-defined keys keep the JSON type they were written with [A]. In
        ``"mixed"`` mode the other rows send users' ``internal_id`` (a documented string) as a
        JSON number when it is all digits [A], so both forms arrive."""
        mode = self.options.numbers_as_strings
        pct = self.options.numbers_as_strings_percent
        salt = self._nas_salts.get(t.spec.name, 0)
        numeric = t.numeric_columns
        digit_text = t.spec.name == "users"

        def as_text(s: int) -> bool:
            return mode == "all" or (mode == "mixed" and _mix64(salt ^ s) % 100 < pct)

        out: list[Any] = []
        for s in slots:
            row = t.row(s)
            text = mode != "none" and as_text(s)
            if column is not None:
                v = row.get(column)
                out.append(str(v) if text and column in numeric and v is not None else v)
                continue
            if columns is not None:
                row = {c: row.get(c) for c in columns}
            if text:
                row = {k: (str(v) if k in numeric and v is not None else v) for k, v in row.items()}
            elif mode == "mixed" and digit_text:
                # the other way round: a documented string of digits sent as a JSON number [A]
                v = row.get("internal_id")
                if isinstance(v, str) and v.isdigit():
                    row = {**row, "internal_id": int(v)}
            out.append(row)
        return out

    # ------------------------------------------------------------------ writes

    def _payload(self, body: bytes, ctype: str | None) -> dict[str, Any]:
        if ctype and ctype.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
            try:
                return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body)))
            except (UnicodeDecodeError, ValueError):
                raise EngineError("Malformed form data") from None
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise EngineError("Malformed JSON") from None
        if not isinstance(data, dict):
            raise EngineError("Malformed JSON: the body must be an object")
        return data

    def _clean(self, t: Table, payload: dict[str, Any]) -> dict[str, Any]:
        """Names checked (camelCase → snake_case on users), empty values dropped, values typed."""
        spec = t.spec
        out: dict[str, Any] = {}
        for k, v in payload.items():
            if not isinstance(k, str) or not _IDENT.match(k):
                raise EngineError(f"Invalid column name '{k}'")
            if spec.name == "users":
                k = _snake(k)
            if v is None or v == "":
                continue  # empty values never blank a stored one [O S9]
            kind = spec.columns.get(k)
            if kind is None:
                if not spec.dynamic:
                    raise EngineError(f"Unknown column '{k}'")
                out[k] = _coerce_dynamic(v)
            else:
                out[k] = _coerce(kind, k, v)
        return out

    def _check_unique(self, t: Table, fields: dict[str, Any], slots: list[int]) -> None:
        for u in t.spec.unique:
            if u in fields:
                others = set(self._find_eq(t, u, fields[u])) - set(slots)
                if others or len(slots) > 1:
                    raise EngineError(f"Duplicate entry '{fields[u]}' for key '{u}'")

    def _update(self, t: Table, slots: list[int], fields: dict[str, Any]) -> int:
        self._check_unique(t, fields, slots)
        users = t.spec.name == "users"
        now = self.clock.now_s()
        for s in slots:
            new = dict(t.row(s))
            new.update(fields)
            if users:
                new["data_last_modified"] = now
            t.set_row(s, new)
        return len(slots)

    def _new_row(self, t: Table, fields: dict[str, Any]) -> int:
        spec = t.spec
        row: dict[str, Any] = dict.fromkeys(spec.columns)
        row.update(fields)
        if spec.pk:
            row[spec.pk] = t.assign_pk()
        if spec.name == "users":
            row["data_last_modified"] = self.clock.now_s()
        self._check_unique(t, row, [])
        t.insert(row)
        return row[spec.pk] if spec.pk else 0

    def _post(self, t: Table, q: Query, body: bytes, ctype: str | None) -> int:
        spec = t.spec
        if q.id is not None or q.modifiers:
            raise EngineError("POST takes no path parameters: send it to /rest/<object>")
        payload = self._payload(body, ctype)
        if spec.name == "user_list_users":
            return self._post_membership(payload)
        fields = self._clean(t, payload)
        if not fields:
            raise EngineError("Nothing to write: every value is empty")
        if spec.name == "users":
            return self._post_user(t, fields)
        if spec.pk in fields:
            raise EngineError(f"Column '{spec.pk}' is assigned by the server")
        if spec.upsert_key:
            key = spec.upsert_key
            if key not in fields:
                raise EngineError(f"Column '{key}' is required")
            found = self._find_eq(t, key, fields[key])
            if found:
                self._update(t, found[:1], fields)
                return t.getter(spec.pk)(found[0]) if spec.pk else 0  # type: ignore[arg-type]
        return self._new_row(t, fields)

    def _post_user(self, t: Table, fields: dict[str, Any]) -> int:
        fields.pop("data_last_modified", None)  # maintained by the server (a DB trigger) [D S7]
        keys = self.options.user_merge_keys
        target = None
        if "user_id" in fields:
            if "user_id" not in keys:
                raise EngineError("Column 'user_id' is assigned by the server")
            target = self._find_pk(t, fields["user_id"])
            if target is None:
                raise EngineError(f"User not found by user_id '{fields['user_id']}'")
        if target is None:
            for k in keys:
                if k != "user_id" and k in fields:
                    found = self._find_eq(t, k, fields[k])
                    if found:
                        target = found[0]
                        break
        if target is not None:
            fields.pop("user_id", None)
            self._update(t, [target], fields)
            return t.getter("user_id")(target)
        return self._new_row(t, fields)

    def _put_or_delete(self, method: str, t: Table, q: Query, body: bytes, ctype: str | None) -> int:
        spec = t.spec
        for m in q.modifiers:
            if m != "where":
                raise EngineError(f"Modifier '{m}' cannot be used with {method}")
        if q.id is not None and q.where is not None:
            raise EngineError(f"{method} takes a row id or a where, not both")
        if q.id is None and q.where is None:
            raise EngineError(f"{method} needs a row id or a where")
        fields: dict[str, Any] = {}
        if method == "PUT":
            fields = self._clean(t, self._payload(body, ctype))
            if spec.name == "users":
                fields.pop("data_last_modified", None)
            if spec.pk and spec.pk in fields:
                raise EngineError(f"Column '{spec.pk}' cannot be changed")
            if not fields:
                raise EngineError("Nothing to update: every value is empty")
        if q.id is not None:
            if spec.pk is None:
                raise EngineError(f"Object '{spec.name}' has no primary key")
            s = self._find_pk(t, q.id)
            if s is None:
                raise EngineError("Row not found")
            slots = [s]
        else:
            if spec.name in self.options.large_tables and self.options.index_rule:
                self._check_index_rule(t, q.where, None)
            self._check_where_columns(t, q.where)
            slots = self._matching(t, q.where)  # type: ignore[arg-type]
        if method == "PUT":
            return self._update(t, slots, fields)
        for s in slots:
            t.delete(s)
        return len(slots)

    # -- users by a key (do, user_list_users)
    def _user_by(self, key: str, value: Any) -> int | None:
        users = self.tables["users"]
        if key == "user_id":
            return self._find_pk(users, value)
        if key == "email":
            found = self._find_eq(users, "email", str(value))
            return found[0] if found else None
        # internal_id (text, as documented), else internal_text_id [I]
        text = str(value).strip()
        found = self._find_eq(users, "internal_id", text) or self._find_eq(users, "internal_text_id", text)
        return found[0] if found else None

    def _post_membership(self, payload: dict[str, Any]) -> int:
        t = self.tables["user_list_users"]
        lists = self.tables["user_lists"]
        list_id = payload.get("user_list_id")
        keys = [k for k in ("user_id", "user_email", "user_internal_id") if payload.get(k) not in (None, "")]
        if list_id in (None, "") or len(keys) != 1:
            raise EngineError("Send user_list_id and one of user_id, user_email, user_internal_id")
        if self._find_pk(lists, list_id) is None:
            raise EngineError(f"User list not found by id '{list_id}'")
        key = keys[0]
        s = self._user_by({"user_id": "user_id", "user_email": "email", "user_internal_id": "internal_id"}[key],
                          payload[key])
        if s is None:
            raise EngineError(f"User not found by {key} '{payload[key]}'")
        uid = self.tables["users"].getter("user_id")(s)
        lid = int(list_id)
        g = t.getter("user_id")
        if not any(g(m) == uid for m in self._find_eq(t, "user_list_id", lid)):
            t.insert({"user_list_id": lid, "user_id": uid})
        self._insert_counter += 1
        return 1_000 + self._insert_counter  # "a meaningless lastInsertId" [O S9]

    def _do(self, body: bytes) -> int:
        """``/rest/do``: a JSON array of commands, each an array (§6.8). Validated first, then
        applied; answers the number of commands [A]."""
        try:
            commands = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise EngineError("Malformed JSON") from None
        if not isinstance(commands, list) or not all(isinstance(c, list) for c in commands):
            raise EngineError("Malformed commands: expected an array of arrays")
        users = self.tables["users"]
        plan = []
        for cmd in commands:
            if len(cmd) < 3 or cmd[0] not in USER_KEYS or not isinstance(cmd[2], str):
                raise EngineError(f"Malformed command {orjson.dumps(cmd).decode()[:200]}")
            key, value, what, rest = cmd[0], cmd[1], cmd[2], cmd[3:]
            if value in (None, ""):
                raise EngineError(f"Empty {key} in command")
            if what == "User profile":
                if len(rest) % 2:
                    raise EngineError("User profile: fields and values must come in pairs")
                fields = self._clean(users, dict(zip(rest[::2], rest[1::2], strict=True)))
                fields.pop("user_id", None)
                if key == "user_id" and self._user_by("user_id", value) is None:
                    raise EngineError(f"User not found by user_id '{value}'")
                plan.append(("profile", key, value, fields))
            elif what in PRODUCT_INTERACTIONS or what in ARTICLE_INTERACTIONS:
                catalog = self.tables["products" if what in PRODUCT_INTERACTIONS else "articles"]
                if not rest or not self._find_eq(catalog, "internal_id", str(rest[0])):
                    item = rest[0] if rest else ""
                    raise EngineError(f"Item not found by internal_id '{item}'")
                plan.append(("interaction", key, value, None))
            else:
                raise EngineError(f"Unknown command '{what}'")
        for kind, key, value, fields in plan:
            if kind == "interaction":
                self._interactions += 1
                continue
            s = self._user_by(key, value)
            if s is None:
                new = dict(fields)
                if key == "email":
                    new["email"] = _coerce("text", "email", value)
                elif _INT_TEXT.match(str(value).strip()):
                    new["internal_id"] = str(value).strip()
                else:
                    new["internal_text_id"] = str(value)
                self._new_row(users, new)
            else:
                self._update(users, [s], fields)
        return len(plan)

    # ------------------------------------------------------------------ hostile mode

    def _served_rows(self, found: int) -> int:
        """How many of the ``found`` rows a list read answers: all, unless ``clamp_rows`` or
        (hostile, now and then) a clamp below the request cuts the page short while more rows
        match — a server that answers fewer rows than asked is not saying "no more" [A]."""
        served = found
        if self.options.clamp_rows:
            served = min(served, self.options.clamp_rows)
        if self.options.hostile and served > 1 and self._hostile_rng.random() < 0.15:
            served = self._hostile_rng.randint(1, served - 1)
            self._note("clamped_page")
        return served

    def _note(self, kind: str, n: int = 1) -> None:
        self.hostile_log[kind] = self.hostile_log.get(kind, 0) + n

    def _release_pending(self) -> None:
        if not self._pending:
            return
        due = [p for p in self._pending if p[0] <= self._requests]
        if not due:
            return
        self._pending = [p for p in self._pending if p[0] > self._requests]
        for _at, table, row in due:
            self.tables[table].insert(row)

    def _hostile_before(self, obj: str) -> None:
        """The vendor's bad days, applied (seeded, at random) before a read is answered, so the
        answer already shows them — a walk that keeps going to its end sees every change:

        * users: a few profiles change (``data_last_modified`` = now) while a walk runs; a tie
          storm (60-150 profiles changed in one second, across page boundaries); a change that
          commits late (``data_last_modified`` 30-240 s in the past, never before the row's
          previous value: inside the source's documented 300 s lookback); new profiles;
        * events, sessions_archive: rows that arrive late (a new id, a ``time`` / ``end_time``
          1.5-2.3 hours, up to a day, behind); ids taken now that become visible only 2-8
          requests later, behind ids already served (out-of-order commits, well inside the
          source's 100-id lookback);
        * summary_actions: today's (and up to two earlier days') counters change;
        * products: new products while the catalog walk runs.

        Every change is counted in :attr:`hostile_log`."""
        r = self._hostile_rng
        x = r.random()
        self._mutations += 1
        rr = self._mrng()
        now = self.clock.now_s()
        if obj == "users":
            users = self.tables["users"]
            if x < 0.08:
                slots = self._random_live(users, rr, min(users.live_count, 1 + r.randrange(3)))
                self._change_users(slots, now, "changed_during_walk")
            elif x < 0.10:
                slots = self._random_live(users, rr, min(users.live_count, 60 + r.randrange(91)))
                self._change_users(slots, now, "tie_storm")
            elif x < 0.14:
                slots = self._random_live(users, rr, min(users.live_count, 1 + r.randrange(2)))
                self._change_users(slots, now - 30 - r.randrange(211), "committed_late")
            elif x < 0.16:
                self._op_add_users({"op": "add_users", "count": 1 + r.randrange(3)})
                self._note("users_added")
        elif obj in ("events", "sessions_archive"):
            t = self.tables[obj].load()
            if x < 0.15:
                late = r.choice((5400 + r.randrange(2881), r.randrange(86400)))
                pending = x >= 0.10
                for _ in range(1 + r.randrange(3)):
                    rid = t.assign_pk()
                    users = self._some_user_id(rr)
                    row = (self.data.new_event(rr, rid, now - late, users) if obj == "events"
                           else self.data.new_session(rr, rid, now - late, users))
                    if pending:
                        self._pending.append((self._requests + 2 + r.randrange(7), obj, row))
                    else:
                        t.insert(row)
                    self._note(f"{obj}_{'committed_out_of_order' if pending else 'late'}")
        elif obj == "summary_actions":
            if x < 0.10:
                self._op_update_summaries({"op": "update_summaries", "days": 1 + r.randrange(3)})
                self._note("summaries_changed")
        elif obj == "products" and x < 0.05:
            self._op_add_products({"op": "add_products", "count": 1 + r.randrange(3)})
            self._note("products_added")

    def _change_users(self, slots: list[int], when: int, kind: str) -> None:
        users = self.tables["users"]
        for i, s in enumerate(slots):
            old = users.row(s)
            if (old.get("data_last_modified") or 0) >= when:
                continue  # a change never makes a profile older than it was
            new = dict(old)
            new["custom_t_3"] = f"hostile {self._mutations}.{i}"
            new["data_last_modified"] = when
            users.set_row(s, new)
            self._note(kind)

    # ------------------------------------------------------------------ control-plane mutations

    def mutate(self, op: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            raise MutationError("a mutation is an object with an 'op' name")
        spec = _MUTATIONS.get(op["op"])
        if spec is None:
            raise MutationError(f"unknown personyze op {op['op']!r} (known: {', '.join(_MUTATIONS)})")
        method, allowed = spec
        extra = set(op) - {"op"} - set(allowed)
        if extra:
            raise MutationError(f"op {op['op']!r} does not take {', '.join(sorted(extra))}")
        with self._lock:
            self._mutations += 1
            return getattr(self, method)(op)

    def _mrng(self) -> random.Random:
        return random.Random(self._D.derive_seed(self.seed, "mutation", self._mutations))

    @staticmethod
    def _arg_int(op: dict[str, Any], name: str, default: int | None = None, minimum: int = 0) -> int:
        v = op.get(name, default)
        if type(v) is not int or v < minimum:
            raise MutationError(f"{op['op']}: {name!r} must be an integer >= {minimum}")
        return v

    def _random_live(self, t: Table, rr: random.Random, count: int) -> list[int]:
        live = t.live_count
        if count > live:
            raise MutationError(f"there are only {live} {t.spec.name}")
        if count * 2 > live:
            return sorted(rr.sample(list(t.live_slots()), count))
        chosen: set[int] = set()
        while len(chosen) < count:
            s = rr.randrange(t.n_slots)
            if s not in t.deleted:
                chosen.add(s)
        return sorted(chosen)

    def _users_from_op(self, op: dict[str, Any], rr: random.Random) -> list[int]:
        users = self.tables["users"]
        if op.get("user_ids") is not None:
            ids = op["user_ids"]
            if not isinstance(ids, list) or not all(type(i) is int for i in ids):
                raise MutationError(f"{op['op']}: 'user_ids' must be a list of integers")
            slots = []
            for uid in dict.fromkeys(ids):
                s = self._find_pk(users, uid)
                if s is None:
                    raise MutationError(f"{op['op']}: no user {uid}")
                slots.append(s)
            return slots
        return self._random_live(users, rr, self._arg_int(op, "count"))

    def _op_advance_clock(self, op: dict[str, Any]) -> dict[str, Any]:
        seconds = op.get("seconds")
        if type(seconds) not in (int, float):
            raise MutationError("advance_clock: 'seconds' must be a number")
        self.clock.advance(seconds)
        return {"now": self.clock.now_s()}

    def _op_modify_users(self, op: dict[str, Any]) -> dict[str, Any]:
        rr = self._mrng()
        users = self.tables["users"]
        slots = self._users_from_op(op, rr)
        # a change committed late: its data_last_modified is when it was written, seconds ago
        # (never before the profile's previous value)
        now = self.clock.now_s() - self._arg_int(op, "late_seconds", 0)
        uid = users.getter("user_id")
        for i, s in enumerate(slots):
            new = dict(users.row(s))
            new["custom_t_3"] = f"edited {self._mutations}.{i}"
            new["data_last_modified"] = max(now, (new.get("data_last_modified") or 0) + 1)
            users.set_row(s, new)
        return {"user_ids": sorted(uid(s) for s in slots)}

    def _op_delete_users(self, op: dict[str, Any]) -> dict[str, Any]:
        rr = self._mrng()
        users = self.tables["users"]
        slots = self._users_from_op(op, rr)
        uid = users.getter("user_id")
        ids = sorted(uid(s) for s in slots)
        for s in slots:
            users.delete(s)
        return {"user_ids": ids}

    def _op_add_users(self, op: dict[str, Any]) -> dict[str, Any]:
        count = self._arg_int(op, "count")
        rr = self._mrng()
        users = self.tables["users"]
        now = self.clock.now_s()
        ids = []
        for _ in range(count):
            uid = users.assign_pk()
            users.insert(self.data.new_user(rr, uid, now))
            ids.append(uid)
        return {"user_ids": ids}

    def _some_user_id(self, rr: random.Random) -> list[int]:
        users = self.tables["users"]
        if not users.live_count:
            return []
        return [users.getter("user_id")(self._random_live(users, rr, 1)[0])]

    def _op_add_events(self, op: dict[str, Any]) -> dict[str, Any]:
        count = self._arg_int(op, "count")
        late = self._arg_int(op, "late_seconds", 0)
        rr = self._mrng()
        events = self.tables["events"].load()
        t = self.clock.now_s() - late
        ids = []
        for _ in range(count):
            eid = events.assign_pk()
            events.insert(self.data.new_event(rr, eid, t, self._some_user_id(rr)))
            ids.append(eid)
        return {"ids": [ids[0], ids[-1]] if ids else []}

    def _op_add_sessions(self, op: dict[str, Any]) -> dict[str, Any]:
        count = self._arg_int(op, "count")
        late = self._arg_int(op, "late_seconds", 0)
        rr = self._mrng()
        sessions = self.tables["sessions_archive"].load()
        end = self.clock.now_s() - late
        ids = []
        for _ in range(count):
            sid = sessions.assign_pk()
            sessions.insert(self.data.new_session(rr, sid, end, self._some_user_id(rr)))
            ids.append(sid)
        return {"ids": [ids[0], ids[-1]] if ids else []}

    def _op_update_summaries(self, op: dict[str, Any]) -> dict[str, Any]:
        """Change the counters of every (date, action) row of the last ``days`` days, today
        included; a day that has no rows yet (the clock moved past midnight) gets them."""
        days = self._arg_int(op, "days", minimum=1)
        rr = self._mrng()
        t = self.tables["summary_actions"]
        actions = sorted(r["id"] for r in self.data.actions().rows)
        D = self._D
        today = self.clock.now_s() // D.DAY * D.DAY
        changed = 0
        for k in range(days - 1, -1, -1):
            day = today - k * D.DAY
            date = D.fmt_day(day)
            have = {t.getter("action_id")(s): s for s in self._find_eq(t, "date", date)}
            for a in actions:
                s = have.get(a)
                if s is None:
                    t.insert(self.data.summary_row(rr, day, a))
                else:
                    new = dict(t.row(s))
                    add = 1 + rr.randrange(200)
                    clicks = rr.randrange(add // 10 + 1)
                    new["impressions"] += add
                    new["clicks"] += clicks
                    new["closes"] += rr.randrange(add // 20 + 1)
                    new["conversions"] += rr.randrange(clicks // 5 + 1)
                    t.set_row(s, new)
                changed += 1
        return {"rows": changed}

    def _append_table(self, op: dict[str, Any]) -> Table:
        name = op.get("table")
        if name not in ("events", "sessions_archive"):
            raise MutationError(f"{op['op']}: 'table' must be 'events' or 'sessions_archive'")
        return self.tables[name].load()

    def _op_hold_rows(self, op: dict[str, Any]) -> dict[str, Any]:
        """Take ``count`` new ids of ``table`` whose rows stay invisible until ``release_rows``:
        a transaction that committed after later ids did (out-of-order commits)."""
        t = self._append_table(op)
        count = self._arg_int(op, "count", minimum=1)
        rr = self._mrng()
        now = self.clock.now_s()
        ids = []
        for _ in range(count):
            rid = t.assign_pk()
            users = self._some_user_id(rr)
            row = (self.data.new_event(rr, rid, now, users) if t.spec.name == "events"
                   else self.data.new_session(rr, rid, now, users))
            self._pending.append((_HELD, t.spec.name, row))
            ids.append(rid)
        return {"ids": ids}

    def _op_release_rows(self, op: dict[str, Any]) -> dict[str, Any]:
        t = self._append_table(op)
        held = [p for p in self._pending if p[0] == _HELD and p[1] == t.spec.name]
        self._pending = [p for p in self._pending if p not in held]
        for _at, _table, row in held:
            t.insert(row)
        return {"ids": [row["id"] for _at, _table, row in held]}

    def _op_hostile_log(self, op: dict[str, Any]) -> dict[str, Any]:
        """What hostile mode changed so far, by kind (``reset``: start counting afresh), and
        how many rows are taken but not visible yet."""
        out = {"changes": dict(self.hostile_log), "pending": len(self._pending)}
        if op.get("reset"):
            self.hostile_log = {}
        return out

    def _op_add_products(self, op: dict[str, Any]) -> dict[str, Any]:
        count = self._arg_int(op, "count")
        rr = self._mrng()
        t = self.tables["products"]
        ids = []
        for _ in range(count):
            pid = t.assign_pk()
            row = self.data.new_product(rr, pid)
            while self._find_eq(t, "internal_id", row["internal_id"]):
                row["internal_id"] += "-new"
            t.insert(row)
            ids.append(pid)
        return {"ids": ids}


#: op name → (method, parameters it takes)
_MUTATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "advance_clock": ("_op_advance_clock", ("seconds",)),
    "modify_users": ("_op_modify_users", ("count", "user_ids", "late_seconds")),
    "hold_rows": ("_op_hold_rows", ("table", "count")),
    "release_rows": ("_op_release_rows", ("table",)),
    "add_users": ("_op_add_users", ("count",)),
    "delete_users": ("_op_delete_users", ("count", "user_ids")),
    "add_events": ("_op_add_events", ("count", "late_seconds")),
    "add_sessions": ("_op_add_sessions", ("count", "late_seconds")),
    "update_summaries": ("_op_update_summaries", ("days",)),
    "add_products": ("_op_add_products", ("count",)),
    "hostile_log": ("_op_hostile_log", ("reset",)),
}
