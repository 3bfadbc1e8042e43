"""PostHog backfills of ``events`` and ``event_summaries`` (per project), in-process against the
emulator over HTTPS on loopback."""

from __future__ import annotations

import datetime as dt
import shutil
from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

import dlt
import pendulum
import pytest

from pipelines.backfill import DONE, FAILED, SKIPPED
from sources.common.hints import DEDUPLICATED
from sources.posthog import posthog_source
from sources.posthog import settings as S
from tests.posthog.helpers import max_overlap, queries
from tests.posthog.truth import assert_matches_emulator, assert_table_equals

from .helpers import (
    DATASET,
    SCHEDULED,
    all_loads,
    assert_all,
    backfill,
    connect,
    keys_by_window,
    keys_loaded_by,
    scheduled_state,
    table_rows,
    window_load_ids,
)

SCALE = 300


@pytest.fixture
def emu(start_emulator: Any) -> Any:
    return start_emulator("posthog", scale=SCALE, seed=11)


@pytest.fixture
def ctl(emu: Any, control_for: Any) -> Any:
    return control_for(emu)


def past_range() -> tuple[pendulum.DateTime, pendulum.DateTime]:
    end = pendulum.now("UTC").start_of("day").subtract(days=1)
    return end.subtract(days=9), end


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def events_in(ctl: Any, t1: pendulum.DateTime, t2: pendulum.DateTime) -> list[dict[str, Any]]:
    return [e for e in ctl.export("events") if t1 <= at(e["timestamp"]) < t2]


def summaries_in(ctl: Any, t1: pendulum.DateTime, t2: pendulum.DateTime) -> list[dict[str, Any]]:
    """The summary rows of the project days whose midnight, in the project's zone, is in range."""
    zones = {p["id"]: ZoneInfo(p["timezone"] or "UTC") for p in ctl.export("projects")}
    out = []
    for r in ctl.export("event_summaries"):
        midnight = dt.datetime.combine(dt.date.fromisoformat(r["day"]), dt.time(), zones[r["project_id"]])
        if t1 <= midnight < t2:
            out.append(r)
    return out


def test_events_and_summaries_backfill_exactly_without_moving_the_schedule(emu, ctl, make_pipeline, tmp_path):
    scheduled = make_pipeline(SCHEDULED)
    resources = ("events", "event_summaries")
    scheduled.run(posthog_source(api_key=emu.api_key, base_url=emu.base_url).with_resources(*resources),
                  loader_file_format="parquet").raise_on_failed_jobs()
    before = scheduled_state(tmp_path)
    t1, t2 = past_range()

    events = backfill(emu, "posthog", "events", t1, t2, "3d", tmp_path, workers=3)
    summaries = backfill(emu, "posthog", "event_summaries", t1, t2, "3d", tmp_path, workers=3)
    assert_all(events + summaries)
    assert len(events) == len(summaries) == 3
    assert scheduled_state(tmp_path) == before, "a backfill never touches the scheduled pipeline's state"

    want_events, want_days = events_in(ctl, t1, t2), summaries_in(ctl, t1, t2)
    assert len(want_events) > 100 and want_days
    assert len({r["project_id"] for r in want_days}) == 2, "both projects (one not in UTC) are covered"
    with connect(tmp_path) as con:
        loads = window_load_ids(con)
        assert len(loads) == 6
        got = keys_loaded_by(con, "events", "uuid::varchar", loads)
        assert sorted(k for (k,) in got) == sorted(e["uuid"] for e in want_events)
        got = keys_loaded_by(con, "event_summaries", "project_id, day::varchar, event", loads)
        assert sorted(got) == sorted((r["project_id"], r["day"], r["event"]) for r in want_days)
        assert_matches_emulator(con, DATASET, ctl, *resources)
        loaded = all_loads(con)
    assert sum(r.rows for r in events) == len(want_events)

    again = backfill(emu, "posthog", "events", t1, t2, "3d", tmp_path, workers=2)
    assert_all(again, SKIPPED)
    with connect(tmp_path) as con:
        assert all_loads(con) == loaded, "re-running finished windows loads nothing"

    # the schedule carries on from its own cursors and ends equal to the emulator, even when its
    # local folder is gone and its state comes back from the dataset the windows also wrote to
    shutil.rmtree(tmp_path / "pipelines" / SCHEDULED)
    ctl.mutate({"op": "add_events", "count": 12, "late_seconds": 600})
    scheduled = make_pipeline(SCHEDULED)
    scheduled.run(posthog_source(api_key=emu.api_key, base_url=emu.base_url).with_resources(*resources),
                  loader_file_format="parquet").raise_on_failed_jobs()
    assert scheduled.last_trace.last_normalize_info.row_counts["events"] == 12
    with connect(tmp_path) as con:
        assert_matches_emulator(con, DATASET, ctl, *resources)
    # events are unique within any run (their merge skips de-duplication); a window's daily counts
    # are too, the scheduled run's re-read days may not be, and it says so on every run, whatever
    # schema it restored from the dataset the windows also wrote to
    window = dlt.attach(pipeline_name=events[0].pipeline_name, pipelines_dir=str(tmp_path / "pipelines"))
    assert window.default_schema.tables["events"][DEDUPLICATED] is True
    assert scheduled.default_schema.tables["events"][DEDUPLICATED] is True
    summary_window = dlt.attach(pipeline_name=summaries[0].pipeline_name, pipelines_dir=str(tmp_path / "pipelines"))
    assert summary_window.default_schema.tables["event_summaries"][DEDUPLICATED] is True
    assert scheduled.default_schema.tables["event_summaries"][DEDUPLICATED] is False


