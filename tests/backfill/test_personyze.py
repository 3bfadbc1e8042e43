"""Personyze backfills: ``cdp-sync backfill`` as a subprocess for ``users``, in-process for
``sessions_archive`` and ``summary_actions``, against the emulator over HTTPS on loopback."""

from __future__ import annotations

import datetime as dt
import os
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pendulum
import pytest

from pipelines.backfill import SKIPPED
from sources.personyze import personyze_source
from sources.personyze import settings as S
from tests.personyze.truth import assert_table_equals

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

SCALE = 600
DB = "personyze.duckdb"  # the CLI's default: <pipeline_name>.duckdb in the working directory
CLI_DATASET = "personyze_data"


@pytest.fixture
def emu(start_emulator: Any) -> Any:
    return start_emulator("personyze", scale=SCALE, seed=5)


@pytest.fixture
def ctl(emu: Any, control_for: Any) -> Any:
    return control_for(emu)


def past_range(days: int = 30, ending_days_ago: int = 5) -> tuple[pendulum.DateTime, pendulum.DateTime]:
    """A range of whole UTC days inside the emulator's year of history (it is relative to now)."""
    end = pendulum.now("UTC").start_of("day").subtract(days=ending_days_ago)
    return end.subtract(days=days), end


def in_range(rows: list[dict[str, Any]], column: str, t1: pendulum.DateTime, t2: pendulum.DateTime) -> list[dict]:
    return [r for r in rows if t1.int_timestamp <= int(r[column] or 0) < t2.int_timestamp]


def day_epoch(text: str) -> int:
    return int(dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC).timestamp())


# -- in-process: sessions_archive and summary_actions ------------------------------------------


def test_sessions_and_summaries_backfill_exactly_without_moving_the_schedule(emu, ctl, make_pipeline, tmp_path):
    scheduled = make_pipeline(SCHEDULED)
    info = scheduled.run(personyze_source(api_key=emu.api_key, base_url=emu.base_url)
                         .with_resources("sessions_archive", "summary_actions"), loader_file_format="parquet")
    info.raise_on_failed_jobs()
    before = scheduled_state(tmp_path)
    t1, t2 = past_range()

    sessions = backfill(emu, "personyze", "sessions_archive", t1, t2, "10d", tmp_path, workers=3)
    summaries = backfill(emu, "personyze", "summary_actions", t1, t2, "10d", tmp_path, workers=3)
    assert_all(sessions + summaries)
    assert len(sessions) == len(summaries) == 3
    assert scheduled_state(tmp_path) == before, "a backfill never touches the scheduled pipeline's state"

    want_sessions = in_range(ctl.export("sessions_archive"), "end_time", t1, t2)
    want_days = [r for r in ctl.export("summary_actions") if t1.int_timestamp <= day_epoch(r["date"]) < t2.int_timestamp]
    assert want_sessions and len(want_days) == 30 * len({r["action_id"] for r in want_days})
    with connect(tmp_path) as con:
        loads = window_load_ids(con)
        assert len(loads) == 6, "one load per window"
        got = keys_loaded_by(con, "sessions_archive", "id", loads)
        assert sorted(k for (k,) in got) == sorted(int(r["id"]) for r in want_sessions)
        got = keys_loaded_by(con, "summary_actions", "epoch(date)::bigint, action_id", loads)
        assert sorted(got) == sorted((day_epoch(r["date"]), int(r["action_id"])) for r in want_days)
        # merged into the scheduled tables: still exactly the emulator, no key twice
        assert_table_equals(con, DATASET, S.SESSIONS_ARCHIVE, ctl.export("sessions_archive"))
        assert_table_equals(con, DATASET, S.SUMMARY_ACTIONS, ctl.export("summary_actions"))
        loaded = all_loads(con)
    assert sum(r.rows for r in sessions) == len(want_sessions)
    assert sum(r.rows for r in summaries) == len(want_days)

    again = backfill(emu, "personyze", "summary_actions", t1, t2, "10d", tmp_path, workers=3)
    assert_all(again, SKIPPED)
    assert [r.rows for r in again] == [r.rows for r in summaries]
    with connect(tmp_path) as con:
        assert all_loads(con) == loaded, "re-running finished windows loads nothing"

    # the schedule carries on from its own cursor and ends equal to the emulator
    ctl.mutate({"op": "advance_clock", "seconds": 30})
    ctl.mutate({"op": "add_sessions", "count": 4, "late_seconds": 60})
    ctl.mutate({"op": "update_summaries", "days": 2})
    info = scheduled.run(personyze_source(api_key=emu.api_key, base_url=emu.base_url)
                         .with_resources("sessions_archive", "summary_actions"), loader_file_format="parquet")
    info.raise_on_failed_jobs()
    assert scheduled.last_trace.last_normalize_info.row_counts["sessions_archive"] == 4
    with connect(tmp_path) as con:
        assert_table_equals(con, DATASET, S.SESSIONS_ARCHIVE, ctl.export("sessions_archive"))
        assert_table_equals(con, DATASET, S.SUMMARY_ACTIONS, ctl.export("summary_actions"))


