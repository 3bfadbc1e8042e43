"""Synerise benchmark jobs: cdp-sync's first run of profiles + events + catalog items, and the floor.

The floor is what a bare script would do with the same API: log in once, walk ``/v4/clients`` page
by page, read the 6-hour activity window in hourly pieces (halving any piece that comes back with
1,000 events), walk every catalog's items, and — for ``profile_events`` — walk each profile's
pageToken chain one profile after another. Each batch becomes an Arrow table (every column as
text: no type work at all, so the floor is generous) inserted into DuckDB.

``--sequential`` times ``profile_events`` (the per-profile walk over every profile) with one
worker against ``--workers``; run it with ``--latency-ms 20`` and a modest ``--scale``.
"""

from __future__ import annotations

import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import run_cdp_sync

BATCH = 5000
PAGE = 500
LIMIT = 1000
HOUR = 3_600_000

RESOURCES = ("profiles", "events", "catalog_items")
DEFAULT_WORKERS = 8
#: what ``--sequential`` times with one worker against ``--workers``: the per-profile event walk
CONCURRENT_RESOURCES = ("profile_events",)


def cdp_sync(info: dict[str, Any], *, workers: int, resources: list[str]) -> dict[str, Any]:
    import dlt

    from pipelines.destinations import duckdb_destination
    from sources.synerise import synerise_source

    with tempfile.TemporaryDirectory(prefix="bench-cdp-") as tmp:
        pipeline = dlt.pipeline(
            pipeline_name="bench_synerise",
            destination=duckdb_destination(str(Path(tmp) / "bench.duckdb")),
            dataset_name="synerise",
            pipelines_dir=str(Path(tmp) / "pipelines"),
        )
        source = synerise_source(
            api_key=info["api_key"], base_url=info["base_url"], events_workers=workers,
            profile_events_workers=workers, profile_events_backfill="profile_events" in resources,
        ).with_resources(*resources)
        result = run_cdp_sync(pipeline, source, workers=workers, vendor="synerise", resources=resources)
        _print_walks(pipeline)
        return result


def _print_walks(pipeline: Any) -> None:
    """How many passes the full reads took (a clean emulator needs one each) and the events
    window's requests, on stderr (the harness keeps stdout for the result)."""
    import sys

    resources = pipeline.state.get("sources", {}).get("synerise", {}).get("resources", {})
    parts = []
    profiles = resources.get("profiles", {}).get("last_run")
    if profiles:
        parts.append(f"profiles passes={profiles.get('passes')} complete={profiles.get('complete')}")
    events = resources.get("events", {}).get("last_run")
    if events:
        parts.append(f"events requests={events.get('requests')}")
    for name in ("profiles", "catalog_items", "catalogs"):
        marks = resources.get(name, {}).get("incomplete")
        if marks:
            parts.append(f"{name} incomplete={sorted(marks)}")
    if parts:
        print("  cdp-sync walks: " + ", ".join(parts), file=sys.stderr, flush=True)


def floor(info: dict[str, Any], *, resources: list[str]) -> dict[str, Any]:
    import duckdb
    import httpx
    import orjson
    import pyarrow as pa

    verify = ssl.create_default_context(cafile=info["ca_file"])
    client = httpx.Client(base_url=info["base_url"], verify=verify, timeout=60)
    requests = 0

    def call(method: str, url: str, **kw: Any) -> Any:
        nonlocal requests
        requests += 1
        response = client.request(method, url, **kw)
        response.raise_for_status()
        return orjson.loads(response.content)

    token = call("POST", "/uauth/v2/auth/login/profile", json={"apiKey": info["api_key"]})["token"]
    client.headers.update({"Authorization": f"Bearer {token}", "Api-Version": "4.4",
                           "Content-Type": "application/json"})
    rows_total = 0
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        con = duckdb.connect(str(Path(tmp) / "floor.duckdb"))
        started = time.perf_counter()
        cpu_started = time.process_time()  # every thread of this process
        created: set[str] = set()

        def flush(table: str, batch: list[dict[str, Any]]) -> None:
            nonlocal rows_total
            if not batch:
                return
            columns = sorted({k for r in batch for k in r})
            arrow = pa.table({c: pa.array([None if r.get(c) is None else str(r.get(c)) for r in batch],
                                           type=pa.string()) for c in columns})
            con.register("page", arrow)
            if table not in created:
                con.execute(f'create table "{table}" as select * from page')
                created.add(table)
            else:
                have = {r[0] for r in con.execute(f'describe "{table}"').fetchall()}
                for c in sorted(set(columns) - have):
                    con.execute(f'alter table "{table}" add column "{c}" varchar')
                con.execute(f'insert into "{table}" by name select * from page')
            con.unregister("page")
            rows_total += len(batch)

        def profile_ids() -> list[int]:
            ids, page = [], 1
            while True:
                rows = call("GET", "/v4/clients", params={"pageIndex": page, "pageSize": PAGE})
                ids += [r["clientId"] for r in rows]
                if len(rows) < PAGE:
                    return ids
                page += 1

        if "profiles" in resources:
            batch: list[dict[str, Any]] = []
            page = 1
            while True:
                rows = call("GET", "/v4/clients", params={"pageIndex": page, "pageSize": PAGE})
                batch += rows
                if len(batch) >= BATCH:
                    flush("profiles", batch)
                    batch = []
                if len(rows) < PAGE:
                    break
                page += 1
            flush("profiles", batch)
        if "events" in resources:
            now = int(time.time() * 1000)
            batch = []
            stack = [(a, min(a + HOUR - 1, now - 60_000)) for a in range(now - 6 * HOUR + 120_000, now - 60_000, HOUR)]
            stack.reverse()
            while stack:
                a, b = stack.pop()
                rows = call("GET", "/activities-api/activities", params={"dateFrom": a, "dateTo": b, "limit": LIMIT})
                if len(rows) == LIMIT and a < b:
                    mid = (a + b) // 2
                    stack += [(mid + 1, b), (a, mid)]
                    continue
                batch += rows
                if len(batch) >= BATCH:
                    flush("events", batch)
                    batch = []
            flush("events", batch)
        if "catalog_items" in resources:
            batch = []
            bags = call("GET", "/catalogs/bags", params={"limit": PAGE})["data"]
            for bag in bags:
                offset = 0
                while True:
                    body = call("GET", f"/catalogs/bags/{bag['id']}/items", params={"offset": offset, "limit": PAGE})
                    batch += [{**i, "bag": bag["id"]} for i in body["data"]]
                    offset += len(body["data"])
                    if len(body["data"]) < PAGE or offset >= body["metaData"]["totalCount"]:
                        break
                if len(batch) >= BATCH:
                    flush("catalog_items", batch)
                    batch = []
            flush("catalog_items", batch)
        if "profile_events" in resources:
            batch = []
            for cid in profile_ids():
                body = {"identifierValue": str(cid), "additionalData": {"limit": str(PAGE), "sortBy": "time:asc"}}
                token_param: dict[str, str] = {}
                while True:
                    answer = call("POST", "/activities-api/events/by/id", json=body, params=token_param)
                    batch += answer["data"]
                    after = answer["meta"]["cursors"].get("after")
                    if not after:
                        break
                    token_param = {"pageToken": after}
                if len(batch) >= BATCH:
                    flush("profile_events", batch)
                    batch = []
            flush("profile_events", batch)
        con.close()  # its checkpoint, as cdp-sync's timed load closes its connections
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
    client.close()
    return {"rows": rows_total, "requests": requests, "seconds": seconds, "cpu_seconds": cpu_seconds}
