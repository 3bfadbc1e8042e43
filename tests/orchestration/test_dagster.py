"""Dagster definitions (``pipelines/dagster_defs.py``): a daily partition materialised in-process
against the Personyze emulator over HTTPS on loopback loads exactly that day, as the window job of
``cdp-sync backfill`` would, and leaves the scheduled pipeline's state alone; the definitions load
(every vendor's assets, daily partitions on the time-windowed ones) without any credential."""

from __future__ import annotations

import collections
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    DailyPartitionsDefinition,
    Definitions,
    materialize,
)
from dagster_dlt import DagsterDltResource
from dagster_shared.serdes import serialize_value

from pipelines import backfill as bf
from pipelines import dagster_defs as dd
from pipelines.vendors import VENDORS
from sources.common.window import Window
from sources.personyze import settings as S
from tests.backfill.helpers import all_loads, scheduled_state
from tests.personyze.truth import assert_table_equals

DB = "personyze.duckdb"  # cdp-sync run's file for the pipeline "personyze", in the working directory
DATASET = "personyze_data"
USERS = AssetKey(["personyze", "windows", "users"])
SESSIONS = AssetKey(["personyze", "sessions_archive"])


@pytest.fixture
def personyze(start_emulator: Any, control_for: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """The emulator, its key and address set the way the CLI reads them, and the test's folder as
    the working directory (where ``personyze.duckdb`` goes, as with ``cdp-sync run``)."""
    emu = start_emulator("personyze", scale=600, seed=5)
    monkeypatch.setenv("SOURCES__PERSONYZE__API_KEY", emu.api_key)
    monkeypatch.setenv("SOURCES__PERSONYZE__BASE_URL", emu.base_url)
    monkeypatch.chdir(tmp_path)
    return emu, control_for(emu)


def busiest_past_day(users: list[dict[str, Any]]) -> dt.date:
    """The UTC day before today holding the most users by ``data_last_modified``."""
    today = dt.datetime.now(dt.UTC).date()
    days = collections.Counter(dt.datetime.fromtimestamp(int(u["data_last_modified"]), dt.UTC).date() for u in users)
    return max((d for d in days if d < today), key=lambda d: (days[d], d))


def on_day(users: list[dict[str, Any]], day: dt.date) -> list[dict[str, Any]]:
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())
    return [u for u in users if start <= int(u["data_last_modified"]) < start + 86_400]


def materializations(result: Any) -> dict[AssetKey, dict[str, Any]]:
    return {e.event_specific_data.materialization.asset_key: e.event_specific_data.materialization.metadata
            for e in result.get_asset_materialization_events()}


def every_event_text(instance: DagsterInstance) -> str:
    """Everything Dagster recorded (logs, materialisations, failures), serialised."""
    runs = instance.get_runs()
    return "\n".join(serialize_value(r) + "".join(serialize_value(e) for e in instance.all_logs(r.run_id))
                     for r in runs)


