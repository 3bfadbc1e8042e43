"""The Synerise source on the vendor's bad days (issue 11): each test fails without its fix.

Pages the vendor could plausibly send are scripted with the emulator's fault rules (a rule's
``json`` answer is served instead of the real page); the hostile backend (``hostile=1`` with
``hostile_odds=0``: no random bad days, only its stricter deterministic choices) clamps page sizes
and orders ``/v4/clients`` by ``lastActivityDate``."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sources.common.errors import MalformedResponse

from .support import connect, resource_state, root_error, run, source
from .truth import assert_table_equals

PAGE_1 = "^/v4/clients\\?pageSize=2&pageIndex=1$"
PAGE_2 = "^/v4/clients\\?pageSize=2&pageIndex=2$"
PAGE_3 = "^/v4/clients\\?pageSize=2&pageIndex=3$"


def _strict_order(ctl: Any) -> None:
    """The hostile backend's deterministic choices only: clamped page sizes, the unstated order."""
    ctl.configure(hostile=1, hostile_odds=0, hostile_rate=0)


# ---------------------------------------------------------------- class 1: only the end ends a walk


def test_an_empty_object_or_an_empty_body_mid_walk_is_retried_not_the_end(emu, ctl, make_pipeline, tmp_path):
    ctl.add_faults([
        {"path": "^/catalogs/bags/\\d+/items\\?offset=50&", "actions": [{"status": 200, "json": {}}]},
        {"path": "^/v4/clients\\?pageSize=50&pageIndex=3$", "actions": [{"status": 200, "body": ""}]},
        {"path": "^/crm/v1/segmentations/", "actions": [{"pass": True}, {"status": 200, "json": None}]},
    ])
    segs = ctl.export("segmentations")
    run(make_pipeline(), source(emu, "profiles", "catalog_items", "segmentation_members", profiles_page_size=50,
                                catalog_page_size=50, crm_page_size=25, segmentation_uuids=[segs[1]["uuid"]]))
    assert {f["used"] for f in ctl.faults()} == {1, 2}, "every scripted bad answer was served"
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", "profiles", ctl.export("profiles"))
        assert_table_equals(con, "data", "catalog_items", ctl.export("catalog_items"))
        assert_table_equals(con, "data", "segmentation_members", [
            m for m in ctl.export("segmentation_members") if m["segmentation_uuid"] == segs[1]["uuid"]])


def test_a_short_page_is_not_the_end_when_the_server_clamps_the_page_size(emu, ctl, make_pipeline, tmp_path):
    _strict_order(ctl)
    pipeline = make_pipeline()
    run(pipeline, source(emu, "profiles", "expressions", "aggregates", profiles_page_size=200,
                         analytics_page_size=100))
    assert resource_state(pipeline, "profiles")["last_run"]["passes"] == 1
    ctl.configure(hostile=0)
    with connect(tmp_path) as con:
        for table in ("profiles", "expressions", "aggregates"):
            assert_table_equals(con, "data", table, ctl.export(table))


def test_a_body_that_stays_wrong_fails_naming_the_request_and_the_body(emu, ctl, make_pipeline):
    ctl.add_faults([{"path": "^/v4/clients\\?", "repeat": True,
                     "actions": [{"status": 200, "json": {"clients": [], "note": "maintenance"}}]}])
    pipeline = make_pipeline()
    with pytest.raises(PipelineStepFailed) as failed:
        run(pipeline, source(emu, "profiles", max_attempts=2, max_retry_wait=5))
    err = root_error(failed.value)
    text = str(err)
    assert isinstance(err, MalformedResponse), text
    assert "/v4/clients" in text and "pageIndex=1" in text and "maintenance" in text, text
    assert "dict" not in text and "NoneType" not in text, text
    assert "profiles" not in pipeline.state.get("sources", {}).get("synerise", {}).get("resources", {})


# ---------------------------------------------------------------- class 2: the newest copy wins


def _profile(ctl: Any, k: int) -> dict[str, Any]:
    return dict(ctl.export("profiles")[k])


