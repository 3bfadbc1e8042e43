"""Model-based test of ``cdp-sync run personyze`` against the emulator (issue 11).

A hypothesis state machine interleaves what the vendor does (profiles changed, added and
deleted; events and sessions arriving, some hours late; daily summaries changing; products
added; the clock moving; hostile mode with its wire faults and the vendor's own bad days) with
what happens to runs (scripted faults, runs SIGKILLed at a random point — in extract, normalize
or load — and runs that complete). The invariant, after every run that exits 0:

* every table in the destination equals the emulator's truth, on primary keys and on every
  value (the newest version), with one documented exception: a deleted profile stays in the
  destination until a ``--full-refresh`` (Personyze shows no deletes);
* when hostile mode changed data *while* the run was reading, that run could not see all of
  it: then one quiet run (hostile mode off, no changes) must make the destination exact — a
  run that exited 0 must never have lost a row for good.

A run fails (exit 1, one ``error:`` line, no traceback) only when a fault that is never retried
was scripted for it. Profiles: ``CDP_STATEFUL=ci`` (default) or ``long`` (see tests/stateful.py);
``CDP_STATEFUL_LOG=<file>`` appends one JSON line of figures per example.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import emulators
from emulators.common.control import ControlClient
from sources.personyze import settings as S
from tests import support
from tests.stateful import log_run, profile, run_cli

from .truth import checksum, expected_rows, loaded_rows

SCALE = 300
DATASET = "personyze_data"
TABLES = (S.USERS, S.EVENTS, S.SESSIONS_ARCHIVE, S.SUMMARY_ACTIONS, S.PRODUCTS, S.ARTICLES, *S.SMALL_TABLES)
#: how late a session or event may arrive, in seconds: within a minute, the 1.5-2.3 h the issue
#: measured, two days
LATENESS = (0, 60, 5400, 8280, 2 * 86400)


class PersonyzeRuns(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.server = emulators.start("personyze", scale=SCALE, seed=5)
        self.ctl = ControlClient(self.server.root_url, self.server.ca_file)
        self.tmp = Path(tempfile.mkdtemp(prefix="personyze-stateful-"))
        self.env = support.cli_env("personyze", self.server, self.tmp)
        self.deleted: set[int] = set()
        self.hostile: dict[str, Any] | None = None
        self.fatal_armed = False
        self.figures = {"steps": 0, "runs": 0, "killed": 0, "failed": 0, "quiet_runs": 0, "checks": 0,
                        "hostile_changes": 0, "started": time.monotonic()}

    def teardown(self) -> None:
        figures = dict(self.figures, seconds=round(time.monotonic() - self.figures.pop("started"), 1))
        log_run(kind="example", **figures)
        self.ctl.close()
        self.server.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------------ runs

    def _run(self, *args: str, kill_after: float | None = None) -> Any:
        self.figures["runs"] += 1
        return run_cli("run", "personyze", *args, env=self.env, cwd=self.tmp, kill_after=kill_after)

    def _completed(self, *args: str) -> None:
        if self.hostile:
            self.ctl.mutate({"op": "hostile_log", "reset": True})
        outcome = self._run(*args)
        fatal, self.fatal_armed = self.fatal_armed, False
        self.ctl.clear_faults()
        if not outcome.ok:
            assert not outcome.killed
            # only a fault that is never retried may fail a run, and then in one line
            assert fatal, outcome
            errors = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
            assert len(errors) == 1 and "Traceback" not in outcome.stderr, outcome
            self.figures["failed"] += 1
            return
        if "--full-refresh" in args:
            self.deleted.clear()
        self._check_completed()

    def _check_completed(self) -> None:
        if self.hostile:
            changed = sum(self.ctl.mutate({"op": "hostile_log"})["changes"].values())
            self.figures["hostile_changes"] += changed
            # the run may not have seen changes made while it read; nothing may be lost for good:
            # one quiet run (no faults, no changes) must leave the destination exact
            self.ctl.configure(hostile=0)
            quiet = self._run()
            self.figures["quiet_runs"] += 1
            assert quiet.ok, quiet
            self._check()
            self.ctl.configure(**self.hostile)
            return
        self._check()

    def _check(self) -> None:
        self.figures["checks"] += 1
        with duckdb.connect(str(self.tmp / "personyze.duckdb"), read_only=True) as con:
            for spec in TABLES:
                expected = expected_rows(spec, self.ctl.export(spec.name))
                loaded, count = loaded_rows(con, DATASET, spec)
                assert count == len(loaded), f"{spec.name}: {count} rows for {len(loaded)} keys"
                if spec is S.USERS:
                    gone = {k for k in loaded if k[0] in self.deleted}
                    loaded = {k: v for k, v in loaded.items() if k not in gone}
                missing, extra = set(expected) - set(loaded), set(loaded) - set(expected)
                assert not missing and not extra, f"{spec.name}: missing {sorted(missing)[:5]}, extra {sorted(extra)[:5]}"
                if checksum(loaded) != checksum(expected):
                    diff = [k for k in expected if expected[k] != loaded[k]][:3]
                    raise AssertionError(
                        f"{spec.name}: values differ: "
                        + "; ".join(f"{k}: expected {expected[k]} loaded {loaded[k]}" for k in diff)
                    )

    @initialize(hostile=st.booleans(), seed=st.integers(0, 10_000))
    def first_run(self, hostile: bool, seed: int) -> None:
        self.set_hostile(hostile, seed)
        self._completed()

    @rule()
    def run(self) -> None:
        self._completed()

    @rule(after=st.floats(0.3, 5.0))
    def run_killed(self, after: float) -> None:
        """SIGKILL at a random point (extract, normalize or load); the next run must finish or
        redo it without losing or doubling a row."""
        if self.hostile:
            self.ctl.mutate({"op": "hostile_log", "reset": True})
        outcome = self._run(kill_after=after)
        fatal, self.fatal_armed = self.fatal_armed, False
        self.ctl.clear_faults()
        if outcome.killed:
            self.figures["killed"] += 1
        elif outcome.ok:  # it finished before the kill: the invariant holds as for any other
            self._check_completed()
        else:
            assert fatal, outcome

    @rule()
    def run_full_refresh(self) -> None:
        self._completed("--full-refresh")

    # ------------------------------------------------------------------ faults

    @rule(
        kind=st.sampled_from(["503", "empty_200", "html_200", "fatal_400"]),
        obj=st.sampled_from(["users", "events", "sessions_archive", "summary_actions", "products"]),
        after=st.integers(0, 4),
    )
    def arm_fault(self, kind: str, obj: str, after: int) -> None:
        answers = {
            "503": {"status": 503, "body": "Deadlock found; stand by 1 second and retry"},
            "empty_200": {"status": 200, "body": ""},
            "html_200": {"status": 200, "body": "<html><body>Maintenance</body></html>"},
            "fatal_400": {"status": 400, "body": "boom"},
        }
        self.ctl.add_faults([{"path": f"^/rest/{obj}/", "actions": [{"pass": True}] * after + [answers[kind]]}])
        self.fatal_armed = self.fatal_armed or kind == "fatal_400"

    @rule(on=st.booleans(), seed=st.integers(0, 10_000))
    def set_hostile(self, on: bool, seed: int) -> None:
        self.hostile = {"hostile": 1, "hostile_seed": seed, "hostile_rate": 0.03} if on else None
        self.ctl.configure(**(self.hostile or {"hostile": 0}))

    # ------------------------------------------------------------------ the vendor's changes

    @rule(count=st.integers(1, 80), seconds=st.integers(0, 400), late=st.sampled_from([0, 0, 120, 280]))
    def modify_users(self, count: int, seconds: int, late: int) -> None:
        """Profiles change; some changes commit late, inside the documented 300 s limit."""
        self.ctl.mutate({"op": "advance_clock", "seconds": seconds})
        self.ctl.mutate({"op": "modify_users", "count": count, "late_seconds": late})

    @rule(count=st.integers(1, 30))
    def add_users(self, count: int) -> None:
        self.ctl.mutate({"op": "add_users", "count": count})

    @rule(count=st.integers(1, 5))
    def delete_users(self, count: int) -> None:
        self.deleted.update(self.ctl.mutate({"op": "delete_users", "count": count})["user_ids"])

    @rule(count=st.integers(1, 60), late=st.sampled_from(LATENESS))
    def add_events(self, count: int, late: int) -> None:
        self.ctl.mutate({"op": "add_events", "count": count, "late_seconds": late})

    @rule(count=st.integers(1, 60), late=st.sampled_from(LATENESS))
    def add_sessions(self, count: int, late: int) -> None:
        self.ctl.mutate({"op": "add_sessions", "count": count, "late_seconds": late})

    @rule(days=st.integers(1, 3))
    def update_summaries(self, days: int) -> None:
        self.ctl.mutate({"op": "update_summaries", "days": days})

    @rule(count=st.integers(1, 40))
    def add_products(self, count: int) -> None:
        self.ctl.mutate({"op": "add_products", "count": count})

    @rule(seconds=st.integers(1, 2 * 86400))
    def advance_clock(self, seconds: int) -> None:
        self.ctl.mutate({"op": "advance_clock", "seconds": seconds})

    @invariant()
    def count_step(self) -> None:
        self.figures["steps"] += 1


PersonyzeRuns.TestCase.settings = profile(max_examples=2, stateful_step_count=5)
test_personyze_runs = PersonyzeRuns.TestCase


def test_a_fixed_program_through_kill_fault_and_hostile_mode() -> None:
    """One program the ci profile's few examples may not reach: hostile mode from the start, a
    run killed part way, a retried and a fatal fault in one run, deletes, then exact again."""
    machine = PersonyzeRuns()
    try:
        machine.first_run(hostile=True, seed=7)
        machine.modify_users(count=40, seconds=30, late=120)
        machine.add_sessions(count=20, late=8280)
        machine.run_killed(after=1.5)
        machine.arm_fault(kind="empty_200", obj="users", after=0)
        machine.arm_fault(kind="fatal_400", obj="events", after=0)
        machine.run()
        assert machine.figures["failed"] == 1, machine.figures
        machine.set_hostile(on=False, seed=0)
        machine.delete_users(count=3)
        machine.add_events(count=30, late=86400)
        machine.run()
        assert machine.figures["checks"] >= 2, machine.figures
    finally:
        machine.teardown()
