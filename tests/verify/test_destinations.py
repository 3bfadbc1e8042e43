"""``cdp-sync verify`` counts on the destination's side with SQL through dlt's ``sql_client``:
the same check against PostgreSQL (a throwaway server on loopback, ``tests/destinations``'
helper; the state restored from it into a fresh folder) and against parquet files (DuckDB over
the files)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests import support

from .helpers import cli, table


@pytest.fixture(scope="module")
def postgres() -> Any:
    from tests.destinations.pgserver import PostgresUnavailable, start_server

    try:
        server = start_server()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


def test_postgres_and_parquet_files_are_counted_by_the_destination(start_emulator, postgres, tmp_path, monkeypatch):
    import psycopg2

    server = start_emulator("posthog", scale=100, seed=9, projects=1)
    env = support.cli_env("posthog", server, tmp_path, DESTINATION__POSTGRES__CREDENTIALS=postgres.url,
                          DESTINATION__FILESYSTEM__BUCKET_URL=str(tmp_path / "lake"))
    pg = ("--destination", "postgres", "--dataset-name", "verify_pg")
    assert cli(monkeypatch, env, tmp_path, "run", "posthog", "--resources", "events,cohorts", "--verify",
               *pg).returncode == 0
    # a machine without the pipeline folder: the state comes back from PostgreSQL
    fresh = dict(env, DLT_DATA_DIR=str(tmp_path / "fresh"))
    day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
    with psycopg2.connect(postgres.url) as con, con.cursor() as cur:
        cur.execute("delete from verify_pg.events where uuid in (select uuid from verify_pg.events where "
                    "timestamp >= %s::timestamptz and timestamp < %s::timestamptz + interval '1 day' limit 2)",
                    (f"{day} 00:00:00+00", f"{day} 00:00:00+00"))
    result = cli(monkeypatch, fresh, tmp_path, "verify", "posthog", "--days", "2", *pg)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"posthog events {day} project" in result.stderr and "(-2)" in result.stderr
    with psycopg2.connect(postgres.url) as con, con.cursor() as cur:
        cur.execute("select verdict, count(*) from verify_pg._cdp_verification group by verdict order by verdict")
        # the run: 7 days, everything before them and cohorts; then 2 days, before and cohorts
        assert dict(cur.fetchall()) == {"agrees": 9 + 3, "disagrees": 1}

    files = ("--destination", "filesystem", "--pipeline-name", "posthog_files")
    result = cli(monkeypatch, env, tmp_path, "run", "posthog", "--resources", "events", "--verify", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = table(result.stdout)
    assert rows and all(r[-1] == "agrees" for r in rows), result.stdout
    assert (tmp_path / "lake" / "posthog_data" / "_cdp_verification").is_dir()


def test_delta_tables_are_counted_with_the_predicate_pushed_into_the_scan(start_emulator, tmp_path, monkeypatch):
    """DuckDB reads Delta only through an extension it would download; the Delta tables are
    counted by ``deltalake``/Arrow instead, and the verification is recorded as a Delta table
    (which merges: recorded once)."""
    from deltalake import DeltaTable

    server = start_emulator("posthog", scale=100, seed=10, projects=1)
    env = support.cli_env("posthog", server, tmp_path, DESTINATION__FILESYSTEM__BUCKET_URL=str(tmp_path / "lake"))
    delta = ("--destination", "filesystem")
    result = cli(monkeypatch, env, tmp_path, "run", "posthog", "--resources", "events", "--table-format", "delta",
                 "--verify", *delta)
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(r[-1] == "agrees" for r in table(result.stdout)), result.stdout
    day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date()
    events = DeltaTable(str(tmp_path / "lake" / "posthog_data" / "events"))
    uuids = [u for u, t in zip(*events.to_pyarrow_table(columns=["uuid", "timestamp"]).to_pydict().values(),
                              strict=True) if t.date() == day][:3]
    events.delete(" or ".join(f"uuid = '{u}'" for u in uuids))
    result = cli(monkeypatch, env, tmp_path, "verify", "posthog", "--days", "2", *delta)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"posthog events {day.isoformat()} project" in result.stderr and "(-3)" in result.stderr
    recorded = DeltaTable(str(tmp_path / "lake" / "posthog_data" / "_cdp_verification")).to_pyarrow_table()
    assert recorded.num_rows == 8 + 3  # the run: 7 days and before them; then 2 days and before
