"""The shared emulator harness: control plane, faults, latency, request log, shell entry point."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from emulators.common.app import build_app
from emulators.common.control import ControlError
from tests.common.paging_backend import API_KEY, PagingBackend

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def api(paging: Any) -> Any:
    with httpx.Client(base_url=paging.base_url + "/", verify=paging.ca_file, headers=AUTH) as c:
        yield c


def test_control_plane_answers_loopback_only():
    app = build_app(PagingBackend())
    with TestClient(app, client=("10.1.2.3", 5555)) as remote:
        r = remote.get("/_emulator/state")
        assert r.status_code == 403 and "loopback" in r.text
        assert remote.get("/api/echo", headers=AUTH).status_code == 200  # the API itself is not restricted
    with TestClient(app, client=("127.0.0.1", 5555)) as local:
        assert local.get("/_emulator/state").json()["tables"] == {"items": 95}


def test_state_mutate_export_and_errors(paging_ctl):
    assert paging_ctl.state()["tables"] == {"items": 95}
    assert paging_ctl.mutate({"op": "add_items", "count": 5}) == {"ids": [96, 100]}
    assert len(paging_ctl.export("items")) == 100
    with pytest.raises(ControlError, match="400.*unknown op"):
        paging_ctl.mutate({"op": "nope"})
    with pytest.raises(ControlError, match="404"):
        paging_ctl.export("no_such_table")
    with pytest.raises(ControlError, match="400"):
        paging_ctl.add_faults([{"path": "(unclosed", "actions": [{"pass": True}]}])
    with pytest.raises(ControlError, match="400"):
        paging_ctl.add_faults([{"path": "x", "actions": [{"explode": True}]}])


def test_fault_rules_apply_in_order_then_stop(api, paging_ctl):
    paging_ctl.add_faults([
        {"path": "^/api/echo", "method": "GET", "actions": [{"pass": True}, {"status": 418, "body": "teapot"}]},
        {"path": r"^/api/pages\?.*page=2", "actions": [{"status": 500, "json": {"error": "x"}}], "repeat": True},
    ])
    assert [api.get("echo").status_code for _ in range(3)] == [200, 418, 200]
    assert api.get("pages?page=1").status_code == 200
    r = api.get("pages?page=2")
    assert r.status_code == 500 and r.json() == {"error": "x"}
    assert api.get("pages?page=2").status_code == 500  # repeat cycles
    rules = paging_ctl.faults()
    assert rules[0]["used"] == 2 and rules[1]["used"] == 2
    paging_ctl.clear_faults()
    assert api.get("pages?page=2").status_code == 200


def test_request_log_records_raw_path_query_status_fault_and_body(api, paging_ctl):
    paging_ctl.add_faults([{"path": "^/api/echo", "actions": [{"truncate": True}]}])
    api.get("echo", params={"q": "a b"})
    api.post("echo", content=b'{"hello": 1}')
    api.get("status/404")
    log = paging_ctl.requests()
    assert [(e["method"], e["path"], e["status"], e["fault"]) for e in log] == [
        ("GET", "/api/echo", 200, "truncate"),
        ("POST", "/api/echo", 405, None),
        ("GET", "/api/status/404", 404, None),
    ]
    assert log[0]["query"] == "q=a+b" and log[1]["body"] == '{"hello": 1}'
    paging_ctl.clear_requests()
    assert paging_ctl.requests() == []


def test_latency_is_added_and_configurable(api, paging_ctl):
    assert paging_ctl.configure(latency_ms=120)["latency_ms"] == 120
    api.get("echo")
    paging_ctl.configure(latency_ms=0)
    api.get("echo")
    slow, fast = (e["duration_ms"] for e in paging_ctl.requests())
    assert slow >= 120 > fast
    with pytest.raises(ControlError, match="400"):
        paging_ctl.configure(latency_ms=-1)


def test_python_m_emulators_prints_one_json_line_and_stops_on_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulators", "personyze", "--port", "0", "--seed", "3", "--scale", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        info = json.loads(line)
        assert set(info) == {"vendor", "base_url", "api_key", "ca_file"}
        assert info["vendor"] == "personyze" and info["base_url"].startswith("https://127.0.0.1:")
        r = httpx.get(info["base_url"] + "/account", auth=("api", info["api_key"]), verify=info["ca_file"])
        assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert proc.stdout.read() == "", "exactly one line on stdout"
    finally:
        if proc.poll() is None:
            proc.kill()


# -- hostile mode ----------------------------------------------------------------------------------


def _hostile_kinds(paging_ctl: Any, api: Any, n: int) -> list[Any]:
    paging_ctl.clear_requests()
    for _ in range(n):
        try:
            api.get("echo")
        except httpx.HTTPError:
            pass  # a dropped connection
    return [e["fault"] for e in paging_ctl.requests()]


def test_hostile_mode_answers_each_of_the_wires_bad_days_seeded(paging_ctl, api):
    from emulators.common.app import HOSTILE_KINDS

    answer = paging_ctl.configure(hostile=1, hostile_seed=11, hostile_rate=1.0)
    assert (answer["hostile"], answer["hostile_seed"], answer["hostile_rate"]) == (1, 11, 1.0)
    kinds = _hostile_kinds(paging_ctl, api, 80)
    assert set(kinds) == {f"hostile:{k}" for k in HOSTILE_KINDS}
    paging_ctl.configure(hostile_seed=11)
    assert _hostile_kinds(paging_ctl, api, 80) == kinds  # the same seed, the same bad days in order

    paging_ctl.configure(hostile_seed=11)
    seen: dict[str, Any] = {}
    for _ in range(80):
        try:
            r = api.get("echo")
        except httpx.HTTPError:
            continue
        seen.setdefault(paging_ctl.requests()[-1]["fault"], r)
    assert seen["hostile:empty_200"].status_code == 200 and seen["hostile:empty_200"].content == b""
    assert seen["hostile:empty_object_200"].json() == {} and seen["hostile:null_200"].json() is None
    assert "<html>" in seen["hostile:html_200"].text
    assert seen["hostile:throttle_retry_after"].status_code == 429
    assert seen["hostile:throttle_retry_after"].headers["retry-after"] == "1"
    assert seen["hostile:throttle"].status_code == 429 and "retry-after" not in seen["hostile:throttle"].headers
    assert seen["hostile:503"].status_code == 503


def test_hostile_mode_at_its_rate_leaves_most_answers_alone_and_fault_rules_win(paging_ctl, api):
    paging_ctl.configure(hostile=1, hostile_seed=3, hostile_rate=0.1)
    kinds = _hostile_kinds(paging_ctl, api, 300)
    assert 10 <= sum(k is not None for k in kinds) <= 60
    paging_ctl.configure(hostile_rate=1.0)
    paging_ctl.add_faults([{"path": "^/api/echo", "actions": [{"pass": True}]}])
    assert _hostile_kinds(paging_ctl, api, 1) == [None]
    paging_ctl.configure(hostile=0)
    assert _hostile_kinds(paging_ctl, api, 20) == [None] * 20


def test_a_token_revoked_mid_run(paging_ctl, api):
    paging_ctl.configure(revoke_after=3)
    assert [api.get("echo").status_code for _ in range(5)] == [200, 200, 200, 401, 401]
    paging_ctl.configure(revoke_after=None)
    assert api.get("echo").status_code == 200
    with pytest.raises(ControlError):
        paging_ctl.configure(revoke_after=-1)
    with pytest.raises(ControlError):
        paging_ctl.configure(hostile_rate=2)
