"""``cdp-sync verify posthog``: a clean load agrees, a tampered destination or events arriving late
beyond the lookback disagree (naming the resource and the day), late events inside the lookback
pass as inside tolerance, bad input exits 2. Against the emulator over HTTPS, as subprocesses."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests import support
from tests.support import cdp_sync

from .helpers import cli

SCALE = 300
DATASET = "posthog_data"
RESOURCES = "events,persons,cohorts,groups,sessions"


def _env(server: Any, tmp_path: Path) -> dict[str, str]:
    return support.cli_env("posthog", server, tmp_path)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One emulator and one clean load for the tests that do not mutate the vendor; each test
    works on its own copy of the DuckDB file (and verifies from the state stored in it)."""
    import emulators

    server = emulators.start("posthog", scale=SCALE, seed=5)
    root = tmp_path_factory.mktemp("posthog_loaded")
    from tests.conftest import _ENV

    with pytest.MonkeyPatch.context() as mp:
        for k, v in _ENV.items():  # the hermetic dlt settings the function-scoped fixture sets later
            mp.setenv(k, v)
        result = cli(mp, _env(server, root), root, "run", "posthog", "--resources", RESOURCES)
    assert result.returncode == 0, result.stderr
    yield server, root / "posthog.duckdb"
    server.stop()


def _copy(loaded: Any, tmp_path: Path) -> tuple[Any, dict[str, str]]:
    server, db = loaded
    shutil.copy(db, tmp_path / "posthog.duckdb")
    return server, _env(server, tmp_path)


def _rows(stdout: str, resource: str) -> list[list[str]]:
    return [line.split() for line in stdout.splitlines() if line.strip().startswith(resource + " ")]


def _today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


def test_a_clean_load_agrees_and_is_recorded(loaded, tmp_path):
    server, env = _copy(loaded, tmp_path)
    result = cdp_sync("verify", "posthog", "--days", "3", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error:" not in result.stderr
    events = _rows(result.stdout, "events")
    # per project: everything before the 3 days, then each day
    assert len(events) == 4 * len(server.backend.projects)
    assert all(r[-1] == "agrees" for r in events), result.stdout
    assert _rows(result.stdout, "persons") and _rows(result.stdout, "cohorts")
    groups = [line for line in result.stdout.splitlines() if line.strip().startswith("groups ")]
    assert len(groups) == 1 and "not countable" in groups[0]
    assert "disagree" not in result.stdout.replace("0 disagree", "")
    with duckdb.connect(str(tmp_path / "posthog.duckdb"), read_only=True) as con:
        recorded = con.execute(
            f"select resource, slice, vendor_count, loaded_count, difference, verdict, pipeline_name "
            f"from {DATASET}._cdp_verification").fetchall()
        total_events = con.execute(f"select count(*) from {DATASET}.events").fetchone()[0]
    n_slices = sum(1 for line in result.stdout.splitlines() if line.startswith("  ") and "verification:" not in line) - 1
    assert len(recorded) == n_slices
    assert {r[5] for r in recorded} == {"agrees", "not countable"}
    assert sum(r[3] for r in recorded if r[0] == "events") == total_events
    assert all(r[6] == "posthog" for r in recorded)


def test_deleted_and_duplicated_rows_of_one_day_fail_naming_it(loaded, tmp_path, monkeypatch):
    server, env = _copy(loaded, tmp_path)
    day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
    pid = sorted(server.backend.projects)[0]
    lo, hi = f"TIMESTAMPTZ '{day} 00:00:00+00'", f"TIMESTAMPTZ '{day} 00:00:00+00' + INTERVAL 1 DAY"
    with duckdb.connect(str(tmp_path / "posthog.duckdb")) as con:
        uuids = [r[0] for r in con.execute(
            f"select uuid from {DATASET}.events where project_id = {pid} and timestamp >= {lo} and timestamp < {hi} "
            "order by uuid limit 3").fetchall()]
        assert len(uuids) == 3
        con.execute(f"delete from {DATASET}.events where uuid in (select unnest(?))", [uuids])
    result = cli(monkeypatch, env, tmp_path, "verify", "posthog", "--days", "3", "--resources", "events")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert f"events {day} project {pid} disagrees" in lines[0] and "(-3)" in lines[0], lines[0]
    bad = [r for r in _rows(result.stdout, "events") if r[-1] == "disagrees"]
    assert [r[1] for r in bad] == [day]

    # a duplicated row (another day) is a difference too, and the bigger one is named
    other = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).date().isoformat()
    lo2 = f"TIMESTAMPTZ '{other} 00:00:00+00'"
    with duckdb.connect(str(tmp_path / "posthog.duckdb")) as con:
        con.execute(f"insert into {DATASET}.events select * from {DATASET}.events where project_id = {pid} "
                    f"and timestamp >= {lo2} and timestamp < {lo2} + INTERVAL 1 DAY order by uuid limit 5")
    result = cli(monkeypatch, env, tmp_path, "verify", "posthog", "--days", "3", "--resources", "events")
    assert result.returncode == 1
    assert f"events {other} project {pid} disagrees" in result.stderr and "(+5)" in result.stderr, result.stderr
    assert "2 of" in result.stderr
    with duckdb.connect(str(tmp_path / "posthog.duckdb"), read_only=True) as con:
        verdicts = con.execute(f"select slice, difference from {DATASET}._cdp_verification "
                               "where verdict = 'disagrees' order by slice").fetchall()
    assert (f"{day} project {pid}", -3) in verdicts and (f"{other} project {pid}", 5) in verdicts


