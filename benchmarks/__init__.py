"""cdp-sync's benchmarks: ``python -m benchmarks <vendor>`` (see benchmarks/README.md)."""

from __future__ import annotations

import sys
from typing import Any


def print_steps(pipeline: Any, workers: int) -> None:
    """Where a cdp-sync job's time went, on stderr (the harness keeps stdout for the result):
    only the extract runs concurrently; normalize and load cost the same with one worker or
    several."""
    steps = {s.step: (s.finished_at - s.started_at).total_seconds() for s in pipeline.last_trace.steps}
    print(f"  cdp-sync steps (workers={workers}): " + ", ".join(
        f"{name} {steps[name]:.1f} s" for name in ("extract", "normalize", "load") if name in steps),
        file=sys.stderr, flush=True)
