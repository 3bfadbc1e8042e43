"""Lytics on the vendor's bad days (issue 11): one regression test per defect class that can occur
in this source, each against the emulator over HTTPS, each failing without its fix."""

from __future__ import annotations

import shutil
import time
from array import array
from pathlib import Path
from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed
from hypothesis import given, settings
from hypothesis import strategies as st

from sources.common.cursor import fingerprint
from sources.common.errors import AuthError, MalformedResponse
from sources.common.hints import DEDUPLICATED
from sources.lytics import UNFIT_SUFFIX, user_table
from sources.lytics import settings as S
from sources.lytics.tables import DISTINCT_PART_ROWS, distinct_hashes

from .test_source import CATALOG, assert_users_equal, connect, root, run, source
from .truth import assert_table_equals

SCALE = 600


@pytest.fixture
def emu(start_emulator: Any) -> Any:
    return start_emulator("lytics", scale=SCALE, seed=11)


@pytest.fixture
def ctl(emu: Any, control_for: Any) -> Any:
    return control_for(emu)


def users_state(pipeline: Any) -> dict[str, Any]:
    return pipeline.state.get("sources", {}).get("lytics", {}).get("resources", {}).get("users", {})


def unique_in_run(pipeline: Any) -> bool:
    """Whether the last load of users told the merge to skip de-duplicating staging."""
    return pipeline.default_schema.get_table("users").get(DEDUPLICATED)


def user_scans(ctl: Any) -> list[dict[str, Any]]:
    return [e for e in ctl.requests() if "/scan" in e["path"] and "FROM user" in (e["body"] or "")]


# -- class 1: a 200 that is not data never ends a scan ------------------------------------------


@pytest.mark.parametrize("body", [
    {"status": 200, "message": "success", "data": []},  # the envelope without _next/next/total
    {"status": 200, "message": "success"},  # no data at all
    {"data": None},
])
def test_a_page_without_the_scan_envelope_is_retried_not_the_end_of_the_scan(emu, ctl, make_pipeline, tmp_path,
                                                                             body):
    # the third page of the user scan answers 200 with a body that is not a scan page, once
    ctl.add_faults([{"path": "^/api/segment/scan", "method": "POST",
                     "actions": [{"pass": True}, {"pass": True}, {"status": 200, "json": body}]}])
    pipeline = make_pipeline()
    counts = run(pipeline, source(emu, "users", scan_workers=1))
    assert counts["users"] == SCALE
    assert [e["fault"] for e in user_scans(ctl)].count("status") == 1
    assert "short_scans" not in users_state(pipeline)["last_run"]
    with connect(tmp_path) as con:
        assert_users_equal(con, ctl)


def test_a_scan_page_that_stays_wrong_fails_naming_the_request_and_commits_nothing(emu, ctl, make_pipeline):
    ctl.add_faults([{"path": "^/api/segment/scan", "method": "POST", "repeat": True,
                     "actions": [{"status": 200, "json": {"status": 200, "message": "success", "data": []}}]}])
    pipeline = make_pipeline()
    with pytest.raises(PipelineStepFailed) as failed:
        run(pipeline, source(emu, "users", scan_workers=1, max_attempts=2, max_retry_wait=2))
    err = root(failed.value)
    assert isinstance(err, MalformedResponse)
    text = str(err)
    assert "POST" in text and "/api/segment/scan" in text and '"message":"success"' in text
    assert "NoneType" not in text and "dict" not in text
    assert users_state(pipeline) == {}


def test_a_catalog_list_answered_with_an_empty_object_is_retried(emu, ctl, make_pipeline, tmp_path):
    ctl.add_faults([{"path": "^/api/segment\\?", "actions": [{"status": 200, "json": {}}]}])
    pipeline = make_pipeline()
    run(pipeline, source(emu, "segments"))
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", "segments", S.SEGMENTS.columns, ("id",), ctl.export("segments"))


