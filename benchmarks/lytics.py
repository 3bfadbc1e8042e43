"""Lytics benchmark jobs: cdp-sync's first (full) users scan, and the floor.

The floor is what a bare script would do with the same API: one sequential ad-hoc scan
(``POST /api/segment/scan`` with ``FILTER * FROM user``, ``limit=100``, following ``_next``) with
httpx, each batch turned into an Arrow table (every column as text: no type work at all, so the
floor is generous) and inserted into DuckDB. cdp-sync splits the scan into bucket scans
(``splits``) read ``workers`` at a time; ``--sequential`` times it with one worker (one scan).

Before its timer starts, every job asks the emulator to render all profiles into its cache
(``warm_cache``): the emulator's first render of a profile is Python work the real API does not
do, and without this the first job timed would pay for it while the later ones would not.
"""

from __future__ import annotations

import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import run_cdp_sync

BATCH = 5000
PAGE = 100

RESOURCES = ("users",)
#: the source's own default (``scan_workers``, sources/lytics/settings.py), what ``cdp-sync run
#: lytics`` reads with; eight bucket scans at once on two cores and no latency varied from one run
#: to the next far more than four. Not imported from there: that would load the whole source (and
#: dlt) into the floor's process too
DEFAULT_WORKERS = 4
#: what ``--sequential`` times with one worker against ``--workers`` (the split bucket scans)
CONCURRENT_RESOURCES = ("users",)


def warm_emulator(info: dict[str, Any]) -> None:
    """Have the emulator render every profile now, outside any timed section."""
    import httpx

    root = str(httpx.URL(info["base_url"]).copy_with(path="/", query=None)).rstrip("/")
    with httpx.Client(verify=ssl.create_default_context(cafile=info["ca_file"]), timeout=600) as client:
        client.post(f"{root}/_emulator/mutate", json={"op": "warm_cache"}).raise_for_status()


def cdp_sync(info: dict[str, Any], *, workers: int, resources: list[str]) -> dict[str, Any]:
    import dlt

    from pipelines.destinations import duckdb_destination
    from sources.lytics import lytics_source

    with tempfile.TemporaryDirectory(prefix="bench-cdp-") as tmp:
        pipeline = dlt.pipeline(
            pipeline_name="bench_lytics",
            destination=duckdb_destination(str(Path(tmp) / "bench.duckdb")),
            dataset_name="lytics_data",
            pipelines_dir=str(Path(tmp) / "pipelines"),
        )
        source = lytics_source(
            api_key=info["api_key"], base_url=info["base_url"], scan_workers=workers,
            scan_splits=max(20, workers * 4) if workers > 1 else 20,
        ).with_resources(*resources)
        warm_emulator(info)
        return run_cdp_sync(pipeline, source, workers=workers, vendor="lytics", resources=resources)


def floor(info: dict[str, Any], *, resources: list[str]) -> dict[str, Any]:
    import duckdb
    import httpx
    import orjson
    import pyarrow as pa

    verify = ssl.create_default_context(cafile=info["ca_file"])
    client = httpx.Client(base_url=info["base_url"], headers={"Authorization": info["api_key"]}, verify=verify,
                          timeout=60)
    rows_total = requests = 0
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        con = duckdb.connect(str(Path(tmp) / "floor.duckdb"))
        batch: list[dict[str, Any]] = []
        created = False
        warm_emulator(info)
        started = time.perf_counter()
        cpu_started = time.process_time()  # every thread of this process

        def flush(batch: list[dict[str, Any]], created: bool) -> None:
            columns = sorted({k for r in batch for k in r})
            if created:
                have = {r[0] for r in con.execute('describe "users"').fetchall()}
                for c in sorted(set(columns) - have):
                    con.execute(f'alter table "users" add column "{c}" varchar')
            data = {c: [None if r.get(c) is None else str(r.get(c)) for r in batch] for c in columns}
            con.register("page", pa.table({c: pa.array(v, type=pa.string()) for c, v in data.items()}))
            if created:
                con.execute('insert into "users" by name select * from page')
            else:
                con.execute('create table "users" as select * from page')
            con.unregister("page")

        start = ""
        while True:
            response = client.post("/api/segment/scan", params={"limit": PAGE, "start": start},
                                   content=b"FILTER * FROM user", headers={"Content-Type": "text/plain"})
            response.raise_for_status()
            requests += 1
            body = orjson.loads(response.content)
            batch.extend(body["data"] or [])
            start = body.get("_next") or body.get("next") or ""
            if len(batch) >= BATCH or (not start and batch):
                flush(batch, created)
                created = True
                rows_total += len(batch)
                batch = []
            if not start:
                break
        con.close()  # its checkpoint, as cdp-sync's timed load closes its connections
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
    client.close()
    return {"rows": rows_total, "requests": requests, "seconds": seconds, "cpu_seconds": cpu_seconds}
