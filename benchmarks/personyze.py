"""Personyze benchmark jobs: cdp-sync's backfill of users + events, and the floor.

The floor is what a bare script would do with the same API: one sequential keyset walk per table
with httpx (pages of 50, the API's slow-query cap), each batch turned into an Arrow table (every
column as text: no type work at all, so the floor is generous) and inserted into DuckDB.
"""

from __future__ import annotations

import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import run_cdp_sync

BATCH = 5000
PAGE = 50

RESOURCES = ("users", "events")
DEFAULT_WORKERS = 4
#: what ``--sequential`` times with one worker against ``--workers`` (the concurrent id ranges)
CONCURRENT_RESOURCES = ("users",)


def cdp_sync(info: dict[str, Any], *, workers: int, resources: list[str]) -> dict[str, Any]:
    import dlt

    from pipelines.destinations import duckdb_destination
    from sources.personyze import personyze_source

    with tempfile.TemporaryDirectory(prefix="bench-cdp-") as tmp:
        pipeline = dlt.pipeline(
            pipeline_name="bench_personyze",
            destination=duckdb_destination(str(Path(tmp) / "bench.duckdb")),
            dataset_name="personyze",
            pipelines_dir=str(Path(tmp) / "pipelines"),
        )
        source = personyze_source(
            api_key=info["api_key"], base_url=info["base_url"], backfill_workers=workers
        ).with_resources(*resources)
        return run_cdp_sync(pipeline, source, workers=workers, vendor="personyze", resources=resources)


def floor(info: dict[str, Any], *, resources: list[str]) -> dict[str, Any]:
    import duckdb
    import httpx
    import orjson
    import pyarrow as pa

    key_of = {"users": "user_id", "events": "id"}
    verify = ssl.create_default_context(cafile=info["ca_file"])
    client = httpx.Client(
        base_url=info["base_url"].rstrip("/") + "/", auth=("api", info["api_key"]), verify=verify, timeout=60
    )
    rows_total = requests = 0
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        con = duckdb.connect(str(Path(tmp) / "floor.duckdb"))
        started = time.perf_counter()
        cpu_started = time.process_time()  # every thread of this process
        for table in resources:
            key = key_of[table]
            last: int | None = None
            batch: list[dict[str, Any]] = []
            created = False

            def flush(batch: list[dict[str, Any]], created: bool, table: str = table) -> bool:
                columns = sorted({k for r in batch for k in r})
                data = {c: [None if r.get(c) is None else str(r.get(c)) for r in batch] for c in columns}
                arrow = pa.table({c: pa.array(v, type=pa.string()) for c, v in data.items()})
                con.register("page", arrow)
                if not created:
                    con.execute(f'create table "{table}" as select * from page')
                else:
                    con.execute(f'insert into "{table}" by name select * from page')
                con.unregister("page")
                return True

            while True:
                where = f"where/{key}%3E{last}/" if last is not None else ""
                response = client.get(f"{table}/{where}order_by/{key}/limit/0,{PAGE}")
                response.raise_for_status()
                requests += 1
                page = orjson.loads(response.content)
                batch.extend(page)
                if page:
                    last = int(page[-1][key])
                if len(batch) >= BATCH or (len(page) < PAGE and batch):
                    if created:
                        # new dynamic columns appear in later batches: add them first
                        have = {r[0] for r in con.execute(f"describe \"{table}\"").fetchall()}
                        for c in sorted({k for r in batch for k in r} - have):
                            con.execute(f'alter table "{table}" add column "{c}" varchar')
                    created = flush(batch, created)
                    rows_total += len(batch)
                    batch = []
                if len(page) < PAGE:
                    break
        con.close()  # its checkpoint, as cdp-sync's timed load closes its connections
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
    client.close()
    return {"rows": rows_total, "requests": requests, "seconds": seconds, "cpu_seconds": cpu_seconds}
