"""PostgreSQL: time dlt's normalize and load steps for Arrow pages written as ``insert_values``
(keeps empty strings) and as csv (dlt's default for Arrow there: COPY, which stores '' as NULL).

    .venv/bin/python -m benchmarks.postgres_formats --scale 20000 --repeat 2

Starts a throwaway PostgreSQL server (as the tests do) and the Personyze emulator on 127.0.0.1,
extracts users, events and sessions_archive once per format and repetition, then times
``normalize()`` and ``load()`` alone (extraction is the same for both and is not compared).
Needs PostgreSQL's server programs (scripts/ensure-postgres.sh)."""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=20000, help="Personyze users (events x3, sessions x2)")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    import dlt

    import emulators
    from sources.personyze import personyze_source
    from tests.destinations.pgserver import start_server

    server = start_server()
    emu = emulators.start("personyze", scale=args.scale, seed=7)
    os.environ["SSL_CERT_FILE"] = emu.ca_file
    try:
        with tempfile.TemporaryDirectory(prefix="cdp-bench-pg-") as tmp:
            for rep in range(args.repeat):
                for fmt in ("insert_values", "csv"):
                    pipeline = dlt.pipeline(pipeline_name=f"bench_{fmt}_{rep}",
                                            destination=dlt.destinations.postgres(server.url),
                                            dataset_name=f"bench_{fmt}_{rep}", pipelines_dir=tmp)
                    src = personyze_source(api_key=emu.api_key, base_url=emu.base_url)
                    pipeline.extract(src.with_resources("users", "events", "sessions_archive"),
                                     loader_file_format=fmt)
                    t0 = time.monotonic()
                    pipeline.normalize()
                    t1 = time.monotonic()
                    pipeline.load().raise_on_failed_jobs()
                    t2 = time.monotonic()
                    rows = sum(n for t, n in pipeline.last_trace.last_normalize_info.row_counts.items()
                               if not t.startswith("_dlt"))
                    print(f"run {rep + 1} {fmt:<14} {rows:>9,} rows  normalize {t1 - t0:5.1f} s  "
                          f"load {t2 - t1:5.1f} s  both {t2 - t0:5.1f} s", flush=True)
    finally:
        emu.stop()
        server.stop()


if __name__ == "__main__":
    main()