def test_events_tied_on_a_window_boundary_land_in_exactly_one_window(emu, ctl, tmp_path):
    events = ctl.export("events")
    (pid, stamp), count = Counter((e["project_id"], at(e["timestamp"])) for e in events).most_common(1)[0]
    assert count > 100, "a run of events sharing one microsecond"
    boundary = pendulum.instance(stamp)
    t1, t2 = boundary.subtract(days=1), boundary.add(days=1)
    results = backfill(emu, "posthog", "events", t1, t2, "1d", tmp_path, workers=2, events_page_size=60)
    assert_all(results)
    with connect(tmp_path) as con:
        before, after = keys_by_window(con, "events", "uuid::varchar", results)
    assert before == sorted((e["uuid"],) for e in events_in(ctl, t1, boundary))
    assert after == sorted((e["uuid"],) for e in events_in(ctl, boundary, t2))
    assert sum(1 for e in events if at(e["timestamp"]) == stamp) == count and len(after) >= count


def test_a_failed_window_leaves_the_others_and_reruns_alone(emu, ctl, tmp_path):
    t1, t2 = past_range()
    # the first HogQL query answers a 400 (never retried): with one window at a time, the first
    # window fails and the next two run normally
    ctl.add_faults([{"path": "/query/", "method": "POST", "actions": [{"status": 400, "json": {
        "type": "validation_error", "code": "invalid_input", "detail": "injected"}}]}])
    results = backfill(emu, "posthog", "events", t1, t2, "3d", tmp_path, workers=1)
    assert [r.status for r in results] == [FAILED, DONE, DONE]
    assert "400" in str(results[0].error)
    first = results[0].window
    with connect(tmp_path) as con:
        loaded = {r[0] for r in con.execute("select uuid::varchar from data.events").fetchall()}
    assert loaded == {e["uuid"] for e in events_in(ctl, first.end, t2)}

    rerun = backfill(emu, "posthog", "events", first.start, first.end, "3d", tmp_path)
    assert_all(rerun)
    with connect(tmp_path) as con:
        assert_table_equals(con, DATASET, S.EVENTS, events_in(ctl, t1, t2))
        one_at_a_time = table_rows(con, "events", "uuid")

    ctl.clear_requests()
    ctl.configure(latency_ms=40)
    concurrent = backfill(emu, "posthog", "events", t1, t2, "3d", tmp_path, workers=3, db="concurrent.duckdb",
                          events_window_hours=6)
    ctl.configure(latency_ms=0)
    assert_all(concurrent)
    # windows side by side share each project's three query slots (PostHog's limit per project)
    for pid in emu.backend.projects:
        entries = [q for q in queries(ctl.requests()) if q["project"] == pid]
        assert len(entries) > 12 and 2 <= max_overlap(entries) <= 3, max_overlap(entries)
    with connect(tmp_path, "concurrent.duckdb") as con:
        assert table_rows(con, "events", "uuid") == one_at_a_time


def sessions_in(ctl: Any, t1: pendulum.DateTime, t2: pendulum.DateTime) -> list[dict[str, Any]]:
    return [s for s in ctl.export("sessions") if t1 <= at(s["start_timestamp"]) < t2]


def test_sessions_backfill_a_window_exactly_without_moving_the_schedule(emu, ctl, make_pipeline, tmp_path):
    from sources.posthog.sessions import SESSIONS

    scheduled = make_pipeline(SCHEDULED)
    scheduled.run(posthog_source(api_key=emu.api_key, base_url=emu.base_url).with_resources("sessions"),
                  loader_file_format="parquet").raise_on_failed_jobs()
    before = scheduled_state(tmp_path)
    t1, t2 = past_range()
    # sessions sharing one start straddle the small pages; each session lands in the window of its start
    results = backfill(emu, "posthog", "sessions", t1, t2, "3d", tmp_path, workers=2, events_page_size=40)
    assert_all(results)
    assert len(results) == 3
    assert scheduled_state(tmp_path) == before, "a backfill never touches the scheduled pipeline's state"
    want = sessions_in(ctl, t1, t2)
    assert len(want) > 100 and len({s["project_id"] for s in want}) == 2
    assert sum(r.rows for r in results) == len(want)
    with connect(tmp_path) as con:
        loads = window_load_ids(con)
        got = keys_loaded_by(con, "sessions", "project_id, session_id", loads)
        assert sorted(got) == sorted((s["project_id"], s["session_id"]) for s in want)
        windows_keys = keys_by_window(con, "sessions", "project_id, session_id", results)
        assert sum(len(k) for k in windows_keys) == len(want), "each session in exactly one window"
        assert_table_equals(con, DATASET, SESSIONS, ctl.export("sessions"))
    again = backfill(emu, "posthog", "sessions", t1, t2, "3d", tmp_path, workers=2)
    assert_all(again, SKIPPED)
