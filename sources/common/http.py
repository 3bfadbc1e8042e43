"""The HTTP core every source shares: one ``httpx.Client`` per run, one retry policy, one error
hierarchy, secrets redacted.

* **One client per run.** :class:`HttpClient` wraps a single ``httpx.Client`` with explicit
  timeouts and a bounded connection pool (keep-alive), shared by the resources of one source run
  and safe to use from several threads.
* **TLS** is verified against the system trust store, or the file (directory) named by
  ``SSL_CERT_FILE`` (``SSL_CERT_DIR``) for a private CA or a TLS-inspecting proxy. Only HTTPS
  base URLs are accepted, and absolute URLs a vendor hands back (next links) must stay on the
  base URL's host, so credentials never travel elsewhere.
* **Retries** (``tenacity``): 500, 502, 503, 504, connect/read timeouts, dropped connections
  and 2xx answers that are not the data the contract documents (an empty body, a body that is
  not JSON or is truncated, a body without the documented envelope: see ``expect`` and
  :meth:`HttpClient.paginate`) are retried with exponential backoff and jitter, within a bounded
  number of attempts and a bounded total wait (:class:`RetryPolicy`). A 2xx that is not data is
  never taken for "no more rows": only a paginator's documented end-of-data signal ends a walk.
* **Throttling** (429) is the vendor's normal weather, not a failure: the wait it states
  (``Retry-After``, seconds or an HTTP date, or the vendor's own hint from
  ``retry_after_hint(response)``, e.g. a wait written in the body) is waited out within a total
  time budget (``RetryPolicy.max_throttle_wait``), however many 429s that takes; while one
  request waits, the whole client holds its new requests until the stated time (the run's
  concurrency drops to what the vendor allows), and each wait is logged. 401 and 403 fail at
  once, and the first 401 stops the whole client: every other thread's wait is cut short and its
  next request is not sent, so a run with a revoked key ends at once with one line. Other 4xx
  are never retried.
* **Errors** (:mod:`sources.common.errors`) carry the method, the redacted URL, the status and a
  redacted body excerpt.
* **Pagination** follows a paginator object (:mod:`sources.common.paginators`), so the walk
  itself is written once.

This module knows nothing about dlt.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import tenacity

from .errors import AuthError, ConfigurationError, MalformedResponse, RequestRejected, ServerError
from .redact import MASK, redact, register_basic_auth, register_secret

if TYPE_CHECKING:
    from .paginators import BasePaginator

logger = logging.getLogger("cdp_sync.http")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass
class Request:
    """A request being built; paginators change it between pages."""

    method: str = "GET"
    url: str = ""
    params: dict[str, Any] | None = None
    json: Any = None
    content: str | bytes | None = None
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up.

    Failures (5xx, transport errors, 2xx answers that are not data): ``max_attempts`` counts
    the first try; ``max_total_wait`` bounds the seconds spent sleeping after failures of one
    request (a ``Retry-After`` that would exceed it ends the retries at once). Backoff without a
    hint is exponential from ``backoff_initial`` up to ``backoff_max`` with up to ``jitter``
    seconds of random jitter.

    Throttling (429): not counted as attempts; the waits of one request, stated by the vendor or
    (without a statement) the same exponential backoff, are bounded by ``max_throttle_wait``
    seconds in total. A stated wait beyond what is left of it ends the retries at once."""

    max_attempts: int = 6
    max_total_wait: float = 120.0
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    jitter: float = 1.0
    statuses: frozenset[int] = field(default=RETRY_STATUSES)
    max_throttle_wait: float = 900.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1")
        if (self.max_total_wait < 0 or self.backoff_initial < 0 or self.backoff_max < 0 or self.jitter < 0
                or self.max_throttle_wait < 0):
            raise ConfigurationError("retry waits must not be negative")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


