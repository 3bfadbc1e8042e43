"""The Airflow example (``pipelines/airflow_dag.py``): Airflow is not installed here, so the DAG
file is compiled and read, and the window mapping it uses (importable without Airflow) is checked:
a data interval gives exactly the window ``cdp-sync backfill`` plans for it."""

from __future__ import annotations

import ast
import datetime as dt
import py_compile
from pathlib import Path

import pendulum
import pytest

from pipelines.backfill import parse_window_size, plan_windows, window_for_interval, window_pipeline_name
from sources.common.errors import ConfigurationError
from sources.common.window import Window, parse_instant

DAG_FILE = Path(__file__).resolve().parents[2] / "pipelines" / "airflow_dag.py"


def test_the_dag_file_compiles_and_maps_the_data_interval_with_window_for_interval(tmp_path):
    py_compile.compile(str(DAG_FILE), cfile=str(tmp_path / "airflow_dag.pyc"), doraise=True)
    tree = ast.parse(DAG_FILE.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "window_for_interval"]
    assert len(calls) == 1
    assert [a.id for a in calls[0].args] == ["data_interval_start", "data_interval_end"]
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert {"PipelineTasksGroup", "run_window"} <= names, "dlt's Airflow helper for runs, run_window for windows"
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert "PipelineTasksGroup" in imported


def test_a_daily_data_interval_is_the_days_backfill_window():
    # Airflow hands the task pendulum datetimes in UTC: [2026-11-01, 2026-11-02) for the run of the 1st
    start = pendulum.datetime(2026, 11, 1, tz="UTC")
    window = window_for_interval(start, start.add(days=1))
    assert window == Window.day("2026-11-01")
    [planned] = plan_windows(parse_instant("2026-11-01"), parse_instant("2026-11-02"), parse_window_size("1d"))
    assert window == planned
    assert window_pipeline_name("personyze", "users", window) == "personyze_backfill_users_202611010000_202611020000"


def test_an_interval_with_an_offset_or_an_hourly_schedule_maps_to_the_same_instants_in_utc():
    berlin = dt.timezone(dt.timedelta(hours=1))
    window = window_for_interval(dt.datetime(2026, 11, 2, 0, 0, tzinfo=berlin), dt.datetime(2026, 11, 3, 0, 0, tzinfo=berlin))
    assert (window.start, window.end) == (pendulum.datetime(2026, 11, 1, 23, tz="UTC"),
                                          pendulum.datetime(2026, 11, 2, 23, tz="UTC"))
    hourly = window_for_interval("2026-11-01T05:00:00+00:00", "2026-11-01T06:00:00+00:00")
    assert hourly.label == "2026-11-01T05:00:00Z..2026-11-01T06:00:00Z"
    assert window_pipeline_name("posthog", "events", hourly) == "posthog_backfill_events_202611010500_202611010600"


@pytest.mark.parametrize(("start", "end", "message"), [
    (None, "2026-11-02", "has none"),
    ("2026-11-01", None, "has none"),
    ("2026-11-02", "2026-11-02", "is empty"),
    ("2026-11-03", "2026-11-02", "is empty"),
    ("yesterday-ish", "2026-11-02", "not an ISO 8601"),
])
def test_a_run_without_a_usable_interval_is_refused_in_one_line(start, end, message):
    with pytest.raises(ConfigurationError, match=message) as caught:
        window_for_interval(start, end)
    assert "\n" not in str(caught.value)
