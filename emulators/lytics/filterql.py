"""A FilterQL subset: the text body of an ad-hoc segment scan and the ``segment_ql`` of saved
segments (``api/lytics.md`` §3.3, §7, §11.4).

Grammar (keywords are case-insensitive)::

    query      := "FILTER" expr ["FROM" ("user" | "content")] ["ALIAS" ident]
    expr       := "*" | bool
    bool       := ("AND" | "OR") "(" bool {[","] bool} ")" | "NOT" bool | "(" bool ")"
                | "INCLUDE" slug | "EXISTS" field | field cmp value
                | field "BETWEEN" value "AND" value | field "IN" "(" value {"," value} ")"
                | field "CONTAINS" value
    cmp        := "=" | "!=" | ">" | ">=" | "<" | "<="
    value      := "string" | 'string' | number | true | false | null

Date literals are RFC 3339 strings (any fraction, ``Z`` or an offset), ``YYYY-MM-DD``, or date
math ``now``, ``now-30d`` / ``-24h`` / ``-15m`` / ``-10s`` (§7). A text that does not parse raises
:class:`FilterQLError`, which the API answers with 400
``{"data":null,"message":"Failed parsing segment QL <detail>","status":400}``.

Comparison semantics (stricter where the contract is silent): a comparison with a date literal on
a field holding a date compares instants; numbers (and numbers sent as strings) compare
numerically; otherwise strings compare for equality only (``>`` on two non-numeric, non-date
strings is false). A list field matches ``=`` when any element equals the value. A missing field
matches nothing but ``NOT``.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>>=|<=|!=|=|>|<)
      | (?P<punct>[(),*])
      | (?P<word>[A-Za-z0-9_.:@+\-/]+)
    )""",
    re.X,
)
_DATE_MATH = re.compile(r"now(?:\s*-\s*(\d+)\s*([smhdw]))?$", re.I)
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$", re.I
)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class FilterQLError(ValueError):
    """A FilterQL text that does not parse; ``str()`` is the detail after "Failed parsing segment QL"."""


def parse_instant(text: str, now_ns: int) -> int | None:
    """An RFC 3339 / ``YYYY-MM-DD`` / ``now-<n><unit>`` literal as epoch nanoseconds (``None``: not a date)."""
    text = text.strip()
    if text[:3].lower() == "now":
        m = _DATE_MATH.match(text)
        if m:
            n = int(m.group(1) or 0)
            return now_ns - n * _UNITS[(m.group(2) or "s").lower()] * 1_000_000_000
    return _absolute(text)


@functools.lru_cache(maxsize=4096)
def _absolute(text: str) -> int | None:
    m = _RFC3339.match(text)
    if not m:
        return None
    y, mo, d, h, mi, s, frac, tz = m.groups()
    try:
        base = dt.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), tzinfo=dt.UTC)
    except ValueError:
        return None
    ns = int((base - _EPOCH).total_seconds()) * 1_000_000_000 + int((frac or "").ljust(9, "0") or 0)
    if tz and tz.upper() != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        ns -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60) * 1_000_000_000
    return ns


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


# ----------------------------------------------------------------------------------- the AST


@dataclass(frozen=True)
class All:
    pass


@dataclass(frozen=True)
class And:
    parts: tuple[Any, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Any, ...]


@dataclass(frozen=True)
class Not:
    part: Any


@dataclass(frozen=True)
class Include:
    slug: str


@dataclass(frozen=True)
class Exists:
    field: str


@dataclass(frozen=True)
class Compare:
    field: str
    op: str  # = != > >= < <= in contains
    value: Any  # a literal, or a tuple of literals for "in"


@dataclass(frozen=True)
class Between:
    field: str
    low: Any
    high: Any


@dataclass(frozen=True)
class Query:
    expr: Any
    table: str = "user"
    alias: str | None = None


# ---------------------------------------------------------------------------------- parsing