# -- class 2: a profile read twice in one load: the newest copy wins, and its fingerprint ---------


@pytest.mark.parametrize("stale", ["first", "last"])
def test_a_profile_served_twice_keeps_its_newest_copy_and_fingerprint(emu, ctl, make_pipeline, tmp_path, stale):
    pipeline = make_pipeline()
    run(pipeline, source(emu, "users", scan_workers=1))
    assert unique_in_run(pipeline), "a scan that reads every profile once needs no de-duplication"
    changed = set(ctl.mutate({"op": "modify_users", "count": 250})["uids"])
    # the incremental scan (three pages) serves three profiles twice: "first" = the stale copy
    # first, then the new one; "last" = the new copy first, the stale one later
    ctl.configure(repeat_rows={"page": 2, "count": 3, "stale": stale})
    ctl.clear_requests()
    run(pipeline, source(emu, "users", scan_workers=1))
    repeated = emu.backend.served_twice
    assert len(repeated) == 3
    truth = {u["_uid"]: u for u in ctl.export("users")}
    with connect(tmp_path) as con:
        assert_users_equal(con, ctl)
    seen = users_state(pipeline)["seen"]
    for uid in repeated:
        assert seen[uid] == fingerprint(truth[uid]), "the fingerprint kept must be the newest copy's"
    # a stale copy read first loads beside the new one: the merge must de-duplicate (newest wins);
    # a stale copy read after the new one is dropped by the source, and the run stays unique
    assert unique_in_run(pipeline) is (stale == "last")
    # nothing changed since: the next run loads nothing, and the destination still holds the truth
    ctl.configure(repeat_rows=None)
    assert run(pipeline, source(emu, "users", scan_workers=1)).get("users", 0) == 0
    with connect(tmp_path) as con:
        assert_users_equal(con, ctl)
    assert changed


def test_content_documents_merge_keeps_the_newest_copy():
    from sources.lytics import lytics_source

    src = lytics_source(api_key="k" * 20, base_url="https://127.0.0.1:1")
    for name, column in (("users", "_modified"), ("content_documents", "updated")):
        hints = src.resources[name].columns
        assert hints[column].get("dedup_sort") == "desc", name


# -- class 3: a scan short of its total is not complete ---------------------------------------------


def test_a_short_scan_fails_the_resource_and_commits_nothing(emu, ctl, make_pipeline, tmp_path):
    ctl.configure(short_scans={"page": 2, "drop": 7})
    pipeline = make_pipeline()
    with pytest.raises(PipelineStepFailed) as failed:
        run(pipeline, source(emu, "users", scan_workers=1))
    err = root(failed.value)
    assert isinstance(err, MalformedResponse) and "short of its total" in str(err)
    assert f"total {SCALE}, read {SCALE - 7}" in str(err)
    assert users_state(pipeline) == {}
    assert not (tmp_path / "test.duckdb").exists() or "users" not in _tables(tmp_path)
    # the vendor recovers: the next run is the full read again, complete
    ctl.configure(short_scans=None)
    assert run(pipeline, source(emu, "users", scan_workers=1))["users"] == SCALE
    with connect(tmp_path) as con:
        assert_users_equal(con, ctl)