@pytest.mark.parametrize("batch_rows", [5000, 1])
@pytest.mark.parametrize("newer_first", [False, True])
def test_a_profile_read_twice_lands_as_its_newest_copy(emu, ctl, make_pipeline, tmp_path, newer_first, batch_rows):
    a, b, c = _profile(ctl, 0), _profile(ctl, 1), _profile(ctl, 2)
    old = {**a, "city": "Old town", "lastActivityDate": "2026-01-01T10:00:00Z"}
    new = {**a, "city": "New town", "lastActivityDate": "2026-01-01T10:00:05Z"}
    first, second = (new, old) if newer_first else (old, new)
    # pass 1 ends short of the stated total (3), so a pass 2 reads the list again: the profile's
    # second copy arrives in it
    ctl.add_faults([
        {"path": "^/crm/v1/list", "repeat": True, "actions": [{"status": 200, "json": {
            "customers": [], "all": 3, "limit": 1, "offset": 0, "matching": 3}}]},
        {"path": PAGE_1, "actions": [{"status": 200, "json": [first, b]}, {"status": 200, "json": [second, b]}]},
        {"path": PAGE_2, "actions": [{"status": 200, "json": []}, {"status": 200, "json": [c]}]},
        {"path": PAGE_3, "actions": [{"status": 200, "json": []}]},
    ])
    pipeline = make_pipeline()
    run(pipeline, source(emu, "profiles", profiles_page_size=2, batch_rows=batch_rows))
    last = resource_state(pipeline, "profiles")["last_run"]
    assert last["passes"] == 2 and last["complete"]
    with connect(tmp_path) as con:
        rows = con.execute("select client_id, city, last_activity_date from data.profiles order by client_id").fetchall()
    assert [r[0] for r in rows] == sorted([a["clientId"], b["clientId"], c["clientId"]])
    assert {r[0]: r[1] for r in rows}[a["clientId"]] == "New town"


def test_a_definition_read_twice_lands_as_its_newest_copy(emu, ctl, make_pipeline, tmp_path):
    import httpx

    with httpx.Client(base_url=emu.base_url, verify=emu.ca_file) as http:
        token = http.post("/uauth/v2/auth/login/profile", json={"apiKey": emu.api_key}).json()["token"]
        body = http.get("/analytics-backend/analytics/definitions-manager/expressions", params={"size": 100},
                        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}).json()
    content = body["content"]
    x = content[0]
    newer = {**x, "payload": {**x["payload"], "analysis": {**x["payload"]["analysis"], "name": "renamed"},
                              "modifiedBy": {"atTime": "2099-01-01T00:00:00.000Z", "id": 12}}}
    spring = {"currentPageNumber": 0, "pageSize": 100, "sorted": False, "totalElements": len(content),
               "totalPages": 1}
    # the first read stops short (its total says more), the second holds the newer copy first
    ctl.add_faults([{"path": "^/analytics-backend/.*/expressions\\?", "actions": [
        {"status": 200, "json": {"content": content[:-1], "pagination": spring}},
        {"status": 200, "json": {"content": [newer, *content[1:]], "pagination": spring}},
    ]}])
    run(make_pipeline(), source(emu, "expressions", analytics_page_size=100))
    with connect(tmp_path) as con:
        names = dict(con.execute("select id, name from data.expressions").fetchall())
    assert len(names) == len(content) and names[x["id"]] == "renamed"


# ---------------------------------------------------------------- class 3: short full reads


def test_a_catalog_scan_that_ends_short_of_its_total_fails_and_commits_nothing(emu, ctl, make_pipeline, tmp_path):
    empty = {"status": 200, "json": {"data": [], "metaData": {"totalCount": 75, "requestTime": "0.01 [s]"}}}
    ctl.add_faults([{"path": "^/catalogs/bags/\\d+/items\\?offset=50&", "repeat": True, "actions": [empty]}])
    pipeline = make_pipeline()
    with pytest.raises(PipelineStepFailed) as failed:
        run(pipeline, source(emu, "catalogs", "catalog_items", catalog_page_size=50))
    err = root_error(failed.value)
    assert "incomplete" in str(err) and "allow_incomplete" in str(err), str(err)
    assert "catalog_items" not in pipeline.state.get("sources", {}).get("synerise", {}).get("resources", {})
    with connect(tmp_path) as con:
        tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
    assert "catalog_items" not in tables, "nothing of a short read is loaded"
    ctl.clear_faults()
    run(pipeline, source(emu, "catalogs", "catalog_items", catalog_page_size=50))
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", "catalog_items", ctl.export("catalog_items"))