def test_a_daily_partition_loads_exactly_its_day_and_leaves_the_schedule_alone(personyze, tmp_path):
    emu, ctl = personyze
    users = ctl.export("users")
    day = busiest_past_day(users)
    want = on_day(users, day)
    assert 0 < len(want) < len(users), "the day holds some users, not all"
    pipelines = tmp_path / "pipelines"
    settings = dd.VendorSettings("personyze", start_date=(day - dt.timedelta(days=3)).isoformat(),
                                 pipelines_dir=str(pipelines))
    parts = dd.vendor_definitions(settings)
    instance = DagsterInstance.ephemeral()

    # the scheduled asset first (dagster-dlt, cdp-sync run's pipeline, dataset and file)
    scheduled = materialize([parts.scheduled], selection=[SESSIONS], resources={"dlt": DagsterDltResource()},
                            instance=instance)
    assert scheduled.success
    assert set(materializations(scheduled)) == {SESSIONS}
    with duckdb.connect(str(tmp_path / DB), read_only=True) as con:
        assert_table_equals(con, DATASET, S.SESSIONS_ARCHIVE, ctl.export("sessions_archive"))
    before = scheduled_state(tmp_path, DATASET, DB, pipelines, "personyze")

    result = materialize([parts.windows], selection=[USERS], partition_key=day.isoformat(), instance=instance)
    assert result.success
    meta = materializations(result)[USERS]
    window = Window.day(day.isoformat())
    # the very window job of `cdp-sync backfill personyze --resource users --from D --to D+1`
    assert meta["window_pipeline"].value == bf.window_pipeline_name("personyze", "users", window)
    assert meta["status"].value == bf.DONE
    assert meta["rows_loaded"].value == len(want)
    with duckdb.connect(str(tmp_path / DB), read_only=True) as con:
        # the users table holds exactly the emulator's users of that day, every value
        assert_table_equals(con, DATASET, S.USERS, want)
        loads = all_loads(con, DATASET)
    assert scheduled_state(tmp_path, DATASET, DB, pipelines, "personyze") == before, \
        "a window never touches the scheduled pipeline's state"

    # finished: Dagster skips it, and so would the CLI (one record for both)
    again = materialize([parts.windows], selection=[USERS], partition_key=day.isoformat(), instance=instance)
    assert again.success
    assert materializations(again)[USERS]["status"].value == bf.SKIPPED
    cli = bf.run_window("personyze", "users", window, pipelines_dir=str(tmp_path / "elsewhere"))
    assert (cli.status, cli.rows) == (bf.SKIPPED, len(want))
    with duckdb.connect(str(tmp_path / DB), read_only=True) as con:
        assert all_loads(con, DATASET) == loads, "nothing loaded again"

    # force reads the day again and merges: the same table
    forced = materialize([parts.windows], selection=[USERS], partition_key=day.isoformat(), instance=instance,
                         run_config={"ops": {"personyze_windows": {"config": {"force": True}}}})
    assert forced.success
    assert materializations(forced)[USERS]["status"].value == bf.DONE
    with duckdb.connect(str(tmp_path / DB), read_only=True) as con:
        assert_table_equals(con, DATASET, S.USERS, want)
        assert len(all_loads(con, DATASET)) == len(loads) + 1
    assert scheduled_state(tmp_path, DATASET, DB, pipelines, "personyze") == before

    # the schedule carries on from its own cursor (dagster-dlt drops the local pipeline folder
    # before a run: the cursor comes back from the destination)
    ctl.mutate({"op": "advance_clock", "seconds": 30})
    ctl.mutate({"op": "add_sessions", "count": 4, "late_seconds": 60})
    later = materialize([parts.scheduled], selection=[SESSIONS], resources={"dlt": DagsterDltResource()},
                        instance=instance)
    assert later.success
    assert materializations(later)[SESSIONS]["rows_loaded"].value == 4, "only the new sessions"
    with duckdb.connect(str(tmp_path / DB), read_only=True) as con:
        assert_table_equals(con, DATASET, S.SESSIONS_ARCHIVE, ctl.export("sessions_archive"))
        assert_table_equals(con, DATASET, S.USERS, want)
    assert emu.api_key not in every_event_text(instance), "the key never reaches Dagster's records"


def test_a_refused_window_fails_in_one_redacted_line_marks_nothing_and_runs_again(personyze, tmp_path):
    emu, ctl = personyze
    users = ctl.export("users")
    day = busiest_past_day(users)
    settings = dd.VendorSettings("personyze", start_date="2025-01-01", pipelines_dir=str(tmp_path / "pipelines"))
    windows = dd.window_assets(settings)
    instance = DagsterInstance.ephemeral()
    # every users request is refused, with a body that echoes the key back
    ctl.add_faults([{"path": "users", "repeat": True,
                     "actions": [{"status": 401, "json": {"error": f"invalid key {emu.api_key}"}}]}])

    failed = materialize([windows], selection=[USERS], partition_key=day.isoformat(), instance=instance,
                         raise_on_error=False)
    assert not failed.success
    failures = [e for e in failed.all_events if e.is_step_failure]
    assert len(failures) == 1, "refused credentials are not retried"
    error = failures[0].step_failure_data.error
    assert "personyze refused the API key" in error.message
    assert emu.api_key not in every_event_text(instance)
    assert not materializations(failed)
    assert not (tmp_path / DB).exists() or not _has_table(tmp_path / DB, "users"), "nothing loaded"

    ctl.clear_faults()
    fixed = materialize([windows], selection=[USERS], partition_key=day.isoformat(), instance=instance)
    assert fixed.success
    assert materializations(fixed)[USERS]["status"].value == bf.DONE, "the failed day was not marked finished"
    with duckdb.connect(str(tmp_path / DB), read_only=True) as con:
        assert_table_equals(con, DATASET, S.USERS, on_day(users, day))


