"""The HTTP core every source shares: one ``httpx.Client`` per run, one retry policy, one error
hierarchy, secrets redacted.

* **One client per run.** :class:`HttpClient` wraps a single ``httpx.Client`` with explicit
  timeouts and a bounded connection pool (keep-alive), shared by the resources of one source run
  and safe to use from several threads.
* **TLS** is verified against the system trust store, or the file (directory) named by
  ``SSL_CERT_FILE`` (``SSL_CERT_DIR``) for a private CA or a TLS-inspecting proxy. Only HTTPS
  base URLs are accepted, and absolute URLs a vendor hands back (next links) must stay on the
  base URL's host, so credentials never travel elsewhere.
* **Retries** (``tenacity``): 429, 500, 502, 503, 504, connect/read timeouts, dropped
  connections and truncated bodies (a 2xx whose JSON does not parse) are retried with
  exponential backoff and jitter. ``Retry-After`` (seconds or an HTTP date) is honoured, and so
  is a vendor's own wait hint (``retry_after_hint(response)``, e.g. a wait written in the body).
  Attempts and the total time spent waiting are bounded (:class:`RetryPolicy`). Other 4xx are
  never retried.
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

    ``max_attempts`` counts the first try; ``max_total_wait`` bounds the seconds spent sleeping
    between attempts of one request (a ``Retry-After`` that would exceed it ends the retries at
    once). Backoff without a hint is exponential from ``backoff_initial`` up to ``backoff_max``
    with up to ``jitter`` seconds of random jitter."""

    max_attempts: int = 6
    max_total_wait: float = 120.0
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    jitter: float = 1.0
    statuses: frozenset[int] = field(default=RETRY_STATUSES)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1")
        if self.max_total_wait < 0 or self.backoff_initial < 0 or self.backoff_max < 0 or self.jitter < 0:
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
                 hint: float | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.response = response
        self.error = error
        self.hint = hint


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
        self._stats_lock = threading.Lock()
        self._stats = {"requests": 0, "retries": 0, "bytes": 0}
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

    def _send_once(self, request: Request, parse_json: bool) -> tuple[httpx.Response, Any]:
        url = self._url_for(request)
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
        self._count("bytes", len(response.content))
        status = response.status_code
        if status in self.retry.statuses:
            hint = parse_retry_after(response.headers.get("Retry-After"))
            if hint is None and self._hint is not None:
                hint = self._hint(response)
            raise _Retryable(f"HTTP {status}", response=response, hint=hint)
        if status >= 400:
            raise self._http_error(request, response)
        if status >= 300:
            raise RequestRejected(
                f"{self.vendor} answered with a redirect (to {redact(response.headers.get('location', '?'))})",
                vendor=self.vendor, method=request.method, url=str(url), status=status,
            )
        if not parse_json:
            return response, None
        try:
            return response, orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError as exc:
            raise _Retryable("truncated or malformed JSON", response=response, error=exc) from None

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

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hint = getattr(exc, "hint", None)
        if hint is not None:
            return float(hint) + random.uniform(0.0, min(self.retry.jitter, 1.0))
        backoff = tenacity.wait_exponential_jitter(
            initial=self.retry.backoff_initial, max=self.retry.backoff_max, jitter=self.retry.jitter
        )
        return backoff(state)

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= self.retry.max_attempts:
            return True
        return state.idle_for + (state.upcoming_sleep or 0.0) > self.retry.max_total_wait

    def _before_sleep(self, state: tenacity.RetryCallState, request: Request) -> None:
        self._count("retries")
        exc = state.outcome.exception() if state.outcome else None
        logger.warning(
            "%s: %s on %s %s; retrying in %.1f s (attempt %d of %d)",
            self.vendor,
            getattr(exc, "kind", exc),
            request.method,
            redact(str(self._url_for(request))),
            state.upcoming_sleep or 0.0,
            state.attempt_number + 1,
            self.retry.max_attempts,
        )

    def send(self, request: Request, *, parse_json: bool = True) -> tuple[httpx.Response, Any]:
        """Send with retries; return the response and its parsed JSON body (``None`` if empty)."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Retryable),
            stop=self._stop,
            wait=self._wait,
            before_sleep=lambda s: self._before_sleep(s, request),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._send_once(request, parse_json)
        except _Retryable as last:
            raise self._exhausted(request, last, retrying) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _exhausted(self, request: Request, last: _Retryable, retrying: tenacity.Retrying) -> Exception:
        attempts = retrying.statistics.get("attempt_number", 1)
        url = str(self._url_for(request))
        tried = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
        if last.hint is not None and attempts < self.retry.max_attempts:
            tried += f" (asked to wait {last.hint:.0f} s, beyond the retry budget of {self.retry.max_total_wait:.0f} s)"
        if last.response is not None and last.response.status_code >= 400:
            return ServerError(
                f"{self.vendor} kept failing {tried}", vendor=self.vendor, method=request.method, url=url,
                status=last.response.status_code, body=last.response.text,
            )
        if last.response is not None:
            return MalformedResponse(
                f"{self.vendor} sent a body that is not valid JSON {tried}", vendor=self.vendor,
                method=request.method, url=url, status=last.response.status_code, body=last.response.text,
            )
        return ServerError(
            f"{self.vendor} could not be reached {tried} ({last.kind}: {last.error})",
            vendor=self.vendor, method=request.method, url=url,
        )

    # -- conveniences ------------------------------------------------------------------------

    def get_json(self, url: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Any:
        return self.send(Request("GET", url, params=params, headers=headers))[1]

    def post_json(self, url: str, json: Any = None, params: dict[str, Any] | None = None,
                  headers: dict[str, str] | None = None) -> Any:
        return self.send(Request("POST", url, params=params, json=json, headers=headers))[1]

    def paginate(
        self,
        request: Request,
        paginator: BasePaginator,
        data_selector: Callable[[Any], Any] | None = None,
    ) -> Iterator[list[Any]]:
        """Yield the data of every page, following ``paginator`` until it has no next page.

        ``data_selector(body)`` picks the page's rows out of the JSON body (default: the body
        itself, which must then be a list)."""
        paginator.init_request(request)
        while True:
            response, body = self.send(request)
            data = data_selector(body) if data_selector is not None else body
            if data is None:
                data = []
            if not isinstance(data, list):
                raise MalformedResponse(
                    f"{self.vendor} answered {type(data).__name__} where a list of rows was expected",
                    vendor=self.vendor, method=request.method, url=str(response.request.url),
                    status=response.status_code, body=response.text,
                )
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
