"""The Synerise source against its emulator over HTTPS on loopback."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sources.common.errors import AuthError, ConfigurationError, RequestRejected

from .support import connect, events_in, resource_state, root_error, run, source
from .truth import assert_table_equals

SNAPSHOTS = ("profiles", "catalogs", "catalog_items", "tags", "asset_tags", "expressions", "aggregates",
             "expression_summaries", "aggregate_summaries")


def configured(ctl: Any) -> dict[str, Any]:
    """Options naming real segmentations, profiles and analytics of the emulated workspace."""
    segs = ctl.export("segmentations")
    profiles = ctl.export("profiles")
    exprs, aggs = ctl.export("expressions"), ctl.export("aggregates")
    return {
        "segmentation_uuids": [segs[1]["uuid"], segs[2]["uuid"]],
        "profile_event_ids": [p["clientId"] for p in profiles[:6]],
        "analytics_expression_uuids": [exprs[0]["id"], exprs[3]["id"]],
        "analytics_aggregate_uuids": [aggs[1]["aggregate"]["uuid"]],
    }


def query(entry: dict[str, Any]) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(entry["query"]).items()}


def assert_within_limits(log: list[dict[str, Any]]) -> None:
    """Every request stays inside the documented (or the emulator's stricter) caps."""
    assert log
    for e in log:
        q = query(e)
        if e["path"] == "/activities-api/activities":
            assert 1 <= int(q["limit"]) <= 1000 and int(q["dateFrom"]) <= int(q["dateTo"]), e
        elif e["path"] == "/v4/clients":
            assert int(q["pageIndex"]) >= 1 and int(q["pageSize"]) <= 500, e
        elif e["path"].startswith("/crm/"):
            assert int(q["limit"]) <= 100, e
        elif e["path"].startswith("/client-exporter/v2/export/clients/task"):
            assert int(q["limit"]) <= 10000, e


def test_first_run_equals_the_emulator_exactly(emu, ctl, make_pipeline, tmp_path):
    options = configured(ctl)
    pipeline = make_pipeline()
    counts = run(pipeline, source(emu, **options))
    log = ctl.requests()
    assert all(e["status"] == 200 for e in log), Counter((e["path"], e["status"]) for e in log)
    assert_within_limits(log)
    logins = [e for e in log if e["path"] == "/uauth/v2/auth/login/profile"]
    assert len(logins) == 1, "one token for the whole run, shared by the parallel resources"
    events = ctl.export("events")
    window = resource_state(pipeline, "events")["last_run"]
    lo, hi = window["window_from"], window["window_to"]
    assert hi - lo >= 5 * 3600_000, "the first run reads (almost) the whole 6-hour horizon"
    with connect(tmp_path) as con:
        for table in SNAPSHOTS:
            assert_table_equals(con, "data", table, ctl.export(table))
        assert_table_equals(con, "data", "events", events_in(events, lo, hi))
        mine = set(options["profile_event_ids"])
        assert_table_equals(con, "data", "profile_events", [e for e in events if e["client"]["id"] in mine])
        segs = set(options["segmentation_uuids"])
        assert_table_equals(con, "data", "segmentation_members",
                            [m for m in ctl.export("segmentation_members") if m["segmentation_uuid"] in segs])
        wanted = set(options["analytics_expression_uuids"] + options["analytics_aggregate_uuids"])
        assert_table_equals(con, "data", "analytics_values", [
            v for v in ctl.export("analytics_values") if v["analytic_uuid"] in wanted and v["client_id"] in mine
        ])
        # timestamps are timestamps, open-ended attributes are JSON
        types = dict(con.execute("select column_name, data_type from information_schema.columns "
                                 "where table_schema = 'data' and table_name = 'profiles'").fetchall())
        assert types["last_activity_date"] == "TIMESTAMP WITH TIME ZONE" and types["attributes"] == "JSON"
    assert counts["events"] == len(events_in(events, lo, hi)) > 0
    activity_requests = [e for e in log if e["path"] == "/activities-api/activities"]
    assert len(activity_requests) >= 6, "the 6-hour window is read in hourly pieces"


def test_second_run_without_changes_loads_no_events_with_few_requests(emu, ctl, make_pipeline):
    options = configured(ctl)
    pipeline = make_pipeline()
    run(pipeline, source(emu, "events", "profile_events", **options))
    ctl.clear_requests()
    counts = run(pipeline, source(emu, "events", "profile_events", **options))
    assert counts.get("events", 0) == 0 and counts.get("profile_events", 0) == 0, counts
    paths = Counter(e["path"] for e in ctl.requests())
    # one server-time call; the ~10-minute re-read window is one piece, one request
    assert paths["/v4/server/time"] == 1
    assert paths["/activities-api/activities"] == 1, paths
    # one page per configured profile (each holds a handful of events)
    assert paths["/activities-api/events/by/id"] == len(options["profile_event_ids"]), paths


def test_changes_are_picked_up_exactly(emu, ctl, make_pipeline, tmp_path):
    options = configured(ctl)
    pipeline = make_pipeline()
    run(pipeline, source(emu, **options))
    first_hi = resource_state(pipeline, "events")["last_run"]["window_to"]
    modified = ctl.mutate({"op": "modify_profiles", "count": 15})["client_ids"]
    added = ctl.mutate({"op": "add_profiles", "count": 7})["client_ids"]
    merges = ctl.mutate({"op": "merge_profiles", "count": 3})["merges"]
    new_events = ctl.mutate({"op": "add_events", "count": 40, "ago_ms": 0, "spread_ms": 30_000})
    # late: happened before the last run's end, arrived after it; inside the 10-minute lookback
    late = ctl.mutate({"op": "add_events", "count": 12, "ago_ms": 4 * 60_000, "spread_ms": 60_000})
    mine = options["profile_event_ids"][:2]
    # back-dated events of configured profiles: inside the per-profile lookback, and far behind it
    history = ctl.mutate({"op": "add_events", "count": 5, "ago_ms": 5 * 60_000, "client_ids": mine})
    too_late = ctl.mutate({"op": "add_events", "count": 2, "ago_ms": 400 * 86_400_000, "client_ids": mine})
    ctl.mutate({"op": "modify_items", "count": 4})
    ctl.mutate({"op": "add_items", "count": 3})
    ctl.mutate({"op": "delete_items", "count": 2})
    ctl.mutate({"op": "advance_clock", "seconds": 120})
    assert late["to_ms"] < first_hi, "the late events sit before the previous window's end"
    counts = run(pipeline, source(emu, **options))
    # exactly the new and the late events (the 5 back-dated ones too), nothing re-read twice
    assert counts["events"] == 40 + 12 + 5
    # per-profile cursors catch back-dated events inside their lookback
    assert counts.get("profile_events", 0) == 5 + sum(1 for u in new_events["uuids"] + late["uuids"]
                                               if _client_of(ctl, u) in set(options["profile_event_ids"]))
    events = ctl.export("events")
    window = resource_state(pipeline, "events")["last_run"]
    with connect(tmp_path) as con:
        for table in SNAPSHOTS:
            assert_table_equals(con, "data", table, ctl.export(table))
        loaded = {r[0] for r in con.execute("select event_uuid from data.events").fetchall()}
        assert set(new_events["uuids"]) | set(late["uuids"]) | set(history["uuids"]) <= loaded
        assert_table_equals(con, "data", "events", [e for e in events if e["eventUUID"] in loaded])
        per_profile = {r[0] for r in con.execute("select event_uuid from data.profile_events").fetchall()}
        assert set(history["uuids"]) <= per_profile
        # documented limit: an event back-dated further than the lookback behind a profile's cursor
        assert not set(too_late["uuids"]) & per_profile
        gone = {m["merged"] for m in merges}
        left = {r[0] for r in con.execute("select client_id from data.profiles").fetchall()}
        assert not gone & left, "profiles merged into others are removed"
        assert set(added) <= left and set(modified) - gone <= left
    assert window["window_to"] > first_hi


def _client_of(ctl: Any, event_uuid: str) -> int:
    cache = getattr(ctl, "_event_clients", None)
    if cache is None:
        cache = {e["eventUUID"]: e["client"]["id"] for e in ctl.export("events")}
        ctl._event_clients = cache
    return cache[event_uuid]


def test_a_window_of_3500_events_is_loaded_completely_by_splitting(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    run(pipeline, source(emu, "events"))
    burst = ctl.mutate({"op": "add_events", "count": 3500, "ago_ms": 0, "spread_ms": 20_000})
    ctl.mutate({"op": "advance_clock", "seconds": 90})
    ctl.clear_requests()
    counts = run(pipeline, source(emu, "events"))
    assert counts["events"] == 3500
    with connect(tmp_path) as con:
        loaded = {r[0] for r in con.execute("select event_uuid from data.events").fetchall()}
    assert set(burst["uuids"]) <= loaded
    windows = [query(e) for e in ctl.requests() if e["path"] == "/activities-api/activities"]
    assert len(windows) >= 7, "3,500 events need at least four windows under the cap, plus the full ones split"
    assert all(int(w["limit"]) == 1000 for w in windows)
    assert "truncated" not in resource_state(pipeline, "events")


def test_more_than_the_cap_in_one_millisecond_is_reported_not_silently_dropped(emu, ctl, make_pipeline, caplog):
    caplog.set_level(logging.WARNING, logger="cdp_sync.progress")
    pipeline = make_pipeline()
    run(pipeline, source(emu, "events"))
    tie = ctl.mutate({"op": "add_events", "count": 1200, "ago_ms": 0})
    assert tie["from_ms"] == tie["to_ms"]
    ctl.mutate({"op": "advance_clock", "seconds": 90})
    counts = run(pipeline, source(emu, "events"))
    assert counts["events"] == 1000, "what the API returns is loaded"
    truncated = resource_state(pipeline, "events")["truncated"]
    assert [t["time_ms"] for t in truncated] == [tie["from_ms"]] and truncated[0]["returned"] == 1000
    assert "share the millisecond" in caplog.text


def test_cursor_older_than_the_horizon_reports_and_records_the_gap(emu, ctl, make_pipeline, caplog):
    caplog.set_level(logging.WARNING, logger="cdp_sync.progress")
    pipeline = make_pipeline()
    run(pipeline, source(emu, "events"))
    cursor = resource_state(pipeline, "events")["cursor"]
    ctl.mutate({"op": "advance_clock", "seconds": 7 * 3600})  # tokens (1 h) expire too: re-login on 401
    fresh = ctl.mutate({"op": "add_events", "count": 25, "ago_ms": 30 * 60_000, "spread_ms": 60_000})
    counts = run(pipeline, source(emu, "events"))
    assert counts["events"] == 25
    state = resource_state(pipeline, "events")
    (gap,) = state["unreachable"]
    assert gap["from_ms"] == cursor + 1
    assert abs(gap["hours"] - 1.0) < 0.1, gap  # 7 h later, 6 h are reachable: about one hour is lost
    assert "UNREACHABLE GAP" in caplog.text
    assert state["last_run"]["window_from"] == gap["to_ms"] + 1
    assert fresh["from_ms"] >= state["last_run"]["window_from"]


def test_token_expiring_between_two_pages_does_not_fail_the_run(emu, ctl, make_pipeline, tmp_path):
    expired = {"timestamp": "2026-01-01T00:00:00.000+00:00", "status": 401, "error": "Unauthorized",
               "message": "Token expired", "path": "/v4/clients"}
    ctl.add_faults([{"path": "^/v4/clients\\?", "actions": [{"pass": True}, {"pass": True},
                                                            {"status": 401, "json": expired}]}])
    pipeline = make_pipeline()
    run(pipeline, source(emu, "profiles", profiles_page_size=40))
    log = [(e["path"], query(e).get("pageIndex"), e["status"]) for e in ctl.requests()]
    at = log.index(("/v4/clients", "3", 401))
    assert log[at + 1] == ("/uauth/v2/auth/login/profile", None, 200)
    assert log[at + 2] == ("/v4/clients", "3", 200), "the same page is asked again after the new login"
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", "profiles", ctl.export("profiles"))


def test_short_lived_tokens_are_renewed_during_a_run(start_emulator, control_for, make_pipeline, tmp_path):
    emu = start_emulator("synerise", scale=300, seed=3, token_ttl_s=1.0, latency_ms=40)
    ctl = control_for(emu)
    pipeline = make_pipeline()
    run(pipeline, source(emu, "profiles", profiles_page_size=8))  # 38 pages: well over a second
    logins = [e for e in ctl.requests() if e["path"] == "/uauth/v2/auth/login/profile"]
    assert len(logins) >= 2
    # renewed ahead of expiry; a token that still expires in flight is answered 401 and renewed
    assert {e["status"] for e in ctl.requests()} <= {200, 401}
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", "profiles", ctl.export("profiles"))


def test_a_second_401_after_a_fresh_login_fails_clearly(emu, ctl, make_pipeline):
    body = {"status": 401, "error": "Unauthorized", "message": "Token expired"}
    ctl.add_faults([{"path": "^/catalogs/bags", "actions": [{"status": 401, "json": body}] * 2}])
    with pytest.raises(PipelineStepFailed) as failed:
        run(make_pipeline(), source(emu, "catalogs"))
    err = root_error(failed.value)
    assert isinstance(err, AuthError) and err.status == 401 and "synerise" in str(err)
    logins = [e for e in ctl.requests() if e["path"] == "/uauth/v2/auth/login/profile"]
    assert len(logins) == 2, "one login, then exactly one re-login for the failed request"


def test_transient_failures_and_429_are_retried(emu, ctl, make_pipeline, tmp_path):
    busy = {"timestamp": "2026-01-01T00:00:00.000+00:00", "status": 429, "error": "Too Many Requests",
            "message": "slow down", "path": "/catalogs/bags"}
    ctl.add_faults([
        {"path": "^/catalogs/bags\\?", "actions": [{"status": 429, "json": busy, "headers": {"Retry-After": "1"}},
                                                   {"status": 503, "body": "unavailable"}]},
        {"path": "^/catalogs/bags/\\d+/items", "actions": [{"pass": True}, {"drop": True}, {"truncate": True},
                                                           {"status": 502, "body": "bad gateway"}]},
    ])
    run(make_pipeline(), source(emu, "catalogs", "catalog_items", catalog_page_size=50))
    statuses = [e["status"] for e in ctl.requests() if e["path"] == "/catalogs/bags"]
    assert statuses[:3] == [429, 503, 200]
    faults = Counter(e["fault"] for e in ctl.requests() if e["fault"])
    assert faults["drop"] == 1 and faults["truncate"] == 1
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", "catalogs", ctl.export("catalogs"))
        assert_table_equals(con, "data", "catalog_items", ctl.export("catalog_items"))


def test_failure_mid_run_leaves_state_then_rerun_is_exact(emu, ctl, make_pipeline, tmp_path):
    options = configured(ctl)
    ctl.add_faults([{"path": "^/activities-api/events/by", "actions": [{"pass": True}] * 3 + [
        {"status": 400, "json": {"status": 400, "error": "Bad Request", "message": "boom"}}]}])
    pipeline = make_pipeline()
    with pytest.raises(PipelineStepFailed) as failed:
        run(pipeline, source(emu, "events", "profile_events", "profiles", **options))
    assert isinstance(root_error(failed.value), RequestRejected)
    assert "events" not in pipeline.state.get("sources", {}).get("synerise", {}).get("resources", {})
    ctl.mutate({"op": "modify_profiles", "count": 5})
    run(pipeline, source(emu, "events", "profile_events", "profiles", **options))
    run(pipeline, source(emu, "events", "profile_events", "profiles", **options))
    events = ctl.export("events")
    mine = set(options["profile_event_ids"])
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", "profiles", ctl.export("profiles"))
        assert_table_equals(con, "data", "profile_events", [e for e in events if e["client"]["id"] in mine])
        loaded = {r[0] for r in con.execute("select event_uuid from data.events").fetchall()}
        assert_table_equals(con, "data", "events", [e for e in events if e["eventUUID"] in loaded])


def test_profile_events_backfill_walks_every_profile_concurrently(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    counts = run(pipeline, source(emu, "profiles", "profile_events", profile_events_backfill=True))
    live = {p["clientId"] for p in ctl.export("profiles")}
    expected = [e for e in ctl.export("events") if e["client"]["id"] in live]
    assert counts["profile_events"] == len(expected)
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", "profile_events", expected)
    per_profile = resource_state(pipeline, "profile_events")["profiles"]
    assert len(per_profile) == len(live)
    # a second run asks each profile once and loads nothing
    ctl.clear_requests()
    counts = run(pipeline, source(emu, "profiles", "profile_events", profile_events_backfill=True))
    assert counts.get("profile_events", 0) == 0
    walked = [e for e in ctl.requests() if e["path"] == "/activities-api/events/by/id"]
    assert len(walked) == len(live)


def test_export_task_mode_loads_a_frozen_snapshot_and_analytics_columns(emu, ctl, make_pipeline, tmp_path):
    segs = ctl.export("segmentations")
    exprs, aggs = ctl.export("expressions"), ctl.export("aggregates")
    pipeline = make_pipeline()
    run(pipeline, source(emu, "profiles", export_segmentation_uuid=segs[0]["uuid"],
                         export_expressions=[exprs[2]["id"]], export_aggregates=[aggs[0]["aggregate"]["uuid"]]))
    profiles = ctl.export("profiles")
    wanted = {exprs[2]["id"], aggs[0]["aggregate"]["uuid"]}
    values = [v for v in ctl.export("analytics_values") if v["analytic_uuid"] in wanted]
    with connect(tmp_path) as con:
        rows = con.execute("select client_id, email, first_name, city, birth_date, last_activity_date "
                           "from data.profiles").fetchall()
        assert_table_equals(con, "data", "analytics_values", values)
    from .truth import ms

    expected = {(p["clientId"], p["email"], p["firstName"], p["city"], ms(p["birthDate"]), ms(p["lastActivityDate"]))
                for p in profiles}
    got = {(r[0], r[1], r[2], r[3], None if r[4] is None else int(r[4].timestamp() * 1000),
            int(r[5].timestamp() * 1000)) for r in rows}
    assert got == expected and len(rows) == len(profiles)
    creates = [e for e in ctl.requests() if e["path"] == "/client-exporter/v2/export/clients"]
    assert len(creates) == 1


def test_segmentation_membership_changes_replace_the_members(emu, ctl, make_pipeline, tmp_path):
    segs = ctl.export("segmentations")
    pipeline = make_pipeline()
    run(pipeline, source(emu, "segmentation_members", segmentation_uuids=[segs[1]["uuid"]], crm_page_size=25))
    churn = ctl.mutate({"op": "churn_segmentation", "uuid": segs[1]["uuid"], "add": 4, "remove": 6})
    run(pipeline, source(emu, "segmentation_members", segmentation_uuids=[segs[1]["uuid"]], crm_page_size=25))
    members = [m for m in ctl.export("segmentation_members") if m["segmentation_uuid"] == segs[1]["uuid"]]
    assert {m["id"] for m in members} >= set(churn["added"])
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", "segmentation_members", members)


def test_refused_key_and_missing_permission_are_clear_auth_errors(start_emulator, make_pipeline):
    emu = start_emulator("synerise", scale=50, seed=2, denied_permissions=["CATALOGS_CATALOG_READ"])
    with pytest.raises(PipelineStepFailed) as refused:
        run(make_pipeline("a"), source_with_key(emu, "0f0f0f0f-1111-4222-8333-444455556666", "tags"))
    err = root_error(refused.value)
    assert isinstance(err, AuthError) and err.status == 401 and "refused" in str(err)
    with pytest.raises(PipelineStepFailed) as denied:
        run(make_pipeline("b"), source(emu, "catalogs"))
    err = root_error(denied.value)
    assert isinstance(err, AuthError) and err.status == 403 and "CATALOGS_CATALOG_READ" in str(err)


def source_with_key(emu: Any, key: str, *resources: str) -> Any:
    from sources.synerise import synerise_source

    return synerise_source(api_key=key, base_url=emu.base_url).with_resources(*resources)


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"base_url": "http://127.0.0.1:9"}, "HTTPS"),
        ({"api_key": "short"}, "workspace API key"),
        ({"events_initial_hours": 12}, "6 hours"),
        ({"events_workers": 0}, "events_workers"),
        ({"export_expressions": ["x"]}, "export_segmentation_uuid"),
    ],
)
def test_bad_configuration_is_one_clear_error(emu, options, needle):
    from sources.synerise import synerise_source

    kwargs = {"api_key": emu.api_key, "base_url": emu.base_url, **options}
    with pytest.raises(Exception) as bad:
        synerise_source(**kwargs)
    err = root_error(bad.value)
    assert isinstance(err, ConfigurationError) and needle in str(err), str(err)


