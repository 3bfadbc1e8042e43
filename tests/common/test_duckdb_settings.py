"""cdp-sync's DuckDB settings: the memory cap reaches DuckDB, a load the cap cannot hold is finished
without it (exactly once), and the project's config.toml does not break a plain
``destination="duckdb"`` pipeline run from the project directory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import dlt
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines.destinations import _out_of_memory, duckdb_destination, run_within_cap

ROOT = Path(__file__).resolve().parents[2]


def _memory_limit(pipeline: dlt.Pipeline) -> str:
    with pipeline.sql_client() as client:
        return client.execute_sql("select current_setting('memory_limit')")[0][0]


def test_project_config_caps_duckdb_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # .dlt/config.toml of the project: [cdp_sync] duckdb_memory_limit
    pipeline = dlt.pipeline("cap", destination=duckdb_destination(str(tmp_path / "cap.duckdb")),
                            dataset_name="cap_data", pipelines_dir=str(tmp_path / "p"))
    pipeline.run([{"a": 1}], table_name="t")
    assert _memory_limit(pipeline) == "45.7 MiB"  # 48MB as DuckDB reports it


def test_the_cap_can_be_lifted(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CDP_SYNC__DUCKDB_MEMORY_LIMIT", "none")
    pipeline = dlt.pipeline("nocap", destination=duckdb_destination(str(tmp_path / "nocap.duckdb")),
                            dataset_name="nocap_data", pipelines_dir=str(tmp_path / "p"))
    pipeline.run([{"a": 1}], table_name="t")
    assert _memory_limit(pipeline) != "45.7 MiB"


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


def _loaded_setting(tmp_path: Path, setting: str) -> str:
    """DuckDB's ``setting`` as a cdp-sync DuckDB destination left it after loading one row."""
    pipeline = dlt.pipeline("s", destination=duckdb_destination(str(tmp_path / "s.duckdb")),
                            dataset_name="s_data", pipelines_dir=str(tmp_path / "p"))
    pipeline.run([{"a": 1}], table_name="t")
    with pipeline.sql_client() as client:
        return str(client.execute_sql(f"select current_setting('{setting}')")[0][0])


@pytest.mark.parametrize("value", ["64MB", "1GB"])
def test_configured_value_is_used(tmp_path, monkeypatch, value):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CDP_SYNC__DUCKDB_MEMORY_LIMIT", value)
    expected = {"64MB": "61.0 MiB", "1GB": "953.6 MiB"}[value]
    assert _loaded_setting(tmp_path, "memory_limit") == expected


@pytest.mark.parametrize(("cores", "expected"), [(1, 1), (2, 1), (8, 7)])
@pytest.mark.parametrize("capped", [True, False])
def test_duckdb_leaves_one_core_to_the_process(tmp_path, monkeypatch, cores, expected, capped):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))
    if not capped:
        monkeypatch.setenv("CDP_SYNC__DUCKDB_MEMORY_LIMIT", "none")
    assert int(_loaded_setting(tmp_path, "threads")) == expected


