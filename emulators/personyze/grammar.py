"""The Personyze REST path grammar, as a pure parser (contract §2).

``parse_path`` takes the request path after ``/rest/`` exactly as it was on the wire
(percent-encoded) and returns a :class:`Query`. The encoding model is the contract's
"Emulator rule" (§2.4) [I]:

1. the raw path is decoded once (``urllib.parse.unquote``), so escaped operators and
   separators sent by HTTP clients (``%3C``, ``%7C``, ``%2C``) act as operators and separators;
2. the decoded path is split on ``/``; the ``where`` value is split on ``|`` (OR) and then on
   ``&`` (AND, which binds tighter); there are no parentheses;
3. each condition is tokenised: the column is the leading run of ``[A-Za-z0-9_]``, the operator
   the longest match at that position among ``!= >= <= !: = > < :``, the rest is the value;
   for ``:`` and ``!:`` the value is split on ``,``;
4. every value is decoded once more with ``unquote`` (not ``unquote_plus``), so a comma sent
   double-encoded as ``%252C`` (as the vendor's Android SDK does) arrives as ``,``.

Stricter-than-known choices (each raises :class:`GrammarError`, a plain-text 400):

- a repeated modifier, and ``order_by`` together with ``order_by_desc`` [I];
- an unknown modifier, a modifier without a value, an empty path segment (``users//limit/5``,
  a trailing ``/``) [A];
- an empty condition (``a=1&&b=2``, a trailing ``|``), a condition without a column or operator,
  an invalid column name in ``columns``/``column``/``order_by`` [A];
- ``columns`` together with ``column`` [A];
- ``limit`` values that are not ``<digits>`` or ``<digits>,<digits>`` [A].

The parser does not know objects or columns; the engine checks them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

__all__ = ["Condition", "GrammarError", "Query", "parse_path", "MODIFIERS", "OPERATORS"]

#: every operator, longest first (the tokeniser takes the longest match)
OPERATORS: tuple[str, ...] = ("!=", ">=", "<=", "!:", "=", ">", "<", ":")
#: operators whose value is a comma-separated list
LIST_OPERATORS = frozenset({":", "!:"})
MODIFIERS: tuple[str, ...] = ("where", "columns", "column", "order_by", "order_by_desc", "limit")

_COLUMN_RUN = re.compile(r"[A-Za-z0-9_]*")
_IDENT = re.compile(r"[A-Za-z0-9_]+\Z")
_DIGITS = re.compile(r"[0-9]+\Z")


class GrammarError(ValueError):
    """The path could not be parsed; ``str(error)`` is the plain-text body of the 400."""


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    #: a string, or a tuple of strings for ``:`` and ``!:``
    value: str | tuple[str, ...]


@dataclass
class Query:
    object: str
    #: the bare numeric first segment (single-id form), as text
    id: str | None = None
    #: OR of AND-groups
    where: list[list[Condition]] | None = None
    columns: list[str] | None = None
    column: str | None = None
    order_by: list[str] | None = None
    descending: bool = False
    offset: int = 0
    #: ``None`` when the path has no ``limit``
    count: int | None = None
    #: the modifiers present, in path order (lets the engine refuse them on writes)
    modifiers: list[str] = field(default_factory=list, compare=False, repr=False)


def parse_condition(text: str) -> Condition:
    """Tokenise one condition (already split out of the once-decoded ``where`` value)."""
    if not text:
        raise GrammarError("Empty condition in where")
    column = _COLUMN_RUN.match(text).group(0)  # type: ignore[union-attr]
    if not column:
        raise GrammarError(f"Invalid condition '{text}': no column name")
    rest = text[len(column) :]
    for op in OPERATORS:
        if rest.startswith(op):
            break
    else:
        raise GrammarError(f"Invalid condition '{text}': no operator")
    raw_value = rest[len(op) :]
    if op in LIST_OPERATORS:
        return Condition(column, op, tuple(unquote(part) for part in raw_value.split(",")))
    return Condition(column, op, unquote(raw_value))


def parse_where(text: str) -> list[list[Condition]]:
    """``a=1|b=2&c=3`` → ``[[a=1], [b=2, c=3]]`` (AND binds tighter than OR)."""
    return [[parse_condition(cond) for cond in branch.split("&")] for branch in text.split("|")]


def _column_list(modifier: str, text: str) -> list[str]:
    names = text.split(",")
    for name in names:
        if not _IDENT.match(name):
            raise GrammarError(f"Invalid column name '{name}' in {modifier}")
    return names


def _limit(text: str) -> tuple[int, int]:
    parts = text.split(",")
    if len(parts) > 2 or not all(_DIGITS.match(p) for p in parts):
        raise GrammarError(f"Invalid limit '{text}': expected <count> or <offset>,<count>")
    if len(parts) == 1:
        return 0, int(parts[0])
    return int(parts[0]), int(parts[1])


def parse_path(raw_path: str) -> Query:
    """Parse the part of the request path after ``/rest/`` (percent-encoded, as on the wire)."""
    decoded = unquote(raw_path)
    segments = decoded.split("/")
    obj = segments[0]
    if not obj:
        raise GrammarError("No object in path")
    if any(s == "" for s in segments[1:]):
        raise GrammarError("Empty path segment")
    query = Query(object=obj)
    rest = segments[1:]
    if rest and _DIGITS.match(rest[0]):
        query.id = rest[0]
        rest = rest[1:]
    if len(rest) % 2:
        name = rest[-1]
        if name in MODIFIERS:
            raise GrammarError(f"Modifier '{name}' has no value")
        raise GrammarError(f"Unknown modifier '{name}'")
    seen: set[str] = set()
    for i in range(0, len(rest), 2):
        name, value = rest[i], rest[i + 1]
        if name not in MODIFIERS:
            raise GrammarError(f"Unknown modifier '{name}'")
        if name in seen:
            raise GrammarError(f"Modifier '{name}' given more than once")
        seen.add(name)
        query.modifiers.append(name)
        if name == "where":
            query.where = parse_where(value)
        elif name == "columns":
            query.columns = _column_list(name, value)
        elif name == "column":
            if not _IDENT.match(value):
                raise GrammarError(f"Invalid column name '{value}' in column")
            query.column = value
        elif name in ("order_by", "order_by_desc"):
            if "order_by" in seen and "order_by_desc" in seen:
                raise GrammarError("order_by and order_by_desc cannot be combined")
            query.order_by = _column_list(name, value)
            query.descending = name == "order_by_desc"
        else:  # limit
            query.offset, query.count = _limit(value)
    if query.columns is not None and query.column is not None:
        raise GrammarError("columns and column cannot be combined")
    return query
