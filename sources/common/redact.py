"""Keep secrets out of logs, exceptions, dlt traces and state.

Two layers:

* **Known secrets.** Every HTTP client registers the credentials it holds (an API key, the
  base64 form of a basic-auth pair, a JWT it obtained) with :func:`register_secret`; any text
  passed through :func:`redact` has them replaced, whatever the context they appear in (an
  error body that echoes the key back, a URL, a repr).
* **Shapes of secrets.** Even unregistered values are removed where their shape gives them
  away: ``Authorization: Basic …``/``Bearer …`` values, JWTs, ``user:password@`` in URLs, and
  query or JSON fields named like credentials (``key=``, ``access_token=``, ``apiKey`` …).

:func:`install_log_redaction` makes every log record pass through :func:`redact` when it is
created (message, arguments and formatted traceback), for all loggers, dlt's and httpx's
included.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Iterable

MASK = "***"

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()

_CREDENTIAL_NAMES = r"(?:api[_-]?key|apikey|access[_-]?token|refresh[_-]?token|id[_-]?token|token|key|password|passwd|secret|client[_-]?secret)"
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # JWTs (header.payload.signature, base64url); before anything else so no fragment survives
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), MASK),
    # Authorization header values
    (re.compile(r"(?i)\b(basic|bearer)\s+[A-Za-z0-9+/=._~-]{16,}"), rf"\1 {MASK}"),
    # user info in URLs: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]*:[^/\s@]*@"), rf"\1{MASK}@"),
    # query parameters and form fields: key=..., access_token=...
    (re.compile(rf"(?i)([?&;\s]|^){_CREDENTIAL_NAMES}=([^&\s#\"']+)"), None),  # type: ignore[list-item]
    # JSON / Python-repr fields: "apiKey": "...", 'token': '...'
    (re.compile(rf"(?i)([\"']{_CREDENTIAL_NAMES}[\"']\s*:\s*[\"'])([^\"']+)([\"'])"), rf"\1{MASK}\3"),
]
_QUERY = _PATTERNS[3][0]


def _query_sub(m: re.Match[str]) -> str:
    text = m.group(0)
    name_end = text.index("=")
    return text[: name_end + 1] + MASK


def register_secret(*values: str | None) -> None:
    """Add values to the set of known secrets (short values are ignored: too many false hits)."""
    global _secrets
    new = {v for v in values if v and len(v) >= 6}
    if not new:
        return
    with _lock:
        _secrets = _secrets | new | {v.lower() for v in new} | {v.upper() for v in new}


def register_basic_auth(username: str, password: str) -> None:
    """Register a basic-auth password and the header form ``base64(user:password)``."""
    pair = base64.b64encode(f"{username}:{password}".encode()).decode()
    register_secret(password, pair)


def known_secrets() -> frozenset[str]:
    return _secrets


def redact(text: str) -> str:
    """``text`` with every known secret and every credential-shaped value masked."""
    if not text:
        return text
    secrets = _secrets
    for s in sorted(secrets, key=len, reverse=True):
        if s in text:
            text = text.replace(s, MASK)
    for pattern, repl in _PATTERNS:
        if pattern is _QUERY:
            text = pattern.sub(_query_sub, text)
        else:
            text = pattern.sub(repl, text)
    return text


def redact_all(values: Iterable[str]) -> list[str]:
    return [redact(v) for v in values]


_installed = False


def install_log_redaction() -> None:
    """Redact every log record at creation (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
        previous = logging.getLogRecordFactory()

        def factory(*args: object, **kwargs: object) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a broken format string is logging's problem
                return record
            clean = redact(message)
            if clean != message:
                record.msg, record.args = clean, ()
            if record.exc_info and record.exc_info[0] is not None:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            return record

        logging.setLogRecordFactory(factory)
