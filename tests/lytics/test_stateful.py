"""Model-based test of Lytics (issue 11): a hypothesis state machine interleaves account changes
(modified, new and late profiles, collect events, catalog changes), the emulator's hostile mode
(the wire's and Lytics' own bad days: short scans, profiles served twice in both orders, mid-scan
changes, late arrivals, clamped pages, 429s, empty and truncated answers), ``cdp-sync run``
subprocesses killed at a random point, and completed runs.

Invariant after every run that exits 0: every table loaded equals the emulator's truth on
primary keys and values (the newest version), except the profiles the emulator itself changed
*while* that run was scanning without serving the new version for sure (a scan may serve them as
they were); those must be exact after the next completed run. A profile served twice in one
scan (old and new copy, in either order) is not excused: its newest copy must have landed. A run with ``on_short_scan=load_incomplete`` may exit 0 with a short read
only if the resource state holds the ``incomplete`` mark (what ``cdp-sync state`` prints); the rows it missed must be there
after the next complete run. A run that fails says so on one line, without a traceback.

Profiles: ``CDP_STATEFUL=ci`` (default; a few short programs) and ``CDP_STATEFUL=long`` (see
tests/stateful.py)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from sources.lytics import user_table
from tests import support
from tests.stateful import profile, run_cli

from .test_source import CATALOG
from .truth import expected_rows, loaded_rows, schema_kinds

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

SCALE = 300
DATASET = "lytics_data"
BASE_ENV = {
    # pages of 40 rows: every scan has several pages (a profile already served can be served
    # again); a full read is split into 4 bucket scans, a read of up to 160 rows is not
    "SOURCES__LYTICS__SCAN_LIMIT": "40",
    "SOURCES__LYTICS__SCAN_WORKERS": "2",
    "SOURCES__LYTICS__SCAN_SPLITS": "4",
    "SOURCES__LYTICS__SPLIT_MIN_PAGES": "4",
    "SOURCES__LYTICS__MAX_RETRY_WAIT": "20",
    "SOURCES__LYTICS__MAX_THROTTLE_WAIT": "60",
    # fewer typed columns than scalar fields, so fields added to the schema go past the cap
    "SOURCES__LYTICS__MAX_USER_COLUMNS": "8",
}


from tests.stateful import log_run as _log  # noqa: E402 - one JSON line per run of a long profile


class LyticsMachine(RuleBasedStateMachine):
    """One emulated account, one pipeline directory and DuckDB file per example."""

    def __init__(self) -> None:
        super().__init__()
        import emulators
        from emulators.common.control import ControlClient

        self.tmp = Path(tempfile.mkdtemp(prefix="cdp-lytics-stateful-"))
        self.server = emulators.start("lytics", scale=SCALE, seed=23)
        self.ctl = ControlClient(self.server.root_url, self.server.ca_file)
        self.env = support.cli_env("lytics", self.server, self.tmp, **BASE_ENV)
        self.completed = 0
        self.fields = 0
        self.typed: dict[str, str] = {}  # the users state's typed_columns after the last completed run
        _log(kind="example")
        self.incomplete = False  # the last completed run loaded a short read and marked it

    def teardown(self) -> None:
        self.ctl.close()
        self.server.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the account changes ----------------------------------------------------------------

    @rule(count=st.integers(1, 120))
    def modify_profiles(self, count: int) -> None:
        self.ctl.mutate({"op": "modify_users", "count": count})

    @rule(count=st.integers(1, 30))
    def add_profiles(self, count: int) -> None:
        self.ctl.mutate({"op": "add_users", "count": count})

    @rule(index=st.integers(0, SCALE - 1), visits=st.integers(0, 10_000))
    def collect_event(self, index: int, visits: int) -> None:
        uid = self.server.backend.account.uid_of(index)
        self.ctl.mutate({"op": "collect", "events": [{"_uid": uid, "visitct": str(visits), "plan": "gold"}]})

    @rule(count=st.integers(1, 5), age=st.integers(1, 600), offset=st.integers(0, 50))
    def late_profiles(self, count: int, age: int, offset: int) -> None:
        """Profiles that change with a ``_modified`` up to 600 s in the past (inside the
        source's 900 s lookback, its documented limit)."""
        try:
            self.ctl.mutate({"op": "late_users", "count": count, "age_seconds": age, "offset": offset})
        except Exception as exc:  # noqa: BLE001 - a chosen profile changed later than that instant
            assert "changed after" in str(exc), exc

    @rule(position=st.integers(0, 12), count=st.integers(1, 40))
    def add_schema_field(self, position: int, count: int) -> None:
        """A new user field inserted anywhere in the schema order (class 6: a typed column must
        keep being filled whatever the schema order says later)."""
        self.fields += 1
        self.ctl.mutate({"op": "add_field", "name": f"f{self.fields:02d}_score", "type": "int",
                         "position": position, "count": count})

    @rule(which=st.sampled_from(["segment", "job", "content"]))
    def change_catalog(self, which: str) -> None:
        if which == "segment":
            self.ctl.mutate({"op": "update_segment", "slug": "high_intensity"})
        elif which == "job":
            self.ctl.mutate({"op": "update_job", "index": 0, "statuscode": "completed"})
        else:
            self.ctl.mutate({"op": "update_content", "count": 3})

    # -- bad days ---------------------------------------------------------------------------------

    @rule(seed=st.integers(0, 10_000), odds=st.sampled_from([1.0, 3.0]))
    def hostile(self, seed: int, odds: float) -> None:
        """Hostile mode is on throughout (a new seed and odds here); only a calm run is without."""
        self.ctl.configure(hostile=1, hostile_seed=seed, hostile_rate=0.05, hostile_odds=odds)

    # -- runs -------------------------------------------------------------------------------------

    def _run(self, kill_after: float | None = None, incomplete_option: bool = False) -> Any:
        env = dict(self.env)
        if incomplete_option:
            env["SOURCES__LYTICS__ON_SHORT_SCAN"] = "load_incomplete"
        self.server.backend.changed_mid_scan.clear()
        self.server.backend.served_twice.clear()
        events = dict(self.server.backend.hostile_events)
        self.ctl.clear_requests()
        outcome = run_cli("run", "lytics", "--dataset-name", DATASET, env=env, cwd=self.tmp, kill_after=kill_after)
        log = self.ctl.requests()
        _log(kind="run", killed=outcome.killed, exit=outcome.returncode, seconds=round(outcome.seconds, 2),
             incomplete_option=incomplete_option, changed=len(self.server.backend.changed_mid_scan),
             served_twice=len(self.server.backend.served_twice),
             requests=len(log), wire=dict(Counter(e["fault"] for e in log if e["fault"])),
             hostile_on=self.server.harness.hostile,
             hostile={k: v - events.get(k, 0) for k, v in self.server.backend.hostile_events.items()
                      if v != events.get(k, 0)},
             error=next((line for line in outcome.stderr.splitlines() if line.startswith("error:")), None))
        return outcome

    @rule(after=st.floats(0.2, 4.0))
    def run_killed(self, after: float) -> None:
        outcome = self._run(kill_after=after)
        if not outcome.killed:
            self._finished(outcome)

    @rule(incomplete_option=st.booleans(), calm=st.booleans())
    def run(self, incomplete_option: bool, calm: bool) -> None:
        """A run to its end; ``calm``: hostile mode is off for it (everything a bad day left
        behind must be repaired by it). No rule depends on how a run ended: run outcomes vary
        with timing, and hypothesis must replay the same rules when it shrinks."""
        if not calm:
            self._finished(self._run(incomplete_option=incomplete_option))
            return
        self.ctl.configure(hostile=0)
        try:
            outcome = self._run(incomplete_option=incomplete_option)
            assert outcome.ok, f"a run on a calm day failed: {outcome}"
            self._finished(outcome)
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
        pipeline = dlt.attach(pipeline_name="lytics", pipelines_dir=str(self.tmp / "dlt_data" / "pipelines"))
        resources = pipeline.state.get("sources", {}).get("lytics", {}).get("resources", {})
        marks = {name: st["incomplete"] for name, st in resources.items() if st.get("incomplete")}
        typed = (resources.get("users") or {}).get("typed_columns") or {}
        assert all(self.typed.get(c, k) == k for c, k in typed.items()) and set(self.typed) <= set(typed), \
            "the typed users columns only grow"
        self.typed = dict(typed)
        self.incomplete = bool(marks)
        self.check(changed=set(self.server.backend.changed_mid_scan), state=json.dumps(marks))

    @initialize(seed=st.integers(0, 10_000))
    def first_run(self, seed: int) -> None:
        self.ctl.configure(hostile=1, hostile_seed=seed, hostile_rate=0.05, hostile_odds=3.0)
        self._finished(self._run())

    # -- the invariant ----------------------------------------------------------------------------

    def check(self, changed: set[str], state: str) -> None:
        """The destination equals the emulator, but for profiles changed during this run (a scan
        may have served them as they were) and, when this run marked a short read incomplete,
        rows it did not read. What an earlier run was excused for must be exact now unless it
        changed again during this run."""
        db = self.tmp / "lytics.duckdb"
        with duckdb.connect(str(db), read_only=True) as con:
            schema_rows = self.ctl.export("schema_fields")
            table, _ = user_table({"columns": [r for r in schema_rows if r["table"] == "user"]}, "_uid", [], 0,
                                  typed_before=self.typed)
            columns, types = table.columns, schema_kinds(schema_rows)
            want = expected_rows(columns, ("_uid",), self.ctl.export("users"), types)
            got, count = loaded_rows(con, DATASET, "users", columns, ("_uid",))
            assert count == len(got), f"users: {count} rows for {len(got)} keys"
            wrong = {k[0] for k in want if got.get(k) != want[k]}
            unexpected = {k[0] for k in got if k not in want}
            assert not unexpected, unexpected
            late = wrong - changed  # what an earlier run was excused for must be exact by now
            late_info = ""
            if late:
                k = (sorted(late)[0],)
                names = [*columns, "attributes"]
                diff = [(c, w, g) for c, w, g in zip(names, want[k], got.get(k) or (None,) * len(names), strict=True)
                        if w != g]
                late_info = f"first: {k[0]} {diff[:4]}"
            if not self.incomplete:
                assert not late, (f"{len(late)} profiles differ after a completed run ({late_info}); "
                                  f"{len(wrong)} differ in all, {len(changed)} changed during the run\n{state}")
            for table in CATALOG:
                want_t = expected_rows(table.columns, table.primary_key, self.ctl.export(table.name))
                got_t, n = loaded_rows(con, DATASET, table.name, table.columns, table.primary_key)
                assert n == len(got_t), f"{table.name}: duplicate keys"
                if table.name == "content_documents" and self.incomplete:
                    continue
                assert got_t == want_t, f"{table.name} differs from the emulator"
            dup = con.execute(f"select count(*) - count(distinct (id, extracted_at)) from {DATASET}.segment_sizes")
            assert dup.fetchone()[0] == 0, "segment_sizes holds a snapshot twice"

LyticsMachine.TestCase.settings = profile()
test_lytics_stateful = LyticsMachine.TestCase
