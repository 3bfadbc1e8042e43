"""Sources into lakehouse files: dlt's filesystem destination on a local folder, as Delta tables
and as plain parquet files, read back with ``deltalake.DeltaTable`` and ``pyarrow.parquet``.

* Delta: a merge resource re-run after changes upserts (no duplicate keys, the changed values).
* Plain parquet has no merge: dlt appends, so a re-run after changes holds two copies of every
  changed row, one per load (what the README tells users, so they choose Delta for merges).

The tables read back are compared with the emulator through the vendors' truth modules, in an
in-memory DuckDB that holds the Arrow tables."""

from __future__ import annotations

import importlib
from collections import Counter
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from sources.lytics import settings as LS
from sources.lytics import user_table
from tests.lytics import truth as lytics_truth
from tests.posthog import truth as posthog_truth
from tests.support import cdp_sync, cli_env

DATASET = "lake_data"


def read_delta(lake: Path, table: str) -> pa.Table:
    return DeltaTable(str(lake / DATASET / table)).to_pyarrow_table()


def as_duckdb(tables: dict[str, pa.Table]) -> duckdb.DuckDBPyConnection:
    """The Arrow tables as ``lake_data.<name>`` in an in-memory DuckDB (what the truth modules read)."""
    con = duckdb.connect()
    con.execute(f"create schema {DATASET}")
    for name, table in tables.items():
        con.register("arrow_in", table)
        con.execute(f'create table {DATASET}."{name}" as select * from arrow_in')
        con.unregister("arrow_in")
    return con


def duplicates(table: pa.Table, key: tuple[str, ...]) -> dict[tuple, int]:
    keys = Counter(zip(*(table.column(c).to_pylist() for c in key), strict=True))
    return {k: n for k, n in keys.items() if n > 1}


# -- what each vendor loads, compares and changes -----------------------------------------------


def lytics_users_columns(ctl: Any) -> tuple[dict[str, str], dict[str, str]]:
    schema_rows = ctl.export("schema_fields")
    table, _ = user_table({"columns": [r for r in schema_rows if r["table"] == "user"]}, "_uid", None,
                          LS.DEFAULT_MAX_USER_COLUMNS)
    return table.columns, lytics_truth.schema_kinds(schema_rows)


class Lytics:
    vendor, scale, seed = "lytics", 400, 7
    resources = ("users", "segments", "content_documents")
    keys = {"users": ("_uid",), "segments": ("id",), "content_documents": ("id",)}

    @staticmethod
    def assert_equals_emulator(con: Any, ctl: Any) -> None:
        columns, types = lytics_users_columns(ctl)
        lytics_truth.assert_table_equals(con, DATASET, "users", columns, ("_uid",), ctl.export("users"), types)
        for spec in (LS.SEGMENTS, LS.CONTENT_DOCUMENTS):
            lytics_truth.assert_table_equals(con, DATASET, spec.name, spec.columns, spec.primary_key,
                                             ctl.export(spec.name))

    @staticmethod
    def change(ctl: Any) -> dict[str, set]:
        users = set(ctl.mutate({"op": "modify_users", "count": 25})["uids"])
        users |= set(ctl.mutate({"op": "add_users", "count": 3})["uids"])
        docs = set(ctl.mutate({"op": "update_content", "count": 3})["ids"])
        return {"users": users, "content_documents": docs}


class PostHog:
    vendor, scale, seed = "posthog", 300, 11
    resources = ("persons", "feature_flags", "cohorts")
    keys = {"persons": ("uuid",), "feature_flags": ("id",), "cohorts": ("id",)}

    @staticmethod
    def assert_equals_emulator(con: Any, ctl: Any) -> None:
        posthog_truth.assert_matches_emulator(con, DATASET, ctl, *PostHog.resources)

    @staticmethod
    def change(ctl: Any) -> dict[str, set]:
        persons = set(ctl.mutate({"op": "modify_persons", "count": 9})["uuids"])
        persons |= set(ctl.mutate({"op": "add_persons", "count": 4})["uuids"])
        flags = set(ctl.mutate({"op": "modify_objects", "table": "feature_flags", "count": 3})["ids"])
        return {"persons": persons, "feature_flags": flags}


