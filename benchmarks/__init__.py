"""cdp-sync's benchmarks: ``python -m benchmarks <vendor>`` (see benchmarks/README.md)."""

from __future__ import annotations

import sys
import time
from typing import Any


def print_steps(pipeline: Any, workers: int) -> None:
    """Where a cdp-sync job's time went, on stderr (the harness keeps stdout for the result):
    only the extract runs concurrently; normalize and load cost the same with one worker or
    several."""
    steps = {s.step: (s.finished_at - s.started_at).total_seconds() for s in pipeline.last_trace.steps}
    print(f"  cdp-sync steps (workers={workers}): " + ", ".join(
        f"{name} {steps[name]:.1f} s" for name in ("extract", "normalize", "load") if name in steps),
        file=sys.stderr, flush=True)


def run_cdp_sync(pipeline: Any, source: Any, *, workers: int, vendor: str, resources: list[str]) -> dict[str, Any]:
    """One timed cdp-sync run of ``source``, as ``cdp-sync run`` loads (parquet; a load DuckDB
    cannot fit under its memory cap finished without it): the job's result for the harness."""
    from pipelines.destinations import run_within_cap
    from pipelines.runtime import settle_heap
    from sources.common.progress import requests_made

    settle_heap()  # as `cdp-sync run` does before its run (pipelines/cli.py)
    started = time.perf_counter()

    cpu_started = time.process_time()  # every thread of this process
    load_info = run_within_cap(pipeline, lambda: pipeline.run(source, loader_file_format="parquet"),
                               warn=lambda m: print(f"  cdp-sync: {m}", file=sys.stderr, flush=True))
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    load_info.raise_on_failed_jobs()
    print_steps(pipeline, workers)
    counts = pipeline.last_trace.last_normalize_info.row_counts
    rows = sum(n for t, n in counts.items() if t in resources)
    return {"rows": rows, "requests": requests_made(vendor), "seconds": seconds, "cpu_seconds": cpu_seconds}
