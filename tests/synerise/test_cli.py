"""`cdp-sync` end to end for Synerise: subprocesses against an in-process emulator over HTTPS."""

from __future__ import annotations

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

from .truth import assert_table_equals

#: the CLI's defaults: pipeline "synerise" (state, and the DuckDB file), dataset "synerise_data"
DB = "synerise.duckdb"
DATASET = "synerise_data"


def cli_env(server: Any, tmp_path: Path, **extra: str) -> dict[str, str]:
    return support.cli_env("synerise", server, tmp_path, **extra)


def test_run_state_and_check(emu, ctl, tmp_path):
    env = cli_env(emu, tmp_path)
    result = cdp_sync("run", "synerise", "--resources", "profiles,events,tags", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "synerise:" in result.stdout and "requests" in result.stdout
    with duckdb.connect(str(tmp_path / DB), read_only=True) as con:
        assert_table_equals(con, DATASET, "profiles", ctl.export("profiles"))
        assert_table_equals(con, DATASET, "tags", ctl.export("tags"))
    check = cdp_sync("check", "synerise", env=env, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("synerise: ok, workspace ")

    # seven hours later the cursor is behind the 6-hour horizon: the run says so, and so does state
    ctl.mutate({"op": "advance_clock", "seconds": 7 * 3600})
    again = cdp_sync("run", "synerise", "--resources", "events", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "UNREACHABLE GAP" in again.stderr
    state = cdp_sync("state", "synerise", env=env, cwd=tmp_path)
    assert state.returncode == 0, state.stderr
    assert "events" in state.stdout and "time = " in state.stdout
    assert "unreachable:" in state.stdout and '"hours"' in state.stdout


def test_refused_key_is_one_clear_line_and_exit_1(emu, tmp_path):
    wrong = "0f0f0f0f-1111-4222-8333-444455556666"
    env = cli_env(emu, tmp_path, SOURCES__SYNERISE__API_KEY=wrong)
    support.assert_refused_key(
        env, tmp_path, "synerise", wrong, (("run", "synerise", "--resources", "profiles"), ("check", "synerise")), "refused"
    )


@pytest.mark.parametrize(
    ("args", "env_change", "needle"),
    [
        (("run", "synerise"), {"SOURCES__SYNERISE__API_KEY": None}, "SOURCES__SYNERISE__API_KEY"),
        (("run", "synerise", "--resources", "profiles,nope"), {}, "no resource nope"),
        (("run", "synerise"), {"SOURCES__SYNERISE__BASE_URL": "http://127.0.0.1:9"}, "HTTPS"),
        (("run", "synerise"), {"SOURCES__SYNERISE__EVENTS_INITIAL_HOURS": "24"}, "6 hours"),
    ],
)
def test_bad_input_exits_2_with_one_line(emu, tmp_path, args, env_change, needle):
    support.assert_bad_input(cli_env(emu, tmp_path), tmp_path, args, env_change, needle)


def test_sigkill_mid_pagination_then_rerun_is_exact(emu, ctl, tmp_path):
    ctl.configure(latency_ms=20)
    env = cli_env(emu, tmp_path, SOURCES__SYNERISE__PROFILES_PAGE_SIZE="10",
                  SOURCES__SYNERISE__PROFILE_EVENTS_BACKFILL="true", SOURCES__SYNERISE__PROFILE_EVENTS_WORKERS="2")
    resources = "profiles,events,profile_events"
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", "synerise", "--resources", resources],
                            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            walked = [e for e in ctl.requests() if e["path"] == "/activities-api/events/by/id"]
            if len(walked) >= 30:
                break
            assert proc.poll() is None, "the run finished before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("the per-profile walk never started")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    ctl.configure(latency_ms=0)
    ctl.mutate({"op": "modify_profiles", "count": 12})
    ctl.mutate({"op": "add_events", "count": 30, "ago_ms": 0, "spread_ms": 5000})
    ctl.mutate({"op": "advance_clock", "seconds": 90})
    result = cdp_sync("run", "synerise", "--resources", resources, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    events = ctl.export("events")
    live = {p["clientId"] for p in ctl.export("profiles")}
    with duckdb.connect(str(tmp_path / DB), read_only=True) as con:
        assert_table_equals(con, DATASET, "profiles", ctl.export("profiles"))
        assert_table_equals(con, DATASET, "profile_events", [e for e in events if e["client"]["id"] in live])
        loaded = {r[0] for r in con.execute(f"select event_uuid from {DATASET}.events").fetchall()}
        assert_table_equals(con, DATASET, "events", [e for e in events if e["eventUUID"] in loaded])


def test_sigkill_at_the_load_step_then_rerun_loads_every_table_once(emu, ctl, tmp_path):
    """Package replay (class 7): a run killed while its package loads is finished by the next run;
    every table (merge or replace; Synerise has no append table) holds each key once, as the
    emulator does, and the interrupted package's replace tables are not doubled."""
    seg = ctl.export("segmentations")[1]["uuid"]
    env = cli_env(emu, tmp_path, SOURCES__SYNERISE__SEGMENTATION_UUIDS=f'["{seg}"]')
    resources = "profiles,catalogs,catalog_items,tags,asset_tags,segmentation_members,expression_summaries"
    normalized = tmp_path / "dlt_data" / "pipelines" / "synerise" / "load" / "normalized"
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", "synerise", "--resources", resources],
                            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if normalized.exists() and any(normalized.iterdir()):  # the load step has its package
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the run finished before its load step could be killed"
    result = cdp_sync("run", "synerise", "--resources", resources, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with duckdb.connect(str(tmp_path / DB), read_only=True) as con:
        for table in ("profiles", "catalogs", "catalog_items", "tags", "asset_tags", "expression_summaries"):
            assert_table_equals(con, DATASET, table, ctl.export(table))
        assert_table_equals(con, DATASET, "segmentation_members",
                            [m for m in ctl.export("segmentation_members") if m["segmentation_uuid"] == seg])


def test_a_short_read_fails_with_one_line_or_is_marked_incomplete_in_state(emu, ctl, tmp_path):
    ctl.add_faults([{"path": "^/crm/v1/list", "repeat": True, "actions": [{"status": 200, "json": {
        "customers": [], "all": 10_000, "limit": 1, "offset": 0, "matching": 10_000}}]}])
    env = cli_env(emu, tmp_path)
    failed = cdp_sync("run", "synerise", "--resources", "profiles", env=env, cwd=tmp_path)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    (line,) = [x for x in failed.stderr.splitlines() if x.startswith("error:")]
    assert "profiles" in line and "incomplete" in line and "10,000" in line, line
    marked = cdp_sync("run", "synerise", "--resources", "profiles", env={**env, "SOURCES__SYNERISE__ALLOW_INCOMPLETE": "true"},
                      cwd=tmp_path)
    assert marked.returncode == 0 and "INCOMPLETE" in marked.stderr, marked.stderr
    state = cdp_sync("state", "synerise", env=env, cwd=tmp_path)
    assert state.returncode == 0 and "incomplete" in state.stdout and "10000" in state.stdout, state.stdout
