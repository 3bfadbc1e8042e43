"""Synerise backfills of ``events`` (inside the API's 6-hour horizon), in-process against the
emulator over HTTPS on loopback."""

from __future__ import annotations

from typing import Any

import dlt
import pendulum
import pytest

from pipelines.backfill import DONE, FAILED, SKIPPED
from sources.synerise import synerise_source
from tests.synerise.truth import assert_table_equals

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
    return start_emulator("synerise", scale=SCALE, seed=7)


@pytest.fixture
def ctl(emu: Any, control_for: Any) -> Any:
    return control_for(emu)


def reachable_range() -> tuple[pendulum.DateTime, pendulum.DateTime]:
    """Three hours well inside the 6-hour horizon and before the scheduled run's safety lag."""
    start = pendulum.now("UTC").start_of("minute").subtract(hours=5)
    return start, start.add(hours=3)


def ms(t: pendulum.DateTime) -> int:
    return t.int_timestamp * 1000


def events_in(ctl: Any, lo_ms: int, end_ms: int) -> list[dict[str, Any]]:
    return [e for e in ctl.export("events") if lo_ms <= e["time"] < end_ms]


def test_events_backfill_exactly_without_moving_the_schedule(emu, ctl, make_pipeline, tmp_path):
    scheduled = make_pipeline(SCHEDULED)
    scheduled.run(synerise_source(api_key=emu.api_key, base_url=emu.base_url).with_resources("events"),
                  loader_file_format="parquet").raise_on_failed_jobs()
    first_from = scheduled.state["sources"]["synerise"]["resources"]["events"]["last_run"]["window_from"]
    before = scheduled_state(tmp_path)
    t1, t2 = reachable_range()

    results = backfill(emu, "synerise", "events", t1, t2, "1h", tmp_path, workers=3)
    assert_all(results)
    assert len(results) == 3
    assert scheduled_state(tmp_path) == before, "a backfill never touches the scheduled pipeline's state"
    want = events_in(ctl, ms(t1), ms(t2))
    assert len(want) > 100
    with connect(tmp_path) as con:
        loads = window_load_ids(con)
        assert len(loads) == 3
        got = keys_loaded_by(con, "events", "event_uuid", loads)
        assert sorted(k for (k,) in got) == sorted(e["eventUUID"] for e in want)
        loaded = all_loads(con)
    assert sum(r.rows for r in results) == len(want)

    again = backfill(emu, "synerise", "events", t1, t2, "1h", tmp_path, workers=3)
    assert_all(again, SKIPPED)
    with connect(tmp_path) as con:
        assert all_loads(con) == loaded, "re-running finished windows loads nothing"
        table = table_rows(con, "events", "event_uuid")

    forced = backfill(emu, "synerise", "events", t1, t2, "1h", tmp_path, workers=3, force=True)
    assert_all(forced)
    assert [r.rows for r in forced] == [r.rows for r in results]
    with connect(tmp_path) as con:
        assert len(all_loads(con)) == len(loaded) + 3, "--force reads and loads every window again"
        assert table_rows(con, "events", "event_uuid") == table, "... and merges the same content"

    # the schedule carries on from its own cursor and ends equal to the emulator
    ctl.mutate({"op": "add_events", "count": 20, "ago_ms": 3 * 60_000, "spread_ms": 60_000})
    ctl.mutate({"op": "advance_clock", "seconds": 120})
    scheduled.run(synerise_source(api_key=emu.api_key, base_url=emu.base_url).with_resources("events"),
                  loader_file_format="parquet").raise_on_failed_jobs()
    last_to = scheduled.state["sources"]["synerise"]["resources"]["events"]["last_run"]["window_to"]
    with connect(tmp_path) as con:
        assert_table_equals(con, DATASET, "events", events_in(ctl, first_from, last_to + 1))


