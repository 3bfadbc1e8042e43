"""The PostHog emulator reproduces the ten behaviours of contract §7, over HTTPS on loopback."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from emulators.posthog.hogql import OFFSET_MESSAGE

SCALE = 600


@pytest.fixture
def emu(start_emulator: Any) -> Any:
    return start_emulator("posthog", scale=SCALE, seed=5)


@pytest.fixture
def pid(api: Any) -> int:
    return api.get("/api/projects/").json()["results"][0]["id"]


def hogql(api: Any, pid: int, sql: str, values: dict | None = None, refresh: str | None = "force_blocking",
          **extra: Any) -> httpx.Response:
    body: dict[str, Any] = {"query": {"kind": "HogQLQuery", "query": sql, "values": values or {}}, **extra}
    if refresh:
        body["refresh"] = refresh
    return api.post(f"/api/projects/{pid}/query/", json=body)


def ch_key(u: str) -> tuple[int, int]:
    n = uuid.UUID(u).int
    return (n & (2**64 - 1), n >> 64)


# -- 1. auth and the error envelope ------------------------------------------------------------


def test_auth_errors_use_the_exact_envelope(emu, api, pid):
    url = emu.base_url + f"/api/projects/{pid}/persons/"
    bare = httpx.get(url, verify=emu.ca_file)
    assert bare.status_code == 401
    assert bare.json() == {"type": "authentication_error", "code": "not_authenticated",
                           "detail": "Authentication credentials were not provided.", "attr": None}
    for token in ("phx_" + "0" * 40, emu.backend.projects[pid].api_token):  # an unknown key, a project token
        r = httpx.get(url, verify=emu.ca_file, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
        assert r.json() == {"type": "authentication_error", "code": "authentication_failed",
                            "detail": "Personal API key found in request Authorization header is invalid.",
                            "attr": None}
    restricted = {"Authorization": f"Bearer {emu.backend.restricted_key}"}
    r = httpx.get(emu.base_url + f"/api/projects/{pid}/cohorts/", verify=emu.ca_file, headers=restricted)
    assert r.status_code == 403
    assert r.json() == {"type": "authentication_error", "code": "permission_denied",
                        "detail": "API key missing required scope 'cohort:read'", "attr": None}
    other = [p for p in emu.backend.projects if p != pid][0]
    r = httpx.get(emu.base_url + f"/api/projects/{other}/persons/", verify=emu.ca_file, headers=restricted)
    assert r.status_code == 403 and r.json()["code"] == "permission_denied"
    r = api.get("/api/projects/999999/persons/")
    assert r.status_code == 404
    assert r.json() == {"type": "invalid_request", "code": "not_found", "detail": "Not found.", "attr": None}


def test_key_sources_header_then_body_then_query(emu, pid):
    url = emu.base_url + f"/api/projects/{pid}/persons/"
    good, bad = emu.api_key, "phx_" + "1" * 40
    assert httpx.get(url, params={"personal_api_key": good}, verify=emu.ca_file).status_code == 200
    r = httpx.get(url, params={"personal_api_key": good}, headers={"Authorization": f"Bearer {bad}"},
                  verify=emu.ca_file)
    assert r.status_code == 401, "the header wins over the query string"
    body = {"query": {"kind": "HogQLQuery", "query": "SELECT 1 FROM events LIMIT 1"}, "personal_api_key": good}
    r = httpx.post(emu.base_url + f"/api/projects/{pid}/query/", json=body, params={"personal_api_key": bad},
                   verify=emu.ca_file)
    assert r.status_code == 200, "the body wins over the query string"
    r = httpx.get(url, params={"personal_api_key": bad}, verify=emu.ca_file)
    assert r.json()["detail"] == "Personal API key found in request query string is invalid."


# -- 2. style A envelope ------------------------------------------------------------------------


def test_limit_offset_envelope_links_are_absolute_on_own_host_and_keep_params(emu, api, pid, ctl):
    total = ctl.state()["tables"]["annotations"]
    r = api.get(f"/api/environments/{pid}/annotations/", params={"limit": 7, "extra": "kept"}).json()
    assert r["count"] == len([a for a in ctl.export("annotations") if a["project_id"] == pid])
    assert r["previous"] is None and len(r["results"]) == 7
    nxt = httpx.URL(r["next"])
    assert (nxt.scheme, nxt.host, nxt.port) == ("https", "127.0.0.1", emu.port)
    assert nxt.params["extra"] == "kept" and nxt.params["offset"] == "7" and nxt.params["limit"] == "7"
    seen, url, pages = [], f"/api/projects/{pid}/annotations/?limit=7", 0
    while url and pages < 100:
        body = api.get(url).json()
        seen += [a["id"] for a in body["results"]]
        if pages:
            assert body["previous"] is not None
        url, pages = body["next"], pages + 1
    assert len(seen) == len(set(seen)) == r["count"] and total >= r["count"]
    default = api.get(f"/api/projects/{pid}/property_definitions/").json()
    assert len(default["results"]) == min(100, default["count"])
    assert {d["type"] for d in default["results"]} == {1}
    person_props = api.get(f"/api/projects/{pid}/property_definitions/", params={"type": "person"}).json()
    assert {d["type"] for d in person_props["results"]} == {2}


def test_insights_basic_listing_has_no_computed_results(api, pid):
    full = api.get(f"/api/projects/{pid}/insights/").json()["results"][0]
    basic = api.get(f"/api/projects/{pid}/insights/", params={"basic": "true"}).json()["results"][0]
    assert "result" in full and "result" not in basic and basic["query"] == full["query"]


# -- 3. persons --------------------------------------------------------------------------------


def test_persons_newest_first_next_iff_full_page_and_count_on_request(emu, api, pid):
    alive = emu.backend.projects[pid].persons.alive
    first = api.get(f"/api/projects/{pid}/persons/", params={"limit": 100}).json()
    assert "count" not in first and first["previous"] is None
    with_total = api.get(f"/api/projects/{pid}/persons/", params={"include_total": "1"}).json()
    assert with_total["count"] == alive
    rows, url, requests = [], f"/api/projects/{pid}/persons/?limit={alive // 4}", 0
    while url and requests < 20:
        body = api.get(url).json()
        rows += body["results"]
        requests += 1
        url = body["next"]
    assert alive % (alive // 4) == 0 and requests == 5, "a full last page leads to one more, empty page"
    assert [r["id"] for r in rows] == [r["uuid"] for r in rows]
    keys = [(r["created_at"], ch_key(r["id"])) for r in rows]
    assert keys == sorted(keys, reverse=True), "created_at DESC, id DESC"
    assert len(Counter(r["created_at"] for r in rows).most_common(1)) and \
        Counter(r["created_at"] for r in rows).most_common(1)[0][1] > 1, "bulk imports share created_at"
    some = next(r for r in rows if r["properties"].get("email"))
    for params in ({"distinct_id": some["distinct_ids"][-1]}, {"email": some["properties"]["email"]},
                   {"search": some["properties"]["email"][:12]}):
        found = api.get(f"/api/projects/{pid}/persons/", params=params).json()["results"]
        assert some["uuid"] in [p["uuid"] for p in found], params
    assert api.get(f"/api/projects/{pid}/persons/", params={"distinct_id": "nobody"}).json()["results"] == []


def test_persons_docs_shape_switch(emu, ctl, api, pid):
    ctl.configure(persons_shape="docs")
    row = api.get(f"/api/projects/{pid}/persons/", params={"limit": 1}).json()["results"][0]
    assert isinstance(row["id"], int) and "last_seen_at" in row and "is_identified" not in row
    ctl.configure(persons_shape="code")


# -- 4. legacy /events/ --------------------------------------------------------------------------


def test_legacy_events_clamp_exclusive_before_default_window_and_offset(emu, ctl, api, pid):
    page = api.get(f"/api/projects/{pid}/events/", params={"limit": 5000, "after": "2000-01-01T00:00:00Z"}).json()
    assert len(page["results"]) == 1000, "limit is clamped silently to 1,000"
    stamps = [e["timestamp"] for e in page["results"]]
    assert stamps == sorted(stamps, reverse=True), "newest first"
    assert httpx.URL(page["next"]).params["before"] == stamps[-1]
    default = api.get(f"/api/projects/{pid}/events/", params={"limit": 1000}).json()["results"]
    assert default, "recent events exist"
    newest = emu.backend.now()
    from emulators.posthog.hogql import parse_ts

    assert all(newest - parse_ts(e["timestamp"], None) < 86_400 * 10**6 for e in default), "24-hour default"
    r = api.get(f"/api/projects/{pid}/events/", params={"offset": 50001})
    assert r.status_code == 400 and "Max supported offset value is 50000" in r.json()["detail"]
    # 30 events tied on one microsecond straddle a page boundary: following next loses some of them
    tied = ctl.mutate({"op": "add_events", "count": 30, "late_seconds": 600, "same_timestamp": True})
    after = httpx.QueryParams({"after": f"{tied['timestamps'][0][:11]}00:00:00+00:00"})
    walked, url, n = [], f"/api/projects/{pid}/events/?limit=20&{after}", 0
    while url and n < 200:
        body = api.get(url).json()
        walked += [e["id"] for e in body["results"]]
        url, n = body["next"], n + 1
    assert not set(tied["uuids"]) <= set(walked), "exclusive before drops ties at a page boundary"


def test_legacy_events_fault_switches(emu, ctl, api, pid):
    ctl.configure(legacy_events_truncate_long_windows=True)
    body = api.get(f"/api/projects/{pid}/events/",
                   params={"limit": 1000, "after": "2000-01-01T00:00:00Z"}).json()
    assert body["next"] is None and 0 < len(body["results"]) < 1000, "a multi-day window comes back short"
    ctl.configure(legacy_events_truncate_long_windows=False, legacy_events_repeat_next=True)
    url = f"/api/projects/{pid}/events/?limit=3"
    body = api.get(url).json()
    assert body["next"].endswith(url.split("?")[0] + "?limit=3")
    ctl.configure(legacy_events_repeat_next=False)


# -- 5, 6. HogQL ---------------------------------------------------------------------------------


def test_hogql_positional_results_types_limits_and_has_more(api, pid, ctl):
    n = len([e for e in ctl.export("events") if e["project_id"] == pid])
    no_limit = hogql(api, pid, "SELECT uuid, timestamp, properties FROM events ORDER BY timestamp, uuid").json()
    assert no_limit["columns"] == ["uuid", "timestamp", "properties"]
    assert [t[0] for t in no_limit["types"]] == no_limit["columns"]
    assert len(no_limit["results"]) == 100 and no_limit["hasMore"] is True and no_limit["limit"] == 100
    assert isinstance(no_limit["results"][0], list) and isinstance(no_limit["results"][0][2], str)
    ts = no_limit["results"][0][1]
    assert len(ts.split(".")[1]) == len("123456+00:00"), "microseconds and an offset"
    limited = hogql(api, pid, "SELECT uuid FROM events LIMIT 7").json()
    assert len(limited["results"]) == 7 and limited["hasMore"] is None
    everything = hogql(api, pid, "SELECT uuid FROM events LIMIT 60000").json()
    assert len(everything["results"]) == min(n, 50_000) and everything["limit"] == 50_000
    count = hogql(api, pid, "SELECT count() AS n, min(timestamp) AS first FROM events").json()["results"]
    assert count[0][0] == n


def test_hogql_offset_is_refused_with_the_exact_message(api, pid):
    for sql in ("SELECT uuid FROM events LIMIT 10 OFFSET 10", "SELECT uuid FROM events LIMIT 10, 10"):
        r = hogql(api, pid, sql)
        assert r.status_code == 400
        assert r.json() == {"type": "validation_error", "code": "invalid_input", "detail": OFFSET_MESSAGE,
                            "attr": None}


def test_hogql_placeholders_and_errors(api, pid):
    r = hogql(api, pid, "SELECT uuid FROM events WHERE timestamp >= {start} LIMIT 1", {"other": 1})
    assert r.status_code == 400 and "Placeholder {start} is not available" in r.json()["detail"]
    r = hogql(api, pid, "SELECT nope FROM events LIMIT 1")
    assert r.status_code == 400 and r.json()["type"] == "validation_error"
    r = hogql(api, pid, "SELEC uuid FROM events")
    assert r.status_code == 400


# -- 7. rate limits and concurrency -------------------------------------------------------------


def test_throttling_says_when_and_sends_no_retry_after(emu, ctl, api, pid):
    ctl.configure(rate_limits={"crud": [[3, 30]]})
    statuses = [api.get(f"/api/projects/{pid}/cohorts/") for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    last = statuses[-1]
    assert last.json()["type"] == "throttled_error" and last.json()["code"] == "throttled"
    assert last.json()["detail"].startswith("Request was throttled. Expected available in ")
    assert last.json()["detail"].endswith(" seconds.") or last.json()["detail"].endswith(" second.")
    assert "retry-after" not in last.headers
    ctl.configure(send_retry_after=True)
    assert "retry-after" in api.get(f"/api/projects/{pid}/cohorts/").headers
    ctl.configure(rate_limits=True, send_retry_after=False)


def test_a_fourth_concurrent_query_is_refused(emu, api, pid):
    backend = emu.backend
    with backend._lock:
        backend._in_flight[pid] = 3  # three queries of this project are running
    try:
        r = hogql(api, pid, "SELECT uuid FROM events LIMIT 1")
    finally:
        with backend._lock:
            backend._in_flight[pid] = 0
    assert r.status_code == 429 and "Exceeded maximum concurrency limit: 3" in r.json()["detail"]
    assert "Expected available" not in r.json()["detail"]
    assert hogql(api, pid, "SELECT uuid FROM events LIMIT 1").status_code == 200


# -- 8. ordering and ties ---------------------------------------------------------------------------


def test_ties_and_clickhouse_uuid_order(api, pid, ctl):
    events = [e for e in ctl.export("events") if e["project_id"] == pid]
    runs = Counter(e["timestamp"] for e in events)
    assert runs.most_common(1)[0][1] >= 50, "many events share one microsecond"
    sql = ("SELECT uuid, timestamp FROM events WHERE timestamp >= {start} AND (timestamp, uuid) > ({ts}, {u}) "
           "ORDER BY timestamp, uuid LIMIT 97")
    first = hogql(api, pid, "SELECT uuid, timestamp FROM events ORDER BY timestamp, uuid LIMIT 97").json()["results"]
    walked, page, guard = list(first), first, 0
    while len(page) == 97 and guard < 1000:
        page = hogql(api, pid, sql, {"start": "2000-01-01", "ts": page[-1][1], "u": page[-1][0]}).json()["results"]
        walked += page
        guard += 1
    assert len(walked) == len(events) == len({u for u, _ in walked}), "the tuple keyset loses and repeats nothing"
    tied = [u for u, t in walked if t == runs.most_common(1)[0][0]]
    assert tied == sorted(tied, key=ch_key), "ties come back in ClickHouse UUID order (low 64 bits first)"
    assert tied != sorted(tied), "which is not the order of the UUID text"
    expanded = ("SELECT uuid FROM events WHERE timestamp > {ts} OR (timestamp = {ts} AND uuid > toUUID({u})) "
                "ORDER BY timestamp, uuid LIMIT 5")
    t0, u0 = walked[10][1], walked[10][0]
    assert [r[0] for r in hogql(api, pid, expanded, {"ts": t0, "u": u0}).json()["results"]] == \
        [u for u, _ in walked[11:16]]


def test_keyset_on_timestamp_alone_loses_tied_rows(api, pid, ctl):
    events = [e for e in ctl.export("events") if e["project_id"] == pid]
    sql = "SELECT uuid, timestamp FROM events WHERE timestamp > {ts} ORDER BY timestamp LIMIT 200"
    page = hogql(api, pid, "SELECT uuid, timestamp FROM events ORDER BY timestamp LIMIT 200").json()["results"]
    seen, guard = [r[0] for r in page], 0
    while len(page) == 200 and guard < 1000:
        page = hogql(api, pid, sql, {"ts": page[-1][1]}).json()["results"]
        seen += [r[0] for r in page]
        guard += 1
    assert len(set(seen)) < len(events), "a peer connector's timestamp-only keyset drops ties"


# -- 9, 10. late events, cache, async, timeouts ----------------------------------------------------


def test_late_events_cache_and_refresh(api, pid, ctl):
    sql = "SELECT count() FROM events WHERE timestamp >= {start}"
    values = {"start": "2000-01-01T00:00:00Z"}
    before = hogql(api, pid, sql, values, refresh=None).json()
    assert before["is_cached"] is False
    ctl.mutate({"op": "add_events", "count": 25, "late_seconds": 5 * 86400})
    cached = hogql(api, pid, sql, values, refresh=None).json()
    assert cached["is_cached"] is True and cached["results"] == before["results"], "stale rows from the cache"
    fresh = hogql(api, pid, sql, values, refresh="force_blocking").json()
    assert fresh["is_cached"] is False and fresh["results"][0][0] == before["results"][0][0] + 25


def test_async_queries_are_polled_and_cancelled(api, pid):
    r = hogql(api, pid, "SELECT uuid FROM events LIMIT 3", refresh="force_async")
    assert r.status_code == 202 and r.json()["query_status"]["complete"] is False
    qid = r.json()["query_status"]["id"]
    assert api.get(f"/api/projects/{pid}/query/{qid}/").status_code == 202
    done = api.get(f"/api/projects/{pid}/query/{qid}/")
    assert done.status_code == 200 and len(done.json()["query_status"]["results"]["results"]) == 3
    assert api.delete(f"/api/projects/{pid}/query/{qid}/").status_code == 204
    assert api.get(f"/api/projects/{pid}/query/{qid}/").status_code == 404


def test_execution_budget_fault(api, pid, ctl):
    ctl.configure(query_timeout_rows=100)
    r = hogql(api, pid, "SELECT uuid FROM events WHERE timestamp >= {s} LIMIT 1", {"s": "2000-01-01"})
    assert r.status_code == 500 and r.json()["detail"] == "ClickHouse error while executing query."
    ctl.configure(query_timeout_rows=None)


# -- groups, determinism, scale -------------------------------------------------------------------


def test_groups_cursor_pagination_walks_every_group_once(emu, api, pid, ctl):
    types = api.get(f"/api/projects/{pid}/groups_types/").json()
    assert [t["group_type_index"] for t in types] == [0, 1]
    r = api.get(f"/api/projects/{pid}/groups/")
    assert r.status_code == 400 and r.json()["attr"] == "group_type_index"
    expected = [g for g in ctl.export("groups") if g["project_id"] == pid and g["group_type_index"] == 0]
    backend = emu.backend
    rows = backend.groups[pid][0]
    from emulators.posthog.backend import _drf_cursor_page

    class FakeRequest:
        def __init__(self, url: str) -> None:
            from starlette.datastructures import URL, QueryParams

            self.url = URL(url)
            self.query_params = QueryParams(self.url.query)

    # walk with a small page size so pages end inside runs of equal created_at
    url, got, guard = "https://127.0.0.1/api/projects/1/groups/?group_type_index=0", [], 0
    while url and guard < 100:
        page = _drf_cursor_page(FakeRequest(url), rows, 4, backend._url)
        got += [g["group_key"] for g in page["results"]]
        url, guard = page["next"], guard + 1
    assert sorted(got) == sorted(g["group_key"] for g in expected) and len(got) == len(set(got))
    walked, nxt = [], f"/api/projects/{pid}/groups/?group_type_index=0"
    while nxt:
        body = api.get(nxt).json()
        walked += body["results"]
        nxt = body["next"]
    assert len(walked) == len(expected)


def test_same_seed_same_data_other_seed_other_data():
    from emulators.posthog import create_backend

    a, b, c = create_backend(seed=3, scale=50), create_backend(seed=3, scale=50), create_backend(seed=4, scale=50)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("timestamp", "created_at")} for r in rows]  # noqa: E731
    assert strip(a.export("persons")) == strip(b.export("persons"))
    assert [e["uuid"] for e in a.export("events")][:50] != [e["uuid"] for e in c.export("events")][:50]
    assert a.api_key == b.api_key != c.api_key


def test_a_million_persons_serve_pages_from_the_index():
    from zoneinfo import ZoneInfo

    from emulators.posthog import create_backend
    from emulators.posthog import hogql as H

    backend = create_backend(seed=1, scale=1_000_000, projects=1)
    project = next(iter(backend.projects.values()))
    assert len(project.events) == 8_000_000
    ctx = H.Context(ZoneInfo(project.timezone), backend.now())
    tables = backend._tables(project)
    page = H.execute("SELECT uuid, timestamp FROM events WHERE timestamp >= {s} ORDER BY timestamp, uuid LIMIT 500",
                     {"s": "2026-01-01T00:00:00Z"}, tables, ctx)
    assert len(page.results) == 500
    count = H.execute("SELECT count() FROM events", {}, tables, ctx).results[0][0]
    assert count == 8_000_000
    newest = list(project.persons.newest_first(999_990))
    assert len(newest) == 10


def test_concurrent_requests_are_thread_safe(emu, api, pid, ctl):
    errors: list[Any] = []

    def worker(k: int) -> None:
        try:
            for _ in range(5):
                r = hogql(api, pid, "SELECT uuid FROM events WHERE timestamp >= {s} ORDER BY timestamp, uuid LIMIT 50",
                          {"s": f"2000-01-0{1 + k}T00:00:00Z"})
                if r.status_code not in (200, 429):
                    errors.append(r.text)
                ctl.mutate({"op": "add_events", "count": 3, "late_seconds": 3600 * k})
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert emu.backend.max_in_flight.get(pid, 0) <= 3


def test_hogql_on_persons_keyset_walk_matches_the_list(api, pid, ctl):
    ctl.mutate({"op": "delete_persons", "count": 3, "project_id": pid})
    expected = {p["uuid"] for p in ctl.export("persons") if p["project_id"] == pid}
    sql = ("SELECT id, created_at, properties FROM persons WHERE (created_at, id) > ({t}, {u}) "
           "ORDER BY created_at, id LIMIT 150")
    page = hogql(api, pid, "SELECT id, created_at, properties FROM persons ORDER BY created_at, id LIMIT 150").json()
    assert page["columns"] == ["id", "created_at", "properties"]
    rows, guard = list(page["results"]), 0
    while len(page["results"]) == 150 and guard < 100:
        last = page["results"][-1]
        page = hogql(api, pid, sql, {"t": last[1], "u": last[0]}).json()
        rows += page["results"]
        guard += 1
    assert [r[0] for r in rows] and {r[0] for r in rows} == expected and len(rows) == len(expected)
    newest = hogql(api, pid, "SELECT count() FROM persons WHERE created_at >= {t}", {"t": rows[-10][1]}).json()
    assert newest["results"][0][0] >= 10
