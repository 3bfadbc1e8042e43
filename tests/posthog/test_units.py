"""Pure pieces of the PostHog source: windows, project days, the 429 hint, next-link rebasing,
cursor text, and the Arrow kinds added for it (``iso``, ``date``)."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from sources.common.arrow import TableSpec
from sources.common.errors import ConfigurationError
from sources.common.http import Request
from sources.common.window import windows
from sources.posthog.client import (
    SameHostLink,
    cursor_text,
    iso_to_us,
    parse_start,
    project_days,
    retry_hint,
    us_to_iso,
)

US = 1_000_000
DAY = 86_400 * US


def test_windows_tile_the_range_with_inner_boundaries_on_utc_midnights():
    start = iso_to_us("2026-11-01T17:30:00+00:00")
    end = iso_to_us("2026-11-04T06:00:00.000001+00:00")
    parts = windows(start, end, DAY)
    assert parts[0][0] == start and parts[-1][1] == end
    assert all(a < b and b - a <= DAY for a, b in parts)
    assert all(x[1] == y[0] for x, y in zip(parts, parts[1:], strict=False))
    assert [us_to_iso(b) for _, b in parts[:-1]] == ["2026-11-02T00:00:00.000000Z", "2026-11-03T00:00:00.000000Z",
                                                      "2026-11-04T00:00:00.000000Z"]
    assert windows(end, start, DAY) == []


def test_project_days_follow_the_project_time_zone_across_daylight_saving():
    # New York leaves daylight saving on 2026-11-01: that day lasts 25 hours
    days = project_days("2026-10-31", iso_to_us("2026-11-02T12:00:00+00:00"), "America/New_York")
    assert [d for d, _, _ in days] == ["2026-10-31", "2026-11-01", "2026-11-02"]
    lengths = [(b - a) // (3600 * US) for _, a, b in days]
    assert lengths == [24, 25, 24]
    assert us_to_iso(days[0][1]) == "2026-10-31T04:00:00.000000Z"
    kolkata = project_days(iso_to_us("2026-11-01T20:00:00+00:00"), iso_to_us("2026-11-01T20:00:00+00:00"),
                           "Asia/Kolkata")
    assert [d for d, _, _ in kolkata] == ["2026-11-02"], "20:00 UTC is already the next day in Kolkata"


def test_the_429_wait_comes_from_detail():
    def response(status: int, detail: str) -> httpx.Response:
        return httpx.Response(status, json={"type": "throttled_error", "code": "throttled", "detail": detail,
                                            "attr": None})

    assert retry_hint(response(429, "Request was throttled. Expected available in 12 seconds.")) == 12
    assert retry_hint(response(429, "Request was throttled. Expected available in 1 second.")) == 1
    assert retry_hint(response(429, "Exceeded maximum concurrency limit: 3 for key: x and task: y")) is None
    assert retry_hint(response(503, "Expected available in 5 seconds.")) is None
    assert retry_hint(httpx.Response(429, text="Expected available in 7 seconds.")) == 7


def test_next_links_on_another_host_are_rebased_onto_the_configured_one():
    base = httpx.URL("https://posthog.example.com/")
    link = SameHostLink(base)
    request = Request("GET", "api/projects/1/persons/", params={"limit": 100})
    response = httpx.Response(200, json={}, request=httpx.Request("GET", "https://posthog.example.com/"))
    same = "https://posthog.example.com/api/projects/1/persons/?limit=100&offset=100"
    link.update_state(response, {"next": same}, [{}])
    link.update_request(request)
    assert request.url == same and request.params is None and link.rebased == 0
    link.update_state(response, {"next": "http://10.0.0.7:8000/api/projects/1/persons/?limit=100&offset=200"}, [{}])
    link.update_request(request)
    assert request.url == "https://posthog.example.com/api/projects/1/persons/?limit=100&offset=200"
    assert link.rebased == 1
    link.update_state(response, {"next": None}, [])
    assert not link.has_next_page


def test_cursor_text_is_fixed_width_utc_whatever_the_offset():
    assert cursor_text("2026-11-20T08:15:30.123456+00:00") == "2026-11-20T08:15:30.123456Z"
    assert cursor_text("2026-11-20T03:15:30.123456-05:00") == "2026-11-20T08:15:30.123456Z"
    assert cursor_text("2026-11-20T13:45:30.000001+05:30") == "2026-11-20T08:15:30.000001Z"
    assert cursor_text("2026-11-20T08:15:30Z") == "2026-11-20T08:15:30.000000Z"
    assert us_to_iso(iso_to_us("2026-11-20T08:15:30.5+01:00")) == "2026-11-20T07:15:30.500000Z"


def test_start_date_parsing():
    assert us_to_iso(parse_start("2025-01-02")) == "2025-01-02T00:00:00.000000Z"
    assert us_to_iso(parse_start("2025-01-02T03:04:05+02:00")) == "2025-01-02T01:04:05.000000Z"
    with pytest.raises(ConfigurationError, match="start_date"):
        parse_start("last tuesday")


def test_arrow_iso_and_date_kinds():
    spec = TableSpec("t", {"k": "text", "at": "iso", "day": "date"}, primary_key=("k",))
    table = spec.to_arrow([
        {"k": "a", "at": "2026-11-20T03:15:30.123456-05:00", "day": "2026-11-20"},
        {"k": "b", "at": "2026-11-20T08:15:30Z", "day": None},
        {"k": "c", "at": "2026-11-20 08:15:30", "day": "2026-11-21T05:00:00+00:00"},  # no offset: the table's zone
        {"k": "d", "at": None, "day": dt.date(2026, 1, 2)},
    ])
    at = table.column("at").to_pylist()
    assert at[0] == dt.datetime(2026, 11, 20, 8, 15, 30, 123456, tzinfo=dt.UTC)
    assert at[1] == at[2] == dt.datetime(2026, 11, 20, 8, 15, 30, tzinfo=dt.UTC)
    assert at[3] is None
    assert table.column("day").to_pylist() == [dt.date(2026, 11, 20), None, dt.date(2026, 11, 21), dt.date(2026, 1, 2)]
    assert spec.dlt_columns()["day"]["data_type"] == "date"
    assert spec.dlt_columns()["at"] == {"data_type": "timestamp", "nullable": True, "timezone": True}
    berlin = spec.with_tz("Europe/Berlin").to_arrow([{"k": "x", "at": "2026-11-20 09:15:30", "day": None}])
    assert berlin.column("at").to_pylist()[0] == dt.datetime(2026, 11, 20, 8, 15, 30, tzinfo=dt.UTC)


def test_lookback_cursor_max_seen_bounds_the_fingerprints_in_state():
    from sources.common.cursor import LookbackCursor

    def run(state: dict, rows: list[tuple[str, int]], max_seen: int | None) -> int:
        cur = LookbackCursor(state, lambda v: v - 10, max_seen=max_seen)
        loaded = sum(cur.admit(k, v, {"k": k, "v": v}) for k, v in rows)
        cur.commit(100)
        return loaded

    rows = [(f"r{i}", 95 + i % 5) for i in range(20)]  # all inside the 10-unit lookback of 100
    bounded, unbounded = {}, {}
    assert run(bounded, rows, max_seen=5) == 20 and run(unbounded, rows, max_seen=None) == 20
    assert bounded["seen"] == {} and bounded["last_run"]["fingerprints_dropped"] == 20
    assert len(unbounded["seen"]) == 20
    # the next run: the bounded cursor loads the window again, the unbounded one recognises it
    assert run(bounded, rows, max_seen=5) == 20 and run(unbounded, rows, max_seen=None) == 0


def test_keyset_marks_each_uuid_once_across_pages_and_within_one():
    from sources.posthog.keys import KeySet

    a, b, c = "0190c3a1-7b2e-7000-8000-000000000001", "0190c3a1-7b2e-7000-8000-000000000002", \
        "0190C3A1-7B2E-7000-8000-000000000003"
    keys = KeySet()
    assert keys.first_seen([a, b]) is None  # all new: the per-page fast path
    assert keys.first_seen([c, a, c.lower(), "not-a-uuid"]) == [True, False, False, True]
    assert keys.first_seen([7, 7, "not-a-uuid"]) == [True, False, False]
    assert len(keys) == 5 and b in keys and 7 in keys


def test_query_and_list_answers_that_are_not_data_are_described_in_words():
    from sources.posthog.client import _list_problem, _query_problem

    assert _query_problem({"columns": ["a"], "results": [[1]]}) is None
    assert _query_problem({"columns": ["a", "b"], "results": [[1]]}) == "a result row that does not match its 2 columns"
    assert "no columns and results" in _query_problem({"error": None})
    assert _query_problem(None) == "null where a query result was expected"
    assert _list_problem({"results": [], "next": None}) is None
    assert "no next key" in _list_problem({"results": []})
    assert "no list of results" in _list_problem({"next": None})
    for text in (_query_problem([]), _list_problem("x"), _list_problem({})):
        assert "NoneType" not in text and "dict" not in text and "list'" not in text
