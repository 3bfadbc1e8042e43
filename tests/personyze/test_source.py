"""The Personyze source against its emulator over HTTPS on loopback."""

from __future__ import annotations

from collections import Counter
from typing import Any

import duckdb
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from emulators.personyze.grammar import parse_path
from sources.common.errors import ConfigurationError, MalformedResponse, RequestRejected
from sources.personyze import personyze_source
from sources.personyze import settings as S

from .truth import assert_table_equals

SCALE = 2500
INCREMENTAL = ("users", "events", "sessions_archive", "summary_actions")
RANGE_OPS = {">", ">=", "<", "<=", "!=", "!:"}
ALL_TABLES = (
    S.USERS,
    S.EVENTS,
    S.SESSIONS_ARCHIVE,
    S.SUMMARY_ACTIONS,
    S.PRODUCTS,
    S.ARTICLES,
    *S.SMALL_TABLES,
)


@pytest.fixture
def emu(start_emulator: Any) -> Any:
    return start_emulator("personyze", scale=SCALE, seed=7)


@pytest.fixture
def ctl(emu: Any, control_for: Any) -> Any:
    return control_for(emu)


def source(server: Any, *resources: str, **options: Any) -> Any:
    src = personyze_source(api_key=server.api_key, base_url=server.base_url, **options)
    return src.with_resources(*resources) if resources else src


def run(pipeline: Any, src: Any) -> dict[str, int]:
    info = pipeline.run(src, loader_file_format="parquet")
    info.raise_on_failed_jobs()
    return dict(pipeline.last_trace.last_normalize_info.row_counts)


def db(pipeline: Any) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(pipeline.destination.config_params["credentials"], read_only=True)


def connect(tmp_path: Any) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(tmp_path / "test.duckdb"), read_only=True)