@pytest.fixture(params=[Lytics, PostHog], ids=lambda c: c.vendor)
def case(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
def emu(case: Any, start_emulator: Any) -> Any:
    return start_emulator(case.vendor, scale=case.scale, seed=case.seed)


@pytest.fixture
def ctl(emu: Any, control_for: Any) -> Any:
    return control_for(emu)


def test_delta_merge_upserts_changed_rows_without_duplicates(case, emu, ctl, tmp_path, destination_pipeline):
    lake = tmp_path / "lake"
    pipeline = destination_pipeline(dlt.destinations.filesystem(lake.as_uri()), DATASET)
    module = importlib.import_module(f"sources.{case.vendor}")

    def load() -> dict[str, int]:
        src = getattr(module, f"{case.vendor}_source")(api_key=emu.api_key, base_url=emu.base_url)
        info = pipeline.run(src.with_resources(*case.resources), loader_file_format="parquet", table_format="delta")
        info.raise_on_failed_jobs()
        return dict(pipeline.last_trace.last_normalize_info.row_counts)

    load()
    for table in case.keys:
        assert (lake / DATASET / table / "_delta_log").is_dir(), f"{table} is not a Delta table"
    with as_duckdb({t: read_delta(lake, t) for t in case.keys}) as con:
        case.assert_equals_emulator(con, ctl)
    before = {t: DeltaTable(str(lake / DATASET / t)).version() for t in case.keys}

    changed = case.change(ctl)
    counts = load()
    tables = {t: read_delta(lake, t) for t in case.keys}
    for table, key in case.keys.items():
        assert not duplicates(tables[table], key), f"{table}: duplicate keys after the re-run"
    for table, keys in changed.items():
        assert counts.get(table, 0) >= len(keys), (table, counts)
        delta = DeltaTable(str(lake / DATASET / table))
        assert delta.version() > before[table]
        assert delta.history(1)[0]["operation"] == "MERGE", delta.history(1)[0]
        merged = pc.is_in(tables[table].column(case.keys[table][0]), pa.array(sorted(keys)))
        assert pc.sum(merged).as_py() == len(keys), f"{table}: every changed row exactly once"
    # the changed rows hold the new values, and everything else is as before
    with as_duckdb(tables) as con:
        case.assert_equals_emulator(con, ctl)


# -- plain parquet, through the CLI ------------------------------------------------------------


def parquet_files(lake: Path, table: str) -> list[Path]:
    return sorted((lake / DATASET / table).glob("*.parquet"))


def test_cli_parquet_files_merge_falls_back_to_append(tmp_path, start_emulator, control_for):
    """``cdp-sync run --destination filesystem`` writes one parquet file per table and load
    (``<table>/<load_id>.<file_id>.parquet``); a merge resource re-run after changes appends a
    second copy of each changed row: readers must keep the newest load per key (or use Delta)."""
    emu = start_emulator("lytics", scale=300, seed=3)
    ctl = control_for(emu)
    lake = tmp_path / "lake"
    # the normalizer settings of the test session stay out: the files are what a user's run writes
    env = cli_env("lytics", emu, tmp_path, drop=("NORMALIZE__PARQUET_NORMALIZER",),
                  DESTINATION__FILESYSTEM__BUCKET_URL=lake.as_uri())
    argv = ("run", "lytics", "--destination", "filesystem", "--resources", "users", "--dataset-name", DATASET)

    first = cdp_sync(*argv, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (file1,) = parquet_files(lake, "users")
    columns, types = lytics_users_columns(ctl)
    with as_duckdb({"users": pq.read_table(file1)}) as con:
        lytics_truth.assert_table_equals(con, DATASET, "users", columns, ("_uid",), ctl.export("users"), types)

    changed = set(ctl.mutate({"op": "modify_users", "count": 20})["uids"])
    second = cdp_sync(*argv, env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    files = parquet_files(lake, "users")
    assert len(files) == 2 and file1 in files, files
    (file2,) = set(files) - {file1}
    assert file2.name.split(".")[0] > file1.name.split(".")[0], "file names start with the load id"

    everything = pq.read_table(lake / DATASET / "users")
    assert everything.num_rows == 300 + len(changed), "the second load was appended"
    assert set(duplicates(everything, ("_uid",))) == {(u,) for u in changed}, "one extra copy per changed row"
    # the newest copy of every key is exactly what the emulator holds now
    newest = pa.concat_tables([pq.read_table(file2), pq.read_table(file1)]).to_pylist()
    seen, rows = set(), []
    for row in newest:
        if row["_uid"] not in seen:
            seen.add(row["_uid"])
            rows.append(row)
    with as_duckdb({"users": pa.Table.from_pylist(rows, schema=everything.schema)}) as con:
        lytics_truth.assert_table_equals(con, DATASET, "users", columns, ("_uid",), ctl.export("users"), types)


def test_cli_table_format_delta_merges(tmp_path, start_emulator, control_for):
    """``cdp-sync run --destination filesystem --table-format delta``: a re-run after changes merges
    the changed rows into the Delta table instead of appending copies."""
    emu = start_emulator("lytics", scale=300, seed=4)
    ctl = control_for(emu)
    lake = tmp_path / "lake"
    # the normalizer settings of the test session stay out: the files are what a user's run writes
    env = cli_env("lytics", emu, tmp_path, drop=("NORMALIZE__PARQUET_NORMALIZER",),
                  DESTINATION__FILESYSTEM__BUCKET_URL=lake.as_uri())
    argv = ("run", "lytics", "--destination", "filesystem", "--table-format", "delta", "--resources", "users",
            "--dataset-name", DATASET)
    first = cdp_sync(*argv, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (lake / DATASET / "users" / "_delta_log").is_dir()
    changed = set(ctl.mutate({"op": "modify_users", "count": 20})["uids"])
    second = cdp_sync(*argv, env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    users = read_delta(lake, "users")
    assert users.num_rows == 300 and not duplicates(users, ("_uid",))
    assert DeltaTable(str(lake / DATASET / "users")).history(1)[0]["operation"] == "MERGE"
    columns, types = lytics_users_columns(ctl)
    with as_duckdb({"users": users}) as con:
        lytics_truth.assert_table_equals(con, DATASET, "users", columns, ("_uid",), ctl.export("users"), types)
    assert changed
