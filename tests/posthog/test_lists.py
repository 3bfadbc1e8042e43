"""PostHog's REST lists, declared (sources/posthog/lists.py), against the emulator over HTTPS:
exact loads of experiments, actions, dashboards, surveys and session recordings; a second run
that changes nothing; recordings paged across their has_next boundary and their next_cursor,
ties included; lists that change between pages; a key without a list's scope."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from emulators.posthog.backend import ALL_SCOPES, Key
from sources.common.arrow import TableSpec
from sources.common.errors import AuthError
from sources.common.rest_lists import RestList
from sources.posthog import lists as L
from sources.posthog import posthog_source
from sources.posthog import settings as S

from .helpers import connect, resource_state, root, run, source
from .truth import assert_table_equals, checksum, expected_rows, loaded_rows

SCALE = 400
NEW = ("experiments", "actions", "dashboards", "surveys", "session_recordings")
SPECS = {"experiments": S.EXPERIMENTS, "actions": S.ACTIONS, "dashboards": S.DASHBOARDS, "surveys": S.SURVEYS,
         "session_recordings": S.SESSION_RECORDINGS}


@pytest.fixture
def emu(start_emulator: Any) -> Any:
    return start_emulator("posthog", scale=SCALE, seed=31)


@pytest.fixture
def ctl(emu: Any, control_for: Any) -> Any:
    return control_for(emu)


def assert_exact(con: Any, ctl: Any, *tables: str) -> None:
    for name in tables or NEW:
        assert_table_equals(con, "data", SPECS[name], ctl.export(name))


def assert_live_exact(con: Any, ctl: Any, name: str) -> None:
    """Every live row loaded exactly; extra rows only for rows PostHog deleted (a deletion needs
    --full-refresh, documented)."""
    deleted = {d["id"] for d in ctl.export("deleted_objects") if d["table"] == name}
    spec = SPECS[name]
    expected = expected_rows(spec, ctl.export(name))
    loaded, count = loaded_rows(con, "data", spec)
    assert count == len(loaded), f"{name}: a row loaded twice"
    missing = set(expected) - set(loaded)
    assert not missing, f"{name}: {len(missing)} live rows never read, e.g. {sorted(missing)[:2]}"
    assert {str(k[0]) for k in set(loaded) - set(expected)} <= {str(d) for d in deleted}
    assert all(loaded[k] == expected[k] for k in expected), f"{name}: values differ"


def snapshot(tmp_path: Any, *tables: str) -> dict[str, str]:
    with connect(tmp_path) as con:
        return {t: checksum(loaded_rows(con, "data", SPECS[t])[0]) for t in tables}


def test_new_lists_load_exactly_and_a_second_run_changes_nothing(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    # small pages: every list crosses page boundaries, recordings their has_next boundary
    counts = run(pipeline, source(emu, *NEW, page_size=3))
    first = min(emu.backend.projects)
    for name in NEW:
        rows = ctl.export(name)
        assert counts[name] == len(rows) and sum(r["project_id"] == first for r in rows) > 3, (name, counts)
    with connect(tmp_path) as con:
        assert_exact(con, ctl)
        tiles = con.execute("select tiles from data.dashboards where tiles <> '[]'").fetchall()
    assert tiles and all('"result"' not in t[0] for t in tiles), "tile references, not computed results"
    log = ctl.requests()
    assert all(e["status"] == 200 for e in log)
    recs = [e for e in log if "/session_recordings/" in e["path"]]
    assert all("date_from=" in e["query"] and "date_to=" in e["query"] for e in recs), recs[:2]
    assert any("offset=" in e["query"] for e in recs), "recordings paged past their first page"
    assert set(resource_state(pipeline, "session_recordings")["projects"]) == {str(p) for p in emu.backend.projects}
    before = snapshot(tmp_path, *NEW)
    counts = run(pipeline, source(emu, *NEW, page_size=3))
    assert counts.get("session_recordings", 0) == 0, "recordings re-read unchanged inside the lookback are dropped"
    assert snapshot(tmp_path, *NEW) == before


def test_recordings_page_across_has_next_and_next_cursor_with_ties(emu, ctl, make_pipeline, tmp_path):
    pid = min(emu.backend.projects)
    # forty recordings starting at one instant: every page boundary falls inside the tie
    ctl.mutate({"op": "add_recordings", "count": 40, "project_id": pid, "late_seconds": 7200, "same_start": True})
    rows = ctl.export("session_recordings")
    ties = [r for r in rows if r["project_id"] == pid]
    assert max(sum(1 for r in ties if r["start_time"] == t["start_time"]) for t in ties) >= 40
    run(make_pipeline(), source(emu, "session_recordings", page_size=3))
    with connect(tmp_path) as con:
        assert_exact(con, ctl, "session_recordings")
    assert not any("after=" in e["query"] for e in ctl.requests())
    # the server's own cursor, when it gives one: followed as ``after``, no offsets
    ctl.configure(recordings_next_cursor=True)
    ctl.clear_requests()
    run(make_pipeline("cursor", db="cursor.duckdb"), source(emu, "session_recordings", page_size=3))
    recs = [e for e in ctl.requests() if "/session_recordings/" in e["path"]]
    assert any("after=" in e["query"] for e in recs) and not any("offset=" in e["query"] for e in recs)
    with connect(tmp_path, "cursor.duckdb") as con:
        assert_exact(con, ctl, "session_recordings")


def test_a_recording_that_grows_between_runs_ends_with_its_final_values(emu, ctl, make_pipeline, tmp_path):
    pid = min(emu.backend.projects)
    added = ctl.mutate({"op": "add_recordings", "count": 3, "project_id": pid, "late_seconds": 600, "ongoing": True})
    pipeline = make_pipeline()
    run(pipeline, source(emu, "session_recordings"))
    grown = ctl.mutate({"op": "grow_recordings", "project_id": pid, "ids": added["ids"], "seconds": 900,
                        "end": True})
    assert sorted(grown["ids"]) == sorted(added["ids"])
    counts = run(pipeline, source(emu, "session_recordings"))
    assert counts["session_recordings"] == 3, "only the recordings that changed load again"
    with connect(tmp_path) as con:
        assert_exact(con, ctl, "session_recordings")
        ongoing = con.execute("select count(*) from data.session_recordings where ongoing").fetchone()[0]
    assert ongoing == sum(1 for r in ctl.export("session_recordings") if r["ongoing"])


def test_lists_changing_between_pages_still_load_every_live_row(emu, ctl, make_pipeline, tmp_path, caplog):
    # an object on an earlier page is deleted before each later page (offsets shift), at a high rate
    ctl.configure(hostile=1, hostile_seed=4, hostile_rate=0, hostile_vendor_rate=0.4, hostile_kinds=["list_shift"])
    caplog.set_level(logging.WARNING)
    run(make_pipeline(), source(emu, *NEW, page_size=2))
    shifted = {h["table"] for h in ctl.export("hostile") if h["kind"] == "list_shift"}
    assert {"session_recordings", "actions"} <= shifted, shifted
    assert "shifted while it was read" in caplog.text
    with connect(tmp_path) as con:
        for name in NEW:
            assert_live_exact(con, ctl, name)


def test_the_harness_bad_days_on_the_lists_end_exact(emu, ctl, make_pipeline, tmp_path):
    ctl.configure(hostile=1, hostile_seed=9, hostile_rate=0.08, hostile_vendor_rate=0.1)
    run(make_pipeline(), source(emu, *NEW, page_size=10, max_attempts=10, max_retry_wait=120))
    assert ctl.export("hostile") or any(e["status"] != 200 for e in ctl.requests())
    ctl.configure(hostile=0)
    with connect(tmp_path) as con:
        for name in NEW:
            assert_live_exact(con, ctl, name)


def _key(emu: Any, *missing: str) -> str:
    value = "phx_lists_" + "_".join(m.split(":")[0] for m in missing)
    emu.backend.keys[value] = Key(value, frozenset(ALL_SCOPES) - set(missing), None, "test")
    return value


def test_a_missing_scope_skips_that_list_with_one_warning_and_loads_the_rest(emu, ctl, make_pipeline, tmp_path,
                                                                              caplog):
    key = _key(emu, "survey:read", "session_recording:read")
    caplog.set_level(logging.WARNING)
    pipeline = make_pipeline()
    info = pipeline.run(posthog_source(api_key=key, base_url=emu.base_url).with_resources(*NEW, "cohorts"),
                        loader_file_format="parquet")
    info.raise_on_failed_jobs()
    for scope, name in (("survey:read", "surveys"), ("session_recording:read", "session_recordings")):
        lines = [r.getMessage() for r in caplog.records if scope in r.getMessage()]
        assert len(lines) == 1 and name in lines[0] and "skipped" in lines[0], lines
        assert resource_state(pipeline, name)["skipped"] == {"missing_scope": scope}
    assert "cursor" not in str(resource_state(pipeline, "session_recordings").get("projects", {}))
    with connect(tmp_path) as con:
        assert_exact(con, ctl, "experiments", "actions", "dashboards")
        assert con.execute("select count(*) from data.cohorts").fetchone()[0] == len(ctl.export("cohorts"))
        tables = {r[0] for r in con.execute("select table_name from information_schema.tables "
                                            "where table_schema = 'data'").fetchall()}
        for name in ("surveys", "session_recordings"):
            assert name not in tables or not con.execute(f"select count(*) from data.{name}").fetchone()[0]
    # asked for alone, a list the key cannot read fails the run with PostHog's own message
    with pytest.raises(PipelineStepFailed) as failed:
        make_pipeline("alone", db="alone.duckdb").run(
            posthog_source(api_key=key, base_url=emu.base_url).with_resources("surveys"))
    err = root(failed.value)
    assert isinstance(err, AuthError) and "survey:read" in str(err) and "403" in str(err)


# -- the declaration ----------------------------------------------------------------------------------


def test_every_list_is_one_declared_row_and_becomes_its_resource(emu):
    src = source(emu)
    for spec in L.LISTS:
        resource = src.resources[spec.name]
        assert resource.write_disposition == "merge"
        assert resource.compute_table_schema()["columns"]["project_id"]["data_type"] == "bigint"
        hints = resource.compute_table_schema()["columns"]
        assert [c for c, h in hints.items() if h.get("primary_key")] == list(spec.primary_key), spec.name
    assert {s.name for s in L.LISTS} >= set(NEW) | {"cohorts", "feature_flags", "annotations", "insights",
                                                     "event_definitions", "property_definitions", "groups"}


def test_a_new_list_is_one_row(emu, ctl, make_pipeline, tmp_path, monkeypatch):
    import sources.posthog as P

    spec = TableSpec("flag_keys", {"id": "int", "project_id": "int", "key": "text"}, primary_key=("id",),
                     extras_column=None)
    row = RestList("flag_keys", "feature_flags/", spec, scope="feature_flag:read")
    monkeypatch.setattr(P, "LISTS", (*L.LISTS, row))
    run(make_pipeline(), source(emu, "flag_keys", page_size=4))
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", spec, [{k: f[k] for k in ("id", "project_id", "key")}
                                               for f in ctl.export("feature_flags")])
    with pytest.raises(ValueError, match="paginator"):
        dataclasses.replace(row, paginator="pages")
