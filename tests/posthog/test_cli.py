"""`cdp-sync` with PostHog end to end: subprocesses against an in-process emulator over HTTPS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests import support
from tests.support import cdp_sync

from .helpers import queries
from .truth import assert_matches_emulator

SCALE = 500
#: the CLI's default dataset (the DuckDB file is posthog.duckdb in the working directory)
DATASET_NAME = "posthog_data"


def cli_env(server: Any, tmp_path: Path, **extra: str) -> dict[str, str]:
    return support.cli_env("posthog", server, tmp_path, **extra)


@pytest.fixture
def emu(start_emulator: Any) -> Any:
    return start_emulator("posthog", scale=SCALE, seed=3)


@pytest.fixture
def ctl(emu: Any, control_for: Any) -> Any:
    return control_for(emu)


def test_run_state_and_check(emu, ctl, tmp_path):
    env = cli_env(emu, tmp_path)
    result = cdp_sync("run", "posthog", "--resources", "events,event_summaries,persons,cohorts",
                      env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "posthog:" in result.stdout and "requests" in result.stdout
    events = ctl.state()["tables"]["events"]
    assert f"events {events:>10,}".replace(" ", "") in result.stdout.replace(" ", "")
    with duckdb.connect(str(tmp_path / "posthog.duckdb"), read_only=True) as con:
        assert_matches_emulator(con, DATASET_NAME, ctl, "events", "event_summaries", "persons", "cohorts")

    state = cdp_sync("state", "posthog", env=env, cwd=tmp_path)
    assert state.returncode == 0, state.stderr
    for pid in emu.backend.projects:
        assert f"{pid}" in state.stdout
    assert state.stdout.count("(backfill)") == 2 * len(emu.backend.projects)  # events and summaries
    assert "cursor = 20" in state.stdout

    check = cdp_sync("check", "posthog", env=env, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith(f"posthog: ok, {len(emu.backend.projects)} projects")


def test_refused_key_is_one_clear_line_and_exit_1(emu, tmp_path):
    wrong = "phx_" + "7" * 40
    env = cli_env(emu, tmp_path, SOURCES__POSTHOG__API_KEY=wrong)
    support.assert_refused_key(
        env, tmp_path, "posthog", wrong, (("run", "posthog"), ("check", "posthog")), "invalid"
    )


@pytest.mark.parametrize(
    ("args", "env_change", "needle"),
    [
        (("run", "posthog"), {"SOURCES__POSTHOG__API_KEY": None}, "SOURCES__POSTHOG__API_KEY"),
        (("run", "posthog", "--resources", "events,nope"), {}, "no resource nope"),
        (("run", "posthog"), {"SOURCES__POSTHOG__BASE_URL": "http://127.0.0.1:9"}, "HTTPS"),
        (("run", "posthog"), {"SOURCES__POSTHOG__API_KEY": "phc_" + "a" * 40}, "project token"),
        (("run", "posthog"), {"SOURCES__POSTHOG__EVENTS_PAGE_SIZE": "60000"}, "events_page_size"),
        (("run", "posthog"), {"SOURCES__POSTHOG__START_DATE": "yesterday-ish"}, "start_date"),
        (("run", "posthog"), {"SOURCES__POSTHOG__PROJECT_IDS": "[4]"}, "project 4 does not exist"),
        (("state", "posthog", "--pipeline-name", "never_ran"), {}, "no pipeline named"),
    ],
)
def test_bad_input_exits_2_with_one_line(emu, tmp_path, args, env_change, needle):
    support.assert_bad_input(cli_env(emu, tmp_path), tmp_path, args, env_change, needle)


def test_sigkill_mid_run_then_rerun_is_exact(emu, ctl, tmp_path):
    ctl.configure(latency_ms=25)
    env = cli_env(emu, tmp_path, SOURCES__POSTHOG__EVENTS_PAGE_SIZE="150", SOURCES__POSTHOG__PERSONS_PAGE_SIZE="40")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "run", "posthog", "--resources", "events,persons"],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len([q for q in queries(ctl.requests()) if q["json"]["name"] == "cdp_sync_events"]) >= 15:
                break
            assert proc.poll() is None, "the run finished before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("the events walk never started")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    ctl.configure(latency_ms=0)
    ctl.mutate({"op": "add_events", "count": 30, "late_seconds": 60})
    ctl.mutate({"op": "modify_persons", "count": 10})
    result = cdp_sync("run", "posthog", "--resources", "events,persons", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with duckdb.connect(str(tmp_path / "posthog.duckdb"), read_only=True) as con:
        assert_matches_emulator(con, DATASET_NAME, ctl, "events", "persons")


def test_demo_loads_posthog(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__")}
    env["DLT_DATA_DIR"] = str(tmp_path / "dlt_data")
    result = cdp_sync("demo", "--scale", "200", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "posthog.events" in result.stdout
    with duckdb.connect(str(tmp_path / "cdp_demo.duckdb"), read_only=True) as con:
        persons = con.execute("select count(*) from posthog.persons").fetchone()[0]
        events = con.execute("select count(*) from posthog.events").fetchone()[0]
        days = con.execute("select count(distinct day) from posthog.event_summaries").fetchone()[0]
        sessions = con.execute("select count(*) from posthog.sessions").fetchone()[0]
        event_sessions = con.execute(
            "select count(distinct (project_id, session_id)) from posthog.events where session_id is not null"
        ).fetchone()[0]
        lists = {t: con.execute(f"select count(*) from posthog.{t}").fetchone()[0]
                 for t in ("experiments", "actions", "dashboards", "surveys", "session_recordings")}
    # the emulator's default account at scale 200: two projects (200 + 50 persons, 8 events each)
    assert persons == 250 and events == 2000 and days >= 30
    assert sessions == event_sessions > 0  # one row per session of the loaded events
    assert all(n > 0 for n in lists.values()), lists
