"""cdp-sync's DuckDB settings: the memory cap reaches DuckDB, and the project's config.toml does not
break a plain ``destination="duckdb"`` pipeline run from the project directory."""

from __future__ import annotations

from pathlib import Path

import dlt
import pytest

from pipelines.destinations import duckdb_destination

ROOT = Path(__file__).resolve().parents[2]


def _memory_limit(pipeline: dlt.Pipeline) -> str:
    with pipeline.sql_client() as client:
        return client.execute_sql("select current_setting('memory_limit')")[0][0]


def test_project_config_caps_duckdb_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # .dlt/config.toml of the project: [cdp_sync] duckdb_memory_limit
    pipeline = dlt.pipeline("cap", destination=duckdb_destination(str(tmp_path / "cap.duckdb")),
                            dataset_name="cap_data", pipelines_dir=str(tmp_path / "p"))
    pipeline.run([{"a": 1}], table_name="t")
    assert _memory_limit(pipeline) == "122.0 MiB"  # 128MB as DuckDB reports it


def test_the_cap_can_be_lifted(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CDP_SYNC__DUCKDB_MEMORY_LIMIT", "none")
    pipeline = dlt.pipeline("nocap", destination=duckdb_destination(str(tmp_path / "nocap.duckdb")),
                            dataset_name="nocap_data", pipelines_dir=str(tmp_path / "p"))
    pipeline.run([{"a": 1}], table_name="t")
    assert _memory_limit(pipeline) != "122.0 MiB"


def test_plain_duckdb_destination_still_works_in_the_project_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    name = "cdp_sync_config_probe"
    db = ROOT / f"{name}.duckdb"
    try:
        pipeline = dlt.pipeline(name, destination="duckdb", dataset_name="probe_data", pipelines_dir=str(tmp_path / "p"))
        info = pipeline.run([{"a": 1}], table_name="t")
        assert not info.has_failed_jobs
    finally:
        for f in (db, db.with_suffix(".duckdb.wal")):
            f.unlink(missing_ok=True)
    assert not db.exists()


@pytest.mark.parametrize("value", ["64MB", "1GB"])
def test_configured_value_is_used(tmp_path, monkeypatch, value):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CDP_SYNC__DUCKDB_MEMORY_LIMIT", value)
    pipeline = dlt.pipeline("v", destination=duckdb_destination(str(tmp_path / "v.duckdb")),
                            dataset_name="v_data", pipelines_dir=str(tmp_path / "p"))
    pipeline.run([{"a": 1}], table_name="t")
    expected = {"64MB": "61.0 MiB", "1GB": "953.6 MiB"}[value]
    assert _memory_limit(pipeline) == expected
