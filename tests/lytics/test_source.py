"""The Lytics source against its emulator over HTTPS on loopback."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

import duckdb
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sources.common.errors import AuthError, CdpSyncError, ConfigurationError, ServerError
from sources.lytics import _seconds_before, lytics_source, to_canonical, user_table
from sources.lytics import settings as S

from .truth import assert_table_equals, schema_kinds

SCALE = 1500
INCREMENTAL = ("users", "content_documents", "segments", "segment_collections", "streams", "jobs")
CATALOG = (S.SEGMENTS, S.SEGMENT_COLLECTIONS, S.STREAMS, S.JOBS, S.SCHEMA_FIELDS, S.CONTENT_DOCUMENTS)


@pytest.fixture
def emu(start_emulator: Any) -> Any:
    return start_emulator("lytics", scale=SCALE, seed=7)


@pytest.fixture
def ctl(emu: Any, control_for: Any) -> Any:
    return control_for(emu)


def source(server: Any, *resources: str, **options: Any) -> Any:
    src = lytics_source(api_key=server.api_key, base_url=server.base_url, **options)
    return src.with_resources(*resources) if resources else src


def run(pipeline: Any, src: Any) -> dict[str, int]:
    info = pipeline.run(src, loader_file_format="parquet")
    info.raise_on_failed_jobs()
    return dict(pipeline.last_trace.last_normalize_info.row_counts)


def connect(tmp_path: Any, db: str = "test.duckdb") -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(tmp_path / db), read_only=True)


def users_columns(ctl: Any) -> tuple[dict[str, str], dict[str, str]]:
    schema_rows = ctl.export("schema_fields")
    schema = {"columns": [r for r in schema_rows if r["table"] == "user"]}
    table, _ = user_table(schema, "_uid", None, S.DEFAULT_MAX_USER_COLUMNS)
    return table.columns, schema_kinds(schema_rows)


def assert_users_equal(con: Any, ctl: Any, truth: list[dict[str, Any]] | None = None, dataset: str = "data") -> None:
    columns, types = users_columns(ctl)
    assert_table_equals(con, dataset, "users", columns, ("_uid",), truth if truth is not None else ctl.export("users"),
                        types)


def scans(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in log if "/scan" in e["path"]]


def params(entry: dict[str, Any]) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(entry["query"], keep_blank_values=True).items()}


def root(exc: BaseException) -> BaseException:
    seen, stack = set(), [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, CdpSyncError):
            return e
        stack += [getattr(e, "exception", None), e.__cause__, e.__context__]
    return exc


def test_first_run_equals_the_emulator_exactly(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    counts = run(pipeline, source(emu))
    log = ctl.requests()
    assert all(e["status"] == 200 for e in log), Counter(e["status"] for e in log)
    assert counts["users"] == SCALE
    # every scan page asks for the documented maximum, and the long user scan was split into
    # bucket scans that together name every bucket exactly once
    for e in scans(log):
        assert params(e)["limit"] == "100"
    split = [params(e)["splits"] for e in scans(log) if "splits" in params(e) and "FROM user" in (e["body"] or "")]
    buckets = [int(b) for s in split for b in s.split(",")]
    assert sorted(buckets) == list(range(100)), "the split scans must partition buckets 0..99"
    with connect(tmp_path) as con:
        assert_users_equal(con, ctl)
        for table in CATALOG:
            assert_table_equals(con, "data", table.name, table.columns, table.primary_key, ctl.export(table.name))
        sizes = ctl.export("segment_sizes")
        got = dict(con.execute("select id, size from data.segment_sizes").fetchall())
        assert got == {r["id"]: r["size"] for r in sizes}
        # numbers sent as strings are numbers where the schema says so, in columns and in attributes
        types = dict(con.execute("select column_name, data_type from information_schema.columns "
                                 "where table_schema = 'data' and table_name = 'users'").fetchall())
        assert types["score_intensity"] == "BIGINT" and types["visitct"] == "BIGINT" and types["ltv"] == "DOUBLE"
        assert types["_modified"] == "TIMESTAMP WITH TIME ZONE"
        hourly = json.loads(con.execute("select attributes from data.users limit 1").fetchone()[0])["hourly"]
        assert all(isinstance(v, int) for v in hourly.values())


def test_second_run_without_changes_loads_nothing_with_few_requests(emu, ctl, make_pipeline):
    pipeline = make_pipeline()
    run(pipeline, source(emu))
    ctl.clear_requests()
    counts = run(pipeline, source(emu, *INCREMENTAL))
    for name in INCREMENTAL:
        assert counts.get(name, 0) == 0, (name, counts)
    log = ctl.requests()
    user_scans = [e for e in scans(log) if "FROM user" in (e["body"] or "")]
    assert len(user_scans) == 1, "an unchanged account needs one scan page for users"
    assert '_modified > "' in user_scans[0]["body"]
    assert len(log) <= 12, [e["path"] for e in log]


def test_first_run_fingerprints_the_whole_lookback_window(emu, ctl, make_pipeline):
    # two changes a moment apart: the older one lies inside the newest one's lookback window, so
    # the first run (which skips fingerprints of rows further back) must still keep its rows
    older = set(ctl.mutate({"op": "modify_users", "count": 40, "offset": 0})["uids"])
    newer = set(ctl.mutate({"op": "modify_users", "count": 40, "offset": 1})["uids"])
    pipeline = make_pipeline()
    assert run(pipeline, source(emu, "users"))["users"] == SCALE
    seen = pipeline.state["sources"]["lytics"]["resources"]["users"]["seen"]
    assert older | newer <= set(seen) and len(seen) < SCALE
    assert run(pipeline, source(emu, "users")).get("users", 0) == 0, "the window re-read is unchanged"


def test_modified_profiles_tied_across_pages_are_picked_up_exactly(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    run(pipeline, source(emu, "users"))
    # 250 profiles change at one instant (a tie spanning three pages of 100), one profile changes
    # through the collect API and one new profile arrives
    changed = set(ctl.mutate({"op": "modify_users", "count": 250})["uids"])
    assert len(changed) == 250
    existing = ctl.export("users")[3]
    collected = ctl.mutate({"op": "collect", "events": [
        {"_uid": existing["_uid"], "plan": "gold", "visitct": "999"},
        {"email": "brand.new@example.com", "first_name": "Brand"},
    ]})["uids"]
    changed |= set(collected)
    ctl.clear_requests()
    counts = run(pipeline, source(emu, "users", scan_workers=1))
    assert counts["users"] == len(changed) == 252
    user_scans = scans(ctl.requests())
    assert len(user_scans) >= 3, "the tie must span several pages"
    assert all("_modified >" in (e["body"] or "") for e in user_scans)
    with connect(tmp_path) as con:
        last = con.execute("select max(_dlt_load_id) from data.users").fetchone()[0]
        loaded = {r[0] for r in con.execute("select _uid from data.users where _dlt_load_id = ?", [last]).fetchall()}
        assert loaded == changed
        assert_users_equal(con, ctl)
        assert con.execute("select count(*) from data.users").fetchone()[0] == SCALE + 1


def test_split_scan_equals_single_scan(emu, ctl, make_pipeline, tmp_path):
    single = make_pipeline("single", db="single.duckdb")
    split = make_pipeline("split", db="split.duckdb")
    run(single, source(emu, "users", "content_documents", scan_workers=1))
    assert not any("splits" in params(e) for e in scans(ctl.requests()))
    ctl.clear_requests()
    run(split, source(emu, "users", "content_documents", scan_workers=4, scan_splits=10))
    assert sum(1 for e in scans(ctl.requests()) if "splits" in params(e)) >= 10
    columns, _ = users_columns(ctl)
    with connect(tmp_path, "single.duckdb") as a, connect(tmp_path, "split.duckdb") as b:
        cols = ", ".join(f'"{c}"' for c in [*columns, "attributes"])
        one = a.execute(f"select {cols} from data.users order by _uid").fetchall()
        many = b.execute(f"select {cols} from data.users order by _uid").fetchall()
        assert len(one) == SCALE and one == many
        docs = "select id, url, updated, attributes from data.content_documents order by id"
        assert a.execute(docs).fetchall() == b.execute(docs).fetchall()
        assert_users_equal(b, ctl)


def test_next_only_responses_work(emu, ctl, make_pipeline, tmp_path):
    ctl.configure(next_key="next")
    pipeline = make_pipeline()
    counts = run(pipeline, source(emu, "users", scan_workers=1))
    assert counts["users"] == SCALE
    assert len(scans(ctl.requests())) == SCALE // 100
    with connect(tmp_path) as con:
        assert_users_equal(con, ctl)


def test_expired_scan_token_restarts_the_scan_without_duplicates(emu, ctl, make_pipeline, tmp_path):
    ctl.configure(expire_scans={"after_pages": 3, "times": 1})
    pipeline = make_pipeline()
    counts = run(pipeline, source(emu, "users", scan_workers=1))
    statuses = [e["status"] for e in scans(ctl.requests())]
    assert statuses.count(400) == 1, statuses
    state = pipeline.state["sources"]["lytics"]["resources"]["users"]
    assert state["last_run"]["restarts"] == 1
    assert counts["users"] >= SCALE  # the three pages read before the restart are read again ...
    with connect(tmp_path) as con:
        assert_users_equal(con, ctl)  # ... and merged: no duplicates in the destination


def test_429_without_retry_after_and_5xx_on_a_scan_page_are_retried(emu, ctl, make_pipeline, tmp_path):
    ctl.configure(throttle_every=9, scan_faults={"page": 4, "status": 503, "times": 1})
    pipeline = make_pipeline()
    run(pipeline, source(emu, "users", "segments", scan_workers=1, max_retry_wait=20))
    statuses = Counter(e["status"] for e in ctl.requests())
    assert statuses[429] >= 1 and statuses[503] == 1, statuses
    with connect(tmp_path) as con:
        assert_users_equal(con, ctl)
        assert_table_equals(con, "data", "segments", S.SEGMENTS.columns, ("id",), ctl.export("segments"))


def test_failure_mid_scan_keeps_state_then_rerun_is_exact(emu, ctl, make_pipeline, tmp_path):
    ctl.configure(scan_faults={"page": 6, "status": 500, "times": 3})
    pipeline = make_pipeline()
    with pytest.raises(PipelineStepFailed) as failed:
        run(pipeline, source(emu, "users", scan_workers=1, max_attempts=2, max_retry_wait=5))
    assert isinstance(root(failed.value), ServerError) and "500" in str(root(failed.value))
    assert "users" not in pipeline.state.get("sources", {}).get("lytics", {}).get("resources", {})
    ctl.configure(scan_faults=None)
    ctl.mutate({"op": "modify_users", "count": 40})
    run(pipeline, source(emu, "users"))
    with connect(tmp_path) as con:
        assert_users_equal(con, ctl)


def test_profiles_changed_during_the_scan_are_caught_by_the_next_run(emu, ctl, make_pipeline, tmp_path):
    ctl.configure(mid_scan_modify={"page": 8, "count": 20})
    pipeline = make_pipeline()
    run(pipeline, source(emu, "users", scan_workers=1))
    with connect(tmp_path) as con:
        stale = {r[0] for r in con.execute("select _uid from data.users where attributes->>'mid_scan' is null").fetchall()}
    truth = ctl.export("users")
    changed = {u["_uid"] for u in truth if u.get("mid_scan")}
    assert len(changed) == 20 and changed & stale, "some changes landed on rows already read"
    counts = run(pipeline, source(emu, "users"))
    assert counts["users"] >= len(changed & stale)
    with connect(tmp_path) as con:
        assert_users_equal(con, ctl)


def test_saved_segment_then_its_changed_members(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    run(pipeline, source(emu, "users", segment="high_intensity"))
    assert any(e["path"] == "/api/segment/high_intensity/scan" for e in ctl.requests())
    members = [u for u in ctl.export("users") if "high_intensity" in u["segments"]]
    with connect(tmp_path) as con:
        assert_users_equal(con, ctl, members)
    ctl.mutate({"op": "modify_users", "count": 60})
    ctl.clear_requests()
    run(pipeline, source(emu, "users", segment="high_intensity"))
    assert all("INCLUDE high_intensity" in e["body"] for e in scans(ctl.requests()))
    members = [u for u in ctl.export("users") if "high_intensity" in u["segments"]]
    with connect(tmp_path) as con:
        assert_users_equal(con, ctl, members)
    with pytest.raises(PipelineStepFailed) as failed:
        run(pipeline, source(emu, "users"))
    assert "full refresh" in str(root(failed.value))


def test_refused_tokens_and_bad_configuration(emu, make_pipeline):
    backend = emu.backend
    with pytest.raises(PipelineStepFailed) as wrong:
        run(make_pipeline("wrong"), lytics_source(api_key="x" * 40, base_url=emu.base_url).with_resources("jobs"))
    err = root(wrong.value)
    assert isinstance(err, AuthError) and err.status == 401 and "lytics" in str(err)
    with pytest.raises(PipelineStepFailed) as forbidden:
        run(make_pipeline("data"), lytics_source(api_key=backend.data_api_key, base_url=emu.base_url).with_resources("jobs"))
    err = root(forbidden.value)
    assert isinstance(err, AuthError) and err.status == 403
    for bad in (
        {"base_url": emu.base_url.replace("https://", "http://")},
        {"api_key": "   "},
        {"api_key": f"Bearer {emu.api_key}"},
        {"users_mode": "sometimes"},
        {"user_primary_key": "name"},
        {"scan_splits": 101},
    ):
        kwargs = {"api_key": emu.api_key, "base_url": emu.base_url, **bad}
        with pytest.raises(Exception) as exc:
            lytics_source(**kwargs)
        assert isinstance(root(exc.value), ConfigurationError), bad


def test_snapshot_mode_reads_every_profile_and_stays_exact(emu, ctl, make_pipeline, tmp_path):
    """``users_mode=snapshot`` scans the whole segment on every run; profiles behind the lookback
    window are reloaded as read (the merge keeps one copy), unchanged ones inside it are not."""
    pipeline = make_pipeline()
    assert run(pipeline, source(emu, "users", users_mode="snapshot"))["users"] == SCALE
    first_window = set(pipeline.state["sources"]["lytics"]["resources"]["users"]["seen"])
    assert first_window, "the first run fingerprints its lookback window"
    changed = set(ctl.mutate({"op": "modify_users", "count": 7})["uids"])
    ctl.clear_requests()
    counts = run(pipeline, source(emu, "users", users_mode="snapshot"))
    body = [e["body"] or "" for e in scans(ctl.requests()) if "FROM user" in (e["body"] or "")]
    assert body and all("_modified >" not in b for b in body), "a snapshot reads the whole segment"
    state = pipeline.state["sources"]["lytics"]["resources"]["users"]
    low = _seconds_before(S.DEFAULT_LOOKBACK_SECONDS)(state["cursor"])
    window = {u["_uid"] for u in ctl.export("users") if to_canonical(u["_modified"], "t") >= low}
    assert changed <= window
    assert set(state["seen"]) == window, "fingerprints cover exactly the new lookback window"
    assert counts["users"] == SCALE - len(first_window - changed), "unchanged rows of the stored window are skipped"
    with connect(tmp_path) as con:
        assert_users_equal(con, ctl)