def test_allow_incomplete_loads_the_short_read_and_marks_it_until_a_complete_one(emu, ctl, make_pipeline, tmp_path,
                                                                                 caplog):
    caplog.set_level(logging.WARNING, logger="cdp_sync.progress")
    ctl.add_faults([{"path": "^/crm/v1/list", "repeat": True, "actions": [{"status": 200, "json": {
        "customers": [], "all": 10_000, "limit": 1, "offset": 0, "matching": 10_000}}]}])
    pipeline = make_pipeline()
    with pytest.raises(PipelineStepFailed):
        run(pipeline, source(emu, "profiles"))
    run(pipeline, source(emu, "profiles", allow_incomplete=True))
    mark = resource_state(pipeline, "profiles")["incomplete"]["profiles"]
    assert mark["read"] == 300 and mark["reported"] == 10_000 and mark["passes"] == 3
    assert "INCOMPLETE read loaded" in caplog.text
    ctl.clear_faults()
    run(pipeline, source(emu, "profiles", allow_incomplete=True))
    assert "incomplete" not in resource_state(pipeline, "profiles")
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", "profiles", ctl.export("profiles"))


# ---------------------------------------------------------------- class 9: offsets over changing lists


def _while_held(ctl: Any, path: str, nth: int, mutation: dict[str, Any]) -> threading.Thread:
    """Apply ``mutation`` while the ``nth`` request to ``path`` is held at the server."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sum(1 for e in ctl.requests() if e["path"].startswith(path)) >= nth:
                ctl.mutate(mutation)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch)
    thread.start()
    return thread


def test_catalog_items_deleted_mid_scan_do_not_make_it_skip_one(emu, ctl, make_pipeline, tmp_path):
    catalog = ctl.export("catalogs")[0]["id"]
    ctl.add_faults([{"path": f"^/catalogs/bags/{catalog}/items\\?offset=25&",
                     "actions": [{"pass": True, "latency_ms": 2000}]}])
    watcher = _while_held(ctl, f"/catalogs/bags/{catalog}/items", 2,
                          {"op": "delete_items", "catalog_id": catalog, "count": 3})
    pipeline = make_pipeline()
    try:
        run(pipeline, source(emu, "catalog_items", catalog_page_size=25))
    finally:
        watcher.join()
    with connect(tmp_path) as con:
        loaded = {r[0] for r in con.execute(
            f"select item_key from data.catalog_items where catalog_id = {catalog}").fetchall()}
    live = {i["itemKey"] for i in ctl.export("catalog_items") if i["bag"]["id"] == catalog}
    assert live <= loaded, f"skipped: {sorted(live - loaded)}"


def test_a_profile_modified_mid_walk_moves_and_is_still_read_once_newest(emu, ctl, make_pipeline, tmp_path):
    _strict_order(ctl)  # recently active last: a modified profile moves to the end of the list
    everyone = [p["clientId"] for p in ctl.export("profiles")]
    ctl.add_faults([{"path": "^/v4/clients\\?pageSize=50&pageIndex=2$", "actions": [{"pass": True, "latency_ms": 2000}]}])
    order = [p["clientId"] for p in sorted(ctl.export("profiles"), key=lambda p: (p["lastActivityDate"], p["clientId"]))]
    watcher = _while_held(ctl, "/v4/clients", 2, {"op": "modify_profiles", "client_ids": order[:2]})
    pipeline = make_pipeline()
    try:
        run(pipeline, source(emu, "profiles", profiles_page_size=50))
    finally:
        watcher.join()
    ctl.configure(hostile=0)
    assert resource_state(pipeline, "profiles")["last_run"]["passes"] >= 2
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", "profiles", ctl.export("profiles"))
    assert len(everyone) == 300


# ---------------------------------------------------------------- class 4: how late an event may be


def test_an_event_late_by_up_to_lookback_plus_lag_loads_and_later_does_not(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    run(pipeline, source(emu, "events"))
    hi = resource_state(pipeline, "events")["last_run"]["window_to"]
    ctl.mutate({"op": "advance_clock", "seconds": 120})
    # visible from now on, time-stamped 655 s ago: late by less than lookback (600 s) + lag (60 s)
    inside = ctl.mutate({"op": "add_events", "count": 1, "ago_ms": 655_000})
    # late by more than lookback + lag + the time since the last run: behind the re-read window
    outside = ctl.mutate({"op": "add_events", "count": 1, "ago_ms": (660 + 120 + 30) * 1000})
    run(pipeline, source(emu, "events"))
    lo = resource_state(pipeline, "events")["last_run"]["window_from"]
    assert lo == hi - 600_000
    assert inside["from_ms"] >= lo > outside["from_ms"]
    with connect(tmp_path) as con:
        loaded = {r[0] for r in con.execute("select event_uuid from data.events").fetchall()}
    assert set(inside["uuids"]) <= loaded
    assert not set(outside["uuids"]) & loaded, "documented limit: later than the re-read window"


# ---------------------------------------------------------------- class 5: values that do not fit


def test_a_value_that_does_not_fit_its_column_lands_as_text_with_one_warning(emu, ctl, make_pipeline, tmp_path,
                                                                             caplog):
    caplog.set_level(logging.WARNING, logger="cdp_sync.progress")
    tag = {"authorId": "team-7", "color": "#fff", "createdAt": "yesterday", "description": "d",
           "directory": {"createdAt": "2024-01-01T00:00:00Z", "hash": "d1", "name": "dir",
                         "type": {"createdAt": "2024-01-01T00:00:00Z", "hash": "t1", "name": "type"}},
           "hash": "h1", "icon": "i", "priority": "high", "value": "v"}
    good = {**tag, "hash": "h2", "authorId": 7, "priority": 3, "createdAt": "2024-05-01T10:00:00Z"}
    ctl.add_faults([{"path": "^/tags-collector/tags", "actions": [{"status": 200, "json": {
        "data": [tag, good, {**tag, "hash": "h3"}], "pagination": {"limit": 100, "page": 0, "pages": 1, "total": 3}}}]}])
    run(make_pipeline(), source(emu, "asset_tags"))
    with connect(tmp_path) as con:
        rows = con.execute("select hash, priority, priority__v_text, author_id, author_id__v_text, created_at, "
                           "created_at__v_text from data.asset_tags order by hash").fetchall()
    assert rows[0][:5] == ("h1", None, "high", None, "team-7") and rows[0][5:] == (None, "yesterday")
    assert rows[1][1] == 3 and rows[1][2] is None and rows[1][3] == 7 and rows[1][5] is not None
    warnings = [r.getMessage() for r in caplog.records if "did not fit" in r.getMessage()]
    assert len(warnings) == 1, warnings  # one for the resource, each column with its count
    assert "priority (2 in priority__v_text, declared int)" in warnings[0]
    assert "author_id (2 in author_id__v_text" in warnings[0] and "created_at (2 in created_at__v_text" in warnings[0]


# ---------------------------------------------------------------- class 8: throttling is weather


def test_a_storm_of_429s_in_the_gateway_shape_is_waited_out(emu, ctl, make_pipeline, tmp_path):
    status, headers, body = 429, {"Retry-After": "0"}, {
        "timestamp": "2026-01-01T00:00:00.000+00:00", "status": 429, "error": "Too Many Requests",
        "message": "Too many requests; slow down", "path": "/catalogs/bags"}
    ctl.add_faults([{"path": "^/catalogs/bags\\?", "actions": [{"status": status, "json": body, "headers": headers}] * 9}])
    run(make_pipeline(), source(emu, "catalogs", max_attempts=3))
    assert [e["status"] for e in ctl.requests() if e["path"] == "/catalogs/bags"][:10] == [429] * 9 + [200]
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", "catalogs", ctl.export("catalogs"))
