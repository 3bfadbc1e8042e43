"""Compare what a pipeline loaded with what the PostHog emulator holds, table by table.

Expected values come from the emulator's canonical export, converted here independently of the
source: ISO 8601 timestamps with any offset -> UTC datetimes (``datetime.fromisoformat``, not
Arrow), ``YYYY-MM-DD`` -> dates, ids -> text where the table declares text, open-ended values ->
sorted JSON, and keys a table does not declare -> the JSON ``attributes`` column."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from typing import Any

import duckdb

from sources.common.arrow import TableSpec
from sources.posthog import settings as S
from sources.posthog.sessions import SESSIONS

UTC = dt.UTC
PROPERTY_TYPES = {1: "event", 2: "person", 3: "group", 4: "session"}


def _expected(kind: str, v: Any) -> Any:
    if v is None:
        return None
    if kind == "iso":
        return dt.datetime.fromisoformat(str(v).replace("Z", "+00:00")).astimezone(UTC)
    if kind == "date":
        return dt.date.fromisoformat(str(v))
    if kind == "int":
        return int(v)
    if kind == "bool":
        return bool(v)
    if kind == "json":
        return json.dumps(v, sort_keys=True)
    if kind == "float":
        return round(float(v), 6)
    return str(v)


def _loaded(kind: str, v: Any) -> Any:
    if v is None:
        return None
    if kind == "iso":
        return v.astimezone(UTC)
    if kind == "json":
        return json.dumps(json.loads(v), sort_keys=True)
    if kind == "float":
        return round(float(v), 6)
    return v


def expected_rows(spec: TableSpec, rows: list[dict[str, Any]]) -> dict[tuple, tuple]:
    out = {}
    for r in rows:
        values = tuple(_expected(k, r.get(c)) for c, k in spec.columns.items())
        if spec.extras_column:
            extras = {k: v for k, v in r.items() if k not in spec.columns}
            values += (json.dumps(extras, sort_keys=True) if extras else None,)
        key = tuple(_expected(spec.columns[c], r[c]) for c in spec.primary_key)
        assert key not in out, f"{spec.name}: the emulator exported {key} twice"
        out[key] = values
    return out


def loaded_rows(con: duckdb.DuckDBPyConnection, dataset: str, spec: TableSpec) -> tuple[dict[tuple, tuple], int]:
    cols = list(spec.columns) + ([spec.extras_column] if spec.extras_column else [])
    kinds = list(spec.columns.values()) + (["json"] if spec.extras_column else [])
    quoted = ", ".join(f'"{c}"' for c in cols)
    rows = con.execute(f'select {quoted} from "{dataset}"."{spec.name}"').fetchall()
    idx = [cols.index(c) for c in spec.primary_key]
    out = {}
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
    missing, unexpected = set(expected) - set(loaded), set(loaded) - set(expected)
    assert not missing and not unexpected, (
        f"{spec.name}: {len(missing)} missing (e.g. {sorted(missing, key=repr)[:2]}), "
        f"{len(unexpected)} unexpected (e.g. {sorted(unexpected, key=repr)[:2]})"
    )
    if checksum(loaded) != checksum(expected):
        diff = [k for k in expected if expected[k] != loaded[k]][:3]
        detail = "; ".join(f"{k}: expected {expected[k]} loaded {loaded[k]}" for k in diff)
        raise AssertionError(f"{spec.name}: values differ: {detail}")


# -- the emulator's export, shaped as each table should hold it --------------------------------


def _projects(ctl: Any) -> list[dict]:
    return [{k: v for k, v in p.items() if k not in S.DROPPED_PROJECT_FIELDS} for p in ctl.export("projects")]


def _property_definitions(ctl: Any) -> list[dict]:
    return [{**d, "definition_type": PROPERTY_TYPES[d["type"]]} for d in ctl.export("property_definitions")]


def _groups(ctl: Any) -> list[dict]:
    names = {(t["project_id"], t["group_type_index"]): t["group_type"] for t in ctl.export("group_types")}
    return [{**g, "group_type": names[(g["project_id"], g["group_type_index"])]} for g in ctl.export("groups")]


TRUTH: dict[str, tuple[TableSpec, Callable[[Any], list[dict]]]] = {
    "events": (S.EVENTS, lambda ctl: ctl.export("events")),
    "event_summaries": (S.EVENT_SUMMARIES, lambda ctl: ctl.export("event_summaries")),
    "persons": (S.PERSONS, lambda ctl: ctl.export("persons")),
    "projects": (S.PROJECTS, _projects),
    "cohorts": (S.COHORTS, lambda ctl: ctl.export("cohorts")),
    "feature_flags": (S.FEATURE_FLAGS, lambda ctl: ctl.export("feature_flags")),
    "annotations": (S.ANNOTATIONS, lambda ctl: ctl.export("annotations")),
    "insights": (S.INSIGHTS, lambda ctl: ctl.export("insights")),
    "event_definitions": (S.EVENT_DEFINITIONS, lambda ctl: ctl.export("event_definitions")),
    "property_definitions": (S.PROPERTY_DEFINITIONS, _property_definitions),
    "groups": (S.GROUPS, _groups),
    "sessions": (SESSIONS, lambda ctl: ctl.export("sessions")),
}


def assert_matches_emulator(con: duckdb.DuckDBPyConnection, dataset: str, ctl: Any, *tables: str) -> None:
    for name in tables or TRUTH:
        spec, truth = TRUTH[name]
        assert_table_equals(con, dataset, spec, truth(ctl))