def test_sessions_counts_agree_and_a_missing_session_fails_naming_its_day(loaded, tmp_path, monkeypatch):
    server, env = _copy(loaded, tmp_path)
    result = cli(monkeypatch, env, tmp_path, "verify", "posthog", "--days", "3", "--resources", "sessions")
    assert result.returncode == 0, result.stdout + result.stderr
    sessions = _rows(result.stdout, "sessions")
    # per project: the sessions starting before the 3 days, then on each day
    assert len(sessions) == 4 * len(server.backend.projects)
    assert all(r[-1] == "agrees" for r in sessions), result.stdout
    with duckdb.connect(str(tmp_path / "posthog.duckdb"), read_only=True) as con:
        recorded = con.execute(f"select sum(loaded_count), sum(vendor_count) from {DATASET}._cdp_verification "
                               "where resource = 'sessions'").fetchone()
        total = con.execute(f"select count(*) from {DATASET}.sessions").fetchone()[0]
    assert recorded == (total, total)

    day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).date().isoformat()
    pid = sorted(server.backend.projects)[0]
    lo = f"TIMESTAMPTZ '{day} 00:00:00+00'"
    with duckdb.connect(str(tmp_path / "posthog.duckdb")) as con:
        ids = [r[0] for r in con.execute(
            f"select session_id from {DATASET}.sessions where project_id = {pid} and start_timestamp >= {lo} "
            f"and start_timestamp < {lo} + INTERVAL 1 DAY order by session_id limit 2").fetchall()]
        assert len(ids) == 2
        con.execute(f"delete from {DATASET}.sessions where session_id in (select unnest(?))", [ids])
    result = cli(monkeypatch, env, tmp_path, "verify", "posthog", "--days", "3", "--resources", "sessions")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"sessions {day} project {pid} disagrees" in result.stderr and "(-2)" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("verify", "nope"), "unknown vendor 'nope'"),
        (("verify", "posthog", "--resources", "events,nope"), "no resource nope"),
        (("verify", "posthog", "--days", "0"), "--days must be between 1"),
        (("verify", "posthog", "--days", "many"), "--days must be a whole number"),
        (("verify", "posthog", "--pipeline-name", "other"), "other.duckdb"),
        (("verify", "posthog", "--destination", "nope"), "unknown destination 'nope'"),
    ],
)
def test_bad_input_exits_2(loaded, tmp_path, monkeypatch, args, needle):
    server, env = _copy(loaded, tmp_path)
    _assert_exit_2(cli(monkeypatch, env, tmp_path, *args), needle)


def _assert_exit_2(result: Any, needle: str) -> None:
    assert result.returncode == 2, result
    assert result.stderr.count("error:") == 1 and needle in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_no_pipeline_and_no_key_exit_2(loaded, tmp_path, monkeypatch):
    server, _ = loaded
    env = _env(server, tmp_path)
    _assert_exit_2(cli(monkeypatch, env, tmp_path, "verify", "posthog"), "posthog.duckdb")
    env.pop("SOURCES__POSTHOG__API_KEY")
    _assert_exit_2(cli(monkeypatch, env, tmp_path, "verify", "posthog"), "SOURCES__POSTHOG__API_KEY")


