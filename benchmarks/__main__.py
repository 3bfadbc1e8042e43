"""Throughput and memory of cdp-sync against its emulator, beside a floor measured in the same run.

    python -m benchmarks <vendor> [--scale USERS] [--latency-ms L] [--workers N] [--sequential]

The emulator runs in its own process (``python -m emulators``); cdp-sync and the floor each run
in a child process, so each one's peak RSS is its own (``os.wait4``). With ``--sequential`` the
users backfill is also timed with one sequential walk (workers=1) against the concurrent one.
The last line is machine-readable:

    rows_per_s=<n> floor_rows_per_s=<n> ratio_to_floor=<x.xx> peak_rss_mb=<n>
"""

from __future__ import annotations

import argparse
import json
import os
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
    parser.add_argument("--scale", type=int, default=100_000, help="users in the emulated account")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added latency per request")
    parser.add_argument("--workers", type=int, default=None, help="backfill workers for cdp-sync")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sequential", action="store_true",
                        help="also time the concurrent resources with one worker against --workers")
    args = parser.parse_args(argv)
    spec = vendors[args.vendor]
    workers = args.workers or spec.DEFAULT_WORKERS

    t0 = time.perf_counter()
    emulator, info = _start_emulator(args.vendor, args.scale, args.latency_ms, args.seed)
    try:
        print(f"emulator: {args.vendor} scale={args.scale:,} latency_ms={args.latency_ms} "
              f"ready in {time.perf_counter() - t0:.1f} s", flush=True)
        res = list(spec.RESOURCES)
        cdp = _child(args.vendor, "cdp_sync", info, workers=workers, resources=res)
        print(f"cdp-sync: {cdp['rows']:,} rows in {cdp['seconds']:.1f} s, {cdp['requests']:,} requests, "
              f"peak RSS {cdp['peak_rss_mb']:.0f} MB (workers={workers})", flush=True)
        flo = _child(args.vendor, "floor", info, resources=res)
        print(f"floor:    {flo['rows']:,} rows in {flo['seconds']:.1f} s, {flo['requests']:,} requests, "
              f"peak RSS {flo['peak_rss_mb']:.0f} MB (sequential httpx + Arrow + DuckDB)", flush=True)
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
    rows_per_s = cdp["rows"] / cdp["seconds"]
    floor_per_s = flo["rows"] / flo["seconds"]
    print(
        f"rows_per_s={rows_per_s:.0f} floor_rows_per_s={floor_per_s:.0f} "
        f"ratio_to_floor={rows_per_s / floor_per_s:.2f} peak_rss_mb={cdp['peak_rss_mb']:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
