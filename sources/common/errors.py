"""One exception hierarchy for every source, so the CLI can print one clear line per failure.

Every error carries what is needed to understand it without a traceback: the vendor, the HTTP
method, the URL (redacted), the status and an excerpt of the response body (at most 500
characters, redacted). ``str(error)`` is that one line.

    CdpSyncError
    ├── ConfigurationError   bad input or configuration, found before any request (exit 2)
    ├── AuthError            the vendor refused the credentials (401/403)
    ├── RequestRejected      any other 4xx: the request itself is wrong; never retried
    ├── ServerError          5xx, 429 or a transport failure that outlived the retry budget
    └── MalformedResponse    a 2xx whose body is not what the contract says (after retries)
"""

from __future__ import annotations

from typing import Any

from .redact import redact

BODY_EXCERPT_CHARS = 500


def excerpt(body: Any, limit: int = BODY_EXCERPT_CHARS) -> str | None:
    """A redacted, single-line excerpt of a response body (``None`` stays ``None``)."""
    if body is None:
        return None
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    text = " ".join(str(body).split())
    text = redact(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class CdpSyncError(Exception):
    """Base of every cdp-sync error. Keyword fields are optional; the message is redacted."""

    def __init__(
        self,
        message: str,
        *,
        vendor: str | None = None,
        method: str | None = None,
        url: str | None = None,
        status: int | None = None,
        body: Any = None,
    ) -> None:
        self.vendor = vendor
        self.method = method
        self.url = redact(url) if url else url
        self.status = status
        self.body_excerpt = excerpt(body)
        self.message = redact(message)
        super().__init__(self._line())

    def _line(self) -> str:
        parts = [self.message]
        where = " ".join(p for p in (str(self.status) if self.status else None, self.method, self.url) if p)
        if where:
            parts.append(where)
        line = ": ".join(parts)
        if self.body_excerpt:
            line += f": {self.body_excerpt}"
        return line

    def __reduce__(self) -> tuple[Any, ...]:
        # dlt pickles exceptions into its trace; keep the redacted fields only
        return (
            _rebuild,
            (type(self), self.message, self.vendor, self.method, self.url, self.status, self.body_excerpt),
        )


def _rebuild(cls: type[CdpSyncError], message: str, vendor: Any, method: Any, url: Any, status: Any, body: Any) -> Any:
    return cls(message, vendor=vendor, method=method, url=url, status=status, body=body)


class ConfigurationError(CdpSyncError):
    """The source was given bad input (a malformed key, a non-HTTPS URL, an option out of range)."""


class AuthError(CdpSyncError):
    """The vendor refused the credentials (401) or denied access to what was asked (403)."""


class RequestRejected(CdpSyncError):
    """The vendor rejected the request (a 4xx other than 401/403/429). Never retried."""


class ServerError(CdpSyncError):
    """The vendor kept failing (5xx, 429, dropped connections, timeouts) past the retry budget."""


class MalformedResponse(CdpSyncError):
    """A successful response whose body does not match the vendor's contract."""
