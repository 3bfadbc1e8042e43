"""The Lytics emulator keeps the contract's behaviours (api/lytics.md §11), over real HTTPS."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import emulators


@pytest.fixture(scope="module")
def emu() -> Any:
    server = emulators.start("lytics", scale=400, seed=21)
    yield server
    server.stop()


@pytest.fixture
def api(emu: Any) -> Any:
    with httpx.Client(base_url=emu.base_url, verify=emu.ca_file, headers={"Authorization": emu.api_key}) as c:
        yield c


@pytest.fixture
def anon(emu: Any) -> Any:
    with httpx.Client(base_url=emu.base_url, verify=emu.ca_file) as c:
        yield c


def walk(api: Any, method: str, path: str, body: str | None = None, **params: Any) -> tuple[list[dict], list[dict]]:
    rows, pages, start = [], [], ""
    for _ in range(1000):
        r = api.request(method, path, params={**params, "start": start}, content=body)
        assert r.status_code == 200, r.text
        page = r.json()
        pages.append(page)
        rows += page["data"]
        start = page.get("_next") or page.get("next") or ""
        if not start:
            return rows, pages
    raise AssertionError("scan did not end")


def test_auth_forms_and_refusals(emu, api, anon):
    assert api.get("/api/segment").status_code == 200
    assert anon.get("/api/segment", params={"key": emu.api_key}).status_code == 200
    assert anon.get("/api/segment", params={"access_token": emu.api_key}).status_code == 200
    for headers in ({}, {"Authorization": "nope"}, {"Authorization": f"Bearer {emu.api_key}"}):
        r = anon.get("/api/segment", headers=headers)
        assert r.status_code == 401 and r.json() == {"data": None, "message": "Not authorized", "status": 401}
    data_key = emu.backend.data_api_key
    r = anon.get("/api/segment", headers={"Authorization": data_key})
    assert r.status_code == 403 and r.json()["status"] == 403 and r.json()["data"] is None
    assert anon.post("/collect/json/default", json={"_e": "pv"}, params={"key": data_key, "dryrun": "true"}).status_code == 200


def test_saved_scan_pagination_total_and_limits(api):
    r = api.get("/api/segment/all_users/scan")
    body = r.json()
    assert body["status"] == 200 and body["message"] == "success"
    assert len(body["data"]) == 10, "limit defaults to 10"
    assert len(api.get("/api/segment/all_users/scan", params={"limit": 500}).json()["data"]) == 100, "clamped to 100"
    rows, pages = walk(api, "GET", "/api/segment/all_users/scan", limit=70)
    assert len(rows) == 400 == len({r["_uid"] for r in rows})
    assert {p["total"] for p in pages} == {400}
    assert pages[-1]["_next"] == "" and all(isinstance(p["_next"], str) for p in pages)
    assert api.get("/api/segment/nope/scan").status_code == 404
    # by id as well as by slug
    seg = next(s for s in api.get("/api/segment").json()["data"] if s["slug_name"] == "subscribers")
    by_id, _ = walk(api, "GET", f"/api/segment/{seg['id']}/scan", limit=100)
    by_query, _ = walk(api, "GET", "/api/segment/scan", id="subscribers", limit=100)
    assert by_id == by_query and all(r["is_subscriber"] is True for r in by_id)


def test_scan_rows_are_flat_profiles_with_strings_for_some_numbers(api):
    row = api.get("/api/segment/all_users/scan").json()["data"][0]
    for field in ("_uid", "_uids", "segments", "_created", "_modified", "score_intensity", "hourly"):
        assert field in row
    assert isinstance(row["score_intensity"], str) and row["score_intensity"].isdigit()
    assert row["_modified"].endswith("Z") and "all_users" in row["segments"]
    projected = api.get("/api/segment/all_users/scan", params={"fields": "_uid,email"}).json()["data"]
    assert all(set(r) <= {"_uid", "email"} for r in projected)


def test_tokens_are_bound_and_garbage_is_refused(api):
    first = api.get("/api/segment/all_users/scan", params={"limit": 50}).json()
    r = api.get("/api/segment/all_users/scan", params={"limit": 60, "start": first["_next"]})
    assert r.status_code == 400, "a token is bound to its limit"
    r = api.get("/api/segment/subscribers/scan", params={"limit": 50, "start": first["_next"]})
    assert r.status_code == 400, "a token is bound to its segment"
    r = api.get("/api/segment/all_users/scan", params={"limit": 50, "start": "garbage"})
    assert r.status_code == 400 and r.json()["data"] is None


def test_filterql_subset(api):
    def count(ql: str) -> int:
        r = api.post("/api/segment/scan", content=ql, params={"limit": 100}, headers={"Content-Type": "text/plain"})
        assert r.status_code == 200, r.text
        return r.json()["total"]

    everyone = count("FILTER * FROM user")
    assert everyone == 400
    recent = count('FILTER _modified > "2025-07-01T00:00:00Z" FROM user')
    older = count('FILTER _modified <= "2025-07-01T00:00:00Z" FROM user')
    assert recent + older == everyone and 0 < recent < everyone
    assert count('FILTER _modified BETWEEN "2025-07-01T00:00:00Z" AND "2030-01-01" FROM user') == count(
        'FILTER _modified >= "2025-07-01T00:00:00Z" FROM user')
    with_email = count("FILTER EXISTS email FROM user")
    assert 0 < with_email < everyone
    assert count('FILTER country = "DE" FROM user') > 0
    both = count("FILTER AND(INCLUDE subscribers, EXISTS email) FROM user")
    assert 0 < both <= min(with_email, count("FILTER INCLUDE subscribers FROM user"))
    assert count("FILTER * FROM content") == 40
    r = api.post("/api/segment/scan", content="FILTER AND(_modified > ) FROM user")
    assert r.status_code == 400 and r.json()["message"].startswith("Failed parsing segment QL")
    assert r.json()["data"] is None and r.json()["status"] == 400


def test_splits_partition_the_users(api):
    single, _ = walk(api, "POST", "/api/segment/scan", "FILTER * FROM user", limit=100)
    parts = []
    for group in ("0,1,2,3,4,5,6,7,8,9", "[10,11,12]", *[str(b) for b in range(13, 100)]):
        rows, pages = walk(api, "POST", "/api/segment/scan", "FILTER * FROM user", limit=100, splits=group)
        assert {p["total"] for p in pages} == {len(rows)}
        parts += rows
    assert sorted(r["_uid"] for r in parts) == sorted(r["_uid"] for r in single)
    assert api.post("/api/segment/scan", content="FILTER * FROM user", params={"splits": "100"}).status_code == 400


def test_segments_sizes_in_every_list_format_and_collections(api):
    segs = api.get("/api/segment", params={"table": "user"}).json()["data"]
    assert {"id", "slug_name", "name", "kind", "table", "segment_ql", "is_public", "created", "updated", "tags"} <= set(segs[0])
    assert api.get("/api/segment/high_intensity").json()["data"]["slug_name"] == "high_intensity"
    a, b = segs[0]["id"], segs[1]["id"]
    forms = [f"ids={a},{b}", f"ids=[{a},{b}]", f"ids={a}&ids={b}", f"ids[]={a}&ids[]={b}"]
    answers = [api.get(f"/api/segment/sizes?{q}").json()["data"] for q in forms]
    assert all(x == answers[0] for x in answers) and {r["id"] for r in answers[0]} == {a, b}
    assert len(api.get("/api/segment/sizes").json()["data"]) == 11
    colls = api.get("/api/segmentcollection").json()["data"]
    assert colls and all({"id", "slug_name", "collection"} <= set(c) for c in colls)
    assert api.get(f"/api/segment/{a}/fieldinfo").status_code == 200
    assert api.get(f"/api/segment/{segs[0]['slug_name']}/fieldinfo").status_code == 500


def test_collect_upserts_profiles_and_moves_streams(emu, api):
    before = {s["stream"]: s for s in api.get("/api/schema/_streams").json()["data"]}
    user = api.get("/api/segment/all_users/scan").json()["data"][0]
    dry = api.post("/collect/json/default", params={"dryrun": "true"}, json={"_uid": user["_uid"], "x": 1}).json()
    assert dry["data"]["dryrun"] is True
    assert api.get(f"/api/entity/user/_uid/{user['_uid']}").json()["data"].get("x") is None
    r = api.post("/collect/json/default", json=[{"_uid": user["_uid"], "plan": "gold"}, {"bad": [{"nested": 1}]},
                                                {"email": "fresh@example.com"}]).json()
    assert r["data"]["message_count"] == 2 and r["data"]["rejected_count"] == 1
    entity = api.get(f"/api/entity/user/_uid/{user['_uid']}").json()
    assert entity["data"]["plan"] == "gold" and entity["data"]["_modified"] != user["_modified"]
    assert entity["meta"]["by_fields"] and entity["data"]["segments_all"]
    assert api.get("/api/entity/user/email/fresh@example.com").status_code == 200
    assert api.get("/api/entity/user/email/nobody@example.com").status_code == 404
    after = {s["stream"]: s for s in api.get("/api/schema/_streams").json()["data"]}
    assert after["default"]["ct"] == before["default"]["ct"] + 2
    assert int(after["default"]["last_msg_ts"]) > int(before["default"]["last_msg_ts"])


def test_catalog_content_and_options(emu, api, control_for):
    schema = api.get("/api/schema/user").json()["data"]
    assert schema["name"] == "user" and "_uid" in schema["by_fields"]
    assert {"as", "type", "is_by"} <= set(schema["columns"][0])
    docs = api.get("/api/content/doc").json()["data"]
    assert docs["total"] == 10 and len(docs["urls"]) == 10
    ctl = control_for(emu)
    try:
        ctl.configure(string_status=True, next_key="next", throttle_every=1)
        r = api.get("/api/account")
        assert r.status_code == 429 and r.json() == {"status": 429, "message": "Too Many Requests"}
        assert "retry-after" not in r.headers
        ctl.configure(throttle_every=0)
        assert api.get("/api/account").json()["status"] == "success"
        page = api.get("/api/segment/all_users/scan").json()
        assert "_next" not in page and page["next"]
    finally:
        ctl.configure(string_status=False, next_key="_next", throttle_every=0)


def test_same_seed_same_data():
    a = emulators.create_backend("lytics", seed=5, scale=50)
    b = emulators.create_backend("lytics", seed=5, scale=50)
    c = emulators.create_backend("lytics", seed=6, scale=50)
    assert a.export("users") == b.export("users") and a.api_key == b.api_key
    assert a.export("users") != c.export("users") and a.api_key != c.api_key


@pytest.fixture
def fresh(start_emulator: Any, control_for: Any) -> Any:
    server = start_emulator("lytics", scale=300, seed=31)
    with httpx.Client(base_url=server.base_url, verify=server.ca_file,
                      headers={"Authorization": server.api_key}) as client:
        yield server, control_for(server), client


def test_short_scans_keep_total_and_serve_fewer_rows(fresh):
    server, ctl, api = fresh
    ctl.configure(short_scans={"page": 2, "drop": 4})
    rows, pages = walk(api, "POST", "/api/segment/scan", "FILTER * FROM user", limit=100)
    assert {p["total"] for p in pages} == {300} and len(rows) == 296 == len({r["_uid"] for r in rows})


@pytest.mark.parametrize("stale", ["first", "last"])
def test_repeat_rows_serve_a_changed_profile_twice_in_either_order(fresh, stale):
    server, ctl, api = fresh
    ctl.configure(repeat_rows={"page": 2, "count": 2, "stale": stale})
    rows, pages = walk(api, "POST", "/api/segment/scan", "FILTER * FROM user", limit=100)
    twice = {u for u in (r["_uid"] for r in rows) if sum(r["_uid"] == u for r in rows) == 2}
    assert len(twice) == 2 and twice == server.backend.served_twice and {p["total"] for p in pages} == {300}
    truth = {u["_uid"]: u for u in ctl.export("users")}
    for uid in twice:
        copies = [r for r in rows if r["_uid"] == uid]
        newest = copies[1] if stale == "first" else copies[0]
        assert newest == truth[uid] and copies[0]["_modified"] != copies[1]["_modified"]


def test_late_users_land_in_the_past_and_modified_filters_find_them(fresh):
    server, ctl, api = fresh
    done = ctl.mutate({"op": "late_users", "count": 3, "age_seconds": 600})
    ctl.mutate({"op": "modify_users", "count": 5})  # a later change, appended after the late ones
    since = done["modified"][:19] + "Z"
    rows, _ = walk(api, "POST", "/api/segment/scan", f'FILTER _modified >= "{since}" FROM user', limit=100)
    assert set(done["uids"]) <= {r["_uid"] for r in rows} and len(rows) == 8


def test_add_field_inserts_it_in_the_schema_order(fresh):
    server, ctl, api = fresh
    ctl.mutate({"op": "add_field", "name": "aaa_rank", "type": "int", "position": 0, "count": 4})
    columns = api.get("/api/schema/user").json()["data"]["columns"]
    assert columns[0]["as"] == "aaa_rank" and columns[0]["type"] == "int"


def test_hostile_mode_is_seeded_and_keeps_every_page_a_scan_page(fresh):
    server, ctl, api = fresh

    def one_walk(seed: int) -> tuple[int, dict[str, int]]:
        server.backend.hostile_events.clear()
        ctl.configure(hostile=1, hostile_seed=seed, hostile_rate=0.0, hostile_odds=5.0)
        rows, pages = walk(api, "POST", "/api/segment/scan", "FILTER * FROM user", limit=50)
        assert all(set(p) >= {"data", "total", "_next"} for p in pages)
        return len(rows), dict(server.backend.hostile_events)

    first = one_walk(4)
    assert first[1], "odds of 5x over several pages: some bad day happened"
    again = one_walk(4)
    assert again[1].keys() == first[1].keys()
    ctl.configure(hostile=0)


def test_revoked_key_and_the_vendor_throttle_shape(fresh):
    server, ctl, api = fresh
    ctl.configure(revoked=True)
    r = api.get("/api/segment")
    assert r.status_code == 401 and r.json() == {"data": None, "message": "Not authorized", "status": 401}
    ctl.configure(revoked=False)
    status, headers, body = server.backend.throttle_response()
    assert status == 429 and "Retry-After" not in headers and b'"Too Many Requests"' in body


def test_a_refused_late_users_op_changes_nothing(fresh):
    server, ctl, api = fresh
    ctl.mutate({"op": "modify_users", "count": 1, "offset": 160})  # slot 160 changes now
    with pytest.raises(Exception, match="changed after"):
        ctl.mutate({"op": "late_users", "count": 2, "age_seconds": 60, "offset": 10})  # slots 10 and 160
    uid = server.backend.account.uid_of(10)
    rows, _ = walk(api, "POST", "/api/segment/scan", "FILTER * FROM user", limit=100)
    served = next(r for r in rows if r["_uid"] == uid)
    assert "late" not in served and served == next(u for u in ctl.export("users") if u["_uid"] == uid)