def test_a_short_incremental_scan_fails_so_its_range_is_read_again(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    run(pipeline, source(emu, "users", scan_workers=1))
    cursor = users_state(pipeline)["cursor"]
    changed = set(ctl.mutate({"op": "modify_users", "count": 250})["uids"])
    ctl.configure(short_scans={"page": 1, "drop": 5})
    with pytest.raises(PipelineStepFailed):
        run(pipeline, source(emu, "users", scan_workers=1))
    assert users_state(pipeline)["cursor"] == cursor
    ctl.configure(short_scans=None)
    assert run(pipeline, source(emu, "users", scan_workers=1))["users"] == len(changed)
    with connect(tmp_path) as con:
        assert_users_equal(con, ctl)


def test_load_incomplete_loads_what_was_read_marks_it_and_the_next_run_repeats_the_full_read(
        emu, ctl, make_pipeline, tmp_path):
    ctl.configure(short_scans={"page": 3, "drop": 4})
    pipeline = make_pipeline()
    assert run(pipeline, source(emu, "users", scan_workers=1, on_short_scan="load_incomplete"))["users"] == SCALE - 4
    state = users_state(pipeline)
    assert "cursor" not in state, "a short first read sets no cursor"
    mark = state["incomplete"]
    assert mark["runs"] == 1 and mark["mode"] == "full scan" and f"total {SCALE}, read {SCALE - 4}" in mark["short_scans"][0]
    ctl.configure(short_scans=None)
    ctl.clear_requests()
    assert run(pipeline, source(emu, "users", scan_workers=1, on_short_scan="load_incomplete"))["users"] >= 4
    assert all('_modified >' not in (e["body"] or "") for e in user_scans(ctl)), "the full read is repeated"
    state = users_state(pipeline)
    assert "incomplete" not in state and state["cursor"]
    with connect(tmp_path) as con:
        assert_users_equal(con, ctl)


def test_bucket_scans_that_add_up_to_less_than_the_scans_total_are_a_short_read(emu, ctl, make_pipeline):
    # each bucket scan is complete against its own total; together they miss 5 users
    ctl.configure(unbucketed=5)
    pipeline = make_pipeline()
    with pytest.raises(PipelineStepFailed) as failed:
        run(pipeline, source(emu, "users", scan_workers=2, scan_splits=4, split_min_pages=2))
    assert f"total {SCALE}, its bucket scans' totals add up to {SCALE - 5}" in str(root(failed.value))
    assert users_state(pipeline) == {}


def test_a_short_content_scan_fails_too(emu, ctl, make_pipeline):
    ctl.configure(short_scans={"page": 1, "drop": 2})
    with pytest.raises(PipelineStepFailed) as failed:
        run(make_pipeline(), source(emu, "content_documents", scan_workers=1))
    assert "content_documents" in str(root(failed.value)) and "short of its total" in str(root(failed.value))


# -- class 6: the typed users columns only grow -------------------------------------------------------


def test_a_field_inserted_early_in_the_schema_never_empties_an_existing_typed_column(emu, ctl, make_pipeline,
                                                                                    tmp_path):
    pipeline = make_pipeline()
    run(pipeline, source(emu, "users", max_user_columns=3))
    typed = users_state(pipeline)["typed_columns"]
    assert list(typed) == ["first_name", "last_name", "city"]
    # a new field first in the schema order, and new values for 40 profiles (city included)
    uids = set(ctl.mutate({"op": "add_field", "name": "aaa_rank", "type": "int", "position": 0, "count": 40})["uids"])
    changed = ctl.mutate({"op": "collect", "events": [{"_uid": u, "city": "Gdansk"} for u in sorted(uids)[:10]]})
    assert len(changed["uids"]) == 10
    assert run(pipeline, source(emu, "users", max_user_columns=3))["users"] == 40
    assert users_state(pipeline)["typed_columns"] == typed, "the typed set only grows (here: the cap is reached)"
    with connect(tmp_path) as con:
        got = dict(con.execute("select _uid, city from data.users").fetchall())
        attrs = dict(con.execute("select _uid, attributes->>'aaa_rank' from data.users").fetchall())
    truth = {u["_uid"]: u for u in ctl.export("users")}
    assert all(got[u] == truth[u]["city"] for u in uids), "city stays filled for the profiles loaded after"
    assert sum(got[u] == "Gdansk" for u in uids) == 10
    assert all(attrs[u] is not None for u in uids), "a field past the cap lands in attributes"
    # the emulator's table with the columns the state kept
    schema = {"columns": [r for r in ctl.export("schema_fields") if r["table"] == "user"]}
    table, _ = user_table(schema, "_uid", None, 3, typed_before=typed)
    assert list(table.columns)[len(S.USER_CORE):] == list(typed)


# -- class 5: a value the typed column cannot hold never fails the run -----------------------------------


def test_a_value_that_does_not_fit_its_typed_column_lands_in_attributes_with_one_warning(
        emu, ctl, make_pipeline, tmp_path, caplog):
    pipeline = make_pipeline()
    run(pipeline, source(emu, "users"))
    first = ctl.export("users")[0]["_uid"]
    ctl.mutate({"op": "collect", "events": [{"_uid": first, "score_intensity": "n/a"}]})
    with caplog.at_level("WARNING", logger="cdp_sync.lytics"):
        assert run(pipeline, source(emu, "users"))["users"] == 1
    warnings = [r.getMessage() for r in caplog.records if "do not read as" in r.getMessage()]
    assert len(warnings) == 1 and "score_intensity" in warnings[0]
    with connect(tmp_path) as con:
        value, extra = con.execute("select score_intensity, attributes->>? from data.users where _uid = ?",
                                   [f"score_intensity{UNFIT_SUFFIX}", first]).fetchone()
    assert value is None and extra == "n/a"


# -- class 7: every table is idempotent when a load package is replayed ------------------------------------


def test_every_table_is_exact_when_an_interrupted_load_package_is_replayed(emu, ctl, make_pipeline, tmp_path):
    """A SIGKILL after the destination committed a package's jobs but before dlt recorded it:
    the next run loads the same package again. Replayed here exactly: the normalized package is
    kept, loaded, put back and loaded again."""
    pipeline = make_pipeline()
    for attempt in range(2):  # the first load, and an incremental one with changes
        if attempt:
            ctl.mutate({"op": "modify_users", "count": 30})
            ctl.mutate({"op": "update_segment", "slug": "high_intensity"})
        pipeline.extract(source(emu), loader_file_format="parquet")
        pipeline.normalize()
        storage = Path(pipeline.working_dir) / "load" / "normalized"
        (load_id,) = [p.name for p in storage.iterdir()]
        kept = tmp_path / f"kept-{load_id}"
        shutil.copytree(storage / load_id, kept)
        pipeline.load().raise_on_failed_jobs()
        shutil.rmtree(storage.parent / "loaded" / load_id, ignore_errors=True)
        shutil.copytree(kept, storage / load_id)  # the package as the killed run left it
        pipeline.load().raise_on_failed_jobs()
    with connect(tmp_path) as con:
        assert con.execute("select count(distinct load_id) from data._dlt_loads").fetchone()[0] == 2
        assert_users_equal(con, ctl)
        for table in CATALOG:
            assert_table_equals(con, "data", table.name, table.columns, table.primary_key, ctl.export(table.name))
        per_run = con.execute("select extracted_at, count(*), count(distinct id) from data.segment_sizes "
                              "group by extracted_at").fetchall()
        assert len(per_run) == 2 and all(n == d == len(ctl.export("segment_sizes")) for _, n, d in per_run), per_run


# -- class 4: how late a profile may be and still load (the README's number) ---------------------------------


def test_a_late_profile_loads_within_the_lookback_and_not_beyond(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    run(pipeline, source(emu, "users", lookback_seconds=900))
    ctl.mutate({"op": "modify_users", "count": 5})  # the cursor moves to now
    run(pipeline, source(emu, "users", lookback_seconds=900))
    # late by 800 s (inside the 900 s lookback behind the cursor): loaded by the next run
    inside = set(ctl.mutate({"op": "late_users", "count": 3, "age_seconds": 800})["uids"])
    assert run(pipeline, source(emu, "users", lookback_seconds=900))["users"] == 3
    # late by 1,000 s (beyond it): not read, as the README says (a full refresh or a backfill
    # of that window repairs it)
    beyond = set(ctl.mutate({"op": "late_users", "count": 3, "age_seconds": 1000, "offset": 7})["uids"])
    assert run(pipeline, source(emu, "users", lookback_seconds=900)).get("users", 0) == 0
    truth = {u["_uid"]: u for u in ctl.export("users")}
    with connect(tmp_path) as con:
        flags = dict(con.execute("select _uid, attributes->>'late' from data.users").fetchall())
    assert all(flags[u] == "true" for u in inside) and all(flags[u] is None for u in beyond)
    assert all(truth[u]["late"] for u in beyond)


# -- class 8: a 401 mid-run fails at once, with the split scan's workers stopped -------------------------------


def test_a_token_revoked_mid_scan_fails_at_once(emu, ctl, make_pipeline):
    ctl.configure(revoke_after=6)
    started = time.monotonic()
    with pytest.raises(PipelineStepFailed) as failed:
        run(make_pipeline(), source(emu, "users", scan_workers=4, scan_splits=10, split_min_pages=1))
    elapsed = time.monotonic() - started
    err = root(failed.value)
    assert isinstance(err, AuthError) and err.status == 401 and "Not authorized" in str(err)
    assert elapsed < 20, elapsed
    refused = [(e["query"], e["body"]) for e in ctl.requests() if e["status"] == 401]
    assert len(refused) == len(set(refused)), "a 401 is never retried"
    assert len(refused) <= 2 * 4, "the 4 workers stop after the first 401"


def test_a_401_cuts_short_another_bucket_scans_wait_on_a_429(emu, ctl, make_pipeline):
    # two bucket scans at once: the second is refused at once, the first is throttled a moment
    # later and told to wait 120 s; the run must end with the 401 instead of waiting that out
    ctl.add_faults([
        {"path": "splits=0%2C", "method": "POST", "repeat": True, "actions": [
            {"status": 429, "latency_ms": 400, "json": {"status": 429, "message": "Too Many Requests"},
             "headers": {"Retry-After": "120"}}]},
        {"path": "splits=25%2C", "method": "POST", "repeat": True, "actions": [
            {"status": 401, "json": {"data": None, "message": "Not authorized", "status": 401}}]},
    ])
    started = time.monotonic()
    with pytest.raises(PipelineStepFailed) as failed:
        run(make_pipeline(), source(emu, "users", scan_workers=2, scan_splits=4, split_min_pages=2))
    err = root(failed.value)
    assert isinstance(err, AuthError) and err.status == 401
    assert time.monotonic() - started < 20
    assert [e["status"] for e in ctl.requests() if "splits=0%2C" in e["query"]] == [429]


def _tables(tmp_path: Path) -> set[str]:
    with connect(tmp_path) as con:
        return {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}


# -- the distinct count behind "unique in run" and the short-scan check ------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(-3, 3), st.integers(-(2**63), 2**63 - 1),
                          st.sampled_from([-(2**63), 2**63 - 1, 0])), max_size=300))
def test_distinct_hashes_counts_what_a_set_counts(values):
    hashes = array("q", values)
    # one pass over the whole array, and the int64 range cut into parts of a few values each
    for part_rows in (DISTINCT_PART_ROWS, 1, 2, 5, 37):
        assert distinct_hashes(hashes, part_rows) == len(set(values)), part_rows
    assert hashes.tolist() == values, "the count leaves the hashes as they were"


def test_distinct_hashes_in_parts_counts_values_on_the_parts_edges_once():
    edges = [-(2**63) + (2**64 * j) // 4 for j in range(1, 4)]
    values = [v + d for v in edges for d in (-1, 0, 0, 1)] + [-(2**63), 2**63 - 1, -(2**63)]
    assert len(values) == 15  # part_rows=4: four parts, the edges above
    assert distinct_hashes(array("q", values), part_rows=4) == len(set(values)) == 11