def test_users_tied_on_a_window_boundary_land_in_exactly_one_window(emu, ctl, tmp_path):
    users = ctl.export("users")
    tied = Counter(int(u["data_last_modified"]) for u in users).most_common(1)[0]
    assert tied[1] > 50, "a run of users sharing one second, longer than a page of 50"
    boundary = pendulum.from_timestamp(tied[0])
    t1, t2 = boundary.subtract(days=2), boundary.add(days=2)
    results = backfill(emu, "personyze", "users", t1, t2, "2d", tmp_path, workers=2)
    assert_all(results)
    with connect(tmp_path) as con:
        before, after = keys_by_window(con, "users", "user_id", results)
    assert before == sorted((int(u["user_id"]),) for u in in_range(users, "data_last_modified", t1, boundary))
    assert after == sorted((int(u["user_id"]),) for u in in_range(users, "data_last_modified", boundary, t2))
    assert [r.rows for r in results] == [len(before), len(after)]


def test_bounded_mode_returns_only_windowed_resources_and_refuses_half_a_window(emu):
    src = personyze_source(api_key=emu.api_key, base_url=emu.base_url, window_start="2026-01-01",
                           window_end="2026-01-02")
    assert set(src.resources) == {"users", "sessions_archive", "summary_actions"}
    from sources.common.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="go together"):
        personyze_source(api_key=emu.api_key, base_url=emu.base_url, window_start="2026-01-01")
    with pytest.raises(ConfigurationError, match="must be before"):
        personyze_source(api_key=emu.api_key, base_url=emu.base_url, window_start="2026-01-02",
                         window_end="2026-01-01")


# -- the CLI, as a subprocess: users --------------------------------------------------------------


