"""The PostHog emulator's HogQL ``sessions`` table, over HTTPS on loopback: one row per
``$session_id`` aggregated from the events (checked against an aggregation of the events export
written here), served by the events' query engine with the same limits (LIMIT clamp, OFFSET
refusal, ``hasMore``, keyset on the sort key, ``count()``), and sessions that grow, start earlier
or would break the SDK's 30-minute and 24-hour rules through the control plane."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from emulators.posthog.hogql import OFFSET_MESSAGE

SCALE = 300


@pytest.fixture
def emu(start_emulator: Any) -> Any:
    return start_emulator("posthog", scale=SCALE, seed=5)


@pytest.fixture
def pid(emu: Any) -> int:
    return min(emu.backend.projects)


def hogql(api: Any, pid: int, sql: str, values: dict | None = None) -> httpx.Response:
    return api.post(f"/api/projects/{pid}/query/", json={
        "query": {"kind": "HogQLQuery", "query": sql, "values": values or {}}, "refresh": "force_blocking"})


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def ch_key(u: str) -> tuple[int, int]:
    n = uuid.UUID(u).int
    return (n & (2**64 - 1), n >> 64)


def sessions_from_events(events: list[dict[str, Any]]) -> dict[tuple[int, str], dict[str, Any]]:
    """The sessions table computed from the events export, independently of the emulator."""
    by: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for e in events:
        by.setdefault((e["project_id"], e["session_id"]), []).append(e)
    out = {}
    for key, evs in by.items():
        evs.sort(key=lambda e: (ts(e["timestamp"]), ch_key(e["uuid"])))
        first, last = evs[0], evs[-1]
        urls = [e["properties"].get("$current_url") for e in evs if e["properties"].get("$current_url")]
        start, end = ts(first["timestamp"]), ts(last["timestamp"])
        duration = int(end.timestamp()) - int(start.timestamp())

        kinds = Counter()
        for name, _uuid in {(e["event"], e["uuid"]) for e in evs}:
            kinds[name] += 1
        pageviews, autocaptures = kinds["$pageview"], kinds["$autocapture"]
        out[key] = {
            "distinct_id": last["distinct_id"],
            "start": start, "end": end, "duration": duration,
            "entry_url": urls[0] if urls else None, "end_url": urls[-1] if urls else None,
            "entry_path": urlsplit(urls[0]).path if urls else None,
            "pageviews": pageviews, "autocaptures": autocaptures, "screens": kinds["$screen"],
            "bounce": None if pageviews == 0 else not (pageviews > 1 or autocaptures > 0 or duration >= 10),
            "inserted": max(ts(e["created_at"]) for e in evs),
        }
    return out


def exported(ctl: Any) -> dict[tuple[int, str], dict[str, Any]]:
    rows = ctl.export("sessions")
    out = {(s["project_id"], s["session_id"]): s for s in rows}
    assert len(out) == len(rows), "one row per session"
    return out


def assert_aggregates(ctl: Any) -> None:
    truth = sessions_from_events(ctl.export("events"))
    table = exported(ctl)
    assert set(table) == set(truth)
    for key, t in truth.items():
        s = table[key]
        got = {
            "distinct_id": s["distinct_id"], "start": ts(s["start_timestamp"]), "end": ts(s["end_timestamp"]),
            "duration": s["session_duration"], "entry_url": s["entry_current_url"], "end_url": s["end_current_url"],
            "entry_path": s["entry_pathname"], "pageviews": s["pageview_count"], "autocaptures": s["autocapture_count"],
            "screens": s["screen_count"], "bounce": s["is_bounce"], "inserted": ts(s["max_inserted_at"]),
        }
        assert got == t, (key, got, t)


def walk(api: Any, pid: int, page: int, start: str = "2000-01-01T00:00:00Z") -> list[list[Any]]:
    """Every session with a start at or after ``start``, by keyset pages of ``page``."""
    sql = ("SELECT session_id, `$start_timestamp` AS start_timestamp, `$end_timestamp` FROM sessions "
           "WHERE `$start_timestamp` >= toDateTime({start}){keyset} ORDER BY `$start_timestamp`, session_id LIMIT {n}")
    keyset = (" AND (`$start_timestamp` > toDateTime({t}) OR (`$start_timestamp` = toDateTime({t}) "
              "AND session_id > {i}))")
    rows: list[list[Any]] = []
    values: dict[str, Any] = {"start": start}
    while True:
        r = hogql(api, pid, sql.replace("{keyset}", keyset if rows else "").replace("{n}", str(page)), values)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["hasMore"] is None, "hasMore only without a LIMIT"
        rows += body["results"]
        if len(body["results"]) < page:
            return rows
        values = {"start": start, "t": rows[-1][1], "i": rows[-1][0]}


def test_sessions_are_the_aggregates_of_the_events(ctl):
    assert_aggregates(ctl)
    starts = Counter((s["project_id"], s["start_timestamp"]) for s in ctl.export("sessions"))
    assert starts.most_common(1)[0][1] > 25, "many sessions share one start (the tied events)"


def test_keyset_walk_reads_each_session_once_in_key_order_with_the_same_limits(api, ctl, pid):
    rows = walk(api, pid, 25)
    truth = sorted((ts(s["start_timestamp"]), s["session_id"]) for s in ctl.export("sessions")
                   if s["project_id"] == pid)
    assert [(ts(r[1]), r[0]) for r in rows] == truth, "every session once, in ($start_timestamp, session_id) order"
    r = hogql(api, pid, "SELECT count() AS n FROM sessions")
    assert r.json()["results"] == [[len(truth)]]
    utc = [t.astimezone(dt.UTC) for t, _ in truth]
    day = utc[len(utc) // 2].date().isoformat()
    r = hogql(api, pid, "SELECT count() FROM sessions WHERE `$start_timestamp` >= toDateTime({a}) "
                        "AND `$start_timestamp` < toDateTime({b})", {"a": day + "T00:00:00Z", "b": day + "T12:00:00Z"})
    assert r.json()["results"][0][0] == sum(1 for t in utc if t.date().isoformat() == day and t.hour < 12) > 0
    # the events' limits: OFFSET refused, LIMIT clamped, default 100 with hasMore
    r = hogql(api, pid, "SELECT session_id FROM sessions ORDER BY `$start_timestamp`, session_id LIMIT 5 OFFSET 5")
    assert r.status_code == 400 and r.json()["detail"] == OFFSET_MESSAGE
    ctl.configure(query_max_rows=7)
    r = hogql(api, pid, "SELECT session_id FROM sessions ORDER BY `$start_timestamp`, session_id LIMIT 50")
    assert len(r.json()["results"]) == 7 and r.json()["limit"] == 7
    ctl.configure(query_max_rows=50_000)
    r = hogql(api, pid, "SELECT session_id FROM sessions ORDER BY `$start_timestamp`, session_id")
    assert len(r.json()["results"]) == 100 and r.json()["hasMore"] is True
    r = hogql(api, pid, "SELECT session_id, `$no_such_column` FROM sessions LIMIT 1")
    assert r.status_code == 400


def test_sessions_need_query_read(emu, pid):
    from emulators.posthog.backend import ALL_SCOPES, Key

    token = "phx_" + "ab12" * 10
    emu.backend.keys[token] = Key(token, frozenset(ALL_SCOPES) - {"query:read"}, None, "no-query")
    r = httpx.post(f"{emu.base_url}/api/projects/{pid}/query/", verify=emu.ca_file,
                   headers={"Authorization": f"Bearer {token}"},
                   json={"query": {"kind": "HogQLQuery", "query": "SELECT count() FROM sessions"}})
    assert r.status_code == 403
    assert r.json()["detail"] == "API key missing required scope 'query:read'"


def test_sessions_grow_start_earlier_and_end_as_the_sdk_rules_say(api, ctl, pid):
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    minute = dt.timedelta(minutes=1)

    def iso(t: dt.datetime) -> str:
        return t.isoformat()

    new = ctl.mutate({"op": "add_session", "project_id": pid, "count": 2, "at": iso(t0),
                      "utm_source": "google", "utm_medium": "cpc"})
    s0 = new["session"]
    assert new["timestamps"] == [iso(t0 - minute).replace("+00:00", ".000000+00:00"),
                                 iso(t0).replace("+00:00", ".000000+00:00")]
    assert s0["pageview_count"] == 2 and s0["session_duration"] == 60 and s0["channel_type"] == "Paid Search"
    assert s0["is_bounce"] is False
    grow = {"op": "grow_session", "project_id": pid, "session_id": new["session_id"], "count": 1}
    grown = ctl.mutate({**grow, "at": iso(t0 + 20 * minute), "event": "$autocapture"})["session"]
    assert grown["autocapture_count"] == 1 and grown["session_duration"] == 21 * 60
    assert grown["end_timestamp"] > s0["end_timestamp"] and grown["max_inserted_at"] >= s0["max_inserted_at"]
    earlier = ctl.mutate({**grow, "at": iso(t0 - 26 * minute)})["session"]
    assert ts(earlier["start_timestamp"]) == t0 - 26 * minute
    assert earlier["session_duration"] == 46 * 60
    assert earlier["channel_type"] == "Direct", "the entry fields are the new first event's"
    # HogQL sees the row at its new place in the sort order
    rows = [r for r in walk(api, pid, 40, earlier["start_timestamp"]) if r[0] == new["session_id"]]
    assert len(rows) == 1 and ts(rows[0][1]) == t0 - 26 * minute
    # over 30 minutes after its end or before its start, or past 24 hours: the SDK would have
    # started a new session
    for at in (t0 + 51 * minute, t0 - 57 * minute):
        with pytest.raises(Exception, match="new session"):
            ctl.mutate({**grow, "at": iso(at)})
    ctl.mutate({**grow, "at": iso(t0 + 50 * minute)})  # 30 minutes after the end: still this session
    with pytest.raises(Exception, match="24 hours"):
        ctl.mutate({"op": "add_session", "project_id": pid, "count": 50, "spacing_seconds": 1800})
    with pytest.raises(Exception, match="no session"):
        ctl.mutate({"op": "grow_session", "project_id": pid, "session_id": "nope"})
    # late events through add_events form their own session; every row is still the events' aggregate
    ctl.mutate({"op": "add_events", "project_id": pid, "count": 5, "late_seconds": 600})
    ctl.mutate({"op": "duplicate_events", "project_id": pid, "count": 20})
    assert_aggregates(ctl)
