"""Running ``cdp-sync`` in-process for the verification tests (a subprocess costs ~2 s of
imports per call; the exit codes and the one-line errors are the same code path)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def cli(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], cwd: Path, *args: str) -> Outcome:
    """``cdp-sync <args>`` through click's runner with exactly ``env``'s ``SOURCES__*`` /
    ``DESTINATION__*`` / dlt variables, in ``cwd``."""
    from click.testing import CliRunner

    from pipelines.cli import main

    with monkeypatch.context() as m:
        for k in list(os.environ):
            if k.startswith(("SOURCES__", "DESTINATION__", "CDP_SYNC__")):
                m.delenv(k)
        for k, v in env.items():
            if k.startswith(("SOURCES__", "DESTINATION__", "CDP_SYNC__", "DLT_", "SSL_CERT_FILE", "RUNTIME__")):
                m.setenv(k, v)
        m.chdir(cwd)
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return Outcome(result.exit_code, result.stdout, result.stderr)


def table(stdout: str) -> list[list[str]]:
    """The rows of the verification table in ``stdout`` (split on whitespace), without its header
    and summary line (a run's own summary above it is skipped)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "verification against the vendor's counts" in line) + 2
    out = []
    for line in lines[start:]:
        if line.strip().startswith("verification:"):
            break
        out.append(line.split())
    return out
