"""Window planning, naming and bounds: the pieces every backfill relies on."""

from __future__ import annotations

import pendulum
import pytest

from pipelines.backfill import (
    FAILED,
    WindowResult,
    failed_ranges,
    parse_window_size,
    plan_windows,
    window_pipeline_name,
)
from pipelines.vendors import VENDORS
from sources.common.window import Window, parse_instant


def test_windows_tile_the_range_and_replanning_a_failed_run_gives_the_same_windows():
    t1, t2 = parse_instant("2026-10-01T00:00:00Z"), parse_instant("2026-10-08T06:00:00+02:00")
    planned = plan_windows(t1, t2, parse_window_size("2d"))
    assert [w.label for w in planned] == [
        "2026-10-01T00:00:00Z..2026-10-03T00:00:00Z",
        "2026-10-03T00:00:00Z..2026-10-05T00:00:00Z",
        "2026-10-05T00:00:00Z..2026-10-07T00:00:00Z",
        "2026-10-07T00:00:00Z..2026-10-08T04:00:00Z",  # the last one is shorter; bounds are UTC
    ]
    results = [WindowResult(w, FAILED if i in (1, 2, 3) else "done") for i, w in enumerate(planned)]
    (a, b), = failed_ranges(results)
    assert plan_windows(a, b, parse_window_size("2d")) == planned[1:]
    results[2].status = "done"
    assert [plan_windows(a, b, parse_window_size("2d")) for a, b in failed_ranges(results)] == [
        [planned[1]], [planned[3]]]


@pytest.mark.parametrize("text", ["", "1", "d", "0h", "-1d", "1.5h", "1y", "1 day"])
def test_bad_window_sizes_are_refused(text):
    with pytest.raises(ValueError, match="--window"):
        parse_window_size(text)


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("1h", 3600), ("6h", 21600), ("1d", 86400),
                                               ("7d", 604800), ("2w", 1209600)])
def test_window_sizes(text, seconds):
    assert parse_window_size(text).total_seconds() == seconds


def test_window_pipeline_names_are_stable_distinct_and_filesystem_safe():
    w = Window(pendulum.datetime(2026, 10, 1), pendulum.datetime(2026, 10, 2))
    name = window_pipeline_name("personyze", "users", w)
    assert name == "personyze_backfill_users_202610010000_202610020000"
    assert window_pipeline_name("personyze", "users", w) == name
    odd = Window(pendulum.datetime(2026, 10, 1, 0, 0, 5), pendulum.datetime(2026, 10, 1, 0, 0, 5, 250))
    names = {name, window_pipeline_name("personyze", "sessions_archive", w),
             window_pipeline_name("other/../pipe line", "users", w), window_pipeline_name("personyze", "users", odd)}
    assert len(names) == 4
    for n in names:
        assert n.replace("_", "").isalnum() and n.islower() and len(n) <= 64, n
    assert len(window_pipeline_name("p" * 80, "users", w)) <= 64


def test_window_bounds_in_each_api_unit_keep_windows_disjoint():
    a = parse_instant("2026-10-01T00:00:00.5Z")
    b = parse_instant("2026-10-01T01:00:00Z")
    first, second = Window(parse_instant("2026-10-01"), a), Window(a, b)
    # whole seconds: second s belongs to the window holding the instant s
    assert first.end_s == second.start_s == 1790812801
    # milliseconds and microseconds: the end of one window is the start of the next
    assert first.end_ms == second.start_ms and first.end_us == second.start_us
    assert second.local_text("America/New_York") == ("2026-09-30 20:00:00", "2026-09-30 21:00:00")


def test_every_vendor_declares_its_time_windowed_resources():
    declared = {name: set(v.module.BACKFILL_RESOURCES) for name, v in VENDORS.items()}
    assert declared == {
        "personyze": {"users", "sessions_archive", "summary_actions"},
        "synerise": {"events"},
        "lytics": {"users"},
        "posthog": {"events", "event_summaries", "sessions"},
    }


def test_a_daily_partition_is_one_utc_day():
    assert Window.day("2026-11-01") == Window(parse_instant("2026-11-01"), parse_instant("2026-11-02"))
    assert Window.day("2026-11-01T23:30:00-01:00") == Window.day("2026-11-02")


def test_the_rerun_command_of_a_failed_window_keeps_where_and_how_it_loads():
    import shlex

    from pipelines.cli import _rerun_command

    a, b = parse_instant("2026-10-03T00:00:00Z"), parse_instant("2026-10-05T00:00:00Z")
    command = shlex.split(_rerun_command("posthog", "events", a, b, "2d", 3, "filesystem", "lake_data", "nightly",
                                         "delta"))
    options = dict(zip(command[3::2], command[4::2], strict=True))
    assert command[:3] == ["cdp-sync", "backfill", "posthog"]
    assert options == {"--resource": "events", "--from": "2026-10-03T00:00:00Z", "--to": "2026-10-05T00:00:00Z",
                       "--window": "2d", "--workers": "3", "--destination": "filesystem",
                       "--dataset-name": "lake_data", "--pipeline-name": "nightly", "--table-format": "delta"}
    plain = shlex.split(_rerun_command("posthog", "events", a, b, "2d", 1, "duckdb", None, None))
    assert "--table-format" not in plain and "--destination" not in plain and "--workers" not in plain