def _has_table(db: Path, table: str) -> bool:
    with duckdb.connect(str(db), read_only=True) as con:
        return bool(con.execute("select 1 from information_schema.tables where table_schema = ? and table_name = ?",
                                [DATASET, table]).fetchall())


def test_definitions_name_every_vendors_resources_and_partition_the_windowed_ones(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CDP_SYNC__DAGSTER__START_DATE", "2026-03-01")
    monkeypatch.setenv("CDP_SYNC__DAGSTER__POSTHOG__START_DATE", "2025-06-15")
    key = "ABCDEF0123456789ABCDEF0123456789ABCDEF01"
    monkeypatch.setenv("SOURCES__PERSONYZE__API_KEY", key)  # configured, yet never in the definitions
    defs = dd.build_definitions()
    Definitions.validate_loadable(defs)
    graph = defs.get_repository_def().asset_graph
    keys = set(graph.get_all_asset_keys())
    schedules = {s.name: s for s in defs.schedules}
    assert VENDORS, "vendors are discovered"
    for vendor, v in VENDORS.items():
        resources = list(v.load_source()(api_key=dd.PLACEHOLDER_API_KEY).resources)
        windowed = bf.backfill_resources(vendor)
        for resource in resources:
            node = graph.get(AssetKey([vendor, resource]))
            assert node.partitions_def is None and node.group_name == vendor
            table = node.metadata["dagster/table_name"]
            assert str(getattr(table, "value", table)).startswith(f"{vendor}_data.")
        assert windowed, f"{vendor} declares its time-windowed resources"
        start = "2025-06-15" if vendor == "posthog" else "2026-03-01"
        for resource in windowed:
            node = graph.get(AssetKey([vendor, "windows", resource]))
            assert isinstance(node.partitions_def, DailyPartitionsDefinition)
            assert node.partitions_def.get_first_partition_key() == start
            assert node.partitions_def.timezone == "UTC"
            assert node.group_name == f"{vendor}_windows"
            assert node.backfill_policy.max_partitions_per_run == 1, "a Dagster backfill fans the days out"
        assert {k for k in keys if k.path[0] == vendor} == (
            {AssetKey([vendor, r]) for r in resources} | {AssetKey([vendor, "windows", r]) for r in windowed})
        schedule = schedules[f"{vendor}_incremental"]
        assert schedule.job_name == f"{vendor}_incremental_job"
        assert set(defs.resolve_job_def(schedule.job_name).asset_layer.selected_asset_keys) == {
            AssetKey([vendor, r]) for r in resources}
    assert schedules["synerise_incremental"].cron_schedule == "15 * * * *", "within the 6-hour horizon"
    # a run over a range of partitions (a single-run backfill) loads each day as its own window
    assert dd.partition_windows(dt.datetime(2026, 3, 1, tzinfo=dt.UTC), dt.datetime(2026, 3, 4, tzinfo=dt.UTC)) == [
        Window.day("2026-03-01"), Window.day("2026-03-02"), Window.day("2026-03-03")]

    from dagster._core.remote_representation.external_data import RepositorySnap

    assert key not in serialize_value(RepositorySnap.from_def(defs.get_repository_def()))


def test_the_module_loads_with_dagster_itself(tmp_path):
    """``dagster definitions validate -m pipelines.dagster_defs``: what ``dagster dev -m`` loads,
    in a fresh process, without credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "CDP_SYNC__", "DAGSTER_"))}
    env["DLT_DATA_DIR"] = str(tmp_path / "dlt_data")
    done = subprocess.run([str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-m",
                           "pipelines.dagster_defs"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful" in done.stdout + done.stderr


def test_settings_refuse_an_unknown_vendor_and_a_table_format_without_files(monkeypatch):
    monkeypatch.setenv("CDP_SYNC__DAGSTER__VENDORS", "personyze,hubspot")
    with pytest.raises(ValueError, match="unknown vendor hubspot"):
        dd.settings_from_config()
    monkeypatch.setenv("CDP_SYNC__DAGSTER__VENDORS", "posthog")
    monkeypatch.setenv("CDP_SYNC__DAGSTER__TABLE_FORMAT", "delta")
    with pytest.raises(ValueError, match="needs the filesystem destination"):
        dd.settings_from_config()
    monkeypatch.setenv("CDP_SYNC__DAGSTER__DESTINATION", "filesystem")
    [only] = dd.settings_from_config()
    assert (only.vendor, only.destination, only.table_format, only.pool, only.window_pool) == (
        "posthog", "filesystem", "delta", "cdp_sync_posthog", "cdp_sync_posthog_windows")


def test_the_readmes_dagster_configuration_is_read_as_documented(tmp_path):
    """The ``[cdp_sync.dagster]`` block of README "Orchestration" in a project's .dlt/config.toml,
    read by a fresh process (dlt binds its configuration files to the working directory)."""
    import json
    import re
    import tomllib

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("\n## Orchestration\n"):]
    [block] = [b for b in re.findall(r"```toml\n(.*?)```", section, re.S) if "[cdp_sync.dagster]" in b]
    documented = tomllib.loads(block)["cdp_sync"]["dagster"]
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text(block)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "CDP_SYNC__"))}
    code = ("import dataclasses, json; from pipelines.dagster_defs import settings_from_config; "
            "print(json.dumps([dataclasses.asdict(s) | {'schedule_cron': s.schedule_cron} for s in settings_from_config()]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    got = {s["vendor"]: s for s in json.loads(done.stdout.strip().splitlines()[-1])}
    assert list(got) == documented["vendors"]
    assert {s["destination"] for s in got.values()} == {documented["destination"]}
    assert got["personyze"]["start_date"] == documented["start_date"]
    assert got["posthog"]["start_date"] == documented["posthog"]["start_date"]
    assert got["posthog"]["schedule_cron"] == documented["posthog"]["cron"]
    assert got["personyze"]["schedule_cron"] == dd.DAILY_CRON


def test_a_scheduled_load_over_the_duckdb_cap_is_finished_by_the_next_materialization(personyze, tmp_path,
                                                                                        monkeypatch):
    emu, ctl = personyze
    monkeypatch.setenv("CDP_SYNC__DUCKDB_MEMORY_LIMIT", "1MB")  # read when the definitions are built
    settings = dd.VendorSettings("personyze", pipelines_dir=str(tmp_path / "pipelines"))
    parts = dd.vendor_definitions(settings)
    instance = DagsterInstance.ephemeral()
    first = materialize([parts.scheduled], selection=[SESSIONS], resources={"dlt": DagsterDltResource()},
                        instance=instance, raise_on_error=False)
    assert not first.success, "dagster-dlt's own run meets the cap"
    # the next materialization loads the package the first one left, without the cap, then runs
    second = materialize([parts.scheduled], selection=[SESSIONS], resources={"dlt": DagsterDltResource()},
                         instance=instance, raise_on_error=False)
    assert second.success, every_event_text(instance)[-2000:]
    assert "memory cap (1MB)" in every_event_text(instance)
    with duckdb.connect(str(tmp_path / DB), read_only=True) as con:
        assert_table_equals(con, DATASET, S.SESSIONS_ARCHIVE, ctl.export("sessions_archive"))
