"""Child-process entry of the benchmark: runs one job and prints its JSON result as the last line."""

from __future__ import annotations

import importlib
import json
import os
import sys


def main() -> None:
    payload = json.loads(sys.argv[1])
    if payload["job"] == "cdp_sync":  # as `cdp-sync` sets it at start (pipelines/cli.py)
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    module = importlib.import_module(f"benchmarks.{payload['vendor']}")
    result = getattr(module, payload["job"])(payload["info"], **payload["params"])
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
