"""The Personyze REST API emulator backend (see ``README.md`` beside this file).

``create_backend(seed, scale, **options)`` returns a :class:`PersonyzeBackend`, which satisfies
:class:`emulators.common.backend.EmulatorBackend`: the shared harness serves its routes over
HTTPS and adds the control plane, faults, latency and the request log.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from emulators.common.backend import MutationError

from .engine import TEXT, PersonyzeEngine

__all__ = ["PersonyzeBackend", "create_backend"]

_METHODS = ["GET", "POST", "PUT", "DELETE"]
#: options fixed at construction (they shape the generated data or the clock)
_CONSTRUCTION = ("now", "ticking", "preload")
#: backend (HTTP-level) options that can also change at run time
_BACKEND = ("require_https",)


class PersonyzeBackend:
    """Personyze on ``/rest``: HTTP Basic auth (user ``api``, the account key) in front of
    :class:`~emulators.personyze.engine.PersonyzeEngine`.

    Auth [D S1, S6]: no ``Authorization`` header, or one that is not ``Basic`` with user
    ``api`` → ``401 Please, log in``; a wrong key → ``401 Invalid API key`` (text [A]); a request
    that says it came over plain HTTP (``X-Forwarded-Proto: http``, switch ``require_https``) →
    ``401 HTTPS is required`` (text [A]), checked first.
    """

    vendor = "personyze"
    base_path = "/rest"

    def __init__(self, seed: int = 1, scale: int = 1000, **options: Any) -> None:
        construction = {k: options.pop(k) for k in _CONSTRUCTION if k in options}
        self.require_https = True
        api_key = options.pop("api_key", None)
        backend = {k: options.pop(k) for k in _BACKEND if k in options}
        self.engine = PersonyzeEngine(seed, scale, **construction, **options)
        self._set_backend_options(backend)
        self.api_key: str = api_key if api_key is not None else self.engine.api_key
        self.seed = seed
        self.scale = scale

    # ------------------------------------------------------------------ protocol

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/rest", self._endpoint, methods=_METHODS),
            Route("/rest/{path:path}", self._endpoint, methods=_METHODS),
        ]

    def state(self) -> dict[str, int]:
        return self.engine.state()

    def mutate(self, operation: dict[str, Any]) -> dict[str, Any]:
        return self.engine.mutate(operation)

    def export(self, table: str) -> list[dict[str, Any]]:
        return self.engine.export(table)

    def configure(self, options: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(options, dict):
            raise MutationError("options must be an object")
        fixed = sorted(set(options) & set(_CONSTRUCTION + ("api_key",)))
        if fixed:
            raise MutationError(f"personyze options {', '.join(fixed)} can only be set at start")
        backend = {k: v for k, v in options.items() if k in _BACKEND}
        engine = {k: v for k, v in options.items() if k not in _BACKEND}
        if backend:
            self._check_backend_options(backend)
        result = self.engine.configure(engine)  # validates everything before changing anything
        self._set_backend_options(backend)
        return {**result, "require_https": self.require_https}

    def throttle_response(self) -> tuple[int, dict[str, str], bytes]:
        """The 429 hostile mode answers: no 429 is documented (§5.4), only a frequency limit on
        slow queries and a 503 that says to "stand by number of seconds and retry" (§4); this
        is that limit's answer in the 503's words, as plain text [A]."""
        return 429, {"content-type": TEXT}, b"Too many slow queries: stand by 2 seconds and retry"

    def unauthorized_response(self) -> tuple[int, dict[str, str], bytes]:
        """A key revoked mid-run: the wrong-key 401 (text [A])."""
        return 401, {"content-type": TEXT}, b"Invalid API key"

    def options(self) -> dict[str, Any]:
        """The options in force."""
        return {**self.engine.configure({}), "require_https": self.require_https}

    # ------------------------------------------------------------------ HTTP

    @staticmethod
    def _check_backend_options(options: dict[str, Any]) -> None:
        for k, v in options.items():
            if type(v) is not bool:
                raise MutationError(f"option {k!r} must be a boolean, not {v!r}")

    def _set_backend_options(self, options: dict[str, Any]) -> None:
        self._check_backend_options(options)
        if "require_https" in options:
            self.require_https = options["require_https"]

    def authorize(self, headers: Any) -> tuple[int, bytes] | None:
        """``None`` when the request may proceed, else ``(401, plain-text body)``."""
        if self.require_https:
            proto = headers.get("x-forwarded-proto")
            if proto is not None and proto.split(",")[0].strip().lower() == "http":
                return 401, b"HTTPS is required"
        header = headers.get("authorization")
        if not header:
            return 401, b"Please, log in"
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic" or not token.strip():
            return 401, b"Please, log in"
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return 401, b"Please, log in"
        user, sep, password = decoded.partition(":")
        if not sep or user != "api":
            return 401, b"Please, log in"
        if not hmac.compare_digest(password.encode(), self.api_key.encode()):
            return 401, b"Invalid API key"
        return None

    async def _endpoint(self, request: Request) -> Response:
        refused = self.authorize(request.headers)
        if refused is not None:
            return Response(refused[1], status_code=refused[0], media_type=TEXT)
        raw = request.scope.get("raw_path") or request.url.path.encode()
        path = raw.decode("utf-8", "replace")
        prefix = self.base_path + "/"
        path = path[len(prefix) :] if path.startswith(prefix) else ""
        body = await request.body()
        status, content, ctype = self.engine.handle(
            request.method, path, body, request.headers.get("content-type")
        )
        return Response(content, status_code=status, media_type=ctype)


def create_backend(seed: int = 1, scale: int = 1000, **options: Any) -> PersonyzeBackend:
    """A Personyze emulator backend for ``scale`` users generated from ``seed``.

    Options fixed at start:

    - ``now``: Unix seconds the data is generated relative to (default: the current time; pass
      it for byte-identical data across runs);
    - ``ticking``: the server clock follows wall time (default True; False freezes it, so only
      ``advance_clock`` moves it);
    - ``preload``: generate events and sessions_archive at start instead of on first use;
    - ``api_key``: default 40 uppercase hex characters derived from the seed.

    Run-time options (also via :meth:`PersonyzeBackend.configure`): ``require_https`` and the
    engine options ``numbers_as_strings`` (``"mixed"``/``"all"``/``"none"``),
    ``numbers_as_strings_percent``, ``shuffle_ties``, ``slow_query_cap``, ``index_rule``,
    ``large_tables``, ``max_rows``, ``user_merge_keys``, ``clamp_rows``, and ``hostile`` /
    ``hostile_seed`` (the vendor's bad days, see the README). Unknown options raise
    ``MutationError``.
    """
    return PersonyzeBackend(seed, scale, **options)
