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


# -- a 2xx that is not data is retried, never taken for the end of the data ------------------------


@pytest.mark.parametrize(
    "action",
    [
        {"status": 200, "body": ""},
        {"status": 200, "body": "<html><body>maintenance</body></html>"},
        {"status": 200, "json": {}},
        {"status": 200, "json": None},
        {"status": 200, "json": {"data": None, "total": 95}},
    ],
    ids=["empty", "html", "empty-object", "null", "null-rows"],
)
def test_a_page_that_is_not_data_is_retried_not_taken_for_the_end(paging, paging_ctl, action):
    from sources.common.paginators import OffsetPaginator, lookup

    paging_ctl.add_faults([{"path": "^/api/offset.*offset=20", "actions": [action]}])
    with client(paging) as http:
        pages = list(http.paginate(Request("GET", "offset"), OffsetPaginator(10), lambda b: lookup(b, "data")))
    assert [r["id"] for page in pages for r in page] == list(range(1, 96))
    assert len([e for e in paging_ctl.requests() if "offset=20" in e["query"]]) == 2


def test_a_page_that_stays_not_data_fails_with_the_request_and_the_body_not_a_type_name(paging, paging_ctl):
    from sources.common.paginators import OffsetPaginator, lookup

    paging_ctl.add_faults([{"path": "^/api/offset.*offset=10", "actions": [{"status": 200, "json": {"error": "busy"}}],
                            "repeat": True}])
    rows = []
    with client(paging, retry=RetryPolicy(max_attempts=3, backoff_initial=0.01, jitter=0)) as http:
        with pytest.raises(MalformedResponse) as err:
            for page in http.paginate(Request("GET", "offset"), OffsetPaginator(10), lambda b: lookup(b, "data")):
                rows += page
    assert len(rows) == 10  # the first page only: the walk did not end quietly
    line = str(err.value)
    assert "after 3 attempts" in line and "GET" in line and "offset=10" in line and '{"error":"busy"}' in line
    assert "no list of rows" in line and "NoneType" not in line and "dict" not in line


def test_an_empty_200_body_is_retried_for_a_single_call(paging, paging_ctl):
    paging_ctl.add_faults([{"path": "^/api/echo", "actions": [{"status": 200, "body": ""}]}])
    with client(paging) as http:
        assert http.get_json("echo")["ok"] is True
    assert statuses(paging_ctl) == [200, 200]


def test_expect_checks_the_documented_envelope(paging, paging_ctl):
    paging_ctl.add_faults([{"path": "^/api/echo", "actions": [{"status": 200, "json": {"ok": None}}] * 2}])

    def expect(body: Any) -> str | None:
        return None if body.get("ok") is True else "no 'ok' flag"

    with client(paging, retry=RetryPolicy(max_attempts=2, backoff_initial=0.01, jitter=0)) as http:
        with pytest.raises(MalformedResponse) as err:
            http.get_json("echo", expect=expect)
        assert "no 'ok' flag" in str(err.value)
        assert http.get_json("echo", expect=expect)["ok"] is True  # the rule is spent: a good body passes


# -- throttling is waited out within a time budget, not an attempt count ----------------------------


def test_a_429_storm_is_waited_out_whatever_the_attempt_count(paging, paging_ctl):
    sleeps = Sleeps()
    storm = [{"status": 429, "headers": {"Retry-After": "2"}}] * 5 + [{"status": 429, "body": "slow down"}] * 3
    paging_ctl.add_faults([{"path": "^/api/echo", "actions": storm}])
    with client(paging, sleeps, retry=RetryPolicy(max_attempts=2, backoff_initial=0.5, jitter=0)) as http:
        assert http.get_json("echo")["ok"] is True
    assert statuses(paging_ctl) == [429] * 8 + [200]
    assert len(sleeps.waits) == 8
    assert all(2.0 <= w <= 3.0 for w in sleeps.waits[:5])
    # no stated wait: the exponential backoff, growing with the throttled answers so far, capped
    assert sleeps.waits[5:] == [16.0, 30.0, 30.0]


