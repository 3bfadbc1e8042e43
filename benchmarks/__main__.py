"""Throughput and memory of cdp-sync against its emulator, beside a floor measured in the same run.

    python -m benchmarks <vendor> [--scale USERS] [--latency-ms L] [--workers N] [--sequential]
                                  [--repeat R]

The emulator runs in its own process (``python -m emulators``); cdp-sync and the floor each run
in a child process, so each one's peak RSS is its own (``os.wait4``). With ``--sequential`` the
users backfill is also timed with one sequential walk (workers=1) against the concurrent one.
With ``--repeat R`` the two sides run R times each, interleaved (cdp-sync, floor, cdp-sync, ...),
against the same emulator, and the summary takes the median of each side. Each job also reports
the CPU seconds of its timed part (every thread, ``time.process_time``), which a busy machine
disturbs far less than wall time. The last line is machine-readable:

    rows_per_s=<n> floor_rows_per_s=<n> ratio_to_floor=<x.xx> peak_rss_mb=<n> cpu_ratio=<x.xx>

``cpu_ratio`` is the floor's CPU seconds per row over cdp-sync's (1.00: cdp-sync spends as much
CPU per row as the floor; higher is cheaper).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

KNOWN = ("personyze", "synerise", "lytics", "posthog")


def _vendors() -> dict[str, Any]:
    """``benchmarks/<vendor>.py`` modules: ``RESOURCES`` (what the backfill loads),
    ``DEFAULT_WORKERS``, ``CONCURRENT_RESOURCES`` (what ``--sequential`` times with one worker
    against ``--workers``), and the jobs ``cdp_sync(info, workers=, resources=)`` and
    ``floor(info, resources=)``."""
    import importlib
    import importlib.util

    out = {}
    for name in KNOWN:
        if importlib.util.find_spec(f"benchmarks.{name}") is not None:
            out[name] = importlib.import_module(f"benchmarks.{name}")
    return out


def _child(vendor: str, job: str, info: dict[str, Any], **params: Any) -> dict[str, Any]:
    """Run one job in a child process; return its JSON result plus its own peak RSS."""
    env = dict(os.environ, SSL_CERT_FILE=info["ca_file"], RUNTIME__DLTHUB_TELEMETRY="false")
    payload = json.dumps({"vendor": vendor, "job": job, "info": info, "params": params})
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.worker", payload], stdout=subprocess.PIPE, env=env, text=True
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark job {job} failed with exit code {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
    # the job's own CPU over its timed part (imports and untimed warm-ups left out)
    result.setdefault("cpu_seconds", usage.ru_utime + usage.ru_stime)
    return result


def _start_emulator(vendor: str, scale: int, latency_ms: float, seed: int) -> tuple[subprocess.Popen, dict]:
    cmd = [sys.executable, "-m", "emulators", vendor, "--port", "0", "--seed", str(seed), "--scale", str(scale)]
    cmd += ["--latency-ms", str(latency_ms)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise SystemExit("the emulator did not start")
    return proc, json.loads(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    vendors = _vendors()
    parser.add_argument("vendor", choices=sorted(vendors))
    parser.add_argument("--scale", type=int, default=100_000, help="the emulated account's size (users; PostHog: persons, 8 events each)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added latency per request")
    parser.add_argument("--workers", type=int, default=None, help="backfill workers for cdp-sync")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sequential", action="store_true",
                        help="also time the concurrent resources with one worker against --workers")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each side this many times, interleaved; report the medians")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    spec = vendors[args.vendor]
    workers = args.workers or spec.DEFAULT_WORKERS

    t0 = time.perf_counter()
    emulator, info = _start_emulator(args.vendor, args.scale, args.latency_ms, args.seed)
    try:
        print(f"emulator: {args.vendor} scale={args.scale:,} latency_ms={args.latency_ms} "
              f"ready in {time.perf_counter() - t0:.1f} s", flush=True)
        res = list(spec.RESOURCES)
        cdps, flos = [], []
        for rep in range(args.repeat):
            tag = f" [{rep + 1}/{args.repeat}]" if args.repeat > 1 else ""
            cdp = _child(args.vendor, "cdp_sync", info, workers=workers, resources=res)
            cdps.append(cdp)
            print(f"cdp-sync:{tag} {cdp['rows']:,} rows in {cdp['seconds']:.1f} s ({cdp['cpu_seconds']:.1f} s CPU), "
                  f"{cdp['requests']:,} requests, peak RSS {cdp['peak_rss_mb']:.0f} MB (workers={workers})", flush=True)
            flo = _child(args.vendor, "floor", info, resources=res)
            flos.append(flo)
            print(f"floor:   {tag} {flo['rows']:,} rows in {flo['seconds']:.1f} s ({flo['cpu_seconds']:.1f} s CPU), "
                  f"{flo['requests']:,} requests, peak RSS {flo['peak_rss_mb']:.0f} MB "
                  "(sequential httpx + Arrow + DuckDB)", flush=True)
        if args.sequential:
            conc = list(spec.CONCURRENT_RESOURCES)
            seq = _child(args.vendor, "cdp_sync", info, workers=1, resources=conc)
            con = _child(args.vendor, "cdp_sync", info, workers=workers, resources=conc)
            print(f"{','.join(conc)}: sequential {seq['seconds']:.1f} s, concurrent ({workers} workers) "
                  f"{con['seconds']:.1f} s, speedup={seq['seconds'] / con['seconds']:.2f}", flush=True)
    finally:
        emulator.terminate()
        try:
            emulator.wait(timeout=15)
        except subprocess.TimeoutExpired:
            emulator.kill()
    rows_per_s = statistics.median(c["rows"] / c["seconds"] for c in cdps)
    floor_per_s = statistics.median(f["rows"] / f["seconds"] for f in flos)
    cpu_per_row = statistics.median(c["cpu_seconds"] / c["rows"] for c in cdps)
    floor_cpu_per_row = statistics.median(f["cpu_seconds"] / f["rows"] for f in flos)
    peak = max(c["peak_rss_mb"] for c in cdps)
    if args.repeat > 1:
        print(f"medians of {args.repeat} interleaved runs of each side:")
    print(
        f"rows_per_s={rows_per_s:.0f} floor_rows_per_s={floor_per_s:.0f} "
        f"ratio_to_floor={rows_per_s / floor_per_s:.2f} peak_rss_mb={peak:.0f} "
        f"cpu_ratio={floor_cpu_per_row / cpu_per_row:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
