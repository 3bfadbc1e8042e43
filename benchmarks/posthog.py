"""PostHog benchmark jobs: cdp-sync's backfill of ``events`` for one project, and the floor.

Both read the project's first (largest) event stream through HogQL, in the same one-day windows
and the same pages (``ORDER BY timestamp, uuid LIMIT n`` with the ``(timestamp, uuid)`` keyset).
The floor is what a bare script would do: one sequential walk with httpx, each page turned into an
Arrow table (every column as text: no type work, so the floor is generous) and inserted into
DuckDB. cdp-sync types every column, fingerprints the rows of the lookback window, keeps state,
and reads up to ``workers`` windows at once (PostHog allows three queries per project).

``--scale N`` is the emulator's persons in its first project; each has 8 events over 30 days, so
the first project holds ``8 × N`` events (``--scale 12500``: 100,000 events; the default 100,000:
800,000; ``--scale 125000``: 1,000,000).

``POSTHOG_BENCH_PAGE_SIZE`` sets the rows per query for both (default 10,000, the source's
default). The emulator's rate limits are switched off through its control plane before each job:
the figures measure throughput, not PostHog's 240 queries a minute (which the source honours by
waiting, see ``sources/posthog/README.md``). Before each job, untimed, the project's events are
walked once in pages of 50,000 with the columns both jobs select: the emulator renders each event
once and keeps the rendered row (``emulators/posthog/README.md``, "Serving cost"), so every timed
job meets the same warm emulator instead of the first one paying the rendering for the others.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks import run_cdp_sync

RESOURCES = ("events",)
DEFAULT_WORKERS = 3
#: what ``--sequential`` times with one worker against ``--workers`` (concurrent day windows)
CONCURRENT_RESOURCES = ("events",)

DAY_US = 86_400 * 1_000_000


def _page_size() -> int:
    return int(os.environ.get("POSTHOG_BENCH_PAGE_SIZE", "10000"))


def _prepare(info: dict[str, Any]) -> int:
    """Switch the emulator's rate limits off, give its cache of rendered rows room for every event
    of the project (:data:`RENDERED_ROW_KIB` each: at a million events the default 512 MB would
    drop rows and every job would pay their rendering again), walk the first project's events once
    (untimed, so the emulator has rendered them); return the project's id."""
    from emulators.common.control import ControlClient

    with ControlClient(info["base_url"], info["ca_file"]) as ctl:
        ctl.configure(rate_limits=False)
        with _Api(info) as api:
            pid = int(api.client.get("/api/projects/").json()["results"][0]["id"])
            events = int(api.query(pid, "SELECT count() AS n FROM events", {})["results"][0][0])
        ctl.configure(render_cache_mb=max(512, events * RENDERED_ROW_KIB // 1024))
    with _Api(info) as api:
        for _ in api.walk(pid, WARM_PAGE_SIZE):
            pass
    return pid


def cdp_sync(info: dict[str, Any], *, workers: int, resources: list[str]) -> dict[str, Any]:
    import dlt

    from pipelines.destinations import duckdb_destination
    from sources.posthog import posthog_source

    pid = _prepare(info)
    with tempfile.TemporaryDirectory(prefix="bench-cdp-") as tmp:
        pipeline = dlt.pipeline(
            pipeline_name="bench_posthog",
            destination=duckdb_destination(str(Path(tmp) / "bench.duckdb")),
            dataset_name="posthog_data",
            pipelines_dir=str(Path(tmp) / "pipelines"),
        )
        source = posthog_source(
            api_key=info["api_key"], base_url=info["base_url"], project_ids=[pid],
            query_concurrency=max(1, min(workers, 3)), events_page_size=_page_size(),
        ).with_resources(*resources)
        return run_cdp_sync(pipeline, source, workers=workers, vendor="posthog", resources=resources)


SQL = (
    "SELECT uuid, event, distinct_id, timestamp, created_at, person_id, `$session_id` AS session_id, "
    "elements_chain, properties FROM events WHERE timestamp >= toDateTime({start}) AND timestamp < toDateTime({end})"
    "{keyset} ORDER BY timestamp, uuid LIMIT {limit}"
)
KEYSET = " AND (timestamp > toDateTime({last_ts}) OR (timestamp = toDateTime({last_ts}) AND uuid > toUUID({last_uuid})))"


def _iso(us: int) -> str:
    return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


#: rows per query of the untimed walk that has the emulator render every event before a job
WARM_PAGE_SIZE = 50_000
#: the emulator's cache budget per event (a rendered event is about 0.7 KiB with its overhead)
RENDERED_ROW_KIB = 1


class _Api:
    """A bare httpx client of the emulator's HogQL endpoint, and the floor's walk: one day window
    after another, each paged with the ``(timestamp, uuid)`` keyset."""

    def __init__(self, info: dict[str, Any]) -> None:
        import httpx

        self.client = httpx.Client(base_url=info["base_url"], headers={"Authorization": f"Bearer {info['api_key']}"},
                                   verify=ssl.create_default_context(cafile=info["ca_file"]), timeout=120)
        self.requests = 0

    def __enter__(self) -> _Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def query(self, pid: int, sql: str, values: dict[str, Any]) -> dict[str, Any]:
        import orjson

        body = {"query": {"kind": "HogQLQuery", "query": sql, "values": values}, "refresh": "force_blocking"}
        r = self.client.post(f"/api/projects/{pid}/query/", content=orjson.dumps(body),
                             headers={"Content-Type": "application/json"})
        r.raise_for_status()
        self.requests += 1
        return orjson.loads(r.content)

    def walk(self, pid: int, page_size: int) -> Iterator[dict[str, Any]]:
        """Every page (the query's response) of every day window from the first event to now."""
        first = self.query(pid, "SELECT min(timestamp) AS first FROM events", {})["results"][0][0]
        start = int(dt.datetime.fromisoformat(first).timestamp() * 1_000_000)
        now = int(time.time() * 1_000_000)
        a = start
        while a < now:
            b = min(now, (a // DAY_US + 1) * DAY_US)
            position = None
            for _ in range(1_000_000):
                values: dict[str, Any] = {"start": _iso(a), "end": _iso(b)}
                keyset = ""
                if position:
                    keyset = KEYSET
                    values["last_ts"], values["last_uuid"] = position
                data = self.query(pid, SQL.replace("{keyset}", keyset).replace("{limit}", str(page_size)), values)
                yield data
                results = data["results"]
                if len(results) < page_size:
                    break
                position = (results[-1][3], results[-1][0])
            a = b


def floor(info: dict[str, Any], *, resources: list[str]) -> dict[str, Any]:
    import duckdb
    import pyarrow as pa

    pid = _prepare(info)
    page_size = _page_size()
    rows_total = 0
    with _Api(info) as api, tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        con = duckdb.connect(str(Path(tmp) / "floor.duckdb"))
        started = time.perf_counter()
        cpu_started = time.process_time()  # every thread of this process
        created = False
        for data in api.walk(pid, page_size):
            results = data["results"]
            if results:
                columns = data["columns"]
                arrow = pa.table({c: pa.array([None if r[i] is None else str(r[i]) for r in results],
                                              type=pa.string()) for i, c in enumerate(columns)})
                con.register("page", arrow)
                con.execute("create table events as select * from page" if not created
                            else "insert into events select * from page")
                con.unregister("page")
                created = True
                rows_total += len(results)
        con.close()  # its checkpoint, as cdp-sync's timed load closes its connections
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
        requests = api.requests
    return {"rows": rows_total, "requests": requests, "seconds": seconds, "cpu_seconds": cpu_seconds}
