"""The Synerise emulator against its contract (``api/synerise.md`` §8), over real HTTPS."""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from typing import Any

import httpx
import pytest

import emulators

HOUR = 3_600_000
ANALYTICS = "/analytics-backend/analytics/definitions-manager"


@pytest.fixture
def emu(start_emulator: Any) -> Any:
    return start_emulator("synerise", scale=400, seed=9, token_ttl_s=60)


@pytest.fixture
def http(emu: Any) -> Any:
    with httpx.Client(base_url=emu.base_url, verify=emu.ca_file, timeout=30) as client:
        yield client


def login(http: httpx.Client, key: str) -> str:
    r = http.post("/uauth/v2/auth/login/profile", json={"apiKey": key})
    assert r.status_code == 200, r.text
    return r.json()["token"]


def headers(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Api-Version": "4.4", "Content-Type": "application/json", **extra}


def claims(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def now_ms(ctl: Any) -> int:
    return ctl.export("account")[0]["now_ms"]


def test_login_issues_a_jwt_and_rejects_bad_tokens(emu, ctl, http):
    token = login(http, emu.api_key)
    c = claims(token)
    assert c["iss"] == "Synerise" and c["rlm"] == "business_profile" and c["aud"] == "API"
    assert c["exp"] - c["ctd"] / 1000 == pytest.approx(60, abs=1.01)
    assert isinstance(c["bpi"], int)
    bad = http.post("/uauth/v2/auth/login/profile", json={"apiKey": "0" * 36})
    assert bad.status_code == 401 and set(bad.json()) == {"timestamp", "status", "error", "message", "path"}
    assert http.post("/uauth/v2/auth/login/profile", json={}).status_code == 400
    for auth in (None, "Bearer garbage", f"Bearer {token[:-4]}AAAA", f"Bearer{token}"):
        h = {"Api-Version": "4.4", "Content-Type": "application/json"}
        if auth:
            h["Authorization"] = auth
        r = http.get("/v4/clients", headers=h)
        assert r.status_code == 401, (auth, r.text)
        assert r.json()["status"] == 401
    assert http.get("/v4/clients", headers=headers(token)).status_code == 200
    ctl.mutate({"op": "advance_clock", "seconds": 61})
    expired = http.get("/v4/clients", headers=headers(token))
    assert expired.status_code == 401 and expired.json()["message"] == "Token expired"
    fresh = login(http, emu.api_key)
    ctl.mutate({"op": "expire_tokens"})
    assert http.get("/v4/clients", headers=headers(fresh)).status_code == 401


def test_api_key_and_data_are_derived_from_the_seed():
    start = 1_790_000_000_000  # data is laid out relative to the server clock's start
    a, b, c = (emulators.create_backend("synerise", seed=s, scale=50, start_ms=start) for s in (4, 4, 5))
    assert a.api_key == b.api_key != c.api_key
    assert a.export("profiles") == b.export("profiles") != c.export("profiles")
    assert a.export("catalog_items") == b.export("catalog_items")


def test_realms_and_permissions(start_emulator, control_for):
    emu = start_emulator("synerise", scale=50, seed=9, denied_permissions=["API_TAGS_CLIENT_READ"])
    ctl = control_for(emu)
    with httpx.Client(base_url=emu.base_url, verify=emu.ca_file) as http:
        token = login(http, emu.api_key)
        client_id = ctl.export("profiles")[1]["clientId"]
        notes = http.get(f"/notes-service/by-id/{client_id}", headers=headers(token))
        assert notes.status_code == 403, "notes are for Synerise users only"
        assert http.get("/activities-api/events", headers=headers(token)).status_code == 403, "profile tokens only"
        tags = http.get("/v4/clients/tags", headers=headers(token))
        assert tags.status_code == 403 and "API_TAGS_CLIENT_READ" in tags.json()["message"]
        assert set(tags.json()) == {"error", "status", "timestamp", "path", "message", "errors"}, "family B"
        account = ctl.export("account")[0]
        user = http.post("/uauth/auth/login/user", json={"username": account["username"],
                                                         "password": account["password"]})
        assert user.status_code == 200 and user.json()["consumer"]["type"] == "USER"
        pre = user.json()["token"]
        assert http.get(f"/notes-service/by-id/{client_id}", headers=headers(pre)).status_code == 403
        chosen = http.post(f"/uauth/auth/login/user/profile/{account['workspace_uuid']}", headers=headers(pre))
        assert chosen.status_code == 200
        notes = http.get(f"/notes-service/by-id/{client_id}", headers=headers(chosen.json()["token"]))
        assert notes.status_code == 200 and isinstance(notes.json(), list)


def test_api_version_is_required_on_v4_and_server_time_needs_no_token(http, emu):
    r = http.get("/v4/server/time")
    assert r.status_code == 400
    body = r.json()
    assert body["message"] == "Version header content is invalid" and body["error"] == "Bad Request"
    assert body["path"] == "/v4/server/time" and body["status"] == 400
    assert http.get("/v4/server/time", headers={"Api-Version": "4.3"}).status_code == 400
    ok = http.get("/v4/server/time", headers={"Api-Version": "4.4"})
    assert ok.status_code == 200 and ok.json()["serverTime"].endswith("Z")
    token = login(http, emu.api_key)
    no_version = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    assert http.get("/v4/clients", headers=no_version).json()["message"] == "Version header content is invalid"


def test_v4_clients_pages_sorts_and_filters(http, emu, ctl):
    h = headers(login(http, emu.api_key))
    everyone = ctl.export("profiles")
    pages, page = [], 1
    while True:
        r = http.get("/v4/clients", headers=h, params={"pageIndex": page, "pageSize": 70})
        assert r.status_code == 200 and isinstance(r.json(), list), "a bare array"
        pages.append(r.json())
        if not r.json():
            break
        page += 1
    assert [p["clientId"] for chunk in pages for p in chunk] == [p["clientId"] for p in everyone]
    assert pages[-1] == [], "past the end: an empty array"
    zero = http.get("/v4/clients", headers=h, params={"pageIndex": 0})
    assert zero.status_code == 400 and zero.json()["errors"][0]["field"] == "pageIndex"
    assert http.get("/v4/clients", headers=h, params={"pageSize": 501}).status_code == 400
    assert http.get("/v4/clients", headers=h, params={"sortBy": "clientId"}).status_code == 400
    desc = http.get("/v4/clients", headers=h, params={"sortBy": "lastActivityDate", "sortOrder": "DESC",
                                                      "pageSize": 50}).json()
    stamps = [p["lastActivityDate"] for p in desc]
    assert stamps == sorted(stamps, reverse=True) and stamps[0] == max(p["lastActivityDate"] for p in everyone)
    who = everyone[5]
    found = http.get("/v4/clients", headers=h, params={"filters[email]": who["email"]}).json()
    assert [p["clientId"] for p in found] == [who["clientId"]]
    anon = http.get("/v4/clients", headers=h, params={"filters[anonymous]": "true", "pageSize": 500}).json()
    assert anon and all(p["anonymous"] for p in anon)
    assert http.get(f"/v4/clients/{who['clientId']}", headers=h).json() == who
    assert http.get(f"/v4/clients/by-email/{who['email']}", headers=h).json() == who
    missing = http.get("/v4/clients/by-email/nobody@example.com", headers=h)
    assert missing.status_code == 404 and missing.json()["status"] == 404
    no_ct = http.get("/v4/clients", headers={k: v for k, v in h.items() if k != "Content-Type"})
    assert no_ct.status_code == 415


def test_activities_window_horizon_cap_and_ties(http, emu, ctl):
    h = headers(login(http, emu.api_key))
    now = now_ms(ctl)
    default = http.get("/activities-api/activities", headers=h, params={"limit": 1000}).json()
    assert default and min(e["time"] for e in default) >= now - 2 * HOUR - 5000, "default window: now-2h..now"
    everything = [e for e in ctl.export("events")]
    older = [e for e in everything if now - 10 * HOUR <= e["time"] < now - 6 * HOUR - 60_000]
    assert older, "the emulated workspace has activity older than the horizon"
    asked = http.get("/activities-api/activities", headers=h,
                     params={"dateFrom": now - 10 * HOUR, "dateTo": now - 6 * HOUR - 60_000, "limit": 1000})
    assert asked.status_code == 200 and asked.json() == [], "nothing older than now-6h, even when asked"
    for bad in (0, 1001, "x"):
        r = http.get("/activities-api/activities", headers=h, params={"limit": bad})
        assert r.status_code == 400, bad
    window = {"dateFrom": now - 6 * HOUR + 60_000, "dateTo": now}
    capped = http.get("/activities-api/activities", headers=h, params={**window, "limit": 50}).json()
    inside = sorted((e for e in everything if window["dateFrom"] <= e["time"] <= now), key=lambda e: -e["time"])
    assert len(capped) == 50 < len(inside), "truncated at limit, no continuation"
    assert [e["time"] for e in capped] == [e["time"] for e in inside[:50]], "the newest events, newest first"
    assert "params" not in capped[0]
    raw = http.get("/activities-api/activities", headers=h, params={**window, "limit": 5, "raw": "true"}).json()
    assert raw[0]["params"]["eventCreateTime"] == pytest.approx(raw[0]["time"] / 1000)
    per_ms = Counter(e["time"] for e in inside)
    assert max(per_ms.values()) >= 100, "bulk imports: many events share one millisecond"
    # inclusive bounds
    t = inside[10]["time"]
    exact = http.get("/activities-api/activities", headers=h, params={"dateFrom": t, "dateTo": t, "limit": 1000})
    assert len(exact.json()) == min(1000, per_ms[t])


def test_profile_events_follow_page_tokens_to_the_end(http, emu, ctl):
    h = headers(login(http, emu.api_key))
    everything = ctl.export("events")
    counts = Counter(e["client"]["id"] for e in everything)
    client_id, n = counts.most_common(1)[0]
    mine = sorted((e for e in everything if e["client"]["id"] == client_id), key=lambda e: (e["time"], e["eventUUID"]))
    body = {"identifierValue": str(client_id), "additionalData": {"limit": "2", "sortBy": "time:asc"}}
    got, token, pages = [], None, 0
    while True:
        params = {"pageToken": token} if token else {}
        r = http.post("/activities-api/events/by/id", headers=h, json=body, params=params)
        assert r.status_code == 200, r.text
        meta = r.json()["meta"]
        assert meta["limit"] == 2 and meta["count"] == len(r.json()["data"])
        assert meta["links"][0]["rel"] == "first"
        got += r.json()["data"]
        pages += 1
        token = meta["cursors"].get("after")
        if not token:
            break
        assert pages < 100
    assert [e["eventUUID"] for e in got] == [e["eventUUID"] for e in mine] and n == len(mine)
    assert pages == -(-n // 2)
    other = {"identifierValue": str(client_id), "additionalData": {"limit": "3"}}
    first = http.post("/activities-api/events/by/id", headers=h, json=body).json()["meta"]["cursors"]["after"]
    assert http.post("/activities-api/events/by/id", headers=h, json=other,
                     params={"pageToken": first}).status_code == 400
    assert http.post("/activities-api/events/by/id", headers=h, json=body,
                     params={"pageToken": "garbage"}).status_code == 400
    assert http.post("/activities-api/events/by/id", headers=h,
                     json={"identifierValue": "1"}).status_code == 404
    desc = http.post("/activities-api/events/by/id", headers=h,
                     json={"identifierValue": str(client_id), "additionalData": {"limit": "1000"}}).json()["data"]
    assert [e["eventUUID"] for e in desc] == [e["eventUUID"] for e in reversed(mine)], "default sort: time:desc"


def test_catalogs_offsets_totals_and_string_values(http, emu, ctl):
    h = headers(login(http, emu.api_key))
    bags = http.get("/catalogs/bags", headers=h, params={"orderBy": "lastModified"}).json()
    assert bags["metaData"]["totalCount"] == len(ctl.export("catalogs"))
    assert [b["lastModified"] for b in bags["data"]] == sorted(b["lastModified"] for b in bags["data"])
    cid = bags["data"][0]["id"]
    first = http.get(f"/catalogs/bags/{cid}/items", headers=h, params={"offset": 0, "limit": 10}).json()
    second = http.get(f"/catalogs/bags/{cid}/items", headers=h, params={"offset": 10, "limit": 10}).json()
    assert isinstance(first["data"][0]["value"], str) and isinstance(json.loads(first["data"][0]["value"]), dict)
    assert not {i["id"] for i in first["data"]} & {i["id"] for i in second["data"]}, "offset counts items"
    key = second["data"][3]["itemKey"]
    one = http.get(f"/catalogs/bags/{cid}/items", headers=h, params={"itemKey": key}).json()
    assert [i["itemKey"] for i in one["data"]] == [key] and one["metaData"]["totalCount"] == 1
    bad = http.get(f"/catalogs/bags/{cid}/items", headers=h, params={"limit": 0})
    assert bad.status_code == 400 and set(bad.json()) == {"status", "error", "message", "timestamp"}, "family E"
    assert http.get("/catalogs/bags/999999/items", headers=h).status_code == 404


def test_crm_segmentation_envelope_and_live_membership(http, emu, ctl):
    h = headers(login(http, emu.api_key))
    seg = ctl.export("segmentations")[1]["uuid"]
    r = http.get(f"/crm/v1/segmentations/{seg}/clients", headers=h).json()
    assert set(r) == {"customers", "all", "limit", "offset", "matching"}
    assert r["limit"] == 25 and r["offset"] == 0 and len(r["customers"]) == 25 and r["all"] == 400
    assert len(r["customers"][0]["last_activity_date"]) == 10, "CRM dates are date-only"
    before = r["matching"]
    ctl.mutate({"op": "churn_segmentation", "uuid": seg, "add": 3, "remove": 1})
    after = http.get(f"/crm/v1/segmentations/{seg}/clients", headers=h).json()["matching"]
    assert after == before + 2
    recognized = http.get(f"/crm/v1/segmentations/{ctl.export('segmentations')[0]['uuid']}/clients", headers=h,
                          params={"recognized": "RECOGNIZED", "limit": 100}).json()
    assert all(c["email"] for c in recognized["customers"])
    assert http.get(f"/crm/v1/segmentations/{seg}/clients", headers=h, params={"limit": 101}).status_code == 400


def test_analytics_spring_pages_sort_and_mandatory_content_type(http, emu):
    token = login(http, emu.api_key)
    h = headers(token)
    no_ct = http.get(f"{ANALYTICS}/expressions", headers={"Authorization": f"Bearer {token}"})
    assert no_ct.status_code == 415
    assert set(no_ct.json()) == {"httpStatus", "errorCode", "message", "timestamp", "traceId", "help"}, "family D"
    first = http.get(f"{ANALYTICS}/expressions", headers=h).json()
    assert first["pagination"] == {"currentPageNumber": 0, "pageSize": 20, "sorted": False, "totalElements": 25,
                                   "totalPages": 2}
    last = http.get(f"{ANALYTICS}/expressions", headers=h, params={"page": 1}).json()
    assert len(first["content"]) + len(last["content"]) == 25
    by_name = http.get(f"{ANALYTICS}/aggregates", headers=h, params={"sort": "name,desc", "size": 100}).json()
    names = [a["name"] for a in by_name["content"]]
    assert names == sorted(names, reverse=True) and by_name["pagination"]["sorted"] is True
    assert http.get(f"{ANALYTICS}/aggregates", headers=h, params={"sort": "bogus,asc"}).status_code == 400
    agg = by_name["content"][0]["aggregate"]["uuid"]
    value = http.post(f"{ANALYTICS}/aggregates/{agg}/client/5000001/calculate", headers=h).json()
    assert isinstance(value["result"], str) and value["aggregateUuid"] == agg


def test_export_task_is_frozen_capped_and_expires(http, emu, ctl):
    h = headers(login(http, emu.api_key))
    seg = ctl.export("segmentations")[0]["uuid"]
    expr = ctl.export("expressions")[0]["id"]
    bad = http.post("/client-exporter/v2/export/clients", headers=h, json={"name": "x"})
    assert bad.status_code == 400 and {e["field"] for e in bad.json()["errors"]} >= {"fields", "excludedIds"}
    task = http.post("/client-exporter/v2/export/clients", headers=h, json={
        "name": "all", "fields": ["firstname", "email", "points"], "agreementFilter": "NONE",
        "segmentationHash": seg, "expressions": [expr], "excludedIds": []}).json()
    assert task["columnOrder"] == ["id", "firstname", "email", "points", expr] and task["ttl"] == "2h"
    url = f"/client-exporter/v2/export/clients/task/{task['taskId']}"
    before = http.get(url, headers=h, params={"limit": 10000}).json()
    assert len(before) == task["estimatedCount"] == 400 and list(before[0]) == task["columnOrder"]
    changed = ctl.mutate({"op": "modify_profiles", "count": 50})["client_ids"]
    ctl.mutate({"op": "add_profiles", "count": 5})
    again = http.get(url, headers=h, params={"limit": 10000}).json()
    assert again == before, "the data is materialized at creation"
    assert {r["id"] for r in before} >= set(changed)
    assert http.get(url, headers=h, params={"limit": 10001}).status_code == 400
    paged = http.get(url, headers=h, params={"limit": 100, "offset": 100}).json()
    assert paged == before[100:200], "offset is 0-based"
    ctl.mutate({"op": "advance_clock", "seconds": 7201})
    h = headers(login(http, emu.api_key))
    assert http.get(url, headers=h).status_code == 404


def test_invented_rate_limit_answers_429_with_retry_after(http, emu, ctl):
    token = login(http, emu.api_key)
    ctl.configure(rate_limit_per_s=2)
    statuses = []
    for _ in range(6):
        r = http.get("/v4/clients/tags", headers=headers(token))
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["status"] == 429 and r.json()["error"] == "Too Many Requests"
    assert 429 in statuses and statuses[0] == 200
    ctl.configure(rate_limit_per_s=0)
    assert http.get("/v4/clients/tags", headers=headers(token)).status_code == 200


def test_a_million_profiles_start_lazily_and_answer_cheaply():
    from emulators.common.server import serve

    started = time.perf_counter()
    backend = emulators.create_backend("synerise", seed=1, scale=1_000_000)
    built = time.perf_counter() - started
    server = serve(backend)
    try:
        with httpx.Client(base_url=server.base_url, verify=server.ca_file, timeout=60) as http:
            h = headers(login(http, server.api_key))
            page = http.get("/v4/clients", headers=h, params={"pageIndex": 1999, "pageSize": 500}).json()
            assert len(page) == 500 and page[0]["clientId"] == 5_000_001 + 3 * 1998 * 500
            acts = http.get("/activities-api/activities", headers=h, params={"limit": 1000}).json()
            assert len(acts) == 1000
    finally:
        server.stop()
    print(f"1,000,000 profiles built in {built:.1f} s")


def test_tags_collector_crm_list_and_profile_tags(http, emu, ctl):
    h = headers(login(http, emu.api_key))
    first = http.get("/tags-collector/tags", headers=h).json()
    assert first["pagination"] == {"limit": 10, "page": 0, "pages": 3, "total": 27}, "0-based, size 10 by default"
    pages = [first] + [http.get("/tags-collector/tags", headers=h, params={"page": p}).json() for p in (1, 2)]
    assert sorted(t["hash"] for pg in pages for t in pg["data"]) == [t["hash"] for t in ctl.export("asset_tags")]
    assert http.get("/tags-collector/tags", headers=h, params={"page": 3}).json()["data"] == []
    assert len(http.get("/tags-collector/directories", headers=h).json()) == 3
    crm = http.get("/crm/v1/list", headers=h, params={"limit": 100, "offset": 390}).json()
    assert crm["all"] == crm["matching"] == 400 and len(crm["customers"]) == 10 and crm["offset"] == 390
    anonymous = http.get("/crm/v1/list", headers=h, params={"recognized": "ANONYMOUS", "limit": 100}).json()
    assert anonymous["matching"] < 400 and all(c["email"] is None for c in anonymous["customers"])
    who = next(p for p in ctl.export("profiles") if p["tags"])
    tags = http.get(f"/v4/clients/{who['clientId']}/tags", headers=h).json()
    assert sorted(t["name"] for t in tags) == sorted(who["tags"])
    missing = http.get("/v4/clients/1/tags", headers=h)
    assert missing.status_code == 404 and "errors" in missing.json(), "family B"


def test_hostile_mode_orders_clamps_and_logs_its_bad_days(start_emulator, control_for):
    from emulators.synerise import create_backend

    backend = create_backend(seed=4, scale=50, hostile=1, hostile_seed=9)
    assert backend.configure({"hostile": 0, "hostile_seed": 3})["hostile"] == 0
    status, extra, body = backend.throttle_response()
    assert status == 429 and extra["Retry-After"] == "1"
    assert set(json.loads(body)) == {"timestamp", "status", "error", "message", "path"}  # family A

    emu = start_emulator("synerise", scale=200, seed=4)
    ctl = control_for(emu)
    ctl.configure(hostile=1, hostile_seed=5, hostile_odds=0, hostile_rate=0)
    with httpx.Client(base_url=emu.base_url, verify=emu.ca_file, timeout=30) as http:
        token = login(http, emu.api_key)
        page = http.get("/v4/clients", params={"pageSize": 40, "pageIndex": 1}, headers=headers(token)).json()
        assert len(page) == 20, "served with half the page size asked for, silently"
        stamps = [p["lastActivityDate"] for p in page]
        assert stamps == sorted(stamps), "no sortBy: recently active last"
        ctl.configure(hostile_odds=1)
        second = http.get("/v4/clients", params={"pageSize": 40, "pageIndex": 2}, headers=headers(token)).json()
        assert len(second) == 20
    kinds = [h["kind"] for h in ctl.export("hostile_log")]
    assert kinds[:2] == ["profile_modified_mid_walk", "v4_clients_page_shifted"], kinds
    moved = ctl.export("hostile_log")[0]["client_id"]
    latest = max(ctl.export("profiles"), key=lambda p: (p["lastActivityDate"], p["clientId"]))
    assert latest["clientId"] == moved, "the modified profile is the newest and sorts last"
