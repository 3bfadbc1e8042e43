"""A first load into an empty DuckDB table appends instead of merging (pipelines/direct_load.py),
and a process that dies part way through that append is finished without losing or doubling a
row.

The process dies right after DuckDB committed the copy of a file straight into the final table
and before dlt recorded that job: finishing the package as the append it started as would copy
that file a second time."""

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

    tmp, mode, unique, start = sys.argv[1], sys.argv[2], sys.argv[3] == "unique", int(sys.argv[4])
    os.environ["DATA_WRITER__FILE_MAX_ITEMS"] = "1000"  # three files, three copy jobs
    os.environ["LOAD__WORKERS"] = "1"  # one after the other: which file the process dies after is known
    pipeline = dlt.pipeline(pipeline_name="direct", destination=dlt.destinations.duckdb(tmp + "/direct.duckdb"),
                            dataset_name="data", pipelines_dir=tmp + "/pipelines")

    @dlt.resource(name="rows", primary_key="id", write_disposition="merge")
    def rows():
        first = True
        for lo in range(start, start + 3000, 1000):
            page = [{"id": i, "v": f"value {i}"} for i in range(lo, lo + 1000)]
            if first:
                page, first = merge_run_hints(page, unique_in_run=unique), False
            yield page

    copies = []
    original = duck.DuckDbCopyJob.run

    def run_and_record(self):
        original(self)
        final = "staging" not in self._sql_client.fully_qualified_dataset_name()
        copies.append("final" if final else "staging")
        if mode == "die" and final and len(copies) == 2:
            os._exit(9)  # the second file's copy is committed in DuckDB; dlt never hears of it

    duck.DuckDbCopyJob.run = run_and_record
    if mode in ("run", "die", "refresh"):
        refresh = "drop_sources" if mode == "refresh" else None
        run_within_cap(pipeline, lambda: pipeline.run(rows(), loader_file_format="parquet", refresh=refresh)
                       ).raise_on_failed_jobs()
    else:
        assert pipeline.has_pending_data
        finish = pipeline.load if mode == "finish-plain" else (lambda: run_within_cap(pipeline, pipeline.load))
        finish().raise_on_failed_jobs()
    print("copies", ",".join(copies))