class _Tokens:
    def __init__(self, text: str) -> None:
        self.items: list[tuple[str, str]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise FilterQLError(f"Unrecognized Filter Statement: unexpected {text[pos:pos + 20]!r}")
            kind = m.lastgroup or ""
            self.items.append((kind, m.group(kind)))
            pos = m.end()
            while pos < len(text) and text[pos].isspace():
                pos += 1
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.items[self.i] if self.i < len(self.items) else None

    def next(self, what: str = "a token") -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise FilterQLError(f"Unrecognized Filter Statement: expected {what} at the end")
        self.i += 1
        return tok

    def word(self, *words: str) -> bool:
        tok = self.peek()
        if tok and tok[0] == "word" and tok[1].upper() in words:
            self.i += 1
            return True
        return False

    def punct(self, p: str) -> bool:
        tok = self.peek()
        if tok and tok[0] == "punct" and tok[1] == p:
            self.i += 1
            return True
        return False

    def expect(self, p: str) -> None:
        if not self.punct(p):
            tok = self.peek()
            raise FilterQLError(f"Unrecognized Filter Statement: expected {p!r}, got {tok[1] if tok else 'the end'!r}")


def _literal(tok: tuple[str, str]) -> Any:
    kind, text = tok
    if kind == "str":
        return bytes(text[1:-1], "utf-8").decode("unicode_escape") if "\\" in text else text[1:-1]
    if kind == "word":
        if text.upper() in _KEYWORDS:
            raise FilterQLError(f"Unrecognized Filter Statement: expected a value, got {text!r}")
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        if low == "null":
            return None
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return text  # a bare word (date math such as now-30d, an unquoted slug)
    raise FilterQLError(f"Unrecognized Filter Statement: expected a value, got {text!r}")


_KEYWORDS = {"AND", "OR", "NOT", "INCLUDE", "EXISTS", "FROM", "ALIAS", "FILTER", "BETWEEN", "IN", "CONTAINS"}


def _field(toks: _Tokens) -> str:
    kind, text = toks.next("a field name")
    if kind != "word" or text.upper() in _KEYWORDS or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", text):
        raise FilterQLError(f"Unrecognized Filter Statement: expected a field name, got {text!r}")
    return text


def _bool(toks: _Tokens) -> Any:
    if toks.word("AND", "OR"):
        is_and = toks.items[toks.i - 1][1].upper() == "AND"
        toks.expect("(")
        parts = [_bool(toks)]
        while not toks.punct(")"):
            toks.punct(",")
            parts.append(_bool(toks))
        return And(tuple(parts)) if is_and else Or(tuple(parts))
    if toks.word("NOT"):
        return Not(_bool(toks))
    if toks.punct("("):
        inner = _bool(toks)
        toks.expect(")")
        return inner
    if toks.word("INCLUDE"):
        kind, slug = toks.next("a segment slug")
        if kind not in ("word", "str"):
            raise FilterQLError(f"Unrecognized Filter Statement: INCLUDE needs a segment, got {slug!r}")
        return Include(slug.strip("\"'"))
    if toks.word("EXISTS"):
        return Exists(_field(toks))
    field = _field(toks)
    if toks.word("BETWEEN"):
        low = _literal(toks.next("a value"))
        if not toks.word("AND"):
            raise FilterQLError("Unrecognized Filter Statement: BETWEEN needs AND")
        return Between(field, low, _literal(toks.next("a value")))
    if toks.word("IN"):
        toks.expect("(")
        values = [_literal(toks.next("a value"))]
        while not toks.punct(")"):
            toks.expect(",")
            values.append(_literal(toks.next("a value")))
        return Compare(field, "in", tuple(values))
    if toks.word("CONTAINS"):
        return Compare(field, "contains", _literal(toks.next("a value")))
    kind, op = toks.next("an operator")
    if kind != "op":
        raise FilterQLError(f"Unrecognized Filter Statement: expected an operator after {field}, got {op!r}")
    return Compare(field, op, _literal(toks.next("a value")))


def parse(text: str) -> Query:
    """Parse a FilterQL text; raise :class:`FilterQLError` with the detail for anything else."""
    if not text or not text.strip():
        raise FilterQLError("Unrecognized Filter Statement: empty query")
    toks = _Tokens(text)
    if not toks.word("FILTER"):
        raise FilterQLError(f"Unrecognized Filter Statement: expected FILTER, got {toks.peek()[1]!r}")  # type: ignore[index]
    expr: Any = All() if toks.punct("*") else _bool(toks)
    table, alias = "user", None
    while toks.peek() is not None:
        if toks.word("FROM"):
            kind, name = toks.next("a table")
            if name.lower() not in ("user", "content"):
                raise FilterQLError(f"Unrecognized Filter Statement: unknown table {name!r}")
            table = name.lower()
        elif toks.word("ALIAS"):
            alias = toks.next("an alias")[1]
        else:
            raise FilterQLError(f"Unrecognized Filter Statement: unexpected {toks.peek()[1]!r}")  # type: ignore[index]
    return Query(expr, table, alias)


# ------------------------------------------------------------------------------- evaluation

Getter = Callable[[str], Any]
_MISSING = object()


def _as_number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _compare(actual: Any, op: str, literal: Any, now_ns: int) -> bool:
    if isinstance(actual, list):
        if op in ("=", "contains", "in"):
            return any(_compare(a, "=" if op == "contains" else op, literal, now_ns) for a in actual)
        if op == "!=":
            return all(_compare(a, "!=", literal, now_ns) for a in actual)
        return False
    if isinstance(actual, dict):
        if op in ("=", "contains"):
            return str(literal) in actual
        return False
    if op == "in":
        return any(_compare(actual, "=", v, now_ns) for v in literal)
    if op == "contains":
        return isinstance(actual, str) and str(literal).lower() in actual.lower()
    if isinstance(literal, bool) or isinstance(actual, bool):
        a = actual if isinstance(actual, bool) else str(actual).lower() == "true"
        b = literal if isinstance(literal, bool) else str(literal).lower() == "true"
        return {"=": a == b, "!=": a != b}.get(op, False)
    if isinstance(literal, str) and isinstance(actual, str):
        b_ns = parse_instant(literal, now_ns)
        a_ns = parse_instant(actual, now_ns) if b_ns is not None else None
        if a_ns is not None and b_ns is not None:
            return _order(a_ns, op, b_ns)
    a_num, b_num = _as_number(actual), _as_number(literal)
    if a_num is not None and b_num is not None:
        return _order(a_num, op, b_num)
    if op == "=":
        return str(actual) == str(literal)
    if op == "!=":
        return str(actual) != str(literal)
    return False


def _order(a: Any, op: str, b: Any) -> bool:
    if op == "=":
        return a == b
    if op == "!=":
        return a != b
    if op == ">":
        return a > b
    if op == ">=":
        return a >= b
    if op == "<":
        return a < b
    return a <= b


def evaluate(expr: Any, get: Getter, include: Callable[[str], bool], now_ns: int) -> bool:
    """Does the row behind ``get(field)`` (``_MISSING``/``None`` when absent) match ``expr``?
    ``include(slug)`` answers segment membership for ``INCLUDE``."""
    if isinstance(expr, All):
        return True
    if isinstance(expr, And):
        return all(evaluate(p, get, include, now_ns) for p in expr.parts)
    if isinstance(expr, Or):
        return any(evaluate(p, get, include, now_ns) for p in expr.parts)
    if isinstance(expr, Not):
        return not evaluate(expr.part, get, include, now_ns)
    if isinstance(expr, Include):
        return include(expr.slug)
    value = get(expr.field)
    if isinstance(expr, Exists):
        return value is not None and value != "" and value != []
    if value is None:
        return False
    if isinstance(expr, Between):
        return _compare(value, ">=", expr.low, now_ns) and _compare(value, "<=", expr.high, now_ns)
    return _compare(value, expr.op, expr.value, now_ns)


def fields_of(expr: Any) -> set[str]:
    """Fields an expression reads (``INCLUDE`` not followed)."""
    if isinstance(expr, (And, Or)):
        return set().union(*(fields_of(p) for p in expr.parts))
    if isinstance(expr, Not):
        return fields_of(expr.part)
    if isinstance(expr, (Exists, Compare, Between)):
        return {expr.field}
    return set()


def indexed_range(expr: Any, field: str, now_ns: int) -> tuple[int | None, bool, int | None, bool] | None:
    """A range on ``field`` (epoch ns) implied by ``expr``: (low, low inclusive, high, high
    inclusive) from top-level AND-ed comparisons with date literals, or ``None`` (no restriction)."""
    parts = expr.parts if isinstance(expr, And) else (expr,)
    low: int | None = None
    low_inc = True
    high: int | None = None
    high_inc = True
    found = False
    for p in parts:
        bounds: list[tuple[str, Any]] = []
        if isinstance(p, Compare) and p.field == field and p.op in (">", ">=", "<", "<="):
            bounds = [(p.op, p.value)]
        elif isinstance(p, Between) and p.field == field:
            bounds = [(">=", p.low), ("<=", p.high)]
        for op, lit in bounds:
            ns = parse_instant(str(lit), now_ns) if isinstance(lit, str) else None
            if ns is None:
                continue
            found = True
            if op in (">", ">="):
                inc = op == ">="
                if low is None or ns > low or (ns == low and not inc):
                    low, low_inc = ns, inc
            else:
                inc = op == "<="
                if high is None or ns < high or (ns == high and not inc):
                    high, high_inc = ns, inc
    return (low, low_inc, high, high_inc) if found else None


# ------------------------------------------------------------------------------- compilation

Predicate = Callable[[Getter, Callable[[str], bool], int], bool]
Comparator = Callable[[Any, int], bool]


def uses_now(expr: Any) -> bool:
    """Does ``expr`` hold date math (``now``, ``now-30d`` …), so its answer moves with the clock?
    (``INCLUDE`` is not followed: the caller resolves included segments.)"""
    if isinstance(expr, (And, Or)):
        return any(uses_now(p) for p in expr.parts)
    if isinstance(expr, Not):
        return uses_now(expr.part)
    if isinstance(expr, Compare):
        values = expr.value if expr.op == "in" else (expr.value,)
        return any(_is_date_math(v) for v in values)
    if isinstance(expr, Between):
        return _is_date_math(expr.low) or _is_date_math(expr.high)
    return False


def includes_of(expr: Any) -> set[str]:
    """Slugs an expression ``INCLUDE``s (not followed further)."""
    if isinstance(expr, (And, Or)):
        return set().union(*(includes_of(p) for p in expr.parts))
    if isinstance(expr, Not):
        return includes_of(expr.part)
    if isinstance(expr, Include):
        return {expr.slug}
    return set()


def _is_date_math(literal: Any) -> bool:
    if not isinstance(literal, str):
        return False
    text = literal.strip()
    return text[:3].lower() == "now" and _DATE_MATH.match(text) is not None


def compile_compare(op: str, literal: Any) -> Comparator:
    """``_compare(actual, op, literal, now)`` with everything that depends only on the literal
    worked out once. Scalars (``str``, ``int``, ``float``) take the fast path below, which
    follows ``_compare`` step by step; every other value (lists, maps, booleans) and every
    boolean literal goes to ``_compare`` itself, so the answers are the same by construction
    (``tests/emulators/test_lytics_filterql.py`` checks it on generated values)."""
    if op == "in":
        subs = [compile_compare("=", v) for v in literal]

        def compare_in(actual: Any, now_ns: int) -> bool:
            t = type(actual)
            if t is str or t is int or t is float:
                return any(c(actual, now_ns) for c in subs)
            return _compare(actual, op, literal, now_ns)

        return compare_in
    if op == "contains" or isinstance(literal, bool):
        return lambda actual, now_ns: _compare(actual, op, literal, now_ns)
    lit_is_str = isinstance(literal, str)
    dated = lit_is_str and _is_date_math(literal)
    # a fixed date literal parses once; date math moves with ``now``
    fixed_ns = _absolute(literal.strip()) if lit_is_str and not dated else None
    b_num = _as_number(literal)
    lit_text = str(literal)
    order = _ORDER[op]

    def compare(actual: Any, now_ns: int) -> bool:
        t = type(actual)
        if t is str:
            if lit_is_str:
                b_ns = parse_instant(literal, now_ns) if dated else fixed_ns
                if b_ns is not None:
                    a_ns = parse_instant(actual, now_ns)
                    if a_ns is not None:
                        return order(a_ns, b_ns)
            if b_num is not None:
                a_num = _as_number(actual)
                if a_num is not None:
                    return order(a_num, b_num)
            text = actual
        elif t is int or t is float:
            if b_num is not None:
                return order(float(actual), b_num)
            text = str(actual)
        else:
            return _compare(actual, op, literal, now_ns)
        if op == "=":
            return text == lit_text
        if op == "!=":
            return text != lit_text
        return False

    return compare


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


def compile_expr(expr: Any) -> Predicate:
    """``expr`` as a function ``(get, include, now_ns) -> bool`` answering exactly as
    :func:`evaluate` does, with literals parsed once (saved segments are evaluated for every
    profile a scan renders)."""
    if isinstance(expr, All):
        return lambda get, include, now_ns: True
    if isinstance(expr, And):
        parts = [compile_expr(p) for p in expr.parts]

        def all_of(get: Getter, include: Callable[[str], bool], now_ns: int) -> bool:
            for p in parts:
                if not p(get, include, now_ns):
                    return False
            return True

        return all_of
    if isinstance(expr, Or):
        parts = [compile_expr(p) for p in expr.parts]

        def any_of(get: Getter, include: Callable[[str], bool], now_ns: int) -> bool:
            for p in parts:
                if p(get, include, now_ns):
                    return True
            return False

        return any_of
    if isinstance(expr, Not):
        inner = compile_expr(expr.part)
        return lambda get, include, now_ns: not inner(get, include, now_ns)
    if isinstance(expr, Include):
        slug = expr.slug
        return lambda get, include, now_ns: include(slug)
    field = expr.field
    if isinstance(expr, Exists):

        def exists(get: Getter, include: Callable[[str], bool], now_ns: int) -> bool:
            value = get(field)
            return value is not None and value != "" and value != []

        return exists
    if isinstance(expr, Between):
        low, high = compile_compare(">=", expr.low), compile_compare("<=", expr.high)

        def between(get: Getter, include: Callable[[str], bool], now_ns: int) -> bool:
            value = get(field)
            return value is not None and low(value, now_ns) and high(value, now_ns)

        return between
    cmp = compile_compare(expr.op, expr.value)

    def compare(get: Getter, include: Callable[[str], bool], now_ns: int) -> bool:
        value = get(field)
        return value is not None and cmp(value, now_ns)

    return compare
