"""The PostHog emulator's rendered-row pages (``emulators/posthog/rows.py``): the same bytes as the
general executor, pages that change as soon as the data does, and a bounded memory."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from emulators.common.backend import MutationError
from emulators.posthog import create_backend
from emulators.posthog import hogql as H
from emulators.posthog.rows import RenderedRows, json_default

COLUMNS = ("uuid, event, distinct_id, timestamp, created_at, person_id, `$session_id` AS session_id, "
           "elements_chain, properties")
WINDOW_SQL = (f"SELECT {COLUMNS} FROM events WHERE timestamp >= toDateTime({{start}}) AND timestamp < "
              "toDateTime({end}){keyset} ORDER BY timestamp, uuid LIMIT {limit}")
KEYSET = (" AND (timestamp > toDateTime({last_ts}) OR (timestamp = toDateTime({last_ts}) AND "
          "uuid > toUUID({last_uuid})))")
DAY_US = 86_400 * 1_000_000


def iso(us: int) -> str:
    return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ch_key(u: str) -> tuple[int, int]:
    n = uuid.UUID(u).int
    return (n & (2**64 - 1), n >> 64)


def walk(tables: dict[str, H.Table], ctx: H.Context, start: int, end: int, limit: int) -> list[bytes]:
    """Every page of a keyset walk over ``[start, end)``, each as the JSON the response carries."""
    values: dict[str, Any] = {"start": iso(start), "end": iso(end)}
    pages: list[bytes] = []
    keyset = ""
    for _ in range(10_000):
        sql = WINDOW_SQL.replace("{keyset}", keyset).replace("{limit}", str(limit))
        result = H.execute(sql, dict(values), tables, ctx)
        pages.append(orjson.dumps(result.results, default=json_default))
        if len(result.results) < limit:
            return pages
        last = result.results[-1]
        values["last_ts"], values["last_uuid"], keyset = last[3], last[0], KEYSET
    raise AssertionError("the walk did not end")


def test_rendered_pages_are_the_bytes_of_the_general_executor():
    backend = create_backend(seed=3, scale=700)
    first, second = list(backend.projects)
    backend.mutate({"op": "add_events", "count": 40, "late_seconds": 4 * 86400})
    backend.mutate({"op": "add_events", "count": 30, "late_seconds": 9 * 86400, "same_timestamp": True})
    backend.mutate({"op": "add_events", "count": 5, "late_seconds": 3 * 86400, "project_id": second})
    tie_ts = next(e["timestamp"] for e in backend.export("events")
                  if e["project_id"] == first and e["event"] == "late_event")
    backend.mutate({"op": "add_events", "count": 4, "at": tie_ts, "same_timestamp": True})
    walked = 0
    for pid in (first, second):
        project = backend.projects[pid]
        fast = backend._tables(project)
        slow = {name: dataclasses.replace(t, pages=None) for name, t in fast.items()}
        ctx = H.Context(ZoneInfo(project.timezone), backend.now())
        start = project.events.t0 - project.events.t0 % DAY_US
        for limit in (7, 450):
            for day in range(0, 31, 3 if limit == 7 else 1):
                a, b = start + day * DAY_US, start + (day + 1) * DAY_US
                got = walk(fast, ctx, a, b, limit)
                assert got == walk(slow, ctx, a, b, limit), (pid, limit, day)
                walked += sum(len(orjson.loads(p)) for p in got) if limit == 450 else 0
        everything = H.execute("SELECT uuid, timestamp FROM events ORDER BY timestamp, uuid LIMIT 60000", {}, fast, ctx)
        assert isinstance(everything.results, RenderedRows), "plain columns in key order come from rendered rows"
        assert everything.results == H.execute("SELECT uuid, timestamp FROM events ORDER BY timestamp, uuid "
                                               "LIMIT 60000", {}, slow, ctx).results
        assert len(everything.results) == len(project.events)
    assert walked == backend.state()["events"], "the day windows cover every event once"
    stats = backend.row_cache.stats()
    assert stats["hits"] > 0 and stats["blocks"] > 0


def test_page_constants_follow_each_query_values():
    backend = create_backend(seed=3, scale=300, projects=1)
    project = next(iter(backend.projects.values()))
    tables, ctx = backend._tables(project), H.Context(ZoneInfo(project.timezone), backend.now())
    sql = "SELECT uuid, timestamp FROM events WHERE timestamp >= toDateTime({t}) ORDER BY timestamp, uuid LIMIT 3"
    rows = H.execute("SELECT uuid, timestamp FROM events ORDER BY timestamp, uuid LIMIT 100", {}, tables, ctx).results
    for k in (5, 50, 90):  # one parsed text, new values each time
        assert list(H.execute(sql, {"t": rows[k][1]}, tables, ctx).results) == [list(r) for r in rows[k : k + 3]]
    with pytest.raises(H.HogQLError, match="Cannot parse DateTime from string 'soon'"):
        H.execute(sql, {"t": "soon"}, tables, ctx)
    with pytest.raises(H.HogQLError, match="Cannot parse UUID from String 'x'"):
        H.execute(sql.replace("toDateTime({t})", "toDateTime({t}) AND uuid > toUUID({u})"),
                  {"t": rows[0][1], "u": "x"}, tables, ctx)


@pytest.fixture
def emu(start_emulator: Any) -> Any:
    return start_emulator("posthog", scale=600, seed=5)


def page(api: Any, pid: int, values: dict[str, Any]) -> list[list[Any]]:
    body = {"query": {"kind": "HogQLQuery", "values": values,
                      "query": WINDOW_SQL.replace("{keyset}", "").replace("{limit}", "60")},
            "refresh": "force_blocking"}
    r = api.post(f"/api/projects/{pid}/query/", json=body)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def expected(ctl: Any, pid: int, tz: str, start: str, end: str, n: int) -> list[str]:
    """The first ``n`` uuids of ``[start, end)`` from the emulator's export, in ClickHouse order."""
    lo, hi = dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end)
    rows = [(dt.datetime.fromisoformat(e["timestamp"]), ch_key(e["uuid"]), e["uuid"])
            for e in ctl.export("events") if e["project_id"] == pid]
    return [u for t, _, u in sorted(r for r in rows if lo <= r[0] < hi)][:n]


