"""The PostHog source on PostHog's bad days (issue 11): each defect class that can occur in this
source has a regression test here that fails without its fix. Everything runs against the
emulator over HTTPS on loopback; faults are the harness's scripted rules or the backend's
hostile mode restricted to one kind."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sources.common.errors import MalformedResponse
from sources.posthog import settings as S
from sources.posthog.client import IncompleteRead
from tests import support

from .helpers import connect, root, run, source
from .truth import assert_matches_emulator, expected_rows, loaded_rows

SCALE = 700


@pytest.fixture
def emu(start_emulator: Any) -> Any:
    return start_emulator("posthog", scale=SCALE, seed=23)


@pytest.fixture
def ctl(emu: Any, control_for: Any) -> Any:
    return control_for(emu)


def _persons_after_deletions(con: Any, ctl: Any) -> None:
    """Every live person loaded exactly; extra rows only for persons PostHog deleted (a deletion
    needs --full-refresh, documented)."""
    deleted = {d["uuid"] for d in ctl.export("deleted_persons")}
    expected = expected_rows(S.PERSONS, ctl.export("persons"))
    loaded, count = loaded_rows(con, "data", S.PERSONS)
    assert count == len(loaded), "a person loaded twice"
    missing = set(expected) - set(loaded)
    assert not missing, f"{len(missing)} live persons never read, e.g. {sorted(missing)[:2]}"
    assert {k[0] for k in set(loaded) - set(expected)} <= deleted
    assert all(loaded[k] == expected[k] for k in expected)


# -- class 1: a 200 that is not data never ends a walk ------------------------------------------


BAD_BODIES = [
    {"status": 200, "json": {}},
    {"status": 200, "body": ""},
    {"status": 200, "body": "<!doctype html><html><body>maintenance</body></html>"},
    {"status": 200, "json": None},
]


def test_a_query_answer_that_is_not_data_is_retried_and_the_load_is_exact(emu, ctl, make_pipeline, tmp_path):
    ctl.add_faults([{"path": "/query/$", "method": "POST",
                     "actions": [{"pass": True}] * 4 + BAD_BODIES[:2] + [{"pass": True}] * 3 + BAD_BODIES[2:]},
                    {"path": "/persons/", "actions": [{"pass": True}, {"status": 200, "json": {"results": []}},
                                                      {"status": 200, "json": {"next": None}}]}])
    run(make_pipeline(), source(emu, "events", "persons", events_page_size=300, persons_page_size=100))
    assert not [r for r in ctl.faults() if r["used"] < len(r["actions"])], "every bad answer was served"
    with connect(tmp_path) as con:
        assert_matches_emulator(con, "data", ctl, "events", "persons")


def test_a_body_that_stays_wrong_fails_naming_the_request_and_the_body(emu, ctl, make_pipeline):
    ctl.add_faults([{"path": "/query/$", "method": "POST", "repeat": True,
                     "actions": [{"status": 200, "json": {"columns": ["uuid"], "error": None}}]}])
    with pytest.raises(PipelineStepFailed) as failed:
        run(make_pipeline(), source(emu, "events", max_attempts=2, max_retry_wait=2))
    err = root(failed.value)
    assert isinstance(err, MalformedResponse)
    text = str(err)
    assert "/query/" in text and "POST" in text and '"columns"' in text, text
    assert "NoneType" not in text and "dict" not in text
    assert "events" not in resource_state_or_empty(failed.value)


def resource_state_or_empty(exc: PipelineStepFailed) -> dict:
    return exc.pipeline.state.get("sources", {}).get("posthog", {}).get("resources", {})


# -- class 3: a read short of PostHog's own count is not complete ------------------------------


def test_a_window_cut_short_fails_the_run_and_commits_nothing(emu, ctl, make_pipeline, tmp_path):
    # PostHog's execution budget runs out: a page shorter than its LIMIT, which is also how the
    # end of the data looks; only the count of the range tells them apart
    ctl.configure(hostile=1, hostile_seed=5, hostile_rate=0, hostile_vendor_rate=0.5, hostile_kinds=["short_page"])
    pipeline = make_pipeline()
    with pytest.raises(PipelineStepFailed) as failed:
        run(pipeline, source(emu, "events", events_page_size=50))
    err = root(failed.value)
    assert isinstance(err, IncompleteRead) and "PostHog counted" in str(err), err
    assert "events" not in resource_state_or_empty(failed.value)
    assert [h for h in ctl.export("hostile") if h["kind"] == "short_page"]
    ctl.configure(hostile=0)
    run(pipeline, source(emu, "events", events_page_size=50))
    with connect(tmp_path) as con:
        assert_matches_emulator(con, "data", ctl, "events")


def test_a_persons_walk_that_ends_short_of_its_count_fails(emu, ctl, make_pipeline):
    import httpx

    pid = min(emu.backend.projects)
    with httpx.Client(verify=emu.ca_file, headers={"Authorization": f"Bearer {emu.api_key}"}) as http:
        first = http.get(f"{emu.base_url}/api/projects/{pid}/persons/", params={"limit": 100}).json()["results"]
    # the second page starts on the first page's last person (the walk's overlap), then stops:
    # a well-formed end of the list, 600 persons early
    ctl.add_faults([{"path": f"/projects/{pid}/persons/.*offset=99", "actions": [
        {"status": 200, "json": {"results": [first[-1]], "next": None, "previous": None}}]}])
    with pytest.raises(PipelineStepFailed) as failed:
        run(make_pipeline(), source(emu, "persons", persons_page_size=100, project_ids=[pid]))
    err = root(failed.value)
    assert isinstance(err, IncompleteRead) and "persons" in str(err) and "counts" in str(err), err


# -- class 9: an offset walk over a list that changes --------------------------------------------


def test_persons_deleted_during_the_walk_shift_no_live_person_out(emu, ctl, make_pipeline, tmp_path):
    ctl.configure(hostile=1, hostile_seed=3, hostile_rate=0, hostile_vendor_rate=0.5, hostile_kinds=["persons_shift"])
    run(make_pipeline(), source(emu, "persons", persons_page_size=40))
    shifts = [h for h in ctl.export("hostile") if h["kind"] == "persons_shift"]
    assert len(shifts) >= 5, "persons were deleted on earlier pages while the walk ran"
    with connect(tmp_path) as con:
        _persons_after_deletions(con, ctl)


# -- class 10: each event uuid once per run --------------------------------------------------------


def test_an_event_stored_twice_with_different_timestamps_loads_once(emu, ctl, make_pipeline, tmp_path):
    pid = min(emu.backend.projects)
    copies = ctl.mutate({"op": "duplicate_events", "count": 40, "project_id": pid, "shift_seconds": 7200})
    events = ctl.export("events")
    by_uuid = Counter(e["uuid"] for e in events)
    assert sum(1 for u in copies["uuids"] if by_uuid[u] == 2) == 40
    counts = run(make_pipeline(), source(emu, "events", events_page_size=500))
    assert counts["events"] == len(by_uuid)
    with connect(tmp_path) as con:
        n, distinct = con.execute("select count(*), count(distinct uuid) from data.events").fetchone()
    assert n == distinct == len(by_uuid)


# -- class 8: throttling is weather, a refused key ends the run at once ---------------------------


def test_a_401_while_other_windows_back_off_ends_the_cli_at_once_with_one_line(emu, ctl, tmp_path):
    refused = {"type": "authentication_error", "code": "authentication_failed",
               "detail": "Personal API key found in request Authorization header is invalid.", "attr": None}
    ctl.add_faults([
        # every window of events meets a failing query and backs off (1, 2, 4, 8, 16, 30 s ...)
        {"path": "/query/$", "method": "POST", "actions": [{"pass": True}] * 3 + [{"status": 502, "body": "x"}] * 200},
        # meanwhile the key is revoked: the persons walk meets a 401
        {"path": "/persons/", "actions": [{"pass": True}] * 2 + [{"status": 401, "json": refused}] * 50},
    ])
    env = support.cli_env("posthog", emu, tmp_path, SOURCES__POSTHOG__PERSONS_PAGE_SIZE="50",
                          SOURCES__POSTHOG__MAX_ATTEMPTS="8", SOURCES__POSTHOG__MAX_RETRY_WAIT="300")
    started = time.monotonic()
    result = support.cdp_sync("run", "posthog", "--resources", "events,persons", env=env, cwd=tmp_path, timeout=240)
    took = time.monotonic() - started
    assert result.returncode == 1, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "401" in errors[0] and "posthog" in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    # the other windows' backoffs (up to a minute and a half each) end with the 401; before, the
    # process kept retrying them after the error, then waited for its threads before exiting
    assert took < 30, f"cdp-sync took {took:.0f} s to end after the key was refused"


def test_posthogs_429_detail_is_waited_out_beyond_the_attempt_count(emu, ctl, make_pipeline, tmp_path):
    throttled = {"type": "throttled_error", "code": "throttled",
                 "detail": "Request was throttled. Expected available in 1 second.", "attr": None}
    ctl.add_faults([{"path": "/query/$", "method": "POST",
                     "actions": [{"pass": True}] + [{"status": 429, "json": throttled}] * 9}])
    run(make_pipeline(), source(emu, "events", max_attempts=3))
    statuses = Counter(e["status"] for e in ctl.requests())
    assert statuses[429] == 9
    with connect(tmp_path) as con:
        assert_matches_emulator(con, "data", ctl, "events")