def requests_by_object(log: list[dict[str, Any]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for entry in log:
        path = entry["raw_path"]
        assert path.startswith("/rest/"), path
        q = parse_path(path[len("/rest/") :])
        out.setdefault(q.object, []).append(q)
    return out


def assert_within_limits(log: list[dict[str, Any]]) -> None:
    """No request reads past 1,000 rows, and every range query on a large table reads ≤ 50."""
    assert log, "no requests were logged"
    for entry in log:
        q = parse_path(entry["raw_path"][len("/rest/") :])
        if q.id is not None or q.object == "account":
            continue
        assert q.count is not None, f"request without limit: {entry['raw_path']}"
        assert q.offset + q.count <= 1000, entry["raw_path"]
        assert q.offset == 0, f"offset paging: {entry['raw_path']}"
        ranged = any(c.op in RANGE_OPS for branch in (q.where or []) for c in branch)
        if ranged and q.object in ("users", "events", "sessions_archive", "summary_actions"):
            assert q.count <= 50, f"slow query reading {q.count} rows: {entry['raw_path']}"


def test_backfill_equals_the_emulator_exactly(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    counts = run(pipeline, source(emu))
    log = ctl.requests()
    assert all(e["status"] == 200 for e in log), Counter(e["status"] for e in log)
    assert_within_limits(log)
    with connect(tmp_path) as con:
        for spec in ALL_TABLES:
            assert_table_equals(con, "data", spec, ctl.export(spec.name))
    state = ctl.state()["tables"]
    assert counts["users"] == state["users"] == SCALE
    assert state["products"] > 1000, "the catalog must be larger than one request can return"
    # the backfill really split users into concurrent id ranges
    users = requests_by_object(log)["users"]
    assert sum(1 for q in users if q.where and any(c.op == "<=" for c in q.where[0])) >= 8


def test_second_run_without_changes_loads_nothing_with_at_most_two_requests(emu, ctl, make_pipeline):
    pipeline = make_pipeline()
    run(pipeline, source(emu))
    ctl.clear_requests()
    counts = run(pipeline, source(emu, *INCREMENTAL))
    per_object = requests_by_object(ctl.requests())
    for name in INCREMENTAL:
        assert 1 <= len(per_object.get(name, [])) <= 2, (name, len(per_object.get(name, [])))
        assert counts.get(name, 0) == 0, (name, counts)


@pytest.mark.parametrize("page_size", [100, 1000])
def test_modified_users_tied_across_page_boundaries_load_exactly(emu, ctl, make_pipeline, tmp_path, page_size):
    pipeline = make_pipeline()
    run(pipeline, source(emu, "users", page_size=page_size))
    ctl.mutate({"op": "advance_clock", "seconds": 5})
    # more tied rows than the fast path returns, so the keyset walk pages through one second
    n = 230 if page_size == 100 else 1130
    changed = ctl.mutate({"op": "modify_users", "count": n})
    assert len(changed["user_ids"]) == n
    ctl.clear_requests()
    counts = run(pipeline, source(emu, "users", page_size=page_size))
    assert counts["users"] == n
    users = requests_by_object(ctl.requests())["users"]
    walked = [q for q in users if q.where]
    assert len(walked) >= n // 50, "the tie run must span several pages"
    assert_within_limits(ctl.requests())
    with connect(tmp_path) as con:
        load_ids = [r[0] for r in con.execute("select distinct _dlt_load_id from data.users order by 1").fetchall()]
        second = {r[0] for r in con.execute("select user_id from data.users where _dlt_load_id = ?", [load_ids[-1]]).fetchall()}
        assert second == set(changed["user_ids"])
        assert_table_equals(con, "data", S.USERS, ctl.export("users"))


def test_injected_failure_mid_pagination_then_rerun_is_exact(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    # the 8th users request fails with an error that is never retried
    ctl.add_faults([{"path": "^/rest/users/where", "actions": [{"pass": True}] * 7 + [{"status": 400, "body": "boom"}]}])
    with pytest.raises(PipelineStepFailed) as failed:
        run(pipeline, source(emu, "users", "events", backfill_workers=2))
    assert isinstance(_root(failed.value), RequestRejected)
    assert "users" not in pipeline.state.get("sources", {}).get("personyze", {}).get("resources", {})
    ctl.mutate({"op": "modify_users", "count": 40})
    run(pipeline, source(emu, "users", "events", backfill_workers=2))
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", S.USERS, ctl.export("users"))
        assert_table_equals(con, "data", S.EVENTS, ctl.export("events"))


def test_transient_503s_are_retried(emu, ctl, make_pipeline):
    pipeline = make_pipeline()
    ctl.add_faults([{"path": "^/rest/placeholders", "actions": [{"status": 503, "body": "deadlock"}] * 2}])
    counts = run(pipeline, source(emu, "placeholders"))
    statuses = [e["status"] for e in ctl.requests() if e["path"].startswith("/rest/placeholders")]
    # the page, then the empty page that ends the walk (a short page does not)
    assert statuses == [503, 503, 200, 200]
    assert counts["placeholders"] == ctl.state()["tables"]["placeholders"]


def test_dropped_connection_and_truncated_json_are_retried(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    ctl.add_faults(
        [{"path": "^/rest/products/where", "actions": [{"pass": True}, {"drop": True}, {"truncate": True}]}]
    )
    run(pipeline, source(emu, "products", page_size=100))
    faults = [e["fault"] for e in ctl.requests() if e["fault"]]
    assert "drop" in faults and "truncate" in faults
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", S.PRODUCTS, ctl.export("products"))


def test_rows_archived_late_are_loaded_however_old_their_time(emu, ctl, make_pipeline, tmp_path):
    """Issue 11, class 4: sessions archived after the lookback (a new id, an end_time 1.5-2.3 h
    behind the cursor) were never loaded while sessions_archive paged on end_time."""
    pipeline = make_pipeline()
    run(pipeline, source(emu, "events", "sessions_archive"))
    ctl.mutate({"op": "advance_clock", "seconds": 30})
    late_events = ctl.mutate({"op": "add_events", "count": 20, "late_seconds": 86400})
    added = [
        ctl.mutate({"op": "add_sessions", "count": n, "late_seconds": late})
        for n, late in ((5, 60), (3, 5400), (4, 8280), (2, 86400 * 3))  # 1 min, 1.5 h, 2.3 h, 3 days
    ]
    counts = run(pipeline, source(emu, "events", "sessions_archive"))
    # both page by id: a row that arrives late gets a new id, so it is caught however old its time
    assert counts["events"] == 20
    first, last = late_events["ids"]
    assert last - first + 1 == 20
    assert counts["sessions_archive"] == 5 + 3 + 4 + 2
    with connect(tmp_path) as con:
        loaded = {r[0] for r in con.execute("select id from data.sessions_archive").fetchall()}
        assert {i for a in added for i in range(a["ids"][0], a["ids"][1] + 1)} <= loaded
        assert_table_equals(con, "data", S.SESSIONS_ARCHIVE, ctl.export("sessions_archive"))
        assert_table_equals(con, "data", S.EVENTS, ctl.export("events"))
    st = pipeline.state["sources"]["personyze"]["resources"]["sessions_archive"]
    assert st["cursor_column"] == "id" and st["cursor"] == max(r["id"] for r in ctl.export("sessions_archive"))


def test_sessions_loaded_by_end_time_before_are_read_once_more_by_id(emu, ctl, make_pipeline, tmp_path, caplog):
    """A pipeline whose sessions_archive state still holds an end_time cursor (before paging on
    id) re-reads every session once, merged on id, and then carries on by id."""
    pipeline = make_pipeline()
    run(pipeline, source(emu, "sessions_archive"))
    # the state an earlier version left: an end_time cursor, with a late session it missed
    missed = ctl.mutate({"op": "add_sessions", "count": 3, "late_seconds": 7200})
    newest_end = max(int(r["end_time"]) for r in ctl.export("sessions_archive"))
    with pipeline.managed_state() as state:
        resources = state["sources"]["personyze"]["resources"]
        resources["sessions_archive"] = {"cursor_column": "end_time", "cursor": newest_end, "seen": {}}
    caplog.set_level("WARNING", logger="cdp_sync.progress")
    counts = run(pipeline, source(emu, "sessions_archive"))
    assert counts["sessions_archive"] == ctl.state()["tables"]["sessions_archive"]
    assert any("now pages on id" in r.getMessage() for r in caplog.records)
    with connect(tmp_path) as con:
        loaded = {r[0] for r in con.execute("select id from data.sessions_archive").fetchall()}
        assert set(range(missed["ids"][0], missed["ids"][1] + 1)) <= loaded
        assert_table_equals(con, "data", S.SESSIONS_ARCHIVE, ctl.export("sessions_archive"))
    assert pipeline.state["sources"]["personyze"]["resources"]["sessions_archive"]["cursor_column"] == "id"
    assert run(pipeline, source(emu, "sessions_archive")).get("sessions_archive", 0) == 0


def test_summary_days_are_reread_and_only_changed_rows_load(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    run(pipeline, source(emu, "summary_actions"))
    changed = ctl.mutate({"op": "update_summaries", "days": 2})
    counts = run(pipeline, source(emu, "summary_actions"))
    assert counts["summary_actions"] == changed["rows"]
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", S.SUMMARY_ACTIONS, ctl.export("summary_actions"))


def test_last_session_time_cursor_and_switching_needs_a_full_refresh(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    run(pipeline, source(emu, "users", user_cursor="last_session_time"))
    st = pipeline.state["sources"]["personyze"]["resources"]["users"]
    assert st["cursor_column"] == "last_session_time"
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", S.USERS, ctl.export("users"))
    with pytest.raises(PipelineStepFailed) as failed:
        run(pipeline, source(emu, "users"))
    assert "full refresh" in str(_root(failed.value))


def test_configuration_errors_are_clear(emu):
    with pytest.raises(Exception) as bad_url:
        personyze_source(api_key=emu.api_key, base_url=emu.base_url.replace("https://", "http://"))
    assert isinstance(_root(bad_url.value), ConfigurationError)
    assert "HTTPS" in str(_root(bad_url.value))
    with pytest.raises(Exception) as bad_key:
        personyze_source(api_key="not-a-key", base_url=emu.base_url)
    root = _root(bad_key.value)
    assert isinstance(root, ConfigurationError) and "40 hexadecimal" in str(root)


def _root(exc: BaseException) -> BaseException:
    """The innermost cdp-sync error inside dlt's wrappers."""
    from sources.common.errors import CdpSyncError

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


def test_user_changed_during_the_walk_is_read_twice_and_the_newest_copy_is_kept(emu, ctl, make_pipeline, tmp_path):
    import threading

    pipeline = make_pipeline()
    run(pipeline, source(emu, "users", page_size=100))
    ctl.mutate({"op": "advance_clock", "seconds": 5})
    tied = sorted(ctl.mutate({"op": "modify_users", "count": 300})["user_ids"])
    early = tied[:20]  # on the first page of the walk (same second: ordered by user_id)
    ctl.clear_requests()
    ctl.configure(latency_ms=150)
    changed: dict[str, Any] = {}

    def change_after_first_pages() -> None:
        for _ in range(400):
            walked = [e for e in ctl.requests() if e["path"].startswith("/rest/users/where")]
            if len(walked) >= 2:
                ctl.mutate({"op": "advance_clock", "seconds": 3})
                changed.update(ctl.mutate({"op": "modify_users", "user_ids": early}))
                return
            threading.Event().wait(0.02)

    t = threading.Thread(target=change_after_first_pages)
    t.start()
    counts = run(pipeline, source(emu, "users", page_size=100))
    t.join()
    ctl.configure(latency_ms=0)
    assert sorted(changed["user_ids"]) == early
    # every tied user once, plus the 20 changed ones a second time, further along the walk
    assert counts["users"] == 300 + 20
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", S.USERS, ctl.export("users"))


NOT_DATA = [
    pytest.param({"status": 200, "body": ""}, id="empty-body"),
    pytest.param({"status": 200, "json": {}}, id="empty-object"),
    pytest.param({"status": 200, "json": None}, id="null"),
    pytest.param({"status": 200, "body": "<html><body>Service is being updated</body></html>"}, id="html"),
    pytest.param({"status": 200, "json": {"error": "try later"}}, id="object"),
    pytest.param({"status": 200, "json": [1, 2, 3]}, id="array-of-values"),
]


@pytest.mark.parametrize("answer", NOT_DATA)
def test_a_200_that_is_not_rows_mid_walk_is_retried_never_the_end(emu, ctl, make_pipeline, tmp_path, answer):
    """Issue 11, class 1: a users walk ended early on a 200 that was not data, reported success
    and committed its cursor (hundreds of rows missing for good)."""
    pipeline = make_pipeline()
    ctl.add_faults([{"path": "^/rest/users/where", "actions": [{"pass": True}] * 5 + [answer]}])
    run(pipeline, source(emu, "users", backfill_workers=1))
    walked = [e for e in ctl.requests() if e["path"].startswith("/rest/users/where")]
    assert [e["fault"] for e in walked].count("status") == 1
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", S.USERS, ctl.export("users"))


def test_a_200_that_is_not_rows_on_the_fast_path_is_retried(emu, ctl, make_pipeline, tmp_path):
    pipeline = make_pipeline()
    run(pipeline, source(emu, "users", "events"))
    ctl.mutate({"op": "advance_clock", "seconds": 5})
    changed = ctl.mutate({"op": "modify_users", "count": 25})
    added = ctl.mutate({"op": "add_events", "count": 7})
    ctl.add_faults([
        {"path": "^/rest/users/order_by_desc", "actions": [{"status": 200, "body": ""}]},
        {"path": "^/rest/events/order_by_desc", "actions": [{"status": 200, "json": {}}]},
    ])
    counts = run(pipeline, source(emu, "users", "events"))
    assert counts["users"] == len(changed["user_ids"])
    assert counts["events"] == added["ids"][1] - added["ids"][0] + 1
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", S.USERS, ctl.export("users"))
        assert_table_equals(con, "data", S.EVENTS, ctl.export("events"))


def test_a_200_that_stays_not_rows_fails_the_run_naming_the_request_and_commits_nothing(emu, ctl, make_pipeline):
    pipeline = make_pipeline()
    html = "<html><body>Service is being updated</body></html>"
    ctl.add_faults([
        {"path": "^/rest/users/where", "actions": [{"pass": True}] * 3},
        {"path": "^/rest/users/where", "actions": [{"status": 200, "body": html}], "repeat": True},
    ])
    with pytest.raises(PipelineStepFailed) as failed:
        run(pipeline, source(emu, "users", backfill_workers=1, max_attempts=2))
    error = _root(failed.value)
    assert isinstance(error, MalformedResponse), error
    text = str(error)
    assert "/rest/users/where/" in text and "Service is being updated" in text, text
    assert "NoneType" not in text and "dict" not in text and "list" not in text.split(":")[0], text
    assert "users" not in pipeline.state.get("sources", {}).get("personyze", {}).get("resources", {})


@pytest.mark.parametrize("order", ["older-first", "newer-first"])
def test_two_copies_of_a_user_in_one_load_the_newest_lands_and_its_fingerprint_is_kept(
    emu, ctl, make_pipeline, tmp_path, order
):
    """Issue 11, class 2: a row read twice in one load (changed during the walk, or served by a
    lagging replica) — whatever the order, the copy with the newest data_last_modified lands, and
    the lookback fingerprint kept in state is that copy's, so the next run loads nothing."""
    from sources.common.cursor import fingerprint

    pipeline = make_pipeline()
    run(pipeline, source(emu, "users"))
    before = {r["user_id"]: r for r in ctl.export("users")}
    ctl.mutate({"op": "advance_clock", "seconds": 10})
    uid = sorted(before)[len(before) // 2]
    ctl.mutate({"op": "modify_users", "user_ids": [uid]})
    old, new = before[uid], next(r for r in ctl.export("users") if r["user_id"] == uid)
    assert new["data_last_modified"] > old["data_last_modified"] and new != old
    w, z = sorted((r for r in before.values() if r["user_id"] != uid),
                  key=lambda r: (r["data_last_modified"], r["user_id"]))[:2]
    first, second = (old, new) if order == "older-first" else (new, old)
    # the walk's pages as a replica-served API could answer them (pages of 2; the keyset still
    # advances: the last row of each page is later than the last of the one before)
    ctl.add_faults([
        {"path": "^/rest/users/order_by_desc", "actions": [{"status": 200, "json": [new, new]}]},
        {"path": "^/rest/users/where", "actions": [
            {"status": 200, "json": [first, w]}, {"status": 200, "json": [second, z]}, {"status": 200, "json": []},
        ]},
    ])
    run(pipeline, source(emu, "users", page_size=2, slow_page_size=2))
    assert [f["used"] for f in ctl.faults()] == [1, 3], "every scripted answer was served"
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", S.USERS, ctl.export("users"))
    seen = pipeline.state["sources"]["personyze"]["resources"]["users"]["seen"]
    assert seen.get(str(uid)) == fingerprint(new)
    counts = run(pipeline, source(emu, "users"))
    assert counts.get("users", 0) == 0


def _api_get(server: Any, path: str) -> Any:
    import httpx

    with httpx.Client(verify=server.ca_file, auth=("api", server.api_key)) as client:
        response = client.get(f"{server.base_url}/{path}")
        response.raise_for_status()
        return response.json()


def test_a_text_internal_id_loads_as_text(emu, ctl, make_pipeline, tmp_path):
    """Issue 11, class 5: Personyze documents users.internal_id as a string; a CRM id stopped
    the run with "cannot read 'CRM-000042' as int"."""
    import httpx

    pipeline = make_pipeline()
    run(pipeline, source(emu, "users"))
    ctl.mutate({"op": "advance_clock", "seconds": 5})
    with httpx.Client(verify=emu.ca_file, auth=("api", emu.api_key)) as client:
        made = client.post(f"{emu.base_url}/users", json={"email": "crm42@example.com", "internal_id": "CRM-000042"})
    assert made.status_code == 200, made.text
    assert run(pipeline, source(emu, "users"))["users"] == 1
    with connect(tmp_path) as con:
        assert con.execute("select internal_id from data.users where user_id = ?", [int(made.text)]).fetchone() == (
            "CRM-000042",
        )
        assert_table_equals(con, "data", S.USERS, ctl.export("users"))


def test_values_that_do_not_fit_their_column_load_as_text_with_one_warning(emu, ctl, make_pipeline, tmp_path, caplog):
    """Issue 11, class 5: a value that does not fit the column's type never fails the run: the
    column is null there, the value lands as text in <column>__v_text, one warning names it."""
    pipeline = make_pipeline()
    page = _api_get(emu, "products/order_by/id/limit/0,1000")
    odd = {page[3]["id"]: ("inventory", "lots"), page[7]["id"]: ("inventory", "a few"),
           page[9]["id"]: ("price", "call us"), page[11]["id"]: ("is_in_stock", "maybe")}
    for row in page:
        if row["id"] in odd:
            column, value = odd[row["id"]]
            row[column] = value
    ctl.add_faults([{"path": "^/rest/products/order_by/id/limit/0,1000$", "actions": [{"status": 200, "json": page}]}])
    caplog.set_level("WARNING", logger="cdp_sync.progress")
    counts = run(pipeline, source(emu, "products"))
    assert counts["products"] == ctl.state()["tables"]["products"]
    with connect(tmp_path) as con:
        got = {
            r[0]: r[1:]
            for r in con.execute(
                "select id, inventory, inventory__v_text, price, price__v_text, is_in_stock, is_in_stock__v_text "
                "from data.products where inventory__v_text is not null or price__v_text is not null "
                "or is_in_stock__v_text is not null"
            ).fetchall()
        }
    ids = sorted(odd)
    assert sorted(got) == ids
    assert got[ids[0]][:2] == (None, "lots") and got[ids[1]][:2] == (None, "a few")
    assert got[ids[2]][2:4] == (None, "call us") and got[ids[3]][4:] == (None, "maybe")
    warnings = [r.getMessage() for r in caplog.records if "did not fit" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "4 values" in warnings[0] and "inventory (2 in inventory__v_text" in warnings[0] and "price (1" in warnings[0]


def test_pages_shorter_than_asked_do_not_end_a_walk(emu, ctl, make_pipeline, tmp_path):
    """A server that answers fewer rows than asked (here: never more than 30) while more match
    is not saying "no more rows": backfill, catalog and incremental walks all read to the end."""
    pipeline = make_pipeline()
    ctl.configure(clamp_rows=30)
    run(pipeline, source(emu, "users", "products", "sessions_archive"))
    ctl.mutate({"op": "advance_clock", "seconds": 5})
    changed = ctl.mutate({"op": "modify_users", "count": 120})
    added = ctl.mutate({"op": "add_sessions", "count": 70, "late_seconds": 6000})
    counts = run(pipeline, source(emu, "users", "products", "sessions_archive"))
    assert counts["users"] == len(changed["user_ids"])
    assert counts["sessions_archive"] == added["ids"][1] - added["ids"][0] + 1
    with connect(tmp_path) as con:
        for spec in (S.USERS, S.PRODUCTS, S.SESSIONS_ARCHIVE):
            assert_table_equals(con, "data", spec, ctl.export(spec.name))


def test_hostile_emulator_then_a_quiet_run_is_exact(emu, ctl, make_pipeline, tmp_path):
    """Hostile mode's wire faults and the vendor's bad days (changes during walks, tie storms,
    late and out-of-order rows, clamped pages, 429s in Personyze's words): every run succeeds,
    and once the emulator is quiet one more run leaves the destination equal to the truth."""
    pipeline = make_pipeline()
    ctl.configure(hostile=1, hostile_seed=11, hostile_rate=0.03)
    run(pipeline, source(emu, max_retry_wait=60))
    ctl.mutate({"op": "advance_clock", "seconds": 20})
    ctl.mutate({"op": "modify_users", "count": 70})
    run(pipeline, source(emu, max_retry_wait=60))
    log = ctl.mutate({"op": "hostile_log"})
    faults = Counter(e["fault"] for e in ctl.requests() if e["fault"])
    assert sum(log["changes"].values()) > 0 and faults, (log, faults)
    ctl.configure(hostile=0)
    run(pipeline, source(emu))
    with connect(tmp_path) as con:
        for spec in ALL_TABLES:
            assert_table_equals(con, "data", spec, ctl.export(spec.name))


def _now(ctl: Any) -> int:
    return int(ctl.mutate({"op": "advance_clock", "seconds": 0})["now"])


def test_users_committed_late_load_within_the_lookback_not_beyond(emu, ctl, make_pipeline, tmp_path):
    """The documented limit (README, Limits): a profile change that becomes visible with a
    data_last_modified up to 300 s behind the newest one loaded is loaded; further behind, not."""
    pipeline = make_pipeline()
    run(pipeline, source(emu, "users"))
    ctl.mutate({"op": "advance_clock", "seconds": 1000})
    ctl.mutate({"op": "modify_users", "count": 3})
    run(pipeline, source(emu, "users"))
    cursor = pipeline.state["sources"]["personyze"]["resources"]["users"]["cursor"]
    ctl.mutate({"op": "advance_clock", "seconds": 5})
    inside = ctl.mutate({"op": "modify_users", "count": 4, "late_seconds": _now(ctl) - cursor + 280})
    beyond = ctl.mutate({"op": "modify_users", "count": 2, "late_seconds": _now(ctl) - cursor + 330})
    counts = run(pipeline, source(emu, "users"))
    assert counts["users"] == 4
    truth = {r["user_id"]: r for r in ctl.export("users")}
    assert all(cursor - 300 <= truth[u]["data_last_modified"] < cursor for u in inside["user_ids"])
    assert all(truth[u]["data_last_modified"] < cursor - 300 for u in beyond["user_ids"])
    with connect(tmp_path) as con:
        loaded = dict(con.execute("select user_id, custom_t_3 from data.users").fetchall())
    assert all(loaded[u] == truth[u]["custom_t_3"] for u in inside["user_ids"])
    assert all(loaded[u] != truth[u]["custom_t_3"] for u in beyond["user_ids"]), "beyond the limit: not loaded"


@pytest.mark.parametrize("table", ["events", "sessions_archive"])
def test_ids_visible_out_of_order_load_within_the_id_lookback_not_beyond(emu, ctl, make_pipeline, tmp_path, table):
    """The documented limit: an id committed out of order (visible after later ids were loaded)
    is loaded when it is at most 100 ids below the highest id loaded; further below, not."""
    pipeline = make_pipeline()
    run(pipeline, source(emu, table))
    add = "add_events" if table == "events" else "add_sessions"
    near = ctl.mutate({"op": "hold_rows", "table": table, "count": 1})["ids"]
    ctl.mutate({"op": add, "count": 90})
    run(pipeline, source(emu, table))
    ctl.mutate({"op": "release_rows", "table": table})
    far = ctl.mutate({"op": "hold_rows", "table": table, "count": 1})["ids"]
    ctl.mutate({"op": add, "count": 150})
    counts = run(pipeline, source(emu, table))
    assert counts[table] == 1 + 150  # the late id near the cursor, and the new ones
    ctl.mutate({"op": "release_rows", "table": table})
    assert run(pipeline, source(emu, table)).get(table, 0) == 0
    with connect(tmp_path) as con:
        loaded = {r[0] for r in con.execute(f"select id from data.{table}").fetchall()}
    assert set(near) <= loaded
    assert not set(far) & loaded, "beyond the id lookback: not loaded"


def test_summary_changed_beyond_the_window_is_not_reloaded(emu, ctl, make_pipeline, tmp_path):
    """The documented limit: the last 3 days of summary_actions are re-read; a change to an
    older day is not loaded."""
    pipeline = make_pipeline()
    run(pipeline, source(emu, "summary_actions"))
    changed = ctl.mutate({"op": "update_summaries", "days": 5})
    counts = run(pipeline, source(emu, "summary_actions"))
    assert counts["summary_actions"] == changed["rows"] * 3 // 5
    expected = {(r["date"], r["action_id"]): r["impressions"] for r in ctl.export("summary_actions")}
    days = sorted({d for d, _a in expected})
    with connect(tmp_path) as con:
        loaded = {
            (d.strftime("%Y-%m-%d %H:%M:%S"), a): i
            for d, a, i in con.execute(
                "select date at time zone 'UTC', action_id, impressions from data.summary_actions"
            ).fetchall()
        }
    for day in days[-3:]:
        assert all(loaded[k] == v for k, v in expected.items() if k[0] == day), day
    for day in days[-5:-3]:
        assert all(loaded[k] != v for k, v in expected.items() if k[0] == day), day


def test_a_429_in_personyzes_words_is_waited_out_as_stated(emu, ctl, make_pipeline, tmp_path, caplog):
    """Issue 11, class 8: a throttled answer that states its wait in the body (Personyze's
    "stand by N seconds", no Retry-After) is waited out for that long, then the walk goes on."""
    pipeline = make_pipeline()
    throttled = {"status": 429, "body": "Too many slow queries: stand by 3 seconds and retry"}
    ctl.add_faults([{"path": "^/rest/users/where", "actions": [{"pass": True}, throttled, throttled]}])
    caplog.set_level("WARNING", logger="cdp_sync.http")
    run(pipeline, source(emu, "users", backfill_workers=1, max_attempts=2))
    import re

    waits = [float(re.search(r"waiting ([0-9.]+) s", r.getMessage()).group(1))
             for r in caplog.records if "throttled" in r.getMessage()]
    assert len(waits) == 2 and all(3.0 <= w <= 4.05 for w in waits), waits
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", S.USERS, ctl.export("users"))


@pytest.mark.parametrize("order", ["true-first", "true-last"])
def test_two_different_copies_with_the_same_timestamp_keep_no_fingerprint(emu, ctl, make_pipeline, tmp_path, order):
    """Two different copies of a user with the same data_last_modified (changed twice within one
    second) cannot be ordered: both load, no fingerprint is kept for it, so the next run loads it
    again and the destination ends equal to the truth whichever copy the merge kept."""
    from sources.common.cursor import fingerprint

    pipeline = make_pipeline()
    run(pipeline, source(emu, "users"))
    ctl.mutate({"op": "advance_clock", "seconds": 10})
    uid = sorted(r["user_id"] for r in ctl.export("users"))[7]
    ctl.mutate({"op": "modify_users", "user_ids": [uid]})
    true = next(r for r in ctl.export("users") if r["user_id"] == uid)
    other = {**true, "custom_t_3": "an edit of the same second"}
    w, z = sorted((r for r in ctl.export("users") if r["user_id"] != uid),
                  key=lambda r: (r["data_last_modified"], r["user_id"]))[:2]
    first, second = (true, other) if order == "true-first" else (other, true)
    ctl.add_faults([
        {"path": "^/rest/users/order_by_desc", "actions": [{"status": 200, "json": [true, true]}]},
        {"path": "^/rest/users/where", "actions": [
            {"status": 200, "json": [first, w]}, {"status": 200, "json": [second, z]}, {"status": 200, "json": []},
        ]},
    ])
    run(pipeline, source(emu, "users", page_size=2, slow_page_size=2))
    seen = pipeline.state["sources"]["personyze"]["resources"]["users"]["seen"]
    assert seen.get(str(uid)) not in (fingerprint(true), fingerprint(other))
    assert run(pipeline, source(emu, "users"))["users"] == 1
    with connect(tmp_path) as con:
        assert_table_equals(con, "data", S.USERS, ctl.export("users"))


def test_a_destination_with_a_numeric_internal_id_keeps_loading(emu, ctl, make_pipeline, tmp_path, caplog):
    """Pipelines created before internal_id was text have a BIGINT column that cannot change type:
    they keep it (numbers load there), text ids land in internal_id__v_text with one warning,
    every run succeeds; --full-refresh would recreate it as text."""
    import dlt
    import pyarrow as pa

    pipeline = make_pipeline()

    @dlt.source(name="personyze")
    def before() -> Any:  # the users table as the source created it until issue 11
        hints = {**S.USERS.dlt_columns(), "internal_id": {"data_type": "bigint", "nullable": True}}
        return dlt.resource([pa.table({"user_id": [1], "internal_id": [5]})], name="users", primary_key="user_id",
                            write_disposition="merge", columns=hints)

    pipeline.run(before(), loader_file_format="parquet").raise_on_failed_jobs()
    caplog.set_level("WARNING", logger="cdp_sync.progress")
    for _ in range(2):
        run(pipeline, source(emu, "users"))
        ctl.mutate({"op": "advance_clock", "seconds": 5})
        ctl.mutate({"op": "modify_users", "count": 30})
    truth = {r["user_id"]: r["internal_id"] for r in ctl.export("users")}
    with connect(tmp_path) as con:
        assert con.execute(
            "select data_type from information_schema.columns where table_name = 'users' and column_name = 'internal_id'"
        ).fetchone() == ("BIGINT",)
        rows = con.execute("select user_id, internal_id, internal_id__v_text from data.users where user_id > 1").fetchall()
    assert {u for u, _i, _t in rows} == set(truth)
    for user_id, number, text in rows:
        want = truth[user_id]
        assert (str(number) if number is not None else text) == want, (user_id, number, text, want)
    warnings = [r.getMessage() for r in caplog.records if "did not fit" in r.getMessage()]
    assert warnings and all("internal_id" in w for w in warnings)