class _Retryable(Exception):
    """Raised inside the retry loop for an outcome worth another attempt."""

    def __init__(self, kind: str, *, response: httpx.Response | None = None, error: BaseException | None = None,
                 hint: float | None = None, detail: str | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.response = response
        self.error = error
        self.hint = hint
        self.detail = detail  # what was wrong with a 2xx body, in words a user can act on

    @property
    def throttled(self) -> bool:
        return self.response is not None and self.response.status_code == 429


class _Attempts:
    """What one request has spent so far: failed attempts and their waits, throttled waits."""

    __slots__ = ("failures", "failure_wait", "throttle_wait", "throttles")

    def __init__(self) -> None:
        self.failures = 0
        self.failure_wait = 0.0
        self.throttle_wait = 0.0
        self.throttles = 0


#: what ``expect`` returns: ``None`` for a body that is what the contract documents, else a short
#: description of what is wrong with it ("no 'data' list", "an empty object")
Expectation = Callable[[Any], "str | None"]


def describe_body(body: Any) -> str:
    """A few words on what a parsed JSON body is, for messages (not a Python type name)."""
    if body is None:
        return "null"
    if isinstance(body, dict):
        if not body:
            return "an empty object"
        keys = ", ".join(sorted(map(str, body))[:6])
        return f"an object with keys {keys}"
    if isinstance(body, list):
        return f"a list of {len(body)} items" if body else "an empty list"
    if isinstance(body, str):
        return "a string"
    if isinstance(body, bool):
        return "a boolean"
    return "a number"


_ssl_lock = threading.Lock()
_ssl_contexts: dict[tuple[str | None, str | None], ssl.SSLContext] = {}


def ssl_context() -> ssl.SSLContext:
    """The TLS context: ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set, else the system trust store
    (falling back to certifi's bundle where the system has none)."""
    cafile = os.environ.get("SSL_CERT_FILE") or None
    capath = os.environ.get("SSL_CERT_DIR") or None
    key = (cafile, capath)
    with _ssl_lock:
        ctx = _ssl_contexts.get(key)
        if ctx is None:
            if cafile and not os.path.exists(cafile):
                raise ConfigurationError(f"SSL_CERT_FILE names a file that does not exist: {cafile}")
            ctx = ssl.create_default_context(cafile=cafile, capath=capath)
            if not cafile and not capath and not ctx.cert_store_stats().get("x509_ca"):
                import certifi

                ctx.load_verify_locations(certifi.where())
            _ssl_contexts[key] = ctx
        return ctx


def check_base_url(vendor: str, base_url: str) -> httpx.URL:
    """An HTTPS URL without credentials in it, or a :class:`ConfigurationError`."""
    try:
        url = httpx.URL(base_url)
    except Exception:  # noqa: BLE001 - httpx raises several types for garbage
        raise ConfigurationError(f"{vendor} base_url is not a URL: {base_url!r}", vendor=vendor) from None
    if url.userinfo:
        register_secret(url.password)
        raise ConfigurationError(
            f"{vendor} base_url must not carry credentials ({url.scheme}://{MASK}@{url.host}); use api_key",
            vendor=vendor,
        )
    if url.scheme != "https" or not url.host:
        raise ConfigurationError(
            f"{vendor} base_url must be an HTTPS URL (got {redact(base_url)!r}); plain HTTP is refused",
            vendor=vendor,
        )
    return url


class HttpClient:
    """One vendor API over one ``httpx.Client``; thread-safe.

    ``auth`` is any ``httpx.Auth`` (or a ``(user, password)`` pair for basic auth); ``secrets``
    are registered for redaction. ``retry_after_hint(response)`` returns a vendor-specific wait
    in seconds for a retryable response without ``Retry-After`` (or ``None``)."""

    def __init__(
        self,
        vendor: str,
        base_url: str,
        *,
        auth: httpx.Auth | tuple[str, str] | None = None,
        headers: dict[str, str] | None = None,
        secrets: Sequence[str] = (),
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        max_connections: int = 8,
        retry: RetryPolicy | None = None,
        retry_after_hint: Callable[[httpx.Response], float | None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.vendor = vendor
        self.base_url = check_base_url(vendor, base_url)
        self._base = str(self.base_url).rstrip("/") + "/"
        register_secret(*secrets)
        if isinstance(auth, tuple):
            register_basic_auth(*auth)
            auth = httpx.BasicAuth(*auth)
        elif isinstance(auth, httpx.BasicAuth):
            header = getattr(auth, "_auth_header", "")  # "Basic <base64>"
            register_secret(header.split(" ", 1)[-1])
        self.retry = retry or RetryPolicy()
        self._hint = retry_after_hint
        self._sleep = sleep
        self._refusal: AuthError | None = None  # the first 401: it stops every request of the client
        self.refused = threading.Event()
        self._stats_lock = threading.Lock()
        self._stats = {"requests": 0, "retries": 0, "bytes": 0}
        self._throttle_lock = threading.Lock()
        self._throttled_until = 0.0  # time.monotonic() before which no new request is sent
        self._local = threading.local()
        self._client = httpx.Client(
            base_url=self.base_url,
            auth=auth,
            headers={"User-Agent": "cdp-sync", "Accept": "application/json", **(headers or {})},
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            verify=ssl_context(),
            follow_redirects=False,
            trust_env=False,
        )

    # -- stats ---------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        with self._stats_lock:
            return dict(self._stats)

    def _count(self, name: str, n: int = 1) -> None:
        with self._stats_lock:
            self._stats[name] += n

    # -- one request, with retries ----------------------------------------------------------

    def _url_for(self, request: Request) -> httpx.URL:
        url = httpx.URL(request.url)
        if url.is_absolute_url:
            if url.scheme != "https" or url.host != self.base_url.host or url.port != self.base_url.port:
                raise MalformedResponse(
                    f"{self.vendor} pointed to a URL outside {self.base_url.host}; refusing to send credentials there",
                    vendor=self.vendor,
                    url=str(url),
                )
            return url
        return httpx.URL(self._base + request.url.lstrip("/"))

    # -- a refused key stops the whole client --------------------------------------------------

    def _pause(self, seconds: float) -> None:
        """Every wait of the client (backoffs, 429 waits, holds while throttled), cut short by a
        refusal: once any request met a 401, every thread waiting or about to send ends with it."""
        if self._sleep is time.sleep:
            if self.refused.wait(max(0.0, float(seconds))):
                self.check_refused()
            return
        self._sleep(seconds)
        self.check_refused()

    def check_refused(self) -> None:
        """Raise the client's refusal (a copy of the first 401's error) if there was one."""
        if self.refused.is_set() and self._refusal is not None:
            e = self._refusal
            raise AuthError(e.message, vendor=e.vendor, method=e.method, url=e.url, status=e.status,
                            body=e.body_excerpt)

    def _refuse(self, error: AuthError) -> None:
        with self._stats_lock:
            if self._refusal is None:
                self._refusal = error
        self.refused.set()

    def _hold_while_throttled(self) -> None:
        """Before a request: wait (outside any lock) until the time the vendor last asked this
        client to wait for. The thread that was throttled has just slept that wait itself."""
        if getattr(self._local, "slept_throttle", False):
            self._local.slept_throttle = False
            return
        with self._throttle_lock:
            left = self._throttled_until - time.monotonic()
        if left > 0:
            self._pause(left)

    def _throttle(self, seconds: float) -> None:
        self._local.slept_throttle = True
        with self._throttle_lock:
            self._throttled_until = max(self._throttled_until, time.monotonic() + seconds)

    def _send_once(self, request: Request, parse_json: bool, expect: Expectation | None) -> tuple[httpx.Response, Any]:
        url = self._url_for(request)
        self._hold_while_throttled()
        self._count("requests")
        try:
            response = self._client.request(
                request.method,
                url,
                params=request.params,
                json=request.json,
                content=request.content,
                headers=request.headers,
            )
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            if isinstance(exc, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise ConfigurationError(
                    f"{self.vendor}: TLS certificate of {url.host} is not trusted; "
                    "set SSL_CERT_FILE to the CA bundle that signs it",
                    vendor=self.vendor,
                ) from None
            raise _Retryable(type(exc).__name__, error=exc) from None
        # The body is read and cached on the response; its spent stream still points back at the
        # response (httpx's BoundSyncStream), a reference cycle that keeps each whole body alive
        # until the cyclic collector's next full pass. On a large load those bodies, freed late
        # and in bulk, left the C heap fragmented: a million PostHog events peaked about 45 MB
        # higher in the extract. An empty stream in its place lets the body go when the page does.
        response.stream = httpx.ByteStream(b"")
        self._count("bytes", len(response.content))
        status = response.status_code
        if status in self.retry.statuses:
            hint = parse_retry_after(response.headers.get("Retry-After"))
            if hint is None and self._hint is not None:
                hint = self._hint(response)
            raise _Retryable(f"HTTP {status}", response=response, hint=hint)
        if status >= 400:
            error = self._http_error(request, response)
            if status == 401:
                self._refuse(error)
            raise error
        if status >= 300:
            raise RequestRejected(
                f"{self.vendor} answered with a redirect (to {redact(response.headers.get('location', '?'))})",
                vendor=self.vendor, method=request.method, url=str(url), status=status,
            )
        if not parse_json:
            return response, None
        if not response.content.strip():
            raise _Retryable("an empty body", response=response, detail="an empty body where JSON was expected")
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise _Retryable("truncated or malformed JSON", response=response, error=exc,
                             detail="a body that is not valid JSON") from None
        if expect is not None:
            try:
                problem = expect(body)
            except MalformedResponse as exc:
                problem = exc.message
            if problem:
                raise _Retryable("a body that is not the documented data", response=response, detail=problem)
        return response, body

    def _http_error(self, request: Request, response: httpx.Response) -> Exception:
        status = response.status_code
        common = {
            "vendor": self.vendor,
            "method": request.method,
            "url": str(response.request.url),
            "status": status,
            "body": response.text,
        }
        if status == 401:
            return AuthError(f"{self.vendor} refused the API key", **common)
        if status == 403:
            return AuthError(f"{self.vendor} denied access with this API key", **common)
        return RequestRejected(f"{self.vendor} rejected the request", **common)

    def _backoff(self, n: int) -> float:
        """The n-th (1-based) exponential wait with jitter, as tenacity computes it."""
        base = min(self.retry.backoff_max, self.retry.backoff_initial * (2 ** (n - 1)))
        return base + random.uniform(0.0, self.retry.jitter)

    def _wait(self, state: tenacity.RetryCallState, spent: _Attempts) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hint = getattr(exc, "hint", None)
        if hint is not None:
            return float(hint) + random.uniform(0.0, min(self.retry.jitter, 1.0))
        if isinstance(exc, _Retryable) and exc.throttled:
            return self._backoff(spent.throttles + 1)
        return self._backoff(spent.failures + 1)

    def _stop(self, state: tenacity.RetryCallState, spent: _Attempts) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        upcoming = state.upcoming_sleep or 0.0
        if isinstance(exc, _Retryable) and exc.throttled:
            return spent.throttle_wait + upcoming > self.retry.max_throttle_wait
        if spent.failures + 1 >= self.retry.max_attempts:
            return True
        return spent.failure_wait + upcoming > self.retry.max_total_wait

    def _before_sleep(self, state: tenacity.RetryCallState, request: Request, spent: _Attempts) -> None:
        self._count("retries")
        exc = state.outcome.exception() if state.outcome else None
        wait = state.upcoming_sleep or 0.0
        where = f"{request.method} {redact(self._full_url(request, exc if isinstance(exc, _Retryable) else None))}"
        if isinstance(exc, _Retryable) and exc.throttled:
            spent.throttles += 1
            spent.throttle_wait += wait
            self._throttle(wait)
            logger.warning(
                "%s: throttled (HTTP 429) on %s; waiting %.1f s (%.0f s of %.0f s throttle budget spent)",
                self.vendor, where, wait, spent.throttle_wait, self.retry.max_throttle_wait,
            )
            return
        spent.failures += 1
        spent.failure_wait += wait
        logger.warning(
            "%s: %s on %s; retrying in %.1f s (attempt %d of %d)",
            self.vendor, getattr(exc, "detail", None) or getattr(exc, "kind", exc), where, wait,
            spent.failures + 1, self.retry.max_attempts,
        )

    def send(self, request: Request, *, parse_json: bool = True,
             expect: Expectation | None = None) -> tuple[httpx.Response, Any]:
        """Send with retries; return the response and its parsed JSON body.

        With ``parse_json`` a 2xx must carry JSON: an empty or unparsable body is retried, then
        :class:`MalformedResponse`. ``expect(body)`` checks the parsed body against the contract
        and returns what is wrong with it (``None`` when it is fine); a body it objects to is
        retried the same way."""
        self.check_refused()
        spent = _Attempts()
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Retryable),
            stop=lambda s: self._stop(s, spent),
            wait=lambda s: self._wait(s, spent),
            before_sleep=lambda s: self._before_sleep(s, request, spent),
            sleep=self._pause,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._send_once(request, parse_json, expect)
        except _Retryable as last:
            raise self._exhausted(request, last, spent) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _full_url(self, request: Request, last: _Retryable | None = None) -> str:
        """The URL with its query, as sent (for messages; redacted by the error types)."""
        if last is not None and last.response is not None:
            return str(last.response.request.url)
        url = self._url_for(request)
        return str(url.copy_merge_params(request.params)) if request.params else str(url)

    def _exhausted(self, request: Request, last: _Retryable, spent: _Attempts) -> Exception:
        url = self._full_url(request, last)
        if last.throttled:
            tried = f"after waiting {spent.throttle_wait:.0f} s through {spent.throttles + 1} throttled answers"
            if last.hint is not None:
                tried += (f" (asked to wait {last.hint:.0f} s more, beyond the throttle budget of "
                          f"{self.retry.max_throttle_wait:.0f} s)")
            return ServerError(
                f"{self.vendor} kept throttling {tried}", vendor=self.vendor, method=request.method, url=url,
                status=429, body=last.response.text if last.response is not None else None,
            )
        attempts = spent.failures + 1
        tried = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
        if last.hint is not None and attempts < self.retry.max_attempts:
            tried += f" (asked to wait {last.hint:.0f} s, beyond the retry budget of {self.retry.max_total_wait:.0f} s)"
        if last.response is not None and last.response.status_code >= 400:
            return ServerError(
                f"{self.vendor} kept failing {tried}", vendor=self.vendor, method=request.method, url=url,
                status=last.response.status_code, body=last.response.text,
            )
        if last.response is not None:
            what = last.detail or "a body that is not valid JSON"
            return MalformedResponse(
                f"{self.vendor} answered with {what} {tried}", vendor=self.vendor,
                method=request.method, url=url, status=last.response.status_code, body=last.response.text,
            )
        return ServerError(
            f"{self.vendor} could not be reached {tried} ({last.kind}: {last.error})",
            vendor=self.vendor, method=request.method, url=url,
        )

    # -- conveniences ------------------------------------------------------------------------

    def get_json(self, url: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                 *, expect: Expectation | None = None) -> Any:
        return self.send(Request("GET", url, params=params, headers=headers), expect=expect)[1]

    def post_json(self, url: str, json: Any = None, params: dict[str, Any] | None = None,
                  headers: dict[str, str] | None = None, *, expect: Expectation | None = None) -> Any:
        return self.send(Request("POST", url, params=params, json=json, headers=headers), expect=expect)[1]

    def paginate(
        self,
        request: Request,
        paginator: BasePaginator,
        data_selector: Callable[[Any], Any] | None = None,
        *,
        expect: Expectation | None = None,
    ) -> Iterator[list[Any]]:
        """Yield the data of every page, following ``paginator`` until it has no next page.

        ``data_selector(body)`` picks the page's rows out of the JSON body (default: the body
        itself, which must then be a list). A page whose rows are not a list (the envelope is
        missing, the body is ``null``, an object where rows were expected) is not an empty page:
        it is retried like any answer that is not data, then :class:`MalformedResponse`. A
        selector maps a form the contract documents as "no rows" to ``[]`` itself. ``expect``
        adds checks of the whole body (see :meth:`send`)."""
        select = data_selector if data_selector is not None else (lambda body: body)

        def page_problem(body: Any) -> str | None:
            data = select(body)
            if not isinstance(data, list):
                where = "" if data_selector is None else " in it"
                return f"{describe_body(body)} and no list of rows{where}"
            return expect(body) if expect is not None else None

        paginator.init_request(request)
        while True:
            response, body = self.send(request, expect=page_problem)
            data = select(body)
            paginator.update_state(response, body, data)
            yield data
            if not paginator.has_next_page:
                return
            paginator.update_request(request)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
