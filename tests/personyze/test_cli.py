"""`cdp-sync` end to end: subprocesses against an in-process emulator over HTTPS."""

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

from sources.personyze import settings as S
from tests import support
from tests.support import cdp_sync

from .truth import assert_table_equals

SCALE = 2000


def cli_env(server: Any, tmp_path: Path, **extra: str) -> dict[str, str]:
    return support.cli_env("personyze", server, tmp_path, **extra)


@pytest.fixture
def emu(start_emulator: Any) -> Any:
    return start_emulator("personyze", scale=SCALE, seed=3)


@pytest.fixture
def ctl(emu: Any, control_for: Any) -> Any:
    return control_for(emu)


def test_run_state_and_check(emu, ctl, tmp_path):
    env = cli_env(emu, tmp_path)
    result = cdp_sync("run", "personyze", "--resources", "users,events,placeholders", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "personyze:" in result.stdout and "requests" in result.stdout
    assert f"users {SCALE:>10,}".replace(" ", "") in result.stdout.replace(" ", "")
    assert (tmp_path / "personyze.duckdb").exists(), "default DuckDB file is <pipeline_name>.duckdb in the cwd"
    with duckdb.connect(str(tmp_path / "personyze.duckdb"), read_only=True) as con:
        assert_table_equals(con, "personyze_data", S.USERS, ctl.export("users"))

    state = cdp_sync("state", "personyze", env=env, cwd=tmp_path)
    assert state.returncode == 0, state.stderr
    newest = max(int(u["data_last_modified"]) for u in ctl.export("users"))
    assert f"data_last_modified = {newest}" in state.stdout
    assert "events" in state.stdout

    check = cdp_sync("check", "personyze", env=env, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("personyze: ok")


def test_refused_key_is_one_clear_line_and_exit_1(emu, tmp_path):
    wrong = "0" * 40
    env = cli_env(emu, tmp_path, SOURCES__PERSONYZE__API_KEY=wrong)
    support.assert_refused_key(
        env, tmp_path, "personyze", wrong, (("run", "personyze"), ("check", "personyze"))
    )


@pytest.mark.parametrize(
    ("args", "env_change", "needle"),
    [
        (("run", "personyze"), {"SOURCES__PERSONYZE__API_KEY": None}, "SOURCES__PERSONYZE__API_KEY"),
        (("run", "personyze", "--resources", "users,nope"), {}, "no resource nope"),
        (("run", "nosuchvendor"), {}, "unknown vendor"),
        (("run", "personyze"), {"SOURCES__PERSONYZE__BASE_URL": "http://127.0.0.1:9/rest"}, "HTTPS"),
        (("state", "personyze", "--pipeline-name", "never_ran"), {}, "no pipeline named"),
        (("run", "personyze", "--dataset-name", "personyze"), {}, "DuckDB refuses"),
        (("run", "personyze", "--table-format", "delta"), {}, "needs --destination filesystem"),
    ],
)
def test_bad_input_exits_2_with_one_line(emu, tmp_path, args, env_change, needle):
    support.assert_bad_input(cli_env(emu, tmp_path), tmp_path, args, env_change, needle)


def test_sigkill_mid_pagination_then_rerun_is_exact(emu, ctl, tmp_path):
    ctl.configure(latency_ms=20)
    env = cli_env(emu, tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "run", "personyze", "--resources", "users,events"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            walked = [e for e in ctl.requests() if e["path"].startswith("/rest/users/where")]
            if len(walked) >= 12:
                break
            assert proc.poll() is None, "the run finished before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("the users walk never started")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    ctl.configure(latency_ms=0)
    ctl.mutate({"op": "modify_users", "count": 30})
    result = cdp_sync("run", "personyze", "--resources", "users,events", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with duckdb.connect(str(tmp_path / "personyze.duckdb"), read_only=True) as con:
        assert_table_equals(con, "personyze_data", S.USERS, ctl.export("users"))
        assert_table_equals(con, "personyze_data", S.EVENTS, ctl.export("events"))


def test_demo_loads_every_source(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__")}
    env["DLT_DATA_DIR"] = str(tmp_path / "dlt_data")
    result = cdp_sync("demo", "--scale", "300", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cdp_demo.duckdb").exists()
    assert "personyze.users" in result.stdout and "duckdb" in result.stdout
    with duckdb.connect(str(tmp_path / "cdp_demo.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from personyze.users").fetchone()[0] == 300


def test_a_load_over_the_duckdb_memory_cap_finishes_uncapped_with_a_warning(emu, ctl, tmp_path):
    env = cli_env(emu, tmp_path, CDP_SYNC__DUCKDB_MEMORY_LIMIT="1MB")
    result = cdp_sync("run", "personyze", "--resources", "users,events", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "memory cap" in line]
    assert len(warnings) == 1 and warnings[0].startswith("personyze: warning: DuckDB needed more"), result.stderr
    # one line, not a traceback for each of dlt's retries of the job
    assert "Traceback" not in result.stderr and "Out of Memory" not in result.stderr, result.stderr
    with duckdb.connect(str(tmp_path / "personyze.duckdb"), read_only=True) as con:
        assert_table_equals(con, "personyze_data", S.USERS, ctl.export("users"))
        ids = con.execute("select count(*), count(distinct id) from personyze_data.events").fetchone()
    assert ids[0] == ids[1] == len(ctl.export("events"))


def test_killed_while_loading_then_rerun_loads_every_row_once(emu, ctl, tmp_path):
    """Issue 11, class 7: a SIGKILL at the load step leaves a package the next run finishes; no
    table may take a second copy (every Personyze table merges on its key or is replaced)."""
    env = cli_env(emu, tmp_path)
    packages = tmp_path / "dlt_data" / "pipelines" / "personyze" / "load" / "normalized"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "run", "personyze"],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if packages.is_dir() and any(packages.iterdir()):
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, "the run ended before its load step could be interrupted"
    assert any(packages.iterdir()), "a package was left to finish"
    result = cdp_sync("run", "personyze", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with duckdb.connect(str(tmp_path / "personyze.duckdb"), read_only=True) as con:
        for spec in (S.USERS, S.EVENTS, S.SESSIONS_ARCHIVE, S.SUMMARY_ACTIONS, S.PRODUCTS, S.ARTICLES,
                     *S.SMALL_TABLES):
            assert_table_equals(con, "personyze_data", spec, ctl.export(spec.name))


def test_a_key_revoked_mid_run_fails_at_once_in_one_line(emu, ctl, tmp_path):
    """Issue 11, class 8: a 401 in the middle of a run (here during the concurrent users
    backfill) fails the run at once with one line: no retries, no thread that keeps going."""
    ctl.configure(revoke_after=6)
    env = cli_env(emu, tmp_path)
    started = time.monotonic()
    result = cdp_sync("run", "personyze", "--resources", "users,events", env=env, cwd=tmp_path, timeout=120)
    took = time.monotonic() - started
    ctl.configure(revoke_after=None)
    assert result.returncode == 1, result
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "401" in errors[0] and "personyze" in errors[0], result.stderr
    assert "Traceback" not in result.stderr and emu.api_key not in result.stderr + result.stdout
    refused = [e for e in ctl.requests() if e["status"] == 401]
    assert len(refused) <= 2 * 8, f"{len(refused)} requests after the key was revoked"  # in-flight only
    assert took < 60, took