def test_a_kept_page_changes_when_events_are_added(emu, ctl, api):
    pid = next(iter(emu.backend.projects))
    project = emu.backend.projects[pid]
    start = project.events.t0 - project.events.t0 % DAY_US + 6 * DAY_US
    values = {"start": iso(start), "end": iso(start + DAY_US)}
    before = page(api, pid, values)
    hits = emu.backend.row_cache.stats()["hits"]
    assert page(api, pid, values) == before
    assert emu.backend.row_cache.stats()["hits"] > hits, "the second read is served from kept rows"
    # late events inside the page: three sharing the timestamp of its 10th row, two between rows
    added = ctl.mutate({"op": "add_events", "count": 3, "at": before[9][3], "same_timestamp": True})["uuids"]
    between = dt.datetime.fromisoformat(before[20][3]) + dt.timedelta(microseconds=1)
    added += ctl.mutate({"op": "add_events", "count": 2, "at": between.isoformat(), "same_timestamp": True})["uuids"]
    after = page(api, pid, values)
    assert after != before and set(added) <= {r[0] for r in after}
    assert [r[0] for r in after] == expected(ctl, pid, project.timezone, values["start"].replace("Z", "+00:00"),
                                             values["end"].replace("Z", "+00:00"), 60)
    kept = [r for r in after if r[0] not in added]
    assert kept == before[: len(kept)], "the rows already there are unchanged and in place"


def test_kept_rows_stay_within_their_budget_and_can_be_switched_off(emu, ctl, api):
    pid = next(iter(emu.backend.projects))
    project = emu.backend.projects[pid]
    start = project.events.t0 - project.events.t0 % DAY_US
    windows = [{"start": iso(start + d * DAY_US), "end": iso(start + (d + 1) * DAY_US)} for d in range(0, 30, 3)]
    reference = [page(api, pid, w) for w in windows]
    assert emu.backend.row_cache.stats()["bytes"] > 2**20, "every block read is kept"
    ctl.configure(render_cache_mb=1)
    assert emu.backend.row_cache.stats()["bytes"] <= 2**20
    assert [page(api, pid, w) for w in windows] == reference
    assert 0 < emu.backend.row_cache.stats()["bytes"] <= 2**20
    ctl.configure(render_cache_mb=0)
    assert [page(api, pid, w) for w in windows] == reference
    assert emu.backend.row_cache.stats()["bytes"] == 0
    with pytest.raises(Exception, match="render_cache_mb"):
        ctl.configure(render_cache_mb=-1)
    with pytest.raises(MutationError, match="render_cache_mb"):
        emu.backend.configure({"render_cache_mb": "lots"})
