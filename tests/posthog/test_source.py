"""The PostHog source against its emulator over HTTPS on loopback: exact loads, incremental
runs, ties, late events, windows, concurrency, throttling, failures and resumption."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from emulators.posthog.hogql import OFFSET_MESSAGE
from sources.common.errors import RequestRejected, ServerError
from sources.posthog import settings as S

from .helpers import connect, event_windows, max_overlap, queries, resource_state, root, run, source
from .truth import assert_matches_emulator, assert_table_equals

SCALE = 700
DAY = dt.timedelta(days=1)


@pytest.fixture
def emu(start_emulator: Any) -> Any:
    return start_emulator("posthog", scale=SCALE, seed=11)


@pytest.fixture
def ctl(emu: Any, control_for: Any) -> Any:
    return control_for(emu)


def test_backfill_equals_the_emulator_exactly(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    # small pages, so page boundaries fall inside the seeded runs of events sharing one microsecond
    counts = run(pipeline, source(emu, events_page_size=450))
    log = ctl.requests()
    assert all(e["status"] == 200 for e in log), Counter(e["status"] for e in log)
    with connect(tmp_path) as con:
        assert_matches_emulator(con, "data", ctl)
    events = ctl.export("events")
    assert counts["events"] == len(events) == ctl.state()["tables"]["events"]
    ties = Counter((e["project_id"], e["timestamp"]) for e in events).most_common(1)[0][1]
    assert ties > 450, "a run of tied events longer than a page was loaded exactly"
    qs = queries(log)
    assert qs and all(q["json"]["refresh"] == "force_blocking" for q in qs), "PostHog's cache is never trusted"
    assert not any("OFFSET" in q["json"]["query"]["query"].upper() for q in qs)
    # the refusal (OFFSET_MESSAGE) only ever comes with a 400 on /query/: there is none
    assert not [e for e in log if e["path"].endswith("/query/") and e["status"] == 400], OFFSET_MESSAGE
    per_project = resource_state(pipeline, "events")["projects"]
    assert set(per_project) == {str(p) for p in emu.backend.projects}
    assert {st["last_run"]["mode"] for st in per_project.values()} == {"backfill"}
    assert emu.backend.concurrency_refusals == 0
    assert all(n <= 3 for n in emu.backend.max_in_flight.values())


def test_second_run_without_changes_loads_nothing_with_few_queries(emu, ctl, make_pipeline):
    pipeline = make_pipeline()
    run(pipeline, source(emu, "events", "event_summaries"))
    ctl.clear_requests()
    counts = run(pipeline, source(emu, "events", "event_summaries"))
    assert counts.get("events", 0) == 0 and counts.get("event_summaries", 0) == 0, counts
    per = Counter((q["project"], q["json"]["name"]) for q in queries(ctl.requests()))
    for pid in emu.backend.projects:
        assert 1 <= per[(pid, "cdp_sync_events")] <= 2, per  # one window (two across midnight)
        assert 3 <= per[(pid, "cdp_sync_event_summaries")] <= 4, per  # the trailing three days
        assert per[(pid, "cdp_sync_event_bounds")] == 0


def test_2000_events_on_one_microsecond_across_page_boundaries_load_once(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    run(pipeline, source(emu, "events"))
    tied = ctl.mutate({"op": "add_events", "count": 2000, "late_seconds": 900, "same_timestamp": True})
    ctl.clear_requests()
    counts = run(pipeline, source(emu, "events", events_page_size=300))
    assert counts["events"] == 2000
    assert len(tied["timestamps"]) == 1
    pages = [q for q in queries(ctl.requests()) if q["project"] == tied["project_id"]]
    assert len(pages) >= 2000 // 300, "the tie run spans several pages"
    with connect(tmp_path) as con:
        loaded = [r[0] for r in con.execute(
            "select uuid from data.events where timestamp = ?", [dt.datetime.fromisoformat(tied["timestamps"][0])]
        ).fetchall()]
        assert sorted(loaded) == sorted(tied["uuids"])
        assert_matches_emulator(con, "data", ctl, "events")


def test_an_event_stored_twice_loads_once(emu, ctl, make_pipeline, tmp_path):
    # copies not yet merged by ClickHouse come back side by side, on one page or across two
    pid = min(emu.backend.projects)
    copies = ctl.mutate({"op": "duplicate_events", "count": 300, "project_id": pid})
    events = ctl.export("events")
    assert len(events) == len({(e["project_id"], e["uuid"]) for e in events}) + 300
    pipeline = make_pipeline()
    counts = run(pipeline, source(emu, "events", events_page_size=97))
    assert counts["events"] == len(events) - 300
    with connect(tmp_path) as con:
        n, distinct = con.execute("select count(*), count(distinct uuid) from data.events").fetchone()
        loaded = {r[0] for r in con.execute("select uuid from data.events").fetchall()}
    assert n == distinct == len({e["uuid"] for e in events})
    assert set(copies["uuids"]) <= loaded


def test_late_events_inside_the_lookback_load_outside_is_the_known_limit(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    run(pipeline, source(emu, "events"))
    inside = ctl.mutate({"op": "add_events", "count": 7, "late_seconds": 1800})  # lookback is 1 h
    outside = ctl.mutate({"op": "add_events", "count": 4, "late_seconds": 3 * 3600})
    counts = run(pipeline, source(emu, "events"))
    assert counts["events"] == 7
    with connect(tmp_path) as con:
        uuids = {r[0] for r in con.execute("select uuid from data.events").fetchall()}
    assert set(inside["uuids"]) <= uuids
    assert not set(outside["uuids"]) & uuids, "beyond the lookback a late event is not seen (documented)"
    # a wider lookback reaches them; rows re-read beyond the remembered window merge in place
    counts = run(pipeline, source(emu, "events", events_lookback_seconds=4 * 3600))
    assert counts["events"] >= 4
    with connect(tmp_path) as con:
        assert_matches_emulator(con, "data", ctl, "events")


def test_windows_longer_than_a_day_are_split_and_tile_the_range(emu, ctl, make_pipeline, tmp_path):
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3, hours=7)).replace(microsecond=0)
    pipeline = make_pipeline()
    run(pipeline, source(emu, "events", start_date=start.isoformat()))
    by_project = defaultdict(set)
    for pid, a, b in event_windows(ctl.requests()):
        assert b - a <= DAY
        by_project[pid].add((a, b))
    for pid in emu.backend.projects:
        spans = sorted(by_project[pid])
        assert len(spans) >= 4 and spans[0][0] == start
        assert all(x[1] == y[0] for x, y in zip(spans, spans[1:], strict=False)), "windows are contiguous"
    ctl.clear_requests()
    run(make_pipeline("six_hours", db="six.duckdb"), source(emu, "events", start_date=start.isoformat(),
                                                            events_window_hours=6))
    assert all(b - a <= dt.timedelta(hours=6) for _, a, b in event_windows(ctl.requests()))
    with connect(tmp_path, "six.duckdb") as con:
        loaded = con.execute("select count(*) from data.events").fetchone()[0]
    expected = [e for e in ctl.export("events")
                if dt.datetime.fromisoformat(e["timestamp"]) >= start]
    assert loaded == len(expected)


def test_windows_of_a_project_are_fetched_concurrently_within_three(emu, ctl, make_pipeline):
    ctl.configure(latency_ms=40)
    run(make_pipeline(), source(emu, "events"))
    ctl.configure(latency_ms=0)
    for pid in emu.backend.projects:
        entries = [q for q in queries(ctl.requests()) if q["project"] == pid and q["json"]["name"] == "cdp_sync_events"]
        assert len(entries) > 6
        assert 2 <= max_overlap(entries) <= 3


def test_a_clamped_limit_is_detected_and_paged_through(emu, ctl, make_pipeline, tmp_path):
    ctl.configure(query_max_rows=250)  # the server silently returns fewer rows than asked
    run(make_pipeline(), source(emu, "events", "event_summaries", events_page_size=1000))
    with connect(tmp_path) as con:
        assert_matches_emulator(con, "data", ctl, "events", "event_summaries")


def test_throttling_mid_run_ends_with_the_exact_set(start_emulator, control_for, make_pipeline, tmp_path):
    emu = start_emulator("posthog", scale=300, seed=4, history_days=4,
                         rate_limits={"query": [[8, 2]], "crud": [[8, 2]], "clickhouse": [[8, 2]]})
    ctl = control_for(emu)
    run(make_pipeline(), source(emu, "events", "event_summaries", "persons", "cohorts", persons_page_size=50))
    log = ctl.requests()
    throttled = [e for e in log if e["status"] == 429]
    assert len(throttled) >= 3, "the run was throttled"
    with connect(tmp_path) as con:
        assert_matches_emulator(con, "data", ctl, "events", "event_summaries", "persons", "cohorts")


def test_changes_between_runs_are_picked_up_exactly(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    tables = ("persons", "cohorts", "feature_flags", "annotations", "insights", "event_summaries", "events")
    run(pipeline, source(emu, *tables))
    pid = next(iter(emu.backend.projects))
    changed = ctl.mutate({"op": "modify_persons", "count": 9, "project_id": pid})
    ctl.mutate({"op": "add_persons", "count": 5})
    ctl.mutate({"op": "add_objects", "table": "cohorts", "count": 2})
    ctl.mutate({"op": "modify_objects", "table": "feature_flags", "count": 3})
    ctl.mutate({"op": "add_events", "count": 40, "late_seconds": 6 * 3600})  # yesterday's or today's counts move
    run(pipeline, source(emu, *tables))
    with connect(tmp_path) as con:
        assert_matches_emulator(con, "data", ctl, "persons", "cohorts", "feature_flags", "event_summaries")
        plans = {r[0]: r[1] for r in con.execute(
            "select uuid, json_extract_string(properties, '$.plan') from data.persons").fetchall()}
    new = {p["uuid"]: p["properties"].get("plan") for p in ctl.export("persons")}
    assert all(plans[u] == new[u] for u in changed["uuids"])


def test_persons_in_both_documented_shapes(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    run(pipeline, source(emu, "persons", persons_page_size=200))
    with connect(tmp_path) as con:
        assert_matches_emulator(con, "data", ctl, "persons")
    ctl.configure(persons_shape="docs")  # integer id and last_seen_at, as the docs show
    run(pipeline, source(emu, "persons", persons_page_size=200))
    with connect(tmp_path) as con:
        assert_matches_emulator(con, "data", ctl, "persons")
        assert con.execute("select count(*) from data.persons where last_seen_at is null").fetchone()[0] == 0


def test_injected_failure_mid_run_commits_nothing_and_a_rerun_is_exact(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    ctl.add_faults([{"path": "/query/$", "method": "POST",
                     "actions": [{"pass": True}] * 9 + [{"status": 400, "json": {
                         "type": "validation_error", "code": "invalid_input", "detail": "boom", "attr": None}}]}])
    with pytest.raises(PipelineStepFailed) as failed:
        run(pipeline, source(emu, "events", "event_summaries"))
    assert isinstance(root(failed.value), RequestRejected)
    assert "events" not in pipeline.state.get("sources", {}).get("posthog", {}).get("resources", {})
    ctl.mutate({"op": "add_events", "count": 15, "late_seconds": 120})
    run(pipeline, source(emu, "events", "event_summaries"))
    with connect(tmp_path) as con:
        assert_matches_emulator(con, "data", ctl, "events", "event_summaries")


def test_transient_failures_are_retried(emu, ctl, make_pipeline, tmp_path):
    throttled = {"type": "throttled_error", "code": "throttled",
                 "detail": "Request was throttled. Expected available in 1 second.", "attr": None}
    ctl.add_faults([
        {"path": "/cohorts/", "actions": [{"status": 503, "body": "upstream"}, {"status": 429, "json": throttled}]},
        {"path": "/query/$", "method": "POST", "actions": [
            {"pass": True}, {"drop": True}, {"pass": True}, {"truncate": True}, {"pass": True},
            {"status": 502, "body": "bad gateway"}]},
    ])
    run(make_pipeline(), source(emu, "cohorts", "events"))
    cohort_statuses = [e["status"] for e in ctl.requests() if "/cohorts/" in e["path"]][:3]
    assert cohort_statuses == [503, 429, 200]
    faults = {e["fault"] for e in ctl.requests() if e["fault"]}
    assert {"drop", "truncate", "status"} <= faults
    with connect(tmp_path) as con:
        assert_matches_emulator(con, "data", ctl, "cohorts", "events")


def test_server_errors_past_the_budget_fail_loudly(emu, ctl, make_pipeline):
    ctl.configure(query_timeout_rows=50)  # every window holds more rows than the execution budget
    with pytest.raises(PipelineStepFailed) as failed:
        run(make_pipeline(), source(emu, "events", max_attempts=2, max_retry_wait=5))
    err = root(failed.value)
    assert isinstance(err, ServerError) and "500" in str(err) and "ClickHouse error" in str(err)


def test_restricted_key_skips_unreadable_projects_loudly(emu, ctl, make_pipeline, tmp_path, caplog):
    key = emu.backend.restricted_key  # person:read, query:read, project:read on the first project only
    first = next(iter(emu.backend.projects))
    pipeline = make_pipeline()
    from sources.posthog import posthog_source

    info = pipeline.run(posthog_source(api_key=key, base_url=emu.base_url).with_resources("persons", "events"),
                        loader_file_format="parquet")
    info.raise_on_failed_jobs()
    state = resource_state(pipeline, "persons")
    assert set(state["unreachable_projects"]) == {str(p) for p in emu.backend.projects if p != first}
    assert "cannot read it" in caplog.text
    with connect(tmp_path) as con:
        assert {r[0] for r in con.execute("select distinct project_id from data.persons").fetchall()} == {first}
        expected = [p for p in ctl.export("persons") if p["project_id"] == first]
        assert_table_equals(con, "data", S.PERSONS, expected)
    with pytest.raises(PipelineStepFailed) as failed:
        pipeline.run(posthog_source(api_key=key, base_url=emu.base_url).with_resources("cohorts"))
    assert "cohort:read" in str(root(failed.value)) and "403" in str(root(failed.value))


def test_configured_projects_only(emu, ctl, make_pipeline, tmp_path):
    second = list(emu.backend.projects)[1]
    run(make_pipeline(), source(emu, "events", "groups", project_ids=[second]))
    with connect(tmp_path) as con:
        assert {r[0] for r in con.execute("select distinct project_id from data.events").fetchall()} == {second}
        groups = [g for g in ctl.export("groups") if g["project_id"] == second]
        names = {(t["project_id"], t["group_type_index"]): t["group_type"] for t in ctl.export("group_types")}
        assert_table_equals(con, "data", S.GROUPS,
                            [{**g, "group_type": names[(second, g["group_type_index"])]} for g in groups])


def test_a_long_backfill_in_bounded_runs_commits_progress_and_ends_exact(emu, ctl, make_pipeline, tmp_path):
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=9)).replace(microsecond=0)
    pipeline = make_pipeline()
    cursors, runs = [], 0
    while runs < 10:
        run(pipeline, source(emu, "events", start_date=start.isoformat(), events_max_windows=3))
        runs += 1
        per_project = resource_state(pipeline, "events")["projects"]
        cursors.append(min(st["cursor"] for st in per_project.values()))
        if not any("first" in st["last_run"]["mode"] for st in per_project.values()):
            break
    assert 3 <= runs < 10 and cursors == sorted(cursors), "each bounded run moved the cursor forward"
    with connect(tmp_path) as con:
        loaded = con.execute("select count(*), count(distinct uuid) from data.events").fetchone()
    expected = [e for e in ctl.export("events") if dt.datetime.fromisoformat(e["timestamp"]) >= start]
    assert loaded == (len(expected), len(expected))


def test_without_fingerprints_the_lookback_window_merges_again_exactly(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    run(pipeline, source(emu, "events", events_max_fingerprints=0))
    per_project = resource_state(pipeline, "events")["projects"]
    assert all(st["seen"] == {} for st in per_project.values())
    counts = run(pipeline, source(emu, "events", events_max_fingerprints=0))
    assert counts["events"] > 0, "the last hour is loaded again"
    with connect(tmp_path) as con:
        assert_matches_emulator(con, "data", ctl, "events")


def test_a_summary_row_of_another_day_stops_the_run(emu):
    from sources.common.errors import MalformedResponse
    from sources.posthog import PostHogClient
    from sources.posthog.client import project_days

    api = PostHogClient(emu.api_key, emu.base_url)
    try:
        project = api.projects()[0]
        day, start, end = project_days(emu.backend.now() - 86_400 * 10**6, emu.backend.now(), project["timezone"])[0]
        assert list(api.summaries_window(project["id"], start, end, day=day)), "the day has events"
        with pytest.raises(MalformedResponse, match="time zone"):
            list(api.summaries_window(project["id"], start, end, day="1999-12-31"))
    finally:
        api.close()


def test_a_bounded_window_reads_exactly_its_events_without_state(emu, ctl):
    from sources.posthog import PostHogClient, read_events_window
    from sources.posthog.client import iso_to_us

    pid = list(emu.backend.projects)[1]  # a project whose time zone is not UTC
    events = sorted((e for e in ctl.export("events") if e["project_id"] == pid), key=lambda e: e["timestamp"])
    start, end = iso_to_us(events[len(events) // 5]["timestamp"]), iso_to_us(events[len(events) // 2]["timestamp"])
    expected = {e["uuid"] for e in events if start <= iso_to_us(e["timestamp"]) < end}
    api = PostHogClient(emu.api_key, emu.base_url)
    try:
        rows = [r for page in read_events_window(api, pid, start, end, page_size=97, window_hours=5, workers=3)
                for r in page]
    finally:
        api.close()
    assert len(rows) == len(expected) and {r["uuid"] for r in rows} == expected
