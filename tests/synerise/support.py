"""Helpers shared by the Synerise tests."""

from __future__ import annotations

from typing import Any

import duckdb

from sources.synerise import synerise_source

SCALE = 300
SEED = 7


def source(server: Any, *resources: str, **options: Any) -> Any:
    src = synerise_source(api_key=server.api_key, base_url=server.base_url, **options)
    return src.with_resources(*resources) if resources else src


def run(pipeline: Any, src: Any) -> dict[str, int]:
    info = pipeline.run(src, loader_file_format="parquet")
    info.raise_on_failed_jobs()
    return {k: v for k, v in pipeline.last_trace.last_normalize_info.row_counts.items() if not k.startswith("_dlt")}


def connect(tmp_path: Any, db: str = "test.duckdb") -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(tmp_path / db), read_only=True)


def resource_state(pipeline: Any, name: str) -> dict[str, Any]:
    return pipeline.state["sources"]["synerise"]["resources"][name]


def root_error(exc: BaseException) -> BaseException:
    """The innermost cdp-sync error inside dlt's wrappers."""
    from sources.common.errors import CdpSyncError

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


def events_in(export: list[dict[str, Any]], lo: int, hi: int) -> list[dict[str, Any]]:
    return [e for e in export if lo <= e["time"] <= hi]
