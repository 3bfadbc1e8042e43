"""The PostHog emulator's REST lists of issue 14 over HTTPS on loopback: experiments, actions,
dashboards and surveys (DRF style A), session recordings (style E: ``has_next``, windowed by
``date_from``/``date_to``, optional ``next_cursor``), scopes, and hostile mode's shifting lists."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import httpx
import orjson
import pytest

from emulators.posthog.backend import ALL_SCOPES, Key

SCALE = 300
LISTS = {"experiments": "experiment:read", "actions": "action:read", "dashboards": "dashboard:read",
         "surveys": "survey:read"}


@pytest.fixture
def emu(start_emulator: Any) -> Any:
    return start_emulator("posthog", scale=SCALE, seed=7)


@pytest.fixture
def pid(emu: Any) -> int:
    return min(emu.backend.projects)


def _walk(api: Any, url: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    rows, body = [], api.get(url, params=params).json()
    rows += body["results"]
    while body["next"]:
        body = api.get(body["next"]).json()
        rows += body["results"]
    return rows


@pytest.mark.parametrize("table", list(LISTS))
def test_new_object_lists_are_drf_limit_offset(emu, ctl, api, pid, table):
    first = api.get(f"/api/projects/{pid}/{table}/").json()
    assert set(first) == {"count", "next", "previous", "results"}
    truth = [{k: v for k, v in r.items() if k != "project_id"} for r in ctl.export(table) if r["project_id"] == pid]
    assert first["count"] == len(truth) and first["previous"] is None
    page = api.get(f"/api/projects/{pid}/{table}/", params={"limit": 1, "offset": 1}).json()
    assert page["next"].startswith(emu.base_url) and "offset=2" in page["next"] and "limit=1" in page["next"]
    assert page["previous"] is not None and len(page["results"]) == 1
    walked = _walk(api, f"/api/projects/{pid}/{table}/", {"limit": 3})
    if table == "dashboards":  # the list is the basic serializer: no tiles
        assert all("tiles" not in d for d in walked)
        truth = [{k: v for k, v in d.items() if k != "tiles"} for d in truth]
    assert walked == truth
    # the environments alias answers the same
    assert api.get(f"/api/environments/{pid}/{table}/").json()["count"] == len(truth)


@pytest.mark.parametrize(("table", "scope"), list(LISTS.items()) + [("session_recordings", "session_recording:read")])
def test_each_list_needs_its_scope(emu, pid, table, scope):
    key = f"phx_without_{scope.split(':')[0]}"
    emu.backend.keys[key] = Key(key, frozenset(ALL_SCOPES) - {scope}, None, "test")
    r = httpx.get(f"{emu.base_url}/api/projects/{pid}/{table}/", headers={"Authorization": f"Bearer {key}"},
                  verify=emu.ca_file)
    assert r.status_code == 403
    assert r.json() == {"type": "authentication_error", "code": "permission_denied",
                        "detail": f"API key missing required scope '{scope}'", "attr": None}


def test_a_dashboard_detail_carries_its_tiles_with_computed_results(ctl, api, pid):
    dashboards = [d for d in ctl.export("dashboards") if d["project_id"] == pid and d["tiles"]]
    assert dashboards
    d = dashboards[0]
    detail = api.get(f"/api/projects/{pid}/dashboards/{d['id']}/").json()
    assert [t["id"] for t in detail["tiles"]] == [t["id"] for t in d["tiles"]]
    assert [t["insight"]["id"] for t in detail["tiles"]] == [t["insight"] for t in d["tiles"]]
    assert all("result" in t["insight"] for t in detail["tiles"])
    assert api.get(f"/api/projects/{pid}/dashboards/999999/").status_code == 404


def test_experiments_carry_their_metric_definitions(ctl, pid):
    experiments = [e for e in ctl.export("experiments") if e["project_id"] == pid]
    assert experiments and all(e["metrics"] and e["metrics"][0]["kind"] == "ExperimentMetric" for e in experiments)
    assert all(e["feature_flag"]["key"] == e["feature_flag_key"] for e in experiments)


# -- session recordings ------------------------------------------------------------------------------


def _recordings(ctl: Any, pid: int) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "project_id"} for r in ctl.export("session_recordings")
            if r["project_id"] == pid]


def _iso(d: dt.datetime) -> str:
    return d.isoformat().replace("+00:00", "Z")


def test_recordings_are_style_e_newest_first_windowed_by_date(emu, ctl, api, pid):
    truth = _recordings(ctl, pid)
    url = f"/api/projects/{pid}/session_recordings/"
    body = api.get(url).json()
    assert set(body) == {"results", "has_next", "version"} and body["version"] == 4
    # no date_from: the last three days only (the documented default -3d)
    now = dt.datetime.now(dt.UTC)
    recent = [r for r in truth if r["start_time"] >= _iso(now - dt.timedelta(days=3, seconds=-5))]
    assert {r["id"] for r in body["results"]} <= {r["id"] for r in truth}
    assert len(body["results"]) == min(50, len(recent))
    assert all(r["start_time"] >= _iso(now - dt.timedelta(days=3, seconds=5)) for r in body["results"])
    # a window: date_from <= start_time <= date_to, at second precision
    lo, hi = truth[len(truth) // 2]["start_time"], truth[len(truth) // 4]["start_time"]
    rows, offset = [], 0
    while True:
        page = api.get(url, params={"date_from": lo, "date_to": hi, "limit": 4, "offset": offset}).json()
        rows += page["results"]
        if not page["has_next"]:
            break
        offset += 4
    assert rows == [r for r in truth if lo[:19] <= r["start_time"][:19] <= hi[:19]]
    assert [(r["start_time"], r["id"]) for r in rows] == sorted(((r["start_time"], r["id"]) for r in rows),
                                                                reverse=True)
    assert api.get(url, params={"date_from": "yesterday-ish"}).status_code == 400


def test_recordings_next_cursor_when_switched_on_pages_through_ties(emu, ctl, api, pid):
    ctl.mutate({"op": "add_recordings", "count": 9, "project_id": pid, "late_seconds": 3600, "same_start": True})
    truth = _recordings(ctl, pid)
    url = f"/api/projects/{pid}/session_recordings/"
    params = {"date_from": "-30d", "limit": 4}
    assert "next_cursor" not in api.get(url, params=params).json()
    ctl.configure(recordings_next_cursor=True)
    rows, cursor = [], None
    while True:
        page = api.get(url, params={**params, **({"after": cursor} if cursor else {})}).json()
        rows += page["results"]
        if not page["has_next"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
        decoded = orjson.loads(base64.b64decode(cursor))
        assert decoded == {"order_value": page["results"][-1]["start_time"], "session_id": page["results"][-1]["id"]}
    assert rows == truth


def test_recordings_grow_and_objects_change_through_the_control_plane(ctl, pid):
    added = ctl.mutate({"op": "add_recordings", "count": 2, "project_id": pid, "ongoing": True})
    before = {r["id"]: r for r in _recordings(ctl, pid)}
    ctl.mutate({"op": "grow_recordings", "project_id": pid, "ids": added["ids"], "seconds": 60, "end": True})
    after = {r["id"]: r for r in _recordings(ctl, pid)}
    for rid in added["ids"]:
        assert after[rid]["recording_duration"] == before[rid]["recording_duration"] + 60
        assert before[rid]["ongoing"] and not after[rid]["ongoing"]
    for table in LISTS:
        n = len(ctl.export(table))
        ctl.mutate({"op": "add_objects", "table": table, "count": 2, "project_id": pid})
        changed = ctl.mutate({"op": "modify_objects", "table": table, "count": 1, "project_id": pid})
        gone = ctl.mutate({"op": "delete_objects", "table": table, "count": 1, "project_id": pid})
        assert len(ctl.export(table)) == n + 1 and changed["ids"] and gone["ids"]
        assert {"project_id": pid, "table": table, "id": gone["ids"][0]} in ctl.export("deleted_objects")


def test_hostile_list_shift_deletes_a_row_on_an_earlier_page(emu, ctl, api, pid):
    ctl.configure(hostile=1, hostile_seed=2, hostile_rate=0, hostile_vendor_rate=1.0, hostile_kinds=["list_shift"])
    n = api.get(f"/api/projects/{pid}/actions/").json()["count"]
    page = api.get(f"/api/projects/{pid}/actions/", params={"limit": 2, "offset": 2}).json()
    assert page["count"] == n - 1
    log = ctl.export("hostile")
    assert log == [{"kind": "list_shift", "project_id": pid, "table": "actions", "offset": 2}]
    assert [d["table"] for d in ctl.export("deleted_objects")] == ["actions"]
