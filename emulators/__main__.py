"""``python -m emulators <vendor> [--port 0] [--seed 1] [--scale USERS] [--latency-ms 0]``

Prints exactly one JSON line on stdout when ready —
``{"vendor": …, "base_url": …, "api_key": …, "ca_file": …}`` — and serves until SIGINT/SIGTERM.
The control plane is at the same host under ``/_emulator/`` (see emulators/README.md).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

import emulators


def _option(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    name, value = text.split("=", 1)
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators", description="Serve a vendor emulator over HTTPS on 127.0.0.1.")
    parser.add_argument("vendor", choices=emulators.available_vendors())
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: a free one)")
    parser.add_argument("--seed", type=int, default=1, help="data seed (same seed, same data)")
    parser.add_argument("--scale", type=int, default=1000, help="users in the emulated account (10 .. 1,000,000)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added latency per API request")
    parser.add_argument("--option", action="append", type=_option, default=[], metavar="NAME=VALUE",
                        help="a vendor option (JSON value), repeatable")
    args = parser.parse_args(argv)
    if not 1 <= args.scale <= 1_000_000:
        parser.error("--scale must be between 1 and 1,000,000")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = emulators.start(
        args.vendor, port=args.port, seed=args.seed, scale=args.scale, latency_ms=args.latency_ms, **dict(args.option)
    )
    try:
        sys.stdout.write(json.dumps(server.info()) + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            if not server._thread.is_alive():
                return 1
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