def cli_env(server: Any, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__")}
    env.update(
        SOURCES__PERSONYZE__API_KEY=server.api_key,
        SOURCES__PERSONYZE__BASE_URL=server.base_url,
        SSL_CERT_FILE=server.ca_file,
        DLT_DATA_DIR=str(tmp_path / "dlt_data"),
        RUNTIME__DLTHUB_TELEMETRY="false",
    )
    return env


def cdp_sync(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def table_lines(stdout: str) -> dict[str, str]:
    """window label -> status, from the final table."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and ".." in parts[0] and parts[0][:4].isdigit():
            out[parts[0]] = parts[1]
    return out


def test_cli_backfill_is_exact_idempotent_and_leaves_the_schedule_alone(emu, ctl, tmp_path):
    env = cli_env(emu, tmp_path)
    first = cdp_sync("run", "personyze", "--resources", "users", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = scheduled_state(tmp_path, CLI_DATASET, DB, tmp_path / "dlt_data" / "pipelines", "personyze")
    t1, t2 = past_range(days=90, ending_days_ago=20)
    args = ["backfill", "personyze", "--resource", "users", "--from", t1.to_date_string(), "--to",
            t2.to_date_string(), "--window", "30d", "--workers", "3"]

    result = cdp_sync(*args, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    statuses = table_lines(result.stdout)
    assert list(statuses.values()) == ["done"] * 3, result.stdout
    assert "3 windows: 3 done" in result.stdout
    for label in statuses:  # progress per window on stderr
        assert f"personyze.users[{label}]: started" in result.stderr
        assert f"personyze.users[{label}]: done" in result.stderr
    assert scheduled_state(tmp_path, CLI_DATASET, DB, tmp_path / "dlt_data" / "pipelines", "personyze") == before

    want = in_range(ctl.export("users"), "data_last_modified", t1, t2)
    assert len(want) > 20
    with duckdb.connect(str(tmp_path / DB), read_only=True) as con:
        loads = {r[0] for r in con.execute(
            f"select distinct _dlt_load_id from {CLI_DATASET}._dlt_pipeline_state "
            "where starts_with(pipeline_name, 'personyze_backfill_users_')").fetchall()}
        assert len(loads) == 3
        got = keys_loaded_by(con, "users", "user_id", loads, CLI_DATASET)
        assert sorted(k for (k,) in got) == sorted(int(u["user_id"]) for u in want)
        assert_table_equals(con, CLI_DATASET, S.USERS, ctl.export("users"))
        loaded = all_loads(con, CLI_DATASET)

    again = cdp_sync(*args, env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert list(table_lines(again.stdout).values()) == ["skipped"] * 3, again.stdout
    with duckdb.connect(str(tmp_path / DB), read_only=True) as con:
        assert all_loads(con, CLI_DATASET) == loaded, "a finished window is not loaded again"

    # the scheduled run resumes from its own cursor and ends equal to the emulator
    ctl.mutate({"op": "advance_clock", "seconds": 30})
    ctl.mutate({"op": "modify_users", "count": 6})
    ctl.mutate({"op": "add_users", "count": 3})
    later = cdp_sync("run", "personyze", "--resources", "users", env=env, cwd=tmp_path)
    assert later.returncode == 0, later.stderr
    with duckdb.connect(str(tmp_path / DB), read_only=True) as con:
        assert_table_equals(con, CLI_DATASET, S.USERS, ctl.export("users"))


def test_cli_a_failed_window_leaves_the_others_and_reruns_alone(emu, ctl, tmp_path):
    env = cli_env(emu, tmp_path)
    t1, t2 = past_range(days=90, ending_days_ago=20)
    middle = t1.add(days=30)
    # every request of the middle window (its keyset walk starts at its first second) gets a 400
    ctl.add_faults([{"path": f"data_last_modified%3E={middle.int_timestamp}&", "repeat": True,
                     "actions": [{"status": 400, "body": "injected"}]}])
    args = ["backfill", "personyze", "--resource", "users", "--from", t1.to_iso8601_string(), "--to",
            t2.to_iso8601_string(), "--window", "30d", "--workers", "2"]
    result = cdp_sync(*args, env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    statuses = table_lines(result.stdout)
    assert list(statuses.values()) == ["done", "failed", "done"], result.stdout
    assert "1 failed" in result.stdout
    assert "FAILED" in result.stderr and "400" in result.stderr
    assert emu.api_key not in result.stdout + result.stderr, "the key never reaches the output"
    rerun = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("cdp-sync backfill")]
    assert len(rerun) == 1, result.stdout
    command = shlex.split(rerun[0])
    assert command[command.index("--from") + 1] == middle.to_iso8601_string().replace("+00:00", "Z")

    users = ctl.export("users")
    with duckdb.connect(str(tmp_path / DB), read_only=True) as con:
        loaded = {r[0] for r in con.execute(f"select user_id from {CLI_DATASET}.users").fetchall()}
    outer = in_range(users, "data_last_modified", t1, middle) + in_range(users, "data_last_modified", middle.add(days=30), t2)
    assert loaded == {int(u["user_id"]) for u in outer}, "the windows that worked are loaded, the failed one is not"

    ctl.clear_faults()
    fixed = cdp_sync(*command[1:], env=env, cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert list(table_lines(fixed.stdout).values()) == ["done"], fixed.stdout
    with duckdb.connect(str(tmp_path / DB), read_only=True) as con:
        assert_table_equals(con, CLI_DATASET, S.USERS, in_range(users, "data_last_modified", t1, t2))
        concurrent = table_rows(con, "users", "user_id", CLI_DATASET)

    # one window at a time gives the same table as two at a time
    results = backfill(emu, "personyze", "users", t1, t2, "30d", tmp_path, workers=1, db="sequential.duckdb")
    assert_all(results)
    with connect(tmp_path, "sequential.duckdb") as con:
        assert table_rows(con, "users", "user_id") == concurrent


RANGE = ["--from", "2026-02-01", "--to", "2026-03-01"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["nosuch", "--resource", "users", *RANGE], "unknown vendor"),
        (["personyze", "--resource", "events", *RANGE], "not a time-windowed resource"),
        (["personyze", "--resource", "products", *RANGE], "backfillable: users"),
        (["personyze", "--resource", "users", "--window", "1x", *RANGE], "--window must be"),
        (["personyze", "--resource", "users", "--window", "0d", *RANGE], "--window must be"),
        (["personyze", "--resource", "users", "--workers", "0", *RANGE], "--workers must be at least 1"),
        (["personyze", "--resource", "users", "--from", "2026-03-01", "--to", "2026-02-01"], "must be before"),
        (["personyze", "--resource", "users", "--from", "2026-03-01", "--to", "2026-03-01"], "must be before"),
        (["personyze", "--resource", "users", "--from", "yesterday-ish", "--to", "2026-02-01"], "not an ISO 8601"),
        (["personyze", "--resource", "users", "--from", "2000-01-01", "--to", "2026-01-01", "--window", "1m"],
         "more than 10,000 windows"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(argv, needle):
    from click.testing import CliRunner

    from pipelines.cli import main

    result = CliRunner().invoke(main, ["backfill", *argv])
    assert result.exit_code == 2, (argv, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.stderr


def test_cli_without_an_api_key_is_exit_2_before_any_window(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__")}
    env.update(DLT_DATA_DIR=str(tmp_path / "dlt_data"), RUNTIME__DLTHUB_TELEMETRY="false")
    result = cdp_sync("backfill", "personyze", "--resource", "users", "--from", "2026-01-01", "--to", "2026-01-04",
                      env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: personyze: missing configuration")
    assert "started" not in result.stderr and not (tmp_path / DB).exists()
