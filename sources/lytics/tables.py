"""Typed Arrow pages for Lytics tables: the shared :class:`~sources.common.arrow.TableSpec` plus
one column kind of its own, ``iso``: RFC 3339 strings with up to nanosecond fractions and a ``Z``
or an offset (``2026-01-05T10:00:00.123456789Z``), as Lytics (a Go service) renders times. They
are parsed column-wise by Arrow and load as UTC timestamps truncated to microseconds."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from sources.common.arrow import TIMESTAMP, TableSpec
from sources.common.errors import MalformedResponse

_NS_TIMESTAMP = pa.timestamp("ns", tz="UTC")


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


@dataclass(frozen=True)
class Table:
    """Declared columns (``TableSpec`` kinds plus ``iso``), primary key and extras column."""

    name: str
    columns: dict[str, str]
    primary_key: tuple[str, ...] = ()
    extras_column: str | None = "attributes"
    spec: TableSpec = field(init=False, repr=False, compare=False)
    iso: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        base = {c: ("text" if k == "iso" else k) for c, k in self.columns.items()}
        object.__setattr__(self, "spec", TableSpec(self.name, base, self.primary_key, self.extras_column))
        object.__setattr__(self, "iso", tuple(c for c, k in self.columns.items() if k == "iso"))

    def with_columns(self, extra: dict[str, str]) -> Table:
        return Table(self.name, {**self.columns, **extra}, self.primary_key, self.extras_column)

    def dlt_columns(self) -> dict[str, dict[str, Any]]:
        hints = self.spec.dlt_columns()
        for c in self.iso:
            hints[c] = {"data_type": "timestamp", "timezone": True, "nullable": c not in self.primary_key}
        return hints

    def to_arrow(self, rows: Sequence[dict[str, Any]]) -> pa.Table:
        table = self.spec.to_arrow(rows)
        for c in self.iso:
            i = table.schema.get_field_index(c)
            parsed = parse_iso_column(table.column(i), f"{self.name}.{c}")
            table = table.set_column(i, pa.field(c, TIMESTAMP, nullable=c not in self.primary_key), parsed)
        return table
