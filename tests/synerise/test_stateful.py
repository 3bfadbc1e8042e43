"""Model-based test of Synerise (issue 11): a hypothesis state machine interleaves workspace
changes (profiles added, modified, merged and deleted; catalog items added, modified and deleted;
segmentation churn; new and late events), the emulator's hostile mode (the wire's bad days and
Synerise's own: pages clamped, served one row off, profiles modified mid-walk so the list moves,
catalog scans ending short of their total, late events behind a running walk, 429s), faults that
fail a run, ``cdp-sync run`` subprocesses SIGKILLed at a random point, and completed runs.

Invariant after every run that exits 0: every snapshot table equals the emulator's truth on
primary keys and values (the newest version), except profiles deleted outright, which the API
shows nowhere (documented: they stay until ``--full-refresh``), and the values of segmentation
members the emulator modified *while* that run read (its walk may have read them before): those
must be exact after the next completed run. ``profiles`` gets no such excuse: the emulator only
modifies profiles the walk has not served yet, so the walk meets their new copy. ``events``: every event the
workspace held when a run started whose time lies in that run's window (cursor − lookback ..
server time − lag) is loaded once the run's package is loaded (a killed run's package is finished
by the next one), nothing else is loaded, and values are the emulator's. A run that fails says so
on one line, without a traceback, and commits nothing of the failed resource.

Profiles: ``CDP_STATEFUL=ci`` (default; a few short programs) and ``CDP_STATEFUL=long`` (see
tests/stateful.py); ``CDP_STATEFUL_LOG=<file>`` records one JSON line per run."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from tests import support
from tests.stateful import profile, run_cli

from .truth import TABLES, assert_table_equals, loaded_rows

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

SCALE = 120
DATASET = "synerise_data"
RESOURCES = "profiles,events,catalogs,catalog_items,segmentation_members,expressions,aggregates,asset_tags,tags"
SNAPSHOTS = ("catalogs", "catalog_items", "expressions", "aggregates", "asset_tags", "tags")
BASE_ENV = {
    "SOURCES__SYNERISE__PROFILES_PAGE_SIZE": "25",
    "SOURCES__SYNERISE__CATALOG_PAGE_SIZE": "10",
    "SOURCES__SYNERISE__CRM_PAGE_SIZE": "10",
    "SOURCES__SYNERISE__ANALYTICS_PAGE_SIZE": "10",
    "SOURCES__SYNERISE__EVENTS_WORKERS": "2",
    "SOURCES__SYNERISE__MAX_RETRY_WAIT": "30",
}


from tests.stateful import log_run as _log  # noqa: E402 - one JSON line per run of a long profile


class SyneriseMachine(RuleBasedStateMachine):
    """One emulated workspace, one pipeline directory and DuckDB file per example."""

    def __init__(self) -> None:
        super().__init__()
        import emulators
        from emulators.common.control import ControlClient

        self.tmp = Path(tempfile.mkdtemp(prefix="cdp-synerise-stateful-"))
        self.server = emulators.start("synerise", scale=SCALE, seed=31)
        self.ctl = ControlClient(self.server.root_url, self.server.ca_file)
        self.segment = self.ctl.export("segmentations")[1]["uuid"]
        self.env = support.cli_env("synerise", self.server, self.tmp, **BASE_ENV,
                                   SOURCES__SYNERISE__SEGMENTATION_UUIDS=json.dumps([self.segment]))
        self.deleted: set[int] = set()  # deleted outright: no trace in the API (documented limit)
        self.required: dict[str, dict[str, Any]] = {}  # events a run's window held when it started
        self.window: Any = None
        self.changed: set[int] = set()
        self.completed = 0
        _log(kind="example")

    def teardown(self) -> None:
        self.ctl.close()
        self.server.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the workspace changes --------------------------------------------------------------------

    @rule(count=st.integers(1, 20))
    def modify_profiles(self, count: int) -> None:
        self.ctl.mutate({"op": "modify_profiles", "count": count})

    @rule(count=st.integers(1, 10))
    def add_profiles(self, count: int) -> None:
        self.ctl.mutate({"op": "add_profiles", "count": count})

    @rule()
    def merge_profiles(self) -> None:
        self.ctl.mutate({"op": "merge_profiles", "count": 1})

    @rule()
    def delete_profile(self) -> None:
        self.deleted.update(self.ctl.mutate({"op": "delete_profiles", "count": 1})["client_ids"])

    @rule(op=st.sampled_from(["add_items", "modify_items", "delete_items"]), count=st.integers(1, 4))
    def change_items(self, op: str, count: int) -> None:
        self.ctl.mutate({"op": op, "count": count})

    @rule(add=st.integers(0, 3), remove=st.integers(0, 3))
    def churn(self, add: int, remove: int) -> None:
        self.ctl.mutate({"op": "churn_segmentation", "uuid": self.segment, "add": add, "remove": remove})

    @rule(count=st.integers(1, 40), spread=st.integers(0, 60_000))
    def new_events(self, count: int, spread: int) -> None:
        self.ctl.mutate({"op": "add_events", "count": count, "ago_ms": 0, "spread_ms": spread})

    @rule(count=st.integers(1, 5), age=st.integers(1_000, 590_000))
    def late_events(self, count: int, age: int) -> None:
        """Events that arrive now, time-stamped up to 590 s ago (inside lookback + lag: README)."""
        self.ctl.mutate({"op": "add_events", "count": count, "ago_ms": age})

    @rule(seconds=st.integers(1, 1800))
    def time_passes(self, seconds: int) -> None:
        self.ctl.mutate({"op": "advance_clock", "seconds": seconds})

    # -- bad days ---------------------------------------------------------------------------------

    @rule(seed=st.integers(0, 10_000), odds=st.sampled_from([0.03, 0.08]))
    def hostile(self, seed: int, odds: float) -> None:
        self.ctl.configure(hostile=1, hostile_seed=seed, hostile_rate=0.03, hostile_odds=odds)

    @rule(path=st.sampled_from(["^/v4/clients\\?", "^/catalogs/bags/\\d+/items", "^/activities-api/activities",
                                "^/crm/v1/segmentations/"]), nth=st.integers(0, 3))
    def fail_a_request(self, path: str, nth: int) -> None:
        """The next run meets a 400 (never retried) on its ``nth`` request to ``path``."""
        self.ctl.clear_faults()
        body = {"timestamp": "2026-01-01T00:00:00.000+00:00", "status": 400, "error": "Bad Request",
                "message": "scripted failure", "path": "/"}
        self.ctl.add_faults([{"path": path, "actions": [{"pass": True}] * nth + [{"status": 400, "json": body}]}])

    # -- runs -------------------------------------------------------------------------------------

    def _local_events_state(self) -> Any:
        path = self.tmp / "dlt_data" / "pipelines" / "synerise" / "state.json"
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        return state.get("sources", {}).get("synerise", {}).get("resources", {}).get("events", {}).get("last_run")

    def _run(self, kill_after: float | None = None) -> Any:
        before = self.ctl.export("events")
        log_before = len(self.ctl.export("hostile_log"))
        outcome = run_cli("run", "synerise", "--resources", RESOURCES, env=self.env, cwd=self.tmp,
                          kill_after=kill_after)
        window = self._local_events_state()
        if window is not None and window != self.window:
            # this run extracted its events: the events of its window that existed when it
            # started are in its package, loaded by it or by the run that finishes it
            self.window = window
            lo, hi = window["window_from"], window["window_to"]
            self.required.update({e["eventUUID"]: e for e in before if lo <= e["time"] <= hi})
        hostile = self.ctl.export("hostile_log")[log_before:]
        # profiles the emulator changed while this run read: another list (segmentation members)
        # may have read them before the change; exact by the next completed run
        self.changed = {h["client_id"] for h in hostile if h["kind"] == "profile_modified_mid_walk"}
        _log(kind="run", killed=outcome.killed, exit=outcome.returncode, seconds=round(outcome.seconds, 2),
             hostile=sorted({h["kind"] for h in hostile}),
             error=next((line for line in outcome.stderr.splitlines() if line.startswith("error:")), None))
        return outcome

    @rule(after=st.floats(0.5, 8.0))
    def run_killed(self, after: float) -> None:
        outcome = self._run(kill_after=after)
        self.ctl.clear_faults()
        if not outcome.killed:
            self._finished(outcome)

    @rule()
    def run(self) -> None:
        outcome = self._run()
        self.ctl.clear_faults()
        self._finished(outcome)

    @rule()
    def quiet_run(self) -> None:
        """A run on a calm day (hostile mode off for it). No precondition on earlier outcomes:
        whether a run completed depends on timing, and a precondition on it makes hypothesis's
        draws differ between replays (FlakyStrategyDefinition)."""
        self.ctl.configure(hostile=0)
        self.ctl.clear_faults()
        try:
            self._finished(self._run())
        finally:
            self.ctl.configure(hostile=1)

    def _finished(self, outcome: Any) -> None:
        text = outcome.stdout + outcome.stderr
        assert "Traceback" not in text, outcome
        if not outcome.ok:
            errors = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
            assert outcome.returncode == 1 and len(errors) == 1, outcome
            return
        self.completed += 1
        self.check()

    @initialize(seed=st.integers(0, 10_000))
    def first_run(self, seed: int) -> None:
        self.ctl.configure(hostile=1, hostile_seed=seed, hostile_rate=0.03, hostile_odds=0.05)
        self._finished(self._run())

    # -- the invariant ----------------------------------------------------------------------------

    def check(self) -> None:
        hostile = self.ctl.configure()
        self.ctl.configure(hostile=0)  # the exports below must not add late events themselves
        try:
            self._check()
        finally:
            self.ctl.configure(hostile=hostile.get("hostile", 0))

    def _check(self) -> None:
        db = self.tmp / "synerise.duckdb"
        with duckdb.connect(str(db), read_only=True) as con:
            profiles = self.ctl.export("profiles")
            live = {p["clientId"] for p in profiles}
            extra = [r[0] for r in con.execute(f"select client_id from {DATASET}.profiles").fetchall()
                     if r[0] not in live]
            assert set(extra) <= self.deleted, f"profiles loaded that the workspace does not hold: {extra[:5]}"
            _equal_profiles(con, extra, profiles)
            for table in SNAPSHOTS:
                assert_table_equals(con, DATASET, table, self.ctl.export(table))
            members = [m for m in self.ctl.export("segmentation_members") if m["segmentation_uuid"] == self.segment]
            loaded_ids = {r[0] for r in con.execute(f"select id from {DATASET}.segmentation_members").fetchall()}
            assert {m["id"] for m in members} == loaded_ids, "segmentation_members: keys differ"
            _equal_except(con, "segmentation_members", "id", self.changed,
                          [m for m in members if m["id"] not in self.changed])
            # events: everything a window required, nothing the workspace does not hold, true values
            every = {e["eventUUID"]: e for e in self.ctl.export("events")}
            pk, build = TABLES["events"]
            columns = list(build(next(iter(every.values()))))
            loaded = loaded_rows(con, DATASET, "events", columns)
            keys = [r["event_uuid"] for r in loaded]
            assert len(keys) == len(set(keys)), "events: an event loaded twice"
            missing = set(self.required) - set(keys)
            assert not missing, f"events: {len(missing)} required events missing, e.g. {sorted(missing)[:3]}"
            for r in loaded:
                assert r["event_uuid"] in every, f"events: {r['event_uuid']} is not in the workspace"
                assert r == build(every[r["event_uuid"]]), f"events {r['event_uuid']}: values differ"


def _equal_except(con: duckdb.DuckDBPyConnection, table: str, key: str, skip: set[int],
                  export: list[dict[str, Any]]) -> None:
    where = f"{key} not in ({','.join(str(int(c)) for c in skip)})" if skip else "true"
    con.execute(f"create or replace temp table {table} as select * from {DATASET}.{table} where {where}")
    assert_table_equals(con, "temp", table, export)


def _equal_profiles(con: duckdb.DuckDBPyConnection, kept: list[int], profiles: list[dict[str, Any]]) -> None:
    """``profiles`` equals the workspace, leaving aside the deleted-outright rows (``kept``)."""
    where = f"client_id not in ({','.join(str(int(c)) for c in kept)})" if kept else "true"
    con.execute(f"create or replace temp table profiles as select * from {DATASET}.profiles where {where}")
    assert_table_equals(con, "temp", "profiles", profiles)


SyneriseMachine.TestCase.settings = profile(stateful_step_count=8)
test_synerise_stateful = SyneriseMachine.TestCase
