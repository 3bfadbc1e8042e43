"""PostHog ``sessions`` against the emulator over HTTPS on loopback: an exact load, a second run
that changes nothing, sessions that grow (or start earlier) between runs landing with their final
values, the lookback's reach and its documented limit, a short read failing, a key without
``query:read`` skipping the resource with one warning."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from emulators.posthog.backend import ALL_SCOPES, Key
from sources.posthog import posthog_source
from sources.posthog.client import IncompleteRead
from sources.posthog.sessions import SESSIONS

from .helpers import connect, queries, resource_state, root, run, source
from .truth import assert_matches_emulator, assert_table_equals

SCALE = 300


@pytest.fixture
def emu(start_emulator: Any) -> Any:
    return start_emulator("posthog", scale=SCALE, seed=11)


@pytest.fixture
def ctl(emu: Any, control_for: Any) -> Any:
    return control_for(emu)


def assert_sessions_equal(con: Any, ctl: Any) -> None:
    assert_table_equals(con, "data", SESSIONS, ctl.export("sessions"))


def loaded(tmp_path: Any, session_id: str) -> dict[str, Any]:
    with connect(tmp_path) as con:
        cols = list(SESSIONS.columns)
        rows = con.execute(f"select {', '.join(cols)} from data.sessions where session_id = ?", [session_id]).fetchall()
    assert len(rows) == 1, rows
    return dict(zip(cols, rows[0], strict=True))


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_sessions_load_exactly_and_a_second_run_changes_nothing(emu, ctl, make_pipeline, tmp_path):
    truth = ctl.export("sessions")
    starts = Counter((s["project_id"], s["start_timestamp"]) for s in truth)
    assert starts.most_common(1)[0][1] > 60, "sessions sharing one start straddle pages of 60"
    pipeline = make_pipeline()
    counts = run(pipeline, source(emu, "sessions", events_page_size=60))
    assert counts["sessions"] == len(truth)
    with connect(tmp_path) as con:
        assert_sessions_equal(con, ctl)
    qs = queries(ctl.requests())
    assert {q["json"]["name"] for q in qs} >= {"cdp_sync_sessions", "cdp_sync_session_count"}
    assert all(q["json"]["refresh"] == "force_blocking" for q in qs)
    assert not any("OFFSET" in q["json"]["query"]["query"].upper() for q in qs)
    per_project = resource_state(pipeline, "sessions")["projects"]
    assert set(per_project) == {str(p) for p in emu.backend.projects}
    assert {st["last_run"]["mode"] for st in per_project.values()} == {"backfill"}
    assert all(n <= 3 for n in emu.backend.max_in_flight.values())

    ctl.clear_requests()
    counts = run(pipeline, source(emu, "sessions", events_page_size=60))
    assert counts.get("sessions", 0) == 0, counts
    per = Counter((q["project"], q["json"]["name"]) for q in queries(ctl.requests()))
    for pid in emu.backend.projects:
        # the lookback (25 h) re-reads two or three day windows, whose sessions are all unchanged
        assert per[(pid, "cdp_sync_session_count")] == 1, per
        assert per[(pid, "cdp_sync_event_bounds")] == 0, per
    assert {st["last_run"]["mode"] for st in resource_state(pipeline, "sessions")["projects"].values()} \
        == {"incremental"}
    with connect(tmp_path) as con:
        assert_sessions_equal(con, ctl)


def test_a_session_that_grows_between_runs_ends_with_its_final_values(emu, ctl, make_pipeline, tmp_path):
    pid = min(emu.backend.projects)
    # open sessions: one started 10 min ago, one 20 h ago (a long session, still inside the lookback)
    recent = ctl.mutate({"op": "add_session", "project_id": pid, "count": 2, "late_seconds": 600})
    long = ctl.mutate({"op": "add_session", "project_id": pid, "count": 1, "late_seconds": 20 * 3600})
    pipeline = make_pipeline()
    run(pipeline, source(emu, "sessions", "events"))
    before = loaded(tmp_path, recent["session_id"])
    assert before["pageview_count"] == 2 and before["is_bounce"] is False

    # the recent session grows (3 more pageviews, then an autocapture now), the long one gets an
    # event 25 minutes after its end, and the recent one a late event before its start
    ctl.mutate({"op": "grow_session", "project_id": pid, "session_id": recent["session_id"], "count": 3,
                "late_seconds": 120, "spacing_seconds": 30})
    ctl.mutate({"op": "grow_session", "project_id": pid, "session_id": recent["session_id"], "count": 1,
                "event": "$autocapture", "url": "https://shop.example.com/checkout"})
    ctl.mutate({"op": "grow_session", "project_id": pid, "session_id": long["session_id"], "count": 1,
                "late_seconds": 20 * 3600 - 25 * 60})
    early = ctl.mutate({"op": "grow_session", "project_id": pid, "session_id": recent["session_id"], "count": 1,
                        "late_seconds": 600 + 60 + 20 * 60, "url": "https://shop.example.com/landing",
                        "utm_source": "newsletter", "utm_medium": "email"})
    counts = run(pipeline, source(emu, "sessions", "events"))
    assert counts["sessions"] == 2, counts  # exactly the two sessions that changed
    after = loaded(tmp_path, recent["session_id"])
    final = next(s for s in ctl.export("sessions") if s["session_id"] == recent["session_id"])
    assert after["pageview_count"] == 6 and after["autocapture_count"] == 1 == final["autocapture_count"]
    assert after["start_timestamp"] == at(early["timestamps"][0]) < before["start_timestamp"]
    assert after["end_timestamp"] > before["end_timestamp"]
    assert after["max_inserted_at"] >= before["max_inserted_at"]
    assert after["end_pathname"] == "/checkout" and after["entry_pathname"] == "/landing"
    assert after["channel_type"] == final["channel_type"] == "Email"
    grown = loaded(tmp_path, long["session_id"])
    assert 25 * 60 <= grown["session_duration"] < 26 * 60  # read again: it started 20 h ago
    with connect(tmp_path) as con:
        assert_sessions_equal(con, ctl)
        # (``events`` does not hold the long session's new event: 20 h late is beyond its 1 h lookback)
        n, distinct = con.execute("select count(*), count(distinct (project_id, session_id)) from data.sessions"
                                  ).fetchone()
    assert n == distinct
    # nothing changed since: the next run loads nothing
    assert run(pipeline, source(emu, "sessions")).get("sessions", 0) == 0


def test_a_session_changed_beyond_the_lookback_is_the_known_limit(emu, ctl, make_pipeline, tmp_path):
    pid = min(emu.backend.projects)
    old = ctl.mutate({"op": "add_session", "project_id": pid, "count": 1, "late_seconds": 27 * 3600})
    pipeline = make_pipeline()
    run(pipeline, source(emu, "sessions"))
    # a late event 27 h after the session began (ingested now): beyond the 25 h lookback
    ctl.mutate({"op": "grow_session", "project_id": pid, "session_id": old["session_id"], "count": 1,
                "late_seconds": 27 * 3600 - 10 * 60})
    assert run(pipeline, source(emu, "sessions")).get("sessions", 0) == 0
    assert loaded(tmp_path, old["session_id"])["session_duration"] == 0, "not seen: the documented limit"
    # a wider lookback reaches it
    assert run(pipeline, source(emu, "sessions", sessions_lookback_seconds=30 * 3600))["sessions"] >= 1
    assert 600 <= loaded(tmp_path, old["session_id"])["session_duration"] < 660
    with connect(tmp_path) as con:
        assert_sessions_equal(con, ctl)


def test_a_short_read_fails_and_commits_nothing_then_the_rerun_is_exact(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    ctl.configure(hostile=1, hostile_seed=3, hostile_rate=0, hostile_vendor_rate=1.0, hostile_kinds=["short_page"])
    with pytest.raises(PipelineStepFailed) as failed:
        run(pipeline, source(emu, "sessions", events_page_size=50))
    assert isinstance(root(failed.value), IncompleteRead), root(failed.value)
    assert "sessions" in str(root(failed.value))
    assert not (pipeline.state.get("sources", {}).get("posthog", {}).get("resources", {}).get("sessions") or {}) \
        .get("projects", {}).get(str(min(emu.backend.projects)), {}).get("cursor")
    assert [h for h in ctl.export("hostile") if h["kind"] == "short_page"]
    ctl.configure(hostile=0)
    pipeline.drop_pending_packages()
    run(pipeline, source(emu, "sessions", events_page_size=50))
    with connect(tmp_path) as con:
        assert_sessions_equal(con, ctl)


def test_a_key_without_query_read_skips_sessions_with_one_warning(emu, ctl, make_pipeline, tmp_path, caplog):
    token = "phx_" + "5e55" * 10
    emu.backend.keys[token] = Key(token, frozenset(ALL_SCOPES) - {"query:read"}, None, "no-query")
    pipeline = make_pipeline()
    with caplog.at_level(logging.WARNING, logger="cdp_sync.posthog"):
        counts = run(pipeline, posthog_source(api_key=token, base_url=emu.base_url)
                     .with_resources("sessions", "persons", "cohorts"))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "sessions" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "query:read" in warnings[0].getMessage()
    assert "sessions" not in counts and counts["persons"] > 0 and counts["cohorts"] > 0
    state = resource_state(pipeline, "sessions")
    assert state["skipped"] == {"missing_scope": "query:read"}
    assert not any(p.get("cursor") for p in state.get("projects", {}).values()), "no cursor moved"
    with connect(tmp_path) as con:
        assert_matches_emulator(con, "data", ctl, "persons", "cohorts")
    # asked for alone, the resource fails (a run that loads nothing must not pass quietly)
    with pytest.raises(PipelineStepFailed) as failed:
        run(make_pipeline("alone", db="alone.duckdb"),
            posthog_source(api_key=token, base_url=emu.base_url).with_resources("sessions"))
    assert "query:read" in str(root(failed.value).body_excerpt), root(failed.value)
    # with the scope back, the next run loads and forgets the skip
    emu.backend.keys[token] = Key(token, frozenset(ALL_SCOPES), None, "full-again")
    run(pipeline, posthog_source(api_key=token, base_url=emu.base_url).with_resources("sessions"))
    assert "skipped" not in resource_state(pipeline, "sessions")
    with connect(tmp_path) as con:
        assert_sessions_equal(con, ctl)