def test_late_events_inside_the_lookback_pass_beyond_it_fail(start_emulator, control_for, tmp_path, monkeypatch):
    server = start_emulator("posthog", scale=SCALE, seed=6, projects=1)
    ctl = control_for(server)
    env = _env(server, tmp_path)
    assert cli(monkeypatch, env, tmp_path, "run", "posthog", "--resources", "events").returncode == 0
    pid = next(iter(server.backend.projects))

    # late, but inside the 1 h lookback behind the cursor: the next run reads them
    ctl.mutate({"op": "add_events", "project_id": pid, "count": 4, "late_seconds": 900})
    result = cli(monkeypatch, env, tmp_path, "verify", "posthog", "--days", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    inside = [line for line in result.stdout.splitlines() if "inside tolerance" in line and "events" in line]
    assert len(inside) == 1 and "-4" in inside[0] and "lookback" in inside[0], result.stdout

    # beyond the lookback (yesterday noon): never read again, a failure naming the day
    yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
    ctl.mutate({"op": "add_events", "project_id": pid, "count": 2, "at": f"{yesterday}T12:00:00Z"})
    result = cli(monkeypatch, env, tmp_path, "verify", "posthog", "--days", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"events {yesterday} project {pid} disagrees" in result.stderr and "(-2)" in result.stderr

    # the next run catches the late events inside the lookback (those beyond stay missing)
    assert cli(monkeypatch, env, tmp_path, "run", "posthog", "--resources", "events").returncode == 0
    result = cli(monkeypatch, env, tmp_path, "verify", "posthog", "--days", "2")
    assert result.returncode == 1
    today = [r for r in _rows(result.stdout, "events") if r[1] == _today()]
    assert today and today[0][-1] == "agrees", result.stdout


def test_run_verify_checks_what_it_loaded_and_a_failed_verification_exits_1(loaded, tmp_path, monkeypatch):
    server, env = _copy(loaded, tmp_path)  # the next run starts from the state stored in the destination
    result = cli(monkeypatch, env, tmp_path, "run", "posthog", "--resources", "events,cohorts", "--verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verification: agrees" in result.stdout
    assert {r[0] for r in _rows(result.stdout, "events") + _rows(result.stdout, "cohorts")} == {"events", "cohorts"}
    assert not _rows(result.stdout, "persons")  # not loaded by this run: not verified

    # rows lost beyond the lookback stay lost: the next run (verify_after_run from the config) says so
    day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).date().isoformat()
    with duckdb.connect(str(tmp_path / "posthog.duckdb")) as con:
        con.execute(f"delete from {DATASET}.events where timestamp >= TIMESTAMPTZ '{day} 00:00:00+00' "
                    f"and timestamp < TIMESTAMPTZ '{day} 00:00:00+00' + INTERVAL 1 DAY")
    env["CDP_SYNC__VERIFY_AFTER_RUN"] = "true"
    result = cli(monkeypatch, env, tmp_path, "run", "posthog", "--resources", "events")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "verification: DISAGREES" in result.stdout
    assert f"error: posthog events {day} project" in result.stderr and result.stderr.count("error:") == 1
    result = cli(monkeypatch, env, tmp_path, "run", "posthog", "--resources", "cohorts", "--no-verify")
    assert result.returncode == 0 and "verification" not in result.stdout


def test_recording_the_same_verification_twice_never_doubles_it(loaded, tmp_path, monkeypatch):
    from pipelines import verify as vf
    from pipelines.cli import _destination

    server, env = _copy(loaded, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", server.ca_file)
    pipeline = vf.open_pipeline("posthog", "posthog", _destination("duckdb", "posthog"), DATASET, "duckdb")
    result = vf.verify("posthog", pipeline=pipeline, resources=["cohorts", "groups"], api_key=server.api_key,
                       base_url=server.base_url, record=False)
    assert [r.verdict for r in result.results] == ["agrees"] * len(server.backend.projects) + ["not countable"]
    for _ in range(2):
        vf.record_verification(result, pipeline)
    with duckdb.connect(str(tmp_path / "posthog.duckdb"), read_only=True) as con:
        n = con.execute(f"select count(*) from {DATASET}._cdp_verification").fetchone()[0]
    assert n == len(result.results)

    # after a run (not strict), a resource verify does not know yet is a row, not an error
    with pytest.raises(vf.VerifyInputError, match="no resource brand_new"):
        vf.verify("posthog", pipeline=pipeline, resources=["brand_new"], api_key=server.api_key,
                  base_url=server.base_url, record=False)
    lenient = vf.verify("posthog", pipeline=pipeline, resources=["brand_new"], api_key=server.api_key,
                        base_url=server.base_url, record=False, strict=False)
    assert [(r.resource, r.verdict, r.note) for r in lenient.results] == [
        ("brand_new", "not countable", "cdp-sync verify does not know this resource")]


def test_events_loaded_only_by_backfill_windows_are_reported_not_silently_skipped(loaded, monkeypatch):
    """No scheduled cursor (only backfill windows loaded events): nothing bounds the vendor's
    count, so each project is a not-countable row."""
    from pipelines import verify as vf
    from pipelines.verify import posthog as planner

    server, _ = loaded
    monkeypatch.setenv("SSL_CERT_FILE", server.ca_file)
    now = dt.datetime.now(dt.UTC)
    ctx = vf.Context("posthog", ["events"], {"resources": {"events": {"projects": {}}}}, {"events"},
                     vf.utc_days(2, now), now, lambda key, default=None: default)
    checks = planner.plan(ctx, server.api_key, server.base_url)
    assert [(c.slice, c.vendor, c.table) for c in checks] == [
        (f"project {pid}", None, "events") for pid in sorted(server.backend.projects)]
    assert all("no cursor" in c.note for c in checks)