def test_events_on_a_window_boundary_land_in_exactly_one_window(emu, ctl, tmp_path):
    t1, _ = reachable_range()
    inside = events_in(ctl, ms(t1), ms(t1.add(hours=2)))
    boundary_ms = inside[len(inside) // 2]["time"]  # a window boundary exactly on an event's millisecond
    boundary = pendulum.from_timestamp(boundary_ms // 1000).add(microseconds=boundary_ms % 1000 * 1000)
    a, b = boundary.subtract(hours=1), boundary.add(hours=1)
    results = backfill(emu, "synerise", "events", a, b, "1h", tmp_path, workers=2)
    assert_all(results)
    with connect(tmp_path) as con:
        before, after = keys_by_window(con, "events", "event_uuid", results)
    assert before == sorted((e["eventUUID"],) for e in events_in(ctl, boundary_ms - 3_600_000, boundary_ms))
    assert after == sorted((e["eventUUID"],) for e in events_in(ctl, boundary_ms, boundary_ms + 3_600_000))
    assert any(e["time"] == boundary_ms for e in ctl.export("events") if (e["eventUUID"],) in after)


def test_a_failed_window_leaves_the_others_and_reruns_alone(emu, ctl, tmp_path):
    t1, t2 = reachable_range()
    middle = t1.add(hours=1)
    # every request of the middle window starts at its first millisecond: a 400 (never retried)
    ctl.add_faults([{"path": f"dateFrom={ms(middle)}&", "repeat": True, "actions": [{"status": 400, "json": {
        "status": 400, "error": "Bad Request", "message": "injected"}}]}])
    results = backfill(emu, "synerise", "events", t1, t2, "1h", tmp_path, workers=3)
    assert [r.status for r in results] == [DONE, FAILED, DONE]
    assert "400" in str(results[1].error)
    with connect(tmp_path) as con:
        loaded = {r[0] for r in con.execute("select event_uuid from data.events").fetchall()}
    assert loaded == {e["eventUUID"] for e in events_in(ctl, ms(t1), ms(middle)) + events_in(ctl, ms(middle) + 3_600_000, ms(t2))}

    ctl.clear_faults()
    rerun = backfill(emu, "synerise", "events", middle, middle.add(hours=1), "1h", tmp_path, workers=3)
    assert_all(rerun)
    with connect(tmp_path) as con:
        assert_table_equals(con, DATASET, "events", events_in(ctl, ms(t1), ms(t2)))
        concurrent = table_rows(con, "events", "event_uuid")

    sequential = backfill(emu, "synerise", "events", t1, t2, "1h", tmp_path, workers=1, db="sequential.duckdb")
    assert_all(sequential)
    with connect(tmp_path, "sequential.duckdb") as con:
        assert table_rows(con, "events", "event_uuid") == concurrent


def test_windows_beyond_the_6_hour_horizon_fail_clearly_or_report_their_gap(emu, ctl, tmp_path):
    now = pendulum.now("UTC").start_of("minute")
    beyond = backfill(emu, "synerise", "events", now.subtract(hours=9), now.subtract(hours=7), "2h", tmp_path)
    assert [r.status for r in beyond] == [FAILED]
    assert "entirely beyond the API's 6-hour horizon" in str(beyond[0].error)

    t1, t2 = now.subtract(hours=7), now.subtract(hours=5)
    partly = backfill(emu, "synerise", "events", t1, t2, "2h", tmp_path)
    assert_all(partly)
    assert "beyond the API's horizon" in partly[0].note
    window = dlt.attach(pipeline_name=partly[0].pipeline_name, pipelines_dir=str(tmp_path / "pipelines"))
    record = window.state["sources"]["synerise"]["resources"]["events"]["window"]
    gap = record["unreachable"]
    read_from = gap["to_ms"] + 1
    assert gap["from_ms"] == ms(t1) and ms(now.subtract(hours=6)) < read_from < ms(now.subtract(hours=5, minutes=50))
    # what is still reachable is loaded exactly
    with connect(tmp_path) as con:
        assert_table_equals(con, DATASET, "events", events_in(ctl, read_from, ms(t2)))
    assert record["rows"] == partly[0].rows == len(events_in(ctl, read_from, ms(t2))) > 0