def test_without_affinity_every_core_counts(tmp_path, monkeypatch):
    """Where the OS has no CPU affinity (macOS), the default comes from the core count."""
    monkeypatch.chdir(ROOT)
    monkeypatch.delattr("os.sched_getaffinity", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert int(_loaded_setting(tmp_path, "threads")) == 5


@pytest.mark.parametrize("value", ["3", "auto"])
def test_configured_threads_are_used(tmp_path, monkeypatch, value):
    import duckdb

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CDP_SYNC__DUCKDB_THREADS", value)
    own_default = duckdb.connect().execute("select current_setting('threads')").fetchone()[0]
    assert int(_loaded_setting(tmp_path, "threads")) == (3 if value == "3" else int(own_default))


@pytest.mark.parametrize("value", ["0", "-2", "many", "1.5"])
def test_bad_threads_are_one_clear_error(tmp_path, monkeypatch, value):
    from sources.common.errors import ConfigurationError

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CDP_SYNC__DUCKDB_THREADS", value)
    with pytest.raises(ConfigurationError) as error:
        duckdb_destination(str(tmp_path / "bad.duckdb"))
    assert "duckdb_threads" in str(error.value) and "\n" not in str(error.value)


class _LogRecords(logging.Handler):
    """What dlt's logger emits, with tracebacks, as text."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage() + (logging.Formatter().formatException(record.exc_info)
                                                    if record.exc_info else ""))


def _wide_merge(n: int) -> Any:
    """A merge resource of ``n`` ids, each twice (so dlt's merge must de-duplicate the staging
    table with its window function), with 400-character rows."""
    import pyarrow as pa

    ids = [i // 2 for i in range(2 * n)]
    table = pa.table({"id": pa.array(ids, pa.int64()), "blob": pa.array([f"{i:08d}" * 50 for i in ids])})

    @dlt.resource(primary_key="id", write_disposition="merge", table_name="t")
    def wide() -> Any:
        yield table

    return wide()


def test_a_merge_over_the_cap_is_finished_uncapped_once_and_exactly(tmp_path, monkeypatch):
    seen = _LogRecords()
    logging.getLogger("dlt").addHandler(seen)
    monkeypatch.setattr(seen, "level", logging.DEBUG)
    monkeypatch.setenv("CDP_SYNC__DUCKDB_MEMORY_LIMIT", "16MB")
    pipeline = dlt.pipeline("big", destination=duckdb_destination(str(tmp_path / "big.duckdb")),
                            dataset_name="big_data", pipelines_dir=str(tmp_path / "p"))
    # the cap alone fails this merge (the window function cannot spill)
    with pytest.raises(PipelineStepFailed) as failed:
        pipeline.run(_wide_merge(25_000), loader_file_format="parquet")
    assert _out_of_memory(failed.value) and pipeline.has_pending_data
    pipeline.drop_pending_packages()
    assert any("Out of Memory" in m for m in seen.messages), "dlt logs each retry of the failed job"
    seen.messages.clear()

    warnings: list[str] = []
    info = run_within_cap(pipeline, lambda: pipeline.run(_wide_merge(25_000), loader_file_format="parquet"),
                          warn=warnings.append)
    assert not info.has_failed_jobs and not pipeline.has_pending_data
    assert len(warnings) == 1 and "memory cap (16MB)" in warnings[0]
    assert not [m for m in seen.messages if "Out of Memory" in m], "the one warning replaces dlt's retry logs"
    logging.getLogger("dlt").removeHandler(seen)
    with pipeline.sql_client() as client:
        rows, ids = client.execute_sql("select count(*), count(distinct id) from t")[0]
    assert rows == ids == 25_000
    # a later run under the cap merges again, exactly
    info = run_within_cap(pipeline, lambda: pipeline.run(_wide_merge(1_000), loader_file_format="parquet"),
                          warn=warnings.append)
    with pipeline.sql_client() as client:
        rows, ids = client.execute_sql("select count(*), count(distinct id) from t")[0]
    assert rows == ids == 25_000 and len(warnings) == 1


def test_other_failures_are_not_retried_uncapped(tmp_path, monkeypatch):
    monkeypatch.setenv("CDP_SYNC__DUCKDB_MEMORY_LIMIT", "16MB")
    pipeline = dlt.pipeline("other", destination=duckdb_destination(str(tmp_path / "o.duckdb")),
                            dataset_name="other_data", pipelines_dir=str(tmp_path / "p"))
    warnings: list[str] = []
    # a package is pending, as after any failed load: only a memory failure may load it uncapped
    pipeline.extract(_wide_merge(10), loader_file_format="parquet")
    pipeline.normalize()
    assert pipeline.has_pending_data

    def fails() -> None:
        raise ValueError("not a memory problem")

    with pytest.raises(ValueError):
        run_within_cap(pipeline, fails, warn=warnings.append)
    assert warnings == [] and pipeline.has_pending_data, "nothing was loaded behind the failure"
    assert not _out_of_memory(RuntimeError("load failed", ValueError("Binder Error")))
    assert _out_of_memory(RuntimeError("wrapped")) is False
    nested = RuntimeError("outer")
    nested.__cause__ = MemoryError("Out of Memory Error: failed to allocate data of size 16.0 MiB")
    assert _out_of_memory(nested)


@pytest.mark.parametrize("capped", [True, False])
def test_duckdb_loads_one_file_at_a_time(tmp_path, monkeypatch, capped):
    """Several tables' files are copied one after the other, not at once (each copy holds its own
    uncommitted rows); the control, dlt's own DuckDB destination, copies them at once."""
    import threading
    import time

    from dlt.destinations.impl.duckdb import duck

    monkeypatch.chdir(ROOT)
    if not capped:
        monkeypatch.setenv("CDP_SYNC__DUCKDB_MEMORY_LIMIT", "none")
    running, most = [0], [0]
    lock = threading.Lock()
    original = duck.DuckDbCopyJob.run

    def counted(self):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.3)  # long enough for a parallel loader to start the others meanwhile
            original(self)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(duck.DuckDbCopyJob, "run", counted)

    @dlt.source
    def three():
        return [dlt.resource([{"id": i} for i in range(100)], name=f"t{n}") for n in range(3)]

    for destination, expected in ((duckdb_destination(str(tmp_path / "ours.duckdb")), 1),
                                  (dlt.destinations.duckdb(str(tmp_path / "dlt.duckdb")), 3)):
        most[0] = 0
        pipeline = dlt.pipeline(f"order{expected}", destination=destination, dataset_name="d",
                                pipelines_dir=str(tmp_path / f"p{expected}"))
        pipeline.run(three(), loader_file_format="parquet").raise_on_failed_jobs()
        assert most[0] == expected


def test_the_extract_s_freed_memory_is_handed_back_once_before_the_load(tmp_path, monkeypatch):
    """``run_within_cap`` releases the memory the extract freed after normalize, before the
    load step (once per load), whatever the vendor."""
    import pipelines.runtime as runtime

    monkeypatch.chdir(ROOT)
    pipeline = dlt.pipeline("release", destination=duckdb_destination(str(tmp_path / "r.duckdb")),
                            dataset_name="d", pipelines_dir=str(tmp_path / "p"))
    seen: list[tuple[int, bool]] = []
    release = runtime.release_freed_memory

    def counted() -> None:
        with pipeline.sql_client() as client:
            loaded = client.has_dataset() and bool(client.execute_sql(
                "select 1 from information_schema.tables where table_name = 't'"))
        seen.append((len(pipeline.list_normalized_load_packages()), loaded))
        release()

    monkeypatch.setattr(runtime, "release_freed_memory", counted)
    run_within_cap(pipeline, lambda: pipeline.run([{"a": 1}], table_name="t")).raise_on_failed_jobs()
    assert seen == [(1, False)]  # one normalized package, nothing loaded yet