def test_membership_changing_mid_walk_is_read_again_without_gaps(emu, ctl, make_pipeline, tmp_path):
    import threading

    seg = ctl.export("segmentations")[1]["uuid"]
    before = [m["id"] for m in ctl.export("segmentation_members") if m["segmentation_uuid"] == seg]
    # the second page waits a moment at the server; meanwhile three members of the first page leave,
    # so every later offset shifts by three and the first pass skips three members
    ctl.add_faults([{"path": f"^/crm/v1/segmentations/{seg}/clients", "actions": [{"pass": True},
                                                                                  {"pass": True, "latency_ms": 3000}]}])

    def churn_when_the_second_page_is_asked() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sum(1 for e in ctl.requests() if e["path"].startswith("/crm/")) >= 2:
                ctl.mutate({"op": "churn_segmentation", "uuid": seg, "remove_ids": before[:3], "add_ids": []})
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=churn_when_the_second_page_is_asked)
    watcher.start()
    pipeline = make_pipeline()
    try:
        run(pipeline, source(emu, "segmentation_members", segmentation_uuids=[seg], crm_page_size=25))
    finally:
        watcher.join()
    assert resource_state(pipeline, "segmentation_members")["segmentations"][seg]["passes"] == 2
    after = {m["id"] for m in ctl.export("segmentation_members") if m["segmentation_uuid"] == seg}
    with connect(tmp_path) as con:
        loaded = [r[0] for r in con.execute("select id from data.segmentation_members").fetchall()]
    assert len(loaded) == len(set(loaded)), "each member once"
    assert after <= set(loaded), "no member that stayed is skipped"
    assert set(loaded) - after == set(before[:3]), "only the members that left while it was read are extra"


