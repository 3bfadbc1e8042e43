"""Lytics backfills of ``users`` by ``_modified``, in-process against the emulator over HTTPS on
loopback."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pendulum
import pytest

from pipelines.backfill import DONE, FAILED, SKIPPED
from sources.lytics import lytics_source, user_table
from sources.lytics import settings as S
from tests.lytics.truth import assert_table_equals, rfc3339, schema_kinds

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

SCALE = 800
#: the emulator's generated history is the year before 2026-01-01
T1, T2 = pendulum.datetime(2025, 5, 1), pendulum.datetime(2025, 7, 30)


@pytest.fixture
def emu(start_emulator: Any) -> Any:
    return start_emulator("lytics", scale=SCALE, seed=7)


@pytest.fixture
def ctl(emu: Any, control_for: Any) -> Any:
    return control_for(emu)


def users_in(ctl: Any, t1: pendulum.DateTime, t2: pendulum.DateTime) -> list[dict[str, Any]]:
    return [u for u in ctl.export("users") if t1 <= rfc3339(u["_modified"]) < t2]


def assert_users_equal(con: Any, ctl: Any, truth: list[dict[str, Any]]) -> None:
    schema_rows = ctl.export("schema_fields")
    table, _ = user_table({"columns": [r for r in schema_rows if r["table"] == "user"]}, "_uid", None,
                          S.DEFAULT_MAX_USER_COLUMNS)
    assert_table_equals(con, DATASET, "users", table.columns, ("_uid",), truth, schema_kinds(schema_rows))


def test_users_backfill_exactly_without_moving_the_schedule(emu, ctl, make_pipeline, tmp_path):
    scheduled = make_pipeline(SCHEDULED)
    scheduled.run(lytics_source(api_key=emu.api_key, base_url=emu.base_url).with_resources("users"),
                  loader_file_format="parquet").raise_on_failed_jobs()
    before = scheduled_state(tmp_path)

    results = backfill(emu, "lytics", "users", T1, T2, "30d", tmp_path, workers=3)
    assert_all(results)
    assert len(results) == 3
    assert scheduled_state(tmp_path) == before, "a backfill never touches the scheduled pipeline's state"
    want = users_in(ctl, T1, T2)
    assert len(want) > 100
    with connect(tmp_path) as con:
        loads = window_load_ids(con)
        assert len(loads) == 3
        got = keys_loaded_by(con, "users", "_uid", loads)
        assert sorted(k for (k,) in got) == sorted(u["_uid"] for u in want)
        assert_users_equal(con, ctl, ctl.export("users"))
        loaded = all_loads(con)
    assert sum(r.rows for r in results) == len(want)

    again = backfill(emu, "lytics", "users", T1, T2, "30d", tmp_path, workers=3)
    assert_all(again, SKIPPED)
    with connect(tmp_path) as con:
        assert all_loads(con) == loaded, "re-running finished windows loads nothing"

    # the schedule carries on from its own cursor and ends equal to the emulator
    ctl.mutate({"op": "modify_users", "count": 8})
    ctl.mutate({"op": "add_users", "count": 3})
    scheduled.run(lytics_source(api_key=emu.api_key, base_url=emu.base_url).with_resources("users"),
                  loader_file_format="parquet").raise_on_failed_jobs()
    with connect(tmp_path) as con:
        assert_users_equal(con, ctl, ctl.export("users"))


def test_users_tied_on_a_window_boundary_land_in_exactly_one_window(emu, ctl, tmp_path):
    users = ctl.export("users")
    stamp, count = Counter(rfc3339(u["_modified"]) for u in users).most_common(1)[0]
    assert count > 50, "a bulk import: many profiles share one _modified instant"
    boundary = pendulum.instance(stamp)
    t1, t2 = boundary.subtract(days=3), boundary.add(days=3)
    results = backfill(emu, "lytics", "users", t1, t2, "3d", tmp_path, workers=2)
    assert_all(results)
    with connect(tmp_path) as con:
        before, after = keys_by_window(con, "users", "_uid", results)
    assert before == sorted((u["_uid"],) for u in users_in(ctl, t1, boundary))
    assert after == sorted((u["_uid"],) for u in users_in(ctl, boundary, t2))
    assert len(after) >= count


def test_a_failed_window_leaves_the_others_and_reruns_alone(emu, ctl, tmp_path):
    # the first scan answers a 400 (a first page carries no token, so it is not a stale scan to
    # restart): with one window at a time, the first window fails and the next two run normally
    ctl.add_faults([{"path": "/api/segment/scan", "method": "POST", "actions": [{"status": 400, "json": {
        "status": 400, "message": "injected"}}]}])
    results = backfill(emu, "lytics", "users", T1, T2, "30d", tmp_path, workers=1)
    assert [r.status for r in results] == [FAILED, DONE, DONE]
    assert "400" in str(results[0].error)
    first = results[0].window
    with connect(tmp_path) as con:
        loaded = {r[0] for r in con.execute("select _uid from data.users").fetchall()}
    assert loaded == {u["_uid"] for u in users_in(ctl, first.end, T2)}

    rerun = backfill(emu, "lytics", "users", first.start, first.end, "30d", tmp_path)
    assert_all(rerun)
    with connect(tmp_path) as con:
        assert_users_equal(con, ctl, users_in(ctl, T1, T2))
        one_at_a_time = table_rows(con, "users", "_uid")

    concurrent = backfill(emu, "lytics", "users", T1, T2, "30d", tmp_path, workers=3, db="concurrent.duckdb")
    assert_all(concurrent)
    with connect(tmp_path, "concurrent.duckdb") as con:
        assert table_rows(con, "users", "_uid") == one_at_a_time


def test_a_window_whose_scan_ends_short_of_its_total_fails_and_is_not_recorded_done(emu, ctl, tmp_path):
    ctl.configure(short_scans={"page": 1, "drop": 2, "times": 1})
    results = backfill(emu, "lytics", "users", T1, T2, "30d", tmp_path, workers=1, scan_workers=1)
    assert [r.status for r in results] == [FAILED, DONE, DONE]
    assert "short of its total" in str(results[0].error)
    rerun = backfill(emu, "lytics", "users", T1, T2, "30d", tmp_path, workers=1, scan_workers=1)
    assert [r.status for r in rerun] == [DONE, SKIPPED, SKIPPED]
    with connect(tmp_path) as con:
        assert_users_equal(con, ctl, users_in(ctl, T1, T2))


def test_profiles_changed_during_a_window_scan_are_left_to_their_new_window(emu, ctl, tmp_path):
    """A profile that changes while its window is scanned comes back with its new ``_modified``,
    beyond the window: it is not loaded into this window and is counted as moved out."""
    before = {u["_uid"] for u in users_in(ctl, T1, T2)}
    assert len(before) > 300, "the window spans several scan pages"
    ctl.configure(mid_scan_modify={"page": 1, "count": 40})
    results = backfill(emu, "lytics", "users", T1, T2, "120d", tmp_path)
    ctl.configure(mid_scan_modify=None)
    assert_all(results)
    (result,) = results
    with connect(tmp_path) as con:
        rows = con.execute(f"select _uid, _modified from {DATASET}.users").fetchall()
    loaded = {k for k, _ in rows}
    assert loaded <= before
    assert all(T1 <= pendulum.instance(m) < T2 for _, m in rows)
    moved = len(before) - len(loaded)
    assert moved > 0, "some profiles changed ahead of the scan"
    assert result.rows == len(loaded)
    assert f"{moved} rows changed during the scan" in result.note