def test_throttling_beyond_its_budget_fails_with_one_line(paging, paging_ctl):
    sleeps = Sleeps()
    paging_ctl.add_faults([{"path": "^/api/echo", "actions": [{"status": 429, "headers": {"Retry-After": "30"}}],
                            "repeat": True}])
    with client(paging, sleeps, retry=RetryPolicy(max_throttle_wait=100)) as http, pytest.raises(ServerError) as err:
        http.get_json("echo")
    assert len(sleeps.waits) == 3 and sum(sleeps.waits) <= 100
    assert err.value.status == 429 and "kept throttling" in str(err.value) and "\n" not in str(err.value)


def test_a_throttled_client_holds_its_next_requests(paging, paging_ctl, caplog):
    sleeps = Sleeps()
    paging_ctl.add_faults([{"path": "^/api/echo", "actions": [{"status": 429, "headers": {"Retry-After": "5"}}]}])
    with client(paging, sleeps) as http:
        http.get_json("echo")  # throttled once, waits 5 s itself (recorded, not slept)
        http.get_json("offset")  # another request: held until the vendor's time has passed
    assert len(sleeps.waits) == 2
    assert 5.0 <= sleeps.waits[0] <= 6.0 and 3.0 <= sleeps.waits[1] <= 6.0
    assert any("throttled (HTTP 429)" in r.getMessage() and "waiting" in r.getMessage() for r in caplog.records)


def test_401_in_a_storm_of_429s_fails_at_once(paging, paging_ctl):
    sleeps = Sleeps()
    paging_ctl.add_faults([{"path": "^/api/echo", "actions": [{"status": 429}, {"status": 401, "body": "revoked"}]}])
    with client(paging, sleeps) as http, pytest.raises(AuthError) as err:
        http.get_json("echo")
    assert statuses(paging_ctl) == [429, 401] and len(sleeps.waits) == 1
    assert "refused the API key" in str(err.value)


def test_the_first_401_stops_the_whole_client(paging, paging_ctl):
    """A thread waiting out a 429 (30 s stated) ends as soon as another thread's request meets a
    401, with the same one-line error, and no request is sent after the refusal."""
    import threading

    paging_ctl.add_faults([
        {"path": "^/api/echo", "actions": [{"status": 429, "headers": {"Retry-After": "30"}}], "repeat": True},
        {"path": "^/api/offset", "actions": [{"status": 401, "body": "revoked"}]},
    ])
    outcome: dict[str, BaseException] = {}
    with HttpClient("paging", paging.base_url, headers={"Authorization": f"Bearer {API_KEY}"},
                    retry=RetryPolicy(max_throttle_wait=120)) as http:

        def waiter() -> None:
            try:
                http.get_json("echo")
            except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
                outcome["waiter"] = exc

        thread = threading.Thread(target=waiter)
        thread.start()
        deadline = time.monotonic() + 10
        while not any(e["path"] == "/api/echo" for e in paging_ctl.requests()) and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(AuthError):
            http.get_json("offset")
        thread.join(timeout=10)
        assert not thread.is_alive(), "the throttled thread kept waiting after the refusal"
        assert isinstance(outcome.get("waiter"), AuthError) and "refused the API key" in str(outcome["waiter"])
        sent = len(paging_ctl.requests())
        with pytest.raises(AuthError):
            http.get_json("echo")
        assert len(paging_ctl.requests()) == sent  # refused before sending


def test_a_response_is_freed_with_its_page_not_by_the_cyclic_collector(paging):
    """A read response must not sit in a reference cycle (httpx's spent stream points back at
    it): on a large load, bodies freed only by the collector's full passes pile up and fragment
    the heap."""
    import gc
    import weakref

    with client(paging) as http:
        http.get_json("echo")  # connection set up outside the measured request
        gc.collect()
        gc.disable()
        try:
            response, body = http.send(Request("GET", "echo"))
            assert body == {"ok": True, "query": {}}
            freed = weakref.ref(response)
            del response
            assert freed() is None, "the response outlived its last reference (kept by a cycle)"
        finally:
            gc.enable()
