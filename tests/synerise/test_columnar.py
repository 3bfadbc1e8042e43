"""The column-wise reading of Synerise pages gives exactly what the row mappers give, or refuses
the page (and the row mappers read it): never a different value."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulators.synerise.data import Workspace
from sources.common.cursor import LookbackCursor, fingerprint
from sources.synerise import (
    S,
    admitted_events,
    columnar,
    event_row,
    fitted_table,
    item_row,
    profile_row,
    profiles_table,
)


def slow_events(rows: list[dict[str, Any]]) -> pa.Table:
    return fitted_table(S.EVENTS, [event_row(e) for e in rows])


def slow_profiles(rows: list[dict[str, Any]]) -> pa.Table:
    return profiles_table([profile_row(p) for p in rows])


def slow_items(rows: list[dict[str, Any]]) -> pa.Table:
    return fitted_table(S.CATALOG_ITEMS, [item_row(i) for i in rows])


def same(fast: pa.Table, slow: pa.Table, json_columns: tuple[str, ...] = ()) -> None:
    assert fast.schema == slow.schema
    for name in fast.column_names:
        a, b = fast.column(name).to_pylist(), slow.column(name).to_pylist()
        if name in json_columns:
            a = [None if v is None else json.loads(v) for v in a]
            b = [None if v is None else json.loads(v) for v in b]
        assert a == b, name


@pytest.fixture(scope="module")
def ws() -> Workspace:
    return Workspace(3, 3000)


def test_emulated_pages_read_column_wise_equal_the_row_mappers(ws):
    profiles = [ws.profile(c) for c in list(ws.live_ids())[:700]]
    _, events = ws.window(0, 1 << 62, 1000)
    events = [ws.render_event(e) for e in events]
    items = [ws.item(ws.catalogs[0]["id"], i) for i in range(600)]
    for rows, fast, slow, jsons in ((profiles, columnar.profiles_table, slow_profiles, ()),
                                    (events, lambda r: columnar.events_table(S.EVENTS, r), slow_events, ()),
                                    (items, columnar.items_table, slow_items, ("value",))):
        table = fast(rows)
        assert table is not None, "a clean emulated page must take the column-wise path"
        same(table, slow(rows), jsons)


def _event(ws: Workspace, **change: Any) -> dict[str, Any]:
    _, events = ws.window(0, 1 << 62, 2)
    return {**ws.render_event(events[0]), **change}


@pytest.mark.parametrize("change, refused", [
    ({"time": 1_700_000_000_123.5}, True),       # a fraction in an int column lands as text
    ({"time": "1700000000123"}, True),           # a number sent as text
    ({"time": 1_700_000_000_000.0}, False),      # a whole float reads as the integer
    ({"time": 0}, False),                        # the zero instant is null, the cursor still sees 0
    ({"time": 2**62}, True),                     # beyond int64 microseconds: as text, never wrapped
    ({"unique": True}, True),
    ({"unique": "7"}, True),
    ({"action": None}, False),
    ({"client": {"id": 5000001.5, "uuid": "u"}}, True),
    ({"label": 12}, True),
    ({"params": {"ip": "10.0.0.1"}}, True),      # a key the contract does not list goes to attributes
    ({"modifiedBy": {"id": 3}}, True),
])
def test_odd_events_are_read_identically_or_refused(ws, change, refused):
    rows = [_event(ws), _event(ws, eventUUID="x-2", **change)]
    table = columnar.events_table(S.EVENTS, rows)
    assert (table is None) == refused
    if table is not None:
        same(table, slow_events(rows))


def _profile(ws: Workspace, k: int = 0, **change: Any) -> dict[str, Any]:
    return {**ws.profile(list(ws.live_ids())[k]), **change}


@pytest.mark.parametrize("change, refused", [
    ({"lastActivityDate": "2026-03-01T10:00:00.123456Z"}, False),
    ({"lastActivityDate": "2026-03-01T10:00:00.250+02:00"}, False),
    ({"lastActivityDate": "2026-03-01"}, True),   # two forms in one column
    ({"lastActivityDate": "yesterday"}, True),
    ({"lastActivityDate": 1_772_000_000_000}, True),
    ({"lastActivityDate": ""}, True),
    ({"birthDate": "1970-01-01"}, False),         # the zero instant is null
    ({"birthDate": None}, False),
    ({"clientId": "5000001"}, True),
    ({"anonymous": "true"}, True),
    ({"attributes": {}}, False),
    ({"attributes": None}, False),
    ({"attributes": ["a"]}, True),
    ({"newField": 1}, True),
    ({"tags": None, "agreements": {"b": 1, "a": [2, {"z": 1, "y": 2}]}}, False),
])
def test_odd_profiles_are_read_identically_or_refused(ws, change, refused):
    rows = [_profile(ws, 0), _profile(ws, 1, **change)]
    table = columnar.profiles_table(rows)
    assert (table is None) == refused
    if table is not None:
        same(table, slow_profiles(rows))


@pytest.mark.parametrize("change, refused", [
    ({"value": '{"b": 1,  "a": [1, 2]}'}, False),   # loaded as sent: the same JSON
    ({"value": "not json"}, True),
    ({"value": {"a": 1}}, True),
    ({"value": '"text"'}, False),
    ({"creationDate": "2026-03-01T10:00:00Z"}, False),
    ({"creationDate": "2026-03-01 10:00:00"}, True),
    ({"id": 3.5}, True),
    ({"bag": None}, True),
])
def test_odd_items_are_read_identically_or_refused(ws, change, refused):
    cid = ws.catalogs[0]["id"]
    rows = [ws.item(cid, 0), {**ws.item(cid, 1), **change}]
    table = columnar.items_table(rows)
    assert (table is None) == refused
    if table is not None:
        same(table, slow_items(rows), ("value",))


def _admitted_row_by_row(page: list[dict[str, Any]], cur: LookbackCursor) -> tuple[pa.Table | None, int]:
    """The reference: every row through ``cur.admit`` with its mapped row, then the kept rows."""
    keep = [row for row in map(event_row, page)
            if cur.admit(str(row["event_uuid"]), row["time"] if type(row["time"]) is int else None, row)]
    return (slow_events(keep) if keep else None), len(keep)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offsets=st.lists(st.one_of(st.integers(-3_000, 3_000), st.sampled_from([None, "zero"])), min_size=1,
                        max_size=40),
       seen=st.lists(st.tuples(st.integers(0, 39), st.booleans()), max_size=20),
       floor=st.sampled_from([1_700_000_000_000, 0]))
def test_events_admitted_column_wise_equal_admitted_row_by_row(ws, offsets, seen, floor):
    """Rows below the cursor's floor are admitted column-wise (counted, no fingerprint), the
    rest one by one: the same table, the same count and the same state as every row through
    ``admit``, with earlier fingerprints (unchanged re-reads dropped, changed ones loaded)."""
    _, events = ws.window(0, 1 << 62, len(offsets))
    page = []
    for i, (ev, off) in enumerate(zip(events, offsets, strict=False)):
        e = {**ws.render_event(ev), "eventUUID": f"e-{i}"}
        if off is None:
            e.pop("time")
        else:
            e["time"] = 0 if off == "zero" else floor + off
        page.append(e)
    prior: dict[str, str] = {}
    for i, same_content in seen:
        if i < len(page) and "time" in page[i]:
            row = event_row(page[i])
            prior[f"e-{i}"] = fingerprint(row) if same_content else "stale"
    cursors = []
    for _ in range(2):
        cur = LookbackCursor({"cursor": floor + 600_000, "seen": dict(prior)}, lambda v: v - 600_000)
        cur.set_floor(floor + 600_000)
        cursors.append(cur)
    fast, fast_kept = admitted_events(S.EVENTS, page, cursors[0], None)
    slow, slow_kept = _admitted_row_by_row(page, cursors[1])
    assert fast_kept == slow_kept
    assert (fast is None) == (slow is None)
    if fast is not None:
        same(fast, slow)
    states = []
    for cur in cursors:
        cur.commit(floor + 600_000)
        states.append({k: v for k, v in cur._state.items() if k != "last_run"})
        assert (cur.rows_read, cur.rows_admitted) == (len(page), slow_kept)
    assert states[0] == states[1]
