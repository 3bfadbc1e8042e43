"""The Dagster asset checks ``matches_vendor_counts`` (``cdp-sync verify`` per scheduled asset),
materialised in-process against the PostHog emulator over HTTPS: a clean load passes; rows lost
beyond the lookback fail the check naming the day (non-blocking: the run succeeds, the check
fails; blocking: the run fails); the job of the schedule runs the checks; the Airflow DAG verifies
after its load, through ``run_verification`` (the state restored from the destination)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dagster import AssetCheckKey, AssetKey, AssetSelection, DagsterInstance, materialize
from dagster_dlt import DagsterDltResource

from pipelines import dagster_defs as dd

DATASET = "posthog_data"
EVENTS, COHORTS, GROUPS = (AssetKey(["posthog", r]) for r in ("events", "cohorts", "groups"))


@pytest.fixture
def posthog(start_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    emu = start_emulator("posthog", scale=200, seed=8, projects=1)
    monkeypatch.setenv("SOURCES__POSTHOG__API_KEY", emu.api_key)
    monkeypatch.setenv("SOURCES__POSTHOG__BASE_URL", emu.base_url)
    monkeypatch.chdir(tmp_path)
    return emu


def checks_of(result: Any) -> dict[AssetKey, Any]:
    return {e.asset_check_key.asset_key: e for e in result.get_asset_check_evaluations()}


def _materialize(parts: Any, instance: Any, *assets: AssetKey) -> Any:
    # selecting assets selects the checks on them, as the scheduled job does
    selection = AssetSelection.assets(*assets)
    return materialize([parts.scheduled, parts.checks], selection=selection,
                       resources={"dlt": DagsterDltResource()}, instance=instance, raise_on_error=False)


def _lose_a_day(tmp_path: Path) -> str:
    day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).date().isoformat()
    with duckdb.connect(str(tmp_path / "posthog.duckdb")) as con:
        con.execute(f"delete from {DATASET}.events where uuid in (select uuid from {DATASET}.events where timestamp "
                    f">= TIMESTAMPTZ '{day} 00:00:00+00' and timestamp < TIMESTAMPTZ '{day} 00:00:00+00' + "
                    "INTERVAL 1 DAY limit 4)")
    return day


def test_the_check_passes_on_a_clean_load_and_fails_on_a_tampered_destination(posthog, tmp_path):
    settings = dd.VendorSettings("posthog", pipelines_dir=str(tmp_path / "pipelines"), verify_days=3)
    parts = dd.vendor_definitions(settings)
    instance = DagsterInstance.ephemeral()
    first = _materialize(parts, instance, EVENTS, COHORTS, GROUPS)
    assert first.success
    checks = checks_of(first)
    assert set(checks) == {EVENTS, COHORTS, GROUPS}
    assert all(c.passed for c in checks.values())
    assert "not countable" in checks[GROUPS].description
    assert checks[EVENTS].metadata["disagreeing"].value == 0
    assert checks[EVENTS].metadata["recorded_in"].value == f"{DATASET}._cdp_verification"

    day = _lose_a_day(tmp_path)
    # the next scheduled materialization re-reads only its lookback: the lost rows stay lost
    second = _materialize(parts, instance, EVENTS)
    assert second.success, "a non-blocking check does not fail the run"
    check = checks_of(second)[EVENTS]
    assert not check.passed and check.severity.value == "ERROR"
    assert f"worst: {day} project" in check.description and "(-4)" in check.description
    bad = [s for s in check.metadata["slices"].value if s["verdict"] == "disagrees"]
    assert [s["difference"] for s in bad] == [-4]
    with duckdb.connect(str(tmp_path / "posthog.duckdb"), read_only=True) as con:
        assert con.execute(f"select count(*) from {DATASET}._cdp_verification where verdict = 'disagrees'"
                           ).fetchone()[0] == 1

    # the Airflow task's path: a fresh dlt folder, the state and schema restored from the
    # destination; the disagreement raises naming the slice
    from pipelines import verify as vf

    with pytest.raises(vf.VerificationFailed, match=f"posthog events {day} project .* disagrees"):
        vf.run_verification("posthog", pipelines_dir=str(tmp_path / "fresh"), days=3)
    with pytest.raises(vf.VerifyInputError, match="no resource nope"):
        vf.run_verification("posthog", pipelines_dir=str(tmp_path / "fresh"), resources=["nope"])
    ok = vf.run_verification("posthog", pipelines_dir=str(tmp_path / "fresh"), days=1, resources=["cohorts"])
    assert ok.ok and ok.count(vf.AGREES) == 1

    blocking = dd.vendor_definitions(dd.VendorSettings("posthog", pipelines_dir=str(tmp_path / "pipelines"),
                                                       verify_days=3, verify_blocking=True))
    third = _materialize(blocking, instance, EVENTS)
    assert not third.success, "a blocking check that fails fails the run"
    assert not checks_of(third)[EVENTS].passed


def test_the_scheduled_job_runs_the_checks_and_the_settings_read_them(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CDP_SYNC__DAGSTER__VENDORS", "posthog,lytics")
    monkeypatch.setenv("CDP_SYNC__DAGSTER__VERIFY_BLOCKING", "true")
    monkeypatch.setenv("CDP_SYNC__DAGSTER__LYTICS__VERIFY", "false")
    settings = {s.vendor: s for s in dd.settings_from_config()}
    assert settings["posthog"].verify and settings["posthog"].verify_blocking
    assert not settings["lytics"].verify
    defs = dd.build_definitions(list(settings.values()))
    job = defs.resolve_job_def("posthog_incremental_job")
    keys = job.asset_layer.asset_graph.asset_check_keys
    assert AssetCheckKey(EVENTS, dd.CHECK_NAME) in keys
    specs = {s.asset_key: s for s in dd.verification_checks(settings["posthog"]).check_specs}
    assert specs[EVENTS].blocking
    assert dd.vendor_definitions(settings["lytics"]).checks is None


def test_the_airflow_dag_verifies_after_the_load():
    import ast

    tree = ast.parse(Path(dd.__file__).with_name("airflow_dag.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "run_verification"]
    assert len(calls) == 1 and calls[0].args[0].id == "vendor"
    shifts = [n for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.RShift)]
    assert any(getattr(s.left, "id", None) == "tasks" and getattr(s.right.func, "id", None) == "verify" for s in shifts)
