"""Shared helpers of the backfill tests: run window jobs in-process, read what they loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dlt
import duckdb

from pipelines.backfill import DONE, WindowResult, parse_window_size, plan_windows, run_backfill
from sources.common.window import Window, parse_instant

SCHEDULED = "sched"
DATASET = "data"


def windows(start: Any, end: Any, size: str) -> list[Window]:
    return plan_windows(parse_instant(start), parse_instant(end), parse_window_size(size))


def backfill(server: Any, vendor: str, resource: str, start: Any, end: Any, size: str, tmp_path: Path, *,
             workers: int = 1, force: bool = False, db: str = "test.duckdb", **options: Any) -> list[WindowResult]:
    """``cdp-sync backfill`` in-process: the window jobs of ``[start, end)`` against the emulator,
    into the scheduled pipeline ``sched``'s DuckDB file and dataset under ``tmp_path``."""
    return run_backfill(
        vendor, resource, windows(start, end, size), workers=workers, pipeline_name=SCHEDULED,
        destination=dlt.destinations.duckdb(str(tmp_path / db)), dataset_name=DATASET,
        pipelines_dir=str(tmp_path / "pipelines"), force=force, loader_file_format="parquet",
        source_options={"api_key": server.api_key, "base_url": server.base_url, **options},
    )


def assert_all(results: list[WindowResult], status: str = DONE) -> None:
    bad = [(r.window.label, r.status, r.error) for r in results if r.status != status]
    assert not bad, f"windows not {status}: {bad}"


def connect(tmp_path: Path, db: str = "test.duckdb") -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(tmp_path / db), read_only=True)


def window_load_ids(con: duckdb.DuckDBPyConnection, dataset: str = DATASET) -> set[str]:
    """Loads made by window pipelines (each window's state row is loaded with its data)."""
    rows = con.execute(
        f"select distinct _dlt_load_id from {dataset}._dlt_pipeline_state where starts_with(pipeline_name, ?)",
        [f"{SCHEDULED}_backfill_"],
    ).fetchall()
    return {r[0] for r in rows}


def keys_loaded_by(con: duckdb.DuckDBPyConnection, table: str, key_sql: str, load_ids: set[str],
                   dataset: str = DATASET) -> list[tuple]:
    """The keys (``key_sql``, a select list) of the rows whose current copy a window loaded."""
    if not load_ids:
        return []
    marks = ", ".join("?" for _ in load_ids)
    return con.execute(f"select {key_sql} from {dataset}.{table} where _dlt_load_id in ({marks})",
                       sorted(load_ids)).fetchall()


def all_loads(con: duckdb.DuckDBPyConnection, dataset: str = DATASET) -> list[str]:
    return sorted(r[0] for r in con.execute(f"select load_id from {dataset}._dlt_loads").fetchall())


def scheduled_state(tmp_path: Path, dataset: str = DATASET, db: str = "test.duckdb",
                    pipelines_dir: Path | None = None, name: str = SCHEDULED) -> tuple[bytes, list[tuple]]:
    """The scheduled pipeline's state, byte for byte: its local state file and its rows in the
    destination's state table."""
    local = ((pipelines_dir or tmp_path / "pipelines") / name / "state.json").read_bytes()
    with duckdb.connect(str(tmp_path / db), read_only=True) as con:
        stored = con.execute(
            f"select version, version_hash, state, _dlt_load_id from {dataset}._dlt_pipeline_state "
            "where pipeline_name = ? order by _dlt_load_id", [name],
        ).fetchall()
    assert stored, "the scheduled pipeline has stored its state"
    return local, stored


def table_rows(con: duckdb.DuckDBPyConnection, table: str, order_by: str, dataset: str = DATASET) -> list[tuple]:
    """Every row of a table without dlt's bookkeeping columns, in a stable order."""
    cols = [r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
        "and column_name not like '\\_dlt%' escape '\\' order by column_name", [dataset, table]).fetchall()]
    quoted = ", ".join(f'"{c}"' for c in cols)
    return con.execute(f"select {quoted} from {dataset}.{table} order by {order_by}").fetchall()


def fault_for(path_regex: str, status: int = 400, method: str | None = None, **body: Any) -> dict[str, Any]:
    """A fault rule answering every matching request with a non-retryable ``status``."""
    rule: dict[str, Any] = {"path": path_regex, "actions": [{"status": status, "json": body or {"detail": "injected"}}],
                            "repeat": True}
    if method:
        rule["method"] = method
    return rule


def keys_by_window(con: duckdb.DuckDBPyConnection, table: str, key_sql: str, results: list[WindowResult],
                   dataset: str = DATASET) -> list[list[tuple]]:
    """For each window (in order), the sorted keys of the rows its own load wrote."""
    out = []
    for r in results:
        ids = {row[0] for row in con.execute(
            f"select _dlt_load_id from {dataset}._dlt_pipeline_state where pipeline_name = ?",
            [r.pipeline_name]).fetchall()}
        out.append(sorted(keys_loaded_by(con, table, key_sql, ids, dataset)))
    return out
