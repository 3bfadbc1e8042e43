"""Compare what a pipeline loaded with what the emulator holds, table by table.

The expected values are derived from the emulator's canonical export with conversions written
here independently of the source's own (Unix seconds -> UTC timestamps, date strings -> UTC
timestamps with zero dates as null, "yes"/"no" -> booleans, undeclared keys -> the JSON
``attributes`` column)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import duckdb

from sources.common.arrow import TableSpec

UTC = dt.UTC


def _expected(kind: str, v: Any) -> Any:
    if v is None:
        return None
    if v == "":
        # an empty string is a value of a text column; elsewhere it means "no value"
        return "" if kind == "text" else None
    if kind == "unix_s":
        return None if int(v) == 0 else dt.datetime.fromtimestamp(int(v), UTC)
    if kind == "datetime":
        if str(v).startswith("0000-00-00"):
            return None
        return dt.datetime.strptime(str(v), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    if kind == "int":
        return int(v)
    if kind == "float":
        return round(float(v), 6)
    if kind == "bool":
        return {"yes": True, "no": False, "1": True, "0": False, "true": True, "false": False}[str(v).lower()]
    if kind == "json":
        return json.dumps(v, sort_keys=True)
    return str(v)


def _loaded(kind: str, v: Any) -> Any:
    if v is None:
        return None
    if kind in ("unix_s", "datetime"):
        return v.astimezone(UTC)
    if kind == "float":
        return round(float(v), 6)
    if kind == "json":
        return json.dumps(json.loads(v), sort_keys=True)
    return v


def expected_rows(spec: TableSpec, rows: list[dict[str, Any]]) -> dict[tuple, tuple]:
    out = {}
    for r in rows:
        values = tuple(_expected(k, r.get(c)) for c, k in spec.columns.items())
        extras = {k: v for k, v in r.items() if k not in spec.columns}
        values += (json.dumps(extras, sort_keys=True) if extras else None,)
        out[tuple(_expected(spec.columns[c], r[c]) for c in spec.primary_key)] = values
    return out


def loaded_rows(con: duckdb.DuckDBPyConnection, dataset: str, spec: TableSpec) -> tuple[dict[tuple, tuple], int]:
    cols = list(spec.columns) + ["attributes"]
    rows = con.execute(f'select {", ".join(chr(34) + c + chr(34) for c in cols)} from "{dataset}"."{spec.name}"').fetchall()
    kinds = list(spec.columns.values()) + ["json"]
    out = {}
    idx = [cols.index(c) for c in spec.primary_key]
    for r in rows:
        values = tuple(_loaded(k, v) for k, v in zip(kinds, r, strict=True))
        out[tuple(values[i] for i in idx)] = values
    return out, len(rows)


def checksum(rows: dict[tuple, tuple]) -> str:
    h = hashlib.sha256()
    for k in sorted(rows, key=repr):
        h.update(repr((k, rows[k])).encode())
    return h.hexdigest()


def assert_table_equals(con: duckdb.DuckDBPyConnection, dataset: str, spec: TableSpec, truth: list[dict]) -> None:
    expected = expected_rows(spec, truth)
    loaded, count = loaded_rows(con, dataset, spec)
    assert count == len(loaded), f"{spec.name}: duplicate primary keys ({count} rows, {len(loaded)} keys)"
    assert set(loaded) == set(expected), (
        f"{spec.name}: {len(set(expected) - set(loaded))} missing, {len(set(loaded) - set(expected))} unexpected"
    )
    if checksum(loaded) != checksum(expected):
        diff = [k for k in expected if expected[k] != loaded[k]][:3]
        detail = "; ".join(f"{k}: expected {expected[k]} loaded {loaded[k]}" for k in diff)
        raise AssertionError(f"{spec.name}: values differ: {detail}")
