"""A load package finished after its process died mid-load lands every row once, even when its
run declared its rows unique (which lets the merge skip de-duplicating staging).

The process dies right after DuckDB committed the copy of a file into the staging table and
before dlt recorded that job, so finishing the package copies the same file into staging a
second time. ``run_within_cap`` (the path every cdp-sync load takes: run, backfill windows,
Dagster) therefore lets the merge de-duplicate every package that was pending when it started."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

SCRIPT = textwrap.dedent('''
    import os, sys
    import dlt
    from dlt.destinations.impl.duckdb import duck
    from sources.common.hints import merge_run_hints
    from pipelines.destinations import run_within_cap

    tmp, mode = sys.argv[1:3]
    pipeline = dlt.pipeline(pipeline_name="replay", destination=dlt.destinations.duckdb(tmp + "/replay.duckdb"),
                            dataset_name="data", pipelines_dir=tmp + "/pipelines")

    @dlt.resource(name="rows", primary_key="id", write_disposition="merge")
    def rows():
        first = True
        for start in range(0, 3000, 1000):
            page = [{"id": i, "v": f"value {i}"} for i in range(start, start + 1000)]
            if first:  # a walk on a unique key: each row read once
                page, first = merge_run_hints(page, unique_in_run=True), False
            yield page

    if mode == "first":  # a fresh pipeline, as cdp-sync runs one (no package folder yet)
        run_within_cap(pipeline, lambda: pipeline.run(rows(), loader_file_format="parquet"))
    elif mode == "die":
        original = duck.DuckDbCopyJob.run

        def run_then_die(self):
            original(self)
            if self.load_table_name == "rows" and "staging" in self._sql_client.fully_qualified_dataset_name():
                os._exit(9)  # the copy is committed in DuckDB; dlt never hears of it

        duck.DuckDbCopyJob.run = run_then_die
        pipeline.run(rows(), loader_file_format="parquet")
    else:
        assert pipeline.has_pending_data
        finish = pipeline.load if mode == "finish-plain" else (lambda: run_within_cap(pipeline, pipeline.load))
        finish().raise_on_failed_jobs()
''')


@pytest.mark.parametrize("finish", ["finish-plain", "finish"])
def test_a_package_finished_after_dying_mid_load_lands_each_row_once(tmp_path: Path, finish: str) -> None:
    script = tmp_path / "replay.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def step(mode: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), str(tmp_path), mode], env=env, capture_output=True,
                              text=True, timeout=300)

    assert step("first").returncode == 0  # the table exists: the next load merges through staging
    died = step("die")
    assert died.returncode == 9, died.stderr[-2000:]
    finished = step(finish)
    assert finished.returncode == 0, finished.stderr[-2000:]
    with duckdb.connect(str(tmp_path / "replay.duckdb"), read_only=True) as con:
        rows, distinct = con.execute("select count(*), count(distinct id) from data.rows").fetchone()
    if finish == "finish-plain":
        # the control: dlt alone keeps both staging copies of a run that declared its rows unique
        assert (rows, distinct) == (6000, 3000)
    else:
        assert (rows, distinct) == (3000, 3000)
