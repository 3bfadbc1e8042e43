"""Compare what a pipeline loaded with what the Lytics emulator holds, table by table.

Expected values come from the emulator's canonical export, converted here independently of the
source: RFC 3339 strings (nanoseconds, ``Z``) -> UTC timestamps truncated to microseconds, epoch
milliseconds -> UTC timestamps, numbers sent as strings -> numbers, undeclared keys -> the JSON
``attributes`` column with values typed as the account schema says."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import duckdb

UTC = dt.UTC
_RFC = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def rfc3339(text: str) -> dt.datetime:
    m = _RFC.match(text)
    assert m, f"not RFC 3339: {text!r}"
    y, mo, d, h, mi, s, frac, tz = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    out = dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tzinfo=UTC)
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        out -= sign * dt.timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
    return out


def schema_kinds(schema_rows: list[dict[str, Any]], table: str = "user") -> dict[str, str]:
    return {r["as"]: r["type"] for r in schema_rows if r["table"] == table}


def typed_attribute(schema_type: str | None, v: Any) -> Any:
    if schema_type == "int" and isinstance(v, str):
        return int(v)
    if schema_type == "number" and isinstance(v, str):
        return float(v)
    if schema_type == "map[string]int" and isinstance(v, dict):
        return {k: int(x) for k, x in v.items()}
    return v


def expected(kind: str, v: Any) -> Any:
    if v is None or (v == "" and kind != "text"):
        return None
    if kind == "iso":
        return rfc3339(v)
    if kind == "unix_ms":
        return dt.datetime.fromtimestamp(int(v) / 1000, UTC)
    if kind == "int":
        return int(v)
    if kind == "float":
        return round(float(v), 6)
    if kind == "bool":
        return v if isinstance(v, bool) else str(v).lower() == "true"
    if kind == "json":
        return json.dumps(v, sort_keys=True)
    return str(v)


def loaded(kind: str, v: Any) -> Any:
    if v is None:
        return None
    if kind in ("iso", "unix_ms"):
        return v.astimezone(UTC)
    if kind == "float":
        return round(float(v), 6)
    if kind == "json":
        return json.dumps(json.loads(v), sort_keys=True)
    return v


def expected_rows(columns: dict[str, str], pk: tuple[str, ...], rows: list[dict[str, Any]],
                  types: dict[str, str] | None = None) -> dict[tuple, tuple]:
    out = {}
    for r in rows:
        values = tuple(expected(k, r.get(c)) for c, k in columns.items())
        extras = {k: typed_attribute((types or {}).get(k), v) for k, v in r.items() if k not in columns}
        values += (json.dumps(extras, sort_keys=True) if extras else None,)
        out[tuple(str(r[c]) for c in pk)] = values
    return out


def loaded_rows(con: duckdb.DuckDBPyConnection, dataset: str, table: str, columns: dict[str, str],
                pk: tuple[str, ...], where: str = "") -> tuple[dict[tuple, tuple], int]:
    cols = list(columns) + ["attributes"]
    sql = f'select {", ".join(chr(34) + c + chr(34) for c in cols)} from "{dataset}"."{table}" {where}'
    rows = con.execute(sql).fetchall()
    kinds = list(columns.values()) + ["json"]
    idx = [cols.index(c) for c in pk]
    out = {}
    for r in rows:
        values = tuple(loaded(k, v) for k, v in zip(kinds, r, strict=True))
        out[tuple(str(r[i]) for i in idx)] = values
    return out, len(rows)


def assert_table_equals(con: duckdb.DuckDBPyConnection, dataset: str, table: str, columns: dict[str, str],
                        pk: tuple[str, ...], truth: list[dict[str, Any]], types: dict[str, str] | None = None,
                        where: str = "") -> None:
    want = expected_rows(columns, pk, truth, types)
    got, count = loaded_rows(con, dataset, table, columns, pk, where)
    assert count == len(got), f"{table}: duplicate primary keys ({count} rows, {len(got)} keys)"
    missing, unexpected = set(want) - set(got), set(got) - set(want)
    assert not missing and not unexpected, f"{table}: {len(missing)} missing, {len(unexpected)} unexpected"
    diff = [k for k in want if want[k] != got[k]]
    if diff:
        k = diff[0]
        bad = [(c, w, g) for c, w, g in zip([*columns, "attributes"], want[k], got[k], strict=True) if w != g]
        raise AssertionError(f"{table}: {len(diff)} rows differ; {k}: {bad[:3]}")