''')


def _step(tmp_path: Path, mode: str, unique: bool = True, start: int = 0) -> subprocess.CompletedProcess:
    script = tmp_path / "direct.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, str(script), str(tmp_path), mode, "unique" if unique else "maybe", str(start)],
                          env=env, capture_output=True, text=True, timeout=300)


def _copies(done: subprocess.CompletedProcess) -> list[str]:
    assert done.returncode == 0, done.stderr[-2000:]
    line = [x for x in done.stdout.splitlines() if x.startswith("copies")][-1]
    return line.split()[1].split(",") if len(line.split()) > 1 else []


def _table(tmp_path: Path) -> tuple[int, int, int]:
    with duckdb.connect(str(tmp_path / "direct.duckdb"), read_only=True) as con:
        return con.execute("select count(*), count(distinct id), max(id) from data.rows").fetchone()


def test_a_first_load_of_unique_rows_appends_and_the_next_merges(tmp_path: Path) -> None:
    assert _copies(_step(tmp_path, "run")) == ["final"] * 3  # no staging copy, no merge
    assert _table(tmp_path) == (3000, 3000, 2999)
    # the table holds rows now: the next run (overlapping ids) merges through staging
    assert _copies(_step(tmp_path, "run", start=2000)) == ["staging"] * 3
    assert _table(tmp_path) == (5000, 5000, 4999)


def test_a_first_load_whose_rows_may_repeat_merges(tmp_path: Path) -> None:
    assert _copies(_step(tmp_path, "run", unique=False)) == ["staging"] * 3
    assert _table(tmp_path) == (3000, 3000, 2999)


@pytest.mark.parametrize("finish", ["finish-plain", "finish"])
def test_a_first_load_that_died_part_way_lands_each_row_once(tmp_path: Path, finish: str) -> None:
    died = _step(tmp_path, "die")
    assert died.returncode == 9, died.stderr[-2000:]  # died in the direct append, after its 2nd file
    copies = _copies(_step(tmp_path, finish))
    rows, distinct, _ = _table(tmp_path)
    if finish == "finish-plain":
        # the control: dlt alone appends the committed file again
        assert copies == ["final"] * 2 and (rows, distinct) == (4000, 3000)
    else:
        # finished as a merge: the files left go through staging, the rows already appended are replaced
        assert copies == ["staging"] * 2 and (rows, distinct) == (3000, 3000)


@pytest.mark.parametrize("stored", ["own schema stored", "own schema lost"])
def test_a_pipeline_restored_from_the_destination_after_a_direct_load_merges(tmp_path: Path, stored: str) -> None:
    """dlt stores the package's schema (the table switched to ``append``) when the load begins;
    a pipeline restored from the destination must not inherit that ``append``."""
    import shutil

    assert _copies(_step(tmp_path, "run")) == ["final"] * 3
    shutil.rmtree(tmp_path / "pipelines")  # a new machine: state and schema come from the destination
    if stored == "own schema lost":  # as if the process died before storing the pipeline's own schema
        with duckdb.connect(str(tmp_path / "direct.duckdb")) as con:
            versions = con.execute("select version_hash, schema from data._dlt_version order by inserted_at").fetchall()
            marker = "x-cdp-direct-first-load"  # on the package's schema, with the table's "append"
            assert marker in versions[0][1] and marker not in versions[-1][1]
            con.execute(f"delete from data._dlt_version where schema not like '%{marker}%'")
    assert _copies(_step(tmp_path, "run", start=2000)) == ["staging"] * 3
    assert _table(tmp_path) == (5000, 5000, 4999)
    # and the run after it too (the restored schema itself was repaired)
    assert _copies(_step(tmp_path, "run", start=4000)) == ["staging"] * 3
    assert _table(tmp_path) == (7000, 7000, 6999)


def test_a_marker_restored_with_a_schema_is_undone_not_trusted(tmp_path: Path) -> None:
    """A table that arrives in a new package already marked and ``append`` (a schema restored from
    the destination while its own schema was lost) goes back to a de-duplicating merge, in the
    package and in the pipeline's schema."""
    import dlt

    from pipelines.direct_load import DIRECT, append_first_loads
    from sources.common.hints import DEDUPLICATED, merge_run_hints

    pipeline = dlt.pipeline(pipeline_name="leak", destination=dlt.destinations.duckdb(str(tmp_path / "leak.duckdb")),
                            dataset_name="data", pipelines_dir=str(tmp_path / "pipelines"))

    @dlt.resource(name="rows", primary_key="id", write_disposition="merge")
    def rows():
        yield merge_run_hints([{"id": i} for i in range(10)], unique_in_run=True)

    pipeline.extract(rows())
    pipeline.normalize()
    packages = pipeline._get_load_storage().normalized_packages
    (load_id,) = pipeline.list_normalized_load_packages()
    schema = packages.load_schema(load_id)
    schema.tables["rows"].update({"write_disposition": "append", DIRECT: True})
    packages.save_schema(load_id, schema)
    own = pipeline.default_schema.tables["rows"]
    own.update({"write_disposition": "append", DIRECT: True})

    assert append_first_loads(pipeline) == []  # not switched again, although the table is absent
    table = packages.load_schema(load_id).tables["rows"]
    assert (table["write_disposition"], table.get(DEDUPLICATED), DIRECT in table) == ("merge", False, False)
    own = pipeline.default_schema.tables["rows"]
    assert (own["write_disposition"], DIRECT in own) == ("merge", False)
    pipeline.load().raise_on_failed_jobs()
    with pipeline.sql_client() as client:
        assert client.execute_sql("select count(*) from rows")[0][0] == 10


def test_a_full_refresh_appends_into_the_table_it_drops(tmp_path: Path) -> None:
    assert _copies(_step(tmp_path, "run")) == ["final"] * 3
    assert _copies(_step(tmp_path, "refresh", start=2000)) == ["final"] * 3  # dropped first, then appended
    assert _table(tmp_path) == (3000, 3000, 4999)


def test_a_table_whose_rows_can_delete_is_merged_even_when_empty(tmp_path: Path) -> None:
    """A row whose ``hard_delete`` column is set deletes its key in a merge; appended, it would
    land as a row (a Synerise profile merged away into another)."""
    import dlt

    from pipelines.destinations import run_within_cap
    from sources.common.hints import merge_run_hints

    pipeline = dlt.pipeline(pipeline_name="deletes", destination=dlt.destinations.duckdb(str(tmp_path / "d.duckdb")),
                            dataset_name="data", pipelines_dir=str(tmp_path / "pipelines"))

    @dlt.resource(name="rows", primary_key="id", write_disposition="merge",
                  columns={"gone": {"data_type": "bool", "nullable": True, "hard_delete": True}})
    def rows():
        page = [{"id": i, "gone": None} for i in range(10)] + [{"id": 99, "gone": True}]
        yield merge_run_hints(page, unique_in_run=True)

    run_within_cap(pipeline, lambda: pipeline.run(rows(), loader_file_format="parquet")).raise_on_failed_jobs()
    with pipeline.sql_client() as client:
        assert client.execute_sql("select count(*), max(id) from rows")[0] == (10, 9)
