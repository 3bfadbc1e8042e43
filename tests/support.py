"""Helpers every vendor's CLI and redaction tests share: the CLI as a subprocess, and scanning
text and files for secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def cli_env(vendor: str, server: Any, tmp_path: Path, *, drop: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """The environment of a ``cdp-sync`` subprocess pointed at ``server`` (an emulator): the
    vendor's key and base URL, the emulator's CA, a private dlt data dir, then ``extra``; nothing
    from the developer's ``SOURCES__*`` or ``DESTINATION__*`` leaks in, nor variables starting
    with one of ``drop``."""
    prefix = f"SOURCES__{vendor.upper()}__"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__", *drop))}
    env.update(
        {
            prefix + "API_KEY": server.api_key,
            prefix + "BASE_URL": server.base_url,
            "SSL_CERT_FILE": server.ca_file,
            "DLT_DATA_DIR": str(tmp_path / "dlt_data"),
            "RUNTIME__DLTHUB_TELEMETRY": "false",
        }
    )
    env.update(extra)
    return env


def cdp_sync(*args: str, env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``cdp-sync <args>`` as a subprocess and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=timeout,
    )


def _as_bytes(needles: Iterable[str | bytes]) -> list[bytes]:
    return [n if isinstance(n, bytes) else n.encode() for n in needles]


def scan_files(root: Path, needles: Iterable[str | bytes]) -> list[str]:
    """Every file below ``root`` that holds one of ``needles`` (as ``<file> contains <prefix>…``)."""
    wanted = _as_bytes(needles)
    found = []
    for f in root.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            found += [f"{f.relative_to(root)} contains {n[:6]!r}…" for n in wanted if n in data]
    return found


def destination_states(db: Path, dataset: str = "data") -> list[str]:
    """The pipeline states stored in a DuckDB dataset, decompressed to JSON text."""
    import duckdb
    from dlt.common.versioned_state import decompress_state

    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(f'select state from "{dataset}"._dlt_pipeline_state').fetchall()
    return [json.dumps(decompress_state(r[0])) for r in rows]


def assert_nowhere(needles: Iterable[str | bytes], texts: Iterable[str], root: Path) -> None:
    """None of ``needles`` in any of ``texts`` nor in any file below ``root``."""
    wanted = _as_bytes(needles)
    for text in texts:
        for n in wanted:
            assert n.decode() not in text, f"secret found in: {text[:300]}"
    assert scan_files(root, wanted) == []


def assert_refused_key(
    env: dict[str, str], cwd: Path, vendor: str, wrong: str, argsets: Iterable[tuple[str, ...]], *needles: str
) -> None:
    """Each ``cdp-sync <args>`` run with a key the vendor refuses exits 1 with exactly one
    ``error:`` line naming the vendor, the 401 and ``needles``, no traceback, and never echoes
    the key."""
    for args in argsets:
        result = cdp_sync(*args, env=env, cwd=cwd)
        assert result.returncode == 1, result
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1, result.stderr
        for needle in (vendor, "401", *needles):
            assert needle in lines[0], lines[0]
        assert "Traceback" not in result.stderr
        assert wrong not in result.stderr + result.stdout


def assert_bad_input(env: dict[str, str], cwd: Path, args: tuple[str, ...], env_change: dict, needle: str) -> None:
    """``cdp-sync <args>`` with ``env_change`` applied (``None`` removes a variable) exits 2 with
    one ``error:`` line holding ``needle`` and no traceback."""
    env = dict(env)
    for k, v in env_change.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    result = cdp_sync(*args, env=env, cwd=cwd)
    assert result.returncode == 2, result
    assert result.stderr.count("error:") == 1 and needle in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
