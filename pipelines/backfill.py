"""Backfills: a past range of one time-windowed resource, loaded as independent window jobs.

``cdp-sync backfill`` is a thin shell over this module; an orchestrator (a Dagster daily
partition, an Airflow task) calls :func:`run_window` for one window.

**Why every window is its own dlt pipeline.** The scheduled pipeline keeps its position in its
own state (``sources/common/cursor.py``: cursor, lookback fingerprints). dlt's own answer to a
backfill is ``dlt.sources.incremental(end_value=…)`` (and ``allow_external_schedulers``): a run
with an end value reads a bounded range and leaves the incremental state alone. Our sources do
not use dlt's incremental (they need a compound keyset and a lookback), so the same guarantee
comes from the pipeline boundary instead: a window runs the source in *bounded mode*
(``window_start``/``window_end``), which reads exactly ``[start, end)`` and touches no cursor, in a
pipeline of its own (named after the scheduled pipeline, the resource and the bounds). That
pipeline loads into the **same destination and dataset** as the scheduled one, merging on the
primary key, so the scheduled pipeline's state never moves and windows can run side by side.

**Idempotent, re-runnable.** The bounded resource records the window in its resource state
(rows, finished_at) when its last page is yielded; dlt commits that state with the load package,
into the destination's ``_dlt_pipeline_state``. Before running, a window looks that record up in
the destination (not the local working directory, which may be gone or hold an extract whose
load failed): found, the window is skipped and nothing is loaded; ``force`` reads it again and
merges (identical content). A failed window leaves nothing marked and can be re-run alone.

**Concurrency.** Up to N windows run in threads. Extract and normalize overlap; every step that
touches the destination (the record lookup and the load) holds one process-wide lock, because
DuckDB has one writer and concurrent schema updates of one dataset race. Windows run by several
processes at once (an orchestrator's multiprocess executor) need a warehouse destination, or
one process per DuckDB file: DuckDB lets one process write a file at a time.

**For an orchestrator.** One daily partition is one window: ``run_window(vendor, resource,
Window.day(partition_key), pipeline_name=…, destination=…, dataset_name=…)``. It raises on failure
(the orchestrator retries it) and returns a :class:`WindowResult` (``done`` or ``skipped``).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pendulum

from pipelines.destinations import run_within_cap
from sources.common.errors import ConfigurationError
from sources.common.window import Window, iso

#: ``--window`` sizes: a positive count of minutes, hours, days or weeks (``30m``, ``6h``, ``1d``, ``7d``, ``2w``)
_SIZE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
#: a backfill plans at most this many windows (a typo in --from must not plan a million jobs)
MAX_WINDOWS = 10_000

DONE, SKIPPED, FAILED = "done", "skipped", "failed"


def parse_window_size(text: str) -> pendulum.Duration:
    """``1h``, ``6h``, ``1d``, ``7d`` … as a duration; anything else is a :class:`ValueError`."""
    m = _SIZE.match(str(text))
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"--window must be a positive number of m, h, d or w (like 1h, 6h, 1d, 7d), not {text!r}")
    return pendulum.duration(**{_UNITS[m.group(2)]: int(m.group(1))})


def plan_windows(start: pendulum.DateTime, end: pendulum.DateTime, size: pendulum.Duration,
                 max_windows: int = MAX_WINDOWS) -> list[Window]:
    """``[start, end)`` cut into consecutive windows of ``size`` (the last one may be shorter).
    The same range and size always give the same windows, so a window's job (and its pipeline)
    is found again by a later run."""
    if start >= end:
        raise ValueError(f"--from {iso(start)} must be before --to {iso(end)}")
    if size.total_seconds() <= 0:
        raise ValueError("the window size must be positive")
    out: list[Window] = []
    a = start
    while a < end:
        if len(out) >= max_windows:
            raise ValueError(f"{iso(start)}..{iso(end)} in windows of {size.in_words()} is more than "
                             f"{max_windows:,} windows; use a larger --window")
        b = min(end, a + size)
        out.append(Window(a, b))
        a = b
    return out


def window_for_interval(data_interval_start: Any, data_interval_end: Any) -> Window:
    """The window an orchestrator's run stands for: Airflow's data interval
    ``[data_interval_start, data_interval_end)`` (a Dagster partition's time window likewise), in
    UTC. A daily interval is the day's window, the very one ``cdp-sync backfill --window 1d``
    plans, so both find the same window pipeline and its record. A missing bound (a run without a
    data interval) or an empty interval is a :class:`ConfigurationError`: there is nothing to load."""
    from sources.common.window import parse_instant

    if data_interval_start is None or data_interval_end is None:
        raise ConfigurationError("a window needs a data interval (start and end); this run has none")
    start = parse_instant(data_interval_start, "data_interval_start")
    end = parse_instant(data_interval_end, "data_interval_end")
    if start >= end:
        raise ConfigurationError(f"the data interval {iso(start)}..{iso(end)} is empty: no window to load")
    return Window(start, end)


def _stamp(value: pendulum.DateTime) -> str:
    """``YYYYMMDDHHMM`` in UTC, plus seconds and microseconds when a bound has them."""
    utc = value.in_timezone("UTC")
    text = utc.strftime("%Y%m%d%H%M")
    if utc.second or utc.microsecond:
        text += utc.strftime("%S")
    if utc.microsecond:
        text += f"{utc.microsecond:06d}"
    return text


def window_pipeline_name(pipeline_name: str, resource: str, window: Window) -> str:
    """The pipeline of one window: ``<scheduled>_backfill_<resource>_<start>_<end>`` (bounds in UTC,
    ``YYYYMMDDHHMM``), in snake case: letters, digits and underscores, a directory name on every
    filesystem. dlt names a new pipeline's first schema after the pipeline, so the name also obeys
    schema names' 64-character limit: a longer one is shortened by dlt's own rule (with a hash)."""
    from dlt.common.schema.utils import normalize_schema_name

    return normalize_schema_name(f"{pipeline_name}_backfill_{resource}_{_stamp(window.start)}_{_stamp(window.end)}")


def duckdb_path(pipeline_name: str) -> str:
    """The DuckDB file the scheduled pipeline ``pipeline_name`` loads into: the configured
    ``[destination.duckdb] credentials`` path if there is one, else ``<pipeline_name>.duckdb``
    in the working directory (dlt's default)."""
    import dlt

    configured = dlt.config.get("destination.duckdb.credentials")
    if isinstance(configured, dict):
        configured = configured.get("database")
    if isinstance(configured, str) and configured.strip() and not configured.startswith(":"):
        return os.path.abspath(configured)
    return os.path.abspath(f"{pipeline_name}.duckdb")


def destination_for(destination: Any, pipeline_name: str) -> Any:
    """The destination of ``pipeline_name``, for it or for one of its windows. DuckDB is passed
    explicitly (the file named after the *scheduled* pipeline, not the window's); any other
    destination name is resolved by dlt from its configuration."""
    if destination == "duckdb":
        from pipelines.destinations import duckdb_destination

        return duckdb_destination(duckdb_path(pipeline_name))
    if isinstance(destination, str):
        from pipelines.destinations import check_destination_name

        check_destination_name(destination)
    return destination


@dataclass
class WindowResult:
    window: Window
    status: str  # done | skipped | failed
    rows: int = 0
    seconds: float = 0.0
    note: str = ""
    error: BaseException | None = field(default=None, repr=False)
    pipeline_name: str = ""


def _record_note(record: dict[str, Any]) -> str:
    notes = []
    gap = record.get("unreachable")
    if isinstance(gap, dict):
        notes.append(f"gap {gap.get('from')}..{gap.get('to')} ({gap.get('hours')} h) beyond the API's horizon")
    if record.get("truncated"):
        notes.append(f"{len(record['truncated'])} capped milliseconds (see the window's state)")
    if record.get("moved_out"):
        notes.append(f"{record['moved_out']} rows changed during the scan (left to their new window)")
    return "; ".join(notes)


def finished_record(pipeline: Any, source_name: str, resource: str, window: Window) -> dict[str, Any] | None:
    """The window's record as the destination holds it (committed with a completed load), or
    ``None``. Destinations that keep no dlt state fall back to the local state when nothing is
    left pending there."""
    from dlt.common.destination.client import WithStateSync
    from dlt.common.destination.exceptions import DestinationUndefinedEntity
    from dlt.pipeline.state_sync import load_pipeline_state_from_destination

    try:
        with pipeline.destination_client() as client:
            if not isinstance(client, WithStateSync):
                if pipeline.has_pending_data:
                    return None
                return window.recorded_in(_resource_state(pipeline.state, source_name, resource))
            stored = load_pipeline_state_from_destination(pipeline.pipeline_name, client)
    except DestinationUndefinedEntity:  # no dataset or no state table yet
        return None
    return window.recorded_in(_resource_state(stored, source_name, resource))


def _resource_state(state: Any, source_name: str, resource: str) -> dict[str, Any]:
    return ((state or {}).get("sources", {}).get(source_name, {}).get("resources", {}).get(resource)) or {}


#: serialises destination access of windows run in this process (one DuckDB writer, schema updates)
DESTINATION_LOCK = threading.Lock()


def run_window(
    vendor: str,
    resource: str,
    window: Window,
    *,
    pipeline_name: str | None = None,
    destination: Any = "duckdb",
    dataset_name: str | None = None,
    pipelines_dir: str | None = None,
    force: bool = False,
    source_options: dict[str, Any] | None = None,
    loader_file_format: str | None = None,
    table_format: str | None = None,
    lock: Any = None,
) -> WindowResult:
    """Load one window of ``vendor``'s ``resource`` into the scheduled pipeline's destination
    and dataset (``pipeline_name``, default the vendor; ``dataset_name``, default
    ``<vendor>_data``), in the window's own pipeline. Skips a window the destination records as
    finished unless ``force``. Raises on failure (nothing is marked finished then)."""
    import dlt

    from pipelines.vendors import VENDORS

    v = VENDORS[vendor]
    windowed = backfill_resources(vendor)
    if resource not in windowed:
        raise ConfigurationError(f"{vendor} {resource!r} is not a time-windowed resource; backfillable: "
                                 f"{', '.join(windowed)}", vendor=vendor)
    scheduled = pipeline_name or vendor
    name = window_pipeline_name(scheduled, resource, window)
    lock = lock if lock is not None else DESTINATION_LOCK
    started = time.monotonic()
    source = v.load_source()(window_start=window.start, window_end=window.end, **(source_options or {}))
    source = source.with_resources(resource)
    pipeline = dlt.pipeline(
        pipeline_name=name,
        destination=destination_for(destination, scheduled),
        dataset_name=dataset_name or f"{vendor}_data",
        pipelines_dir=pipelines_dir,
    )
    with lock:
        record = finished_record(pipeline, source.name, resource, window)
    if record is not None and not force:
        return WindowResult(window, SKIPPED, int(record.get("rows") or 0), time.monotonic() - started,
                            f"already done at {record.get('finished_at')}", pipeline_name=name)
    if pipeline.has_pending_data:
        # an earlier attempt stopped after extracting: the window is read again instead
        pipeline.drop_pending_packages()
    pipeline.extract(source, loader_file_format=loader_file_format, table_format=table_format)
    pipeline.normalize()
    with lock:
        info = run_within_cap(pipeline, pipeline.load)
    info.raise_on_failed_jobs()
    record = window.recorded_in(_resource_state(pipeline.state, source.name, resource)) or {}
    return WindowResult(window, DONE, int(record.get("rows") or 0), time.monotonic() - started, _record_note(record),
                        pipeline_name=name)


def backfill_resources(vendor: str) -> dict[str, str]:
    """``{resource: time axis}`` of a vendor's time-windowed resources."""
    from pipelines.vendors import VENDORS

    return dict(getattr(VENDORS[vendor].module, "BACKFILL_RESOURCES", {}) or {})


def run_backfill(
    vendor: str,
    resource: str,
    windows: Sequence[Window],
    *,
    workers: int = 1,
    on_event: Callable[[str, WindowResult], None] | None = None,
    **options: Any,
) -> list[WindowResult]:
    """Run every window (up to ``workers`` at once, each with :func:`run_window` and its
    ``options``); a failed window does not stop the others. Returns one result per window, in
    window order. ``on_event(kind, result)`` is called with ``"start"`` and ``"end"``."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    results: list[WindowResult | None] = [None] * len(windows)

    def emit(kind: str, result: WindowResult) -> None:
        if on_event is not None:
            on_event(kind, result)

    def job(i: int, window: Window) -> None:
        emit("start", WindowResult(window, "running"))
        started = time.monotonic()
        try:
            result = run_window(vendor, resource, window, **options)
        except Exception as exc:  # noqa: BLE001 - one window's failure is reported, the others go on
            result = WindowResult(window, FAILED, 0, time.monotonic() - started, error=exc)
        results[i] = result
        emit("end", result)

    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(windows))), thread_name_prefix="cdp-sync-backfill")
    try:
        for future in [pool.submit(job, i, w) for i, w in enumerate(windows)]:
            future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [r for r in results if r is not None]


def failed_ranges(results: Sequence[WindowResult]) -> list[tuple[pendulum.DateTime, pendulum.DateTime]]:
    """The failed windows as contiguous ``(from, to)`` ranges: re-planned with the same window
    size, each range gives back exactly its failed windows."""
    out: list[tuple[pendulum.DateTime, pendulum.DateTime]] = []
    for r in results:
        if r.status != FAILED:
            continue
        if out and out[-1][1] == r.window.start:
            out[-1] = (out[-1][0], r.window.end)
        else:
            out.append((r.window.start, r.window.end))
    return out
