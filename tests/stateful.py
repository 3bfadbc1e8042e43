"""What every vendor's model-based (hypothesis stateful) test shares: the run profiles and a
``cdp-sync run`` subprocess that can be killed at a random point.

Profiles (environment variable ``CDP_STATEFUL``):

* ``ci`` (default): a few short programs, so the whole suite stays inside CI's time budget;
* ``long``: thousands of steps, run by hand before a release (``CDP_STATEFUL=long
  .venv/bin/python -m pytest tests -k stateful -p no:timeout``); its figures go in the closing note
  of the change that ran it.

A machine uses ``settings=profile()`` (or ``profile(max_examples=…)`` to scale one vendor's
share) and runs the CLI through :func:`run_cli`, which returns a :class:`RunOutcome`: the exit
code, the output, and whether the run was killed. The invariant each machine checks after every
completed run is "the destination equals the emulator's truth" (its vendor's ``truth`` module).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings

PROFILES = {
    # examples, steps per example
    "ci": (3, 6),
    "long": (200, 25),
}


def profile_name() -> str:
    name = os.environ.get("CDP_STATEFUL", "ci")
    if name not in PROFILES:
        raise ValueError(f"CDP_STATEFUL must be one of {', '.join(PROFILES)} (got {name!r})")
    return name


def profile(*, max_examples: int | None = None, stateful_step_count: int | None = None) -> settings:
    """Hypothesis settings of the selected profile; explicit values override the ci profile only
    (the long profile always runs its own, larger numbers)."""
    name = profile_name()
    examples, steps = PROFILES[name]
    if name == "ci":
        examples = max_examples if max_examples is not None else examples
        steps = stateful_step_count if stateful_step_count is not None else steps
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=name == "ci",
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        print_blob=True,
    )


@dataclass
class RunOutcome:
    returncode: int | None  # None when killed
    stdout: str
    stderr: str
    killed: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def __str__(self) -> str:  # what a failing assertion shows
        tail = "\n".join((self.stdout + self.stderr).splitlines()[-25:])
        state = "killed" if self.killed else f"exit {self.returncode}"
        return f"cdp-sync run ({state}, {self.seconds:.1f} s):\n{tail}"


def run_cli(*args: str, env: dict[str, str], cwd: Path, kill_after: float | None = None,
            timeout: float = 300) -> RunOutcome:
    """``cdp-sync <args>`` in a subprocess; with ``kill_after`` seconds it is sent SIGKILL then
    (if it is still running), as a crash or an orchestrator's hard stop would end it."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *args], env=env, cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    killed = False
    try:
        if kill_after is not None:
            try:
                out, err = proc.communicate(timeout=kill_after)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
                out, err = proc.communicate(timeout=60)
        else:
            out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        raise
    return RunOutcome(None if killed else proc.returncode, out, err, killed, time.monotonic() - started)


def log_run(**fields: object) -> None:
    """One JSON line per run into ``$CDP_STATEFUL_LOG`` (when set): the figures of a long run."""
    path = os.environ.get("CDP_STATEFUL_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"t": round(time.time(), 1), **fields}) + "\n")
