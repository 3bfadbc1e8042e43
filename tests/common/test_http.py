"""The shared HTTP core over real HTTPS against the emulator harness: retries, waits, errors."""

from __future__ import annotations

import email.utils
import socket
import time
from typing import Any

import httpx
import pytest

from sources.common.errors import (
    AuthError,
    ConfigurationError,
    MalformedResponse,
    RequestRejected,
    ServerError,
)
from sources.common.http import HttpClient, Request, RetryPolicy, parse_retry_after

from .paging_backend import API_KEY


class Sleeps:
    """Records the waits the retry loop asks for instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client(server: Any, sleeps: Sleeps | None = None, **kw: Any) -> HttpClient:
    retry = kw.pop("retry", RetryPolicy(max_attempts=4, backoff_initial=0.5, backoff_max=4, jitter=0.5))
    return HttpClient(
        "paging",
        server.base_url,
        headers={"Authorization": f"Bearer {API_KEY}"},
        secrets=[API_KEY],
        retry=retry,
        sleep=sleeps or Sleeps(),
        **kw,
    )


def statuses(ctl: Any, prefix: str = "/api/") -> list[Any]:
    return [e["status"] for e in ctl.requests() if e["path"].startswith(prefix)]


def test_5xx_then_success_is_retried_with_growing_backoff(paging, paging_ctl):
    sleeps = Sleeps()
    paging_ctl.add_faults([{"path": "^/api/echo", "actions": [{"status": 503}, {"status": 502}, {"status": 500}]}])
    with client(paging, sleeps) as http:
        assert http.get_json("echo") == {"ok": True, "query": {}}
        assert http.stats["requests"] == 4 and http.stats["retries"] == 3
    assert statuses(paging_ctl) == [503, 502, 500, 200]
    assert len(sleeps.waits) == 3
    # exponential: 0.5, 1, 2 (+ up to 0.5 jitter each)
    for wait, base in zip(sleeps.waits, (0.5, 1.0, 2.0), strict=True):
        assert base <= wait <= base + 0.5


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_is_honoured(paging, paging_ctl, form):
    sleeps = Sleeps()
    value = "7" if form == "seconds" else email.utils.formatdate(time.time() + 7, usegmt=True)
    paging_ctl.add_faults([{"path": "^/api/echo", "actions": [{"status": 429, "headers": {"Retry-After": value}}]}])
    with client(paging, sleeps) as http:
        http.get_json("echo")
    assert len(sleeps.waits) == 1
    assert 5.5 <= sleeps.waits[0] <= 8.5


def test_vendor_wait_hint_is_used_without_retry_after(paging, paging_ctl):
    sleeps = Sleeps()
    paging_ctl.add_faults([{"path": "^/api/echo", "actions": [{"status": 429, "body": "Expected available in 3 seconds."}]}])

    def hint(response: httpx.Response) -> float | None:
        return 3.0 if "available in 3" in response.text else None

    with client(paging, sleeps, retry_after_hint=hint) as http:
        http.get_json("echo")
    assert 3.0 <= sleeps.waits[0] <= 4.0


def test_retry_after_beyond_the_budget_gives_up_at_once(paging, paging_ctl):
    sleeps = Sleeps()
    paging_ctl.add_faults([{"path": "^/api/echo", "actions": [{"status": 503, "headers": {"Retry-After": "3600"}}]}])
    with client(paging, sleeps, retry=RetryPolicy(max_attempts=5, max_total_wait=60)) as http:
        with pytest.raises(ServerError) as err:
            http.get_json("echo")
    assert sleeps.waits == []
    assert "beyond the retry budget" in str(err.value) and err.value.status == 503


def test_attempts_are_bounded(paging, paging_ctl):
    paging_ctl.add_faults([{"path": "^/api/echo", "actions": [{"status": 500, "body": "still broken"}], "repeat": True}])
    with client(paging, retry=RetryPolicy(max_attempts=3, backoff_initial=0.01, jitter=0)) as http:
        with pytest.raises(ServerError) as err:
            http.get_json("echo")
    assert statuses(paging_ctl) == [500, 500, 500]
    e = err.value
    assert (e.status, e.method) == (500, "GET") and "after 3 attempts" in str(e) and "still broken" in str(e)


@pytest.mark.parametrize(("status", "error"), [(400, RequestRejected), (404, RequestRejected), (422, RequestRejected),
                                               (401, AuthError), (403, AuthError)])
def test_other_4xx_are_never_retried(paging, paging_ctl, status, error):
    with client(paging) as http:
        with pytest.raises(error) as err:
            http.get_json(f"status/{status}")
    assert statuses(paging_ctl) == [status]
    assert err.value.status == status and "paging" in str(err.value)


def test_dropped_connection_and_truncated_body_are_retried(paging, paging_ctl):
    paging_ctl.add_faults([{"path": "^/api/offset", "actions": [{"drop": True}, {"truncate": True}]}])
    with client(paging) as http:
        body = http.get_json("offset", params={"limit": 50})
    assert len(body["data"]) == 50
    assert [e["fault"] for e in paging_ctl.requests()] == ["drop", "truncate", None]


def test_read_timeout_is_retried(paging, paging_ctl):
    paging_ctl.add_faults([{"path": "^/api/echo", "actions": [{"pass": True, "latency_ms": 1500}]}])
    with client(paging, timeout=0.3) as http:
        assert http.get_json("echo")["ok"] is True
        assert http.stats["requests"] == 2


def test_a_body_that_never_parses_is_a_malformed_response(paging):
    with client(paging, retry=RetryPolicy(max_attempts=2, backoff_initial=0.01, jitter=0)) as http:
        with pytest.raises(MalformedResponse) as err:
            http.get_json("text")
    assert "not valid JSON" in str(err.value) and "not json at all" in str(err.value)


def test_unreachable_host_is_a_server_error_after_retries():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    http = HttpClient("paging", f"https://127.0.0.1:{port}/api", retry=RetryPolicy(max_attempts=2, backoff_initial=0.01),
                      sleep=Sleeps())
    with http, pytest.raises(ServerError) as err:
        http.get_json("echo")
    assert "could not be reached after 2 attempts" in str(err.value)


def test_untrusted_certificate_is_a_clear_configuration_error(paging, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE")
    with HttpClient("paging", paging.base_url, sleep=Sleeps()) as http, pytest.raises(ConfigurationError) as err:
        http.get_json("echo")
    assert "SSL_CERT_FILE" in str(err.value)


def test_error_carries_method_redacted_url_status_and_a_short_excerpt(paging, paging_ctl):
    body = f"failure for key {API_KEY} " + "x" * 2000
    paging_ctl.add_faults([{"path": "^/api/echo", "actions": [{"status": 400, "body": body}]}])
    with client(paging) as http, pytest.raises(RequestRejected) as err:
        http.get_json("echo", params={"access_token": "tok-abcdef123456", "q": "1"})
    e = err.value
    assert e.method == "GET" and e.status == 400
    assert "access_token=***" in e.url and "tok-abcdef123456" not in e.url
    assert len(e.body_excerpt) <= 500
    assert API_KEY not in str(e) and API_KEY not in e.body_excerpt


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/api", "ftp://example.com/x", "not a url", "https://user:hunter2secret@example.com/api"],
)
def test_only_https_base_urls_without_credentials(url):
    with pytest.raises(ConfigurationError) as err:
        HttpClient("paging", url)
    assert "hunter2secret" not in str(err.value)


def test_absolute_links_to_another_host_are_refused(paging):
    with client(paging) as http, pytest.raises(MalformedResponse) as err:
        http.send(Request("GET", "https://elsewhere.example.com/api/echo"))
    assert "refusing to send credentials" in str(err.value)


def test_parse_retry_after():
    assert parse_retry_after("120") == 120
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    future = email.utils.formatdate(1_000_100, usegmt=True)
    assert parse_retry_after(future, now=1_000_000) == pytest.approx(100)
    assert parse_retry_after(email.utils.formatdate(10, usegmt=True), now=1_000_000) == 0