def test_profiles_deleted_mid_walk_do_not_make_the_snapshot_skip_anyone(emu, ctl, make_pipeline, tmp_path):
    import threading

    everyone = [p["clientId"] for p in ctl.export("profiles")]
    ctl.add_faults([{"path": "^/v4/clients\\?", "actions": [{"pass": True}, {"pass": True, "latency_ms": 3000}]}])

    def merge_when_the_second_page_is_asked() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sum(1 for e in ctl.requests() if e["path"] == "/v4/clients") >= 2:
                # profiles of the first page disappear: every later page shifts back
                ctl.mutate({"op": "delete_profiles_by_id", "client_ids": everyone[:4]})
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=merge_when_the_second_page_is_asked)
    watcher.start()
    pipeline = make_pipeline()
    try:
        run(pipeline, source(emu, "profiles", profiles_page_size=50))
    finally:
        watcher.join()
    assert resource_state(pipeline, "profiles")["last_run"]["passes"] == 2
    live = {p["clientId"] for p in ctl.export("profiles")}
    with connect(tmp_path) as con:
        loaded = [r[0] for r in con.execute("select client_id from data.profiles").fetchall()]
    assert len(loaded) == len(set(loaded))
    assert live <= set(loaded), "no live profile is skipped"
    # deleted outright: no tombstone in the API, so what was read before the delete stays (documented)
    assert set(loaded) - live == set(everyone[:4])

