"""Shared helpers of the PostHog source tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
import orjson

from sources.common.errors import CdpSyncError
from sources.posthog import posthog_source


def source(server: Any, *resources: str, **options: Any) -> Any:
    src = posthog_source(api_key=server.api_key, base_url=server.base_url, **options)
    return src.with_resources(*resources) if resources else src


def run(pipeline: Any, src: Any) -> dict[str, int]:
    info = pipeline.run(src, loader_file_format="parquet")
    info.raise_on_failed_jobs()
    return {k: v for k, v in pipeline.last_trace.last_normalize_info.row_counts.items() if not k.startswith("_dlt")}


def connect(tmp_path: Any, name: str = "test.duckdb") -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(tmp_path / name), read_only=True)


def queries(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The HogQL requests of a request log, with their parsed bodies (``json``) and project;
    requests still in flight (no body logged yet) are left out."""
    out = []
    for e in log:
        if e["method"] == "POST" and e["path"].endswith("/query/") and e.get("body"):
            body = orjson.loads(e["body"])
            out.append({**e, "json": body, "project": int(e["path"].split("/")[3])})
    return out


def event_windows(log: list[dict[str, Any]]) -> list[tuple[int, dt.datetime, dt.datetime]]:
    """(project, start, end) of every events query in the log."""
    out = []
    for q in queries(log):
        values = q["json"]["query"].get("values") or {}
        if q["json"].get("name") == "cdp_sync_events":
            start = dt.datetime.fromisoformat(values["start"].replace("Z", "+00:00"))
            end = dt.datetime.fromisoformat(values["end"].replace("Z", "+00:00"))
            out.append((q["project"], start, end))
    return out


def max_overlap(entries: list[dict[str, Any]]) -> int:
    """The most requests of ``entries`` the emulator was serving at the same moment."""
    edges = []
    for e in entries:
        start = e["time"]
        edges += [(start, 1), (start + e["duration_ms"] / 1000, -1)]
    edges.sort(key=lambda x: (x[0], x[1]))
    level = best = 0
    for _, delta in edges:
        level += delta
        best = max(best, level)
    return best


def root(exc: BaseException) -> BaseException:
    """The innermost cdp-sync error inside dlt's wrappers."""
    seen, stack = set(), [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, CdpSyncError):
            return e
        stack += [getattr(e, "exception", None), e.__cause__, e.__context__]
    return exc


def resource_state(pipeline: Any, resource: str) -> dict[str, Any]:
    return pipeline.state["sources"]["posthog"]["resources"][resource]
