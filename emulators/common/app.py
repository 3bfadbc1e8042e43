"""The ASGI application every emulator shares: the vendor's routes wrapped in latency, scripted
faults and a request log, plus the ``/_emulator/`` control plane.

Control plane (loopback only, no auth; JSON in and out; see ``emulators/README.md``):

=========================================  ======================================================
``GET  /_emulator/info``                   vendor, API key, base path
``GET  /_emulator/state``                  row counts per table (``{"vendor", "tables": {…}}``)
``POST /_emulator/mutate``                 one vendor-specific operation (``{"op": …}``)
``GET  /_emulator/tables/{table}``         every row of a table as the API renders it
``POST /_emulator/faults``                 add scripted fault rules; ``GET`` lists, ``DELETE`` clears
``GET  /_emulator/requests``               the request log; ``DELETE`` clears it
``POST /_emulator/config``                 ``latency_ms`` and vendor options at run time
=========================================  ======================================================

A fault rule is ``{"path": <regex>, "method": <optional>, "actions": [<action>, …],
"repeat": false}``. The regex is searched in the raw request path (percent-encoded, as on the
wire) followed by ``?`` and the query string when there is one. Each API request that matches a
rule with actions left consumes the rule's next action (first matching rule wins); with
``repeat`` the actions cycle for ever. Actions:

* ``{"pass": true}`` — serve normally (lets a rule fail only the N-th request);
* ``{"status": 503, "body": "text", "json": {…}, "headers": {…}}`` — answer this instead
  (``json`` wins over ``body``; plain text otherwise);
* ``{"drop": true}`` — serve the real response but close the connection halfway through its body;
* ``{"truncate": true}`` — serve the real status with the body cut in half (invalid JSON);
* ``"latency_ms": N`` — may be added to any action: extra delay before answering.

Hostile mode (``config`` ``{"hostile": 1, "hostile_seed": 7, "hostile_rate": 0.05}``, or
``--option hostile=1`` at start): each API request that no fault rule took is, with probability
``hostile_rate`` and from a generator seeded with ``hostile_seed``, answered with one of the wire's
bad days instead (:data:`HOSTILE_KINDS`): a 200 with an empty body, ``{}``, ``null`` or an HTML
page; the real answer truncated or dropped halfway; a 429 with ``Retry-After: 1`` and one without
(the backend's own 429 shape when it has ``throttle_response()``); a 502 or 503. ``hostile`` and
``hostile_seed`` are passed on to the backend's ``configure``, which adds the vendor's own bad
days (short scans, ties, late rows …). ``revoke_after`` N answers every API request after the N-th
from now with the backend's 401 (``unauthorized_response()``) or a plain one: a token revoked
mid-run; ``revoke_after: null`` restores it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .backend import EmulatorBackend, MutationError

REQUEST_LOG_LIMIT = 500_000
BODY_LOG_LIMIT = 8192
_LOOPBACK = {"127.0.0.1", "::1", "localhost", "testclient"}


class _DropConnection(Exception):
    """Raised after a partial body to make the server close the connection (a "drop" fault)."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if (
            "_DropConnection" in text
            or "returned without completing response" in text
            # stop() does not wait for idle keep-alive clients to finish the TLS close handshake
            or "timeout graceful shutdown exceeded" in text
        ):
            return False
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _DropConnection)


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def text_response(text: str, status: int) -> Response:
    return Response(text, status_code=status, media_type="text/plain; charset=utf-8")


@dataclass
class FaultRule:
    pattern: re.Pattern[str]
    actions: list[dict[str, Any]]
    method: str | None = None
    repeat: bool = False
    used: int = field(default=0)

    @classmethod
    def parse(cls, raw: Any) -> FaultRule:
        if not isinstance(raw, dict) or "path" not in raw or not isinstance(raw.get("actions"), list):
            raise MutationError('a fault rule needs "path" (a regex) and "actions" (a list)')
        try:
            pattern = re.compile(raw["path"])
        except re.error as exc:
            raise MutationError(f"bad fault path regex {raw['path']!r}: {exc}") from None
        actions = raw["actions"]
        for a in actions:
            if not isinstance(a, dict) or not ({"pass", "status", "drop", "truncate", "latency_ms"} & set(a)):
                raise MutationError(f"bad fault action {a!r}")
        return cls(pattern, actions, (raw.get("method") or "").upper() or None, bool(raw.get("repeat")))

    def take(self, method: str, target: str) -> dict[str, Any] | None:
        if self.method and self.method != method:
            return None
        if not self.actions or (not self.repeat and self.used >= len(self.actions)):
            return None
        if not self.pattern.search(target):
            return None
        action = self.actions[self.used % len(self.actions)]
        self.used += 1
        return action

    def describe(self) -> dict[str, Any]:
        return {
            "path": self.pattern.pattern,
            "method": self.method,
            "actions": self.actions,
            "repeat": self.repeat,
            "used": self.used,
        }


#: the wire-level bad days hostile mode picks from (the backend adds its vendor's own)
HOSTILE_KINDS = (
    "empty_200", "empty_object_200", "null_200", "html_200", "truncate", "drop",
    "throttle_retry_after", "throttle", "502", "503",
)
_HOSTILE_OPTIONS = ("hostile", "hostile_seed", "hostile_rate", "revoke_after")


class Harness:
    """ASGI app: control plane + the backend's API behind latency, faults and the request log."""

    def __init__(self, backend: EmulatorBackend, *, latency_ms: float = 0.0, hostile: bool = False,
                 hostile_seed: int | None = None, hostile_rate: float = 0.05) -> None:
        self.backend = backend
        self.latency_ms = float(latency_ms)
        self.hostile = bool(hostile)
        self.hostile_seed = hostile_seed
        self.hostile_rate = float(hostile_rate)
        self._hostile_random = random.Random(hostile_seed)
        self._revoke_after: int | None = None
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._log: collections.deque[dict[str, Any]] = collections.deque(maxlen=REQUEST_LOG_LIMIT)
        self.api = Starlette(routes=list(backend.routes()))
        self.control = Starlette(routes=self._control_routes())

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/_emulator" or path.startswith("/_emulator/"):
            client = (scope.get("client") or ("",))[0]
            if client not in _LOOPBACK:
                await text_response("the control plane answers loopback clients only", 403)(scope, receive, send)
                return
            await self.control(scope, receive, send)
            return
        await self._serve_api(scope, receive, send)

    async def _serve_api(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        method = scope["method"]
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        target = raw_path + ("?" + query if query else "")
        started = time.monotonic()
        entry: dict[str, Any] = {
            "method": method,
            "path": scope["path"],
            "raw_path": raw_path,
            "query": query,
            "status": None,
            "fault": None,
            "time": time.time(),
            "body": None,
        }
        with self._lock:
            action: dict[str, Any] = {}
            for rule in self._rules:
                taken = rule.take(method, target)
                if taken is not None:
                    action = taken
                    break
            if not action:
                action = self._hostile_action()
            self._log.append(entry)

        # read the request body up front so the log has it whatever the route does with it
        body_parts: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message.get("type") != "http.request":
                break
            body_parts.append(message.get("body", b""))
            more = message.get("more_body", False)
        request_body = b"".join(body_parts)
        replayed = False

        async def logged_receive() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": request_body, "more_body": False}
            return await receive()

        delay = self.latency_ms + float(action.get("latency_ms") or 0)
        if delay > 0:
            await asyncio.sleep(delay / 1000)

        try:
            if "response" in action:  # hostile mode: a prepared answer
                entry["fault"] = action["kind"]
                response = action["response"]
                entry["status"] = response.status_code
                await response(scope, logged_receive, send)
                return
            if "status" in action:
                entry["fault"] = "status"
                if "json" in action:
                    response = json_response(action["json"], int(action["status"]))
                else:
                    response = text_response(str(action.get("body", "")), int(action["status"]))
                for k, v in (action.get("headers") or {}).items():
                    response.headers[k] = str(v)
                entry["status"] = response.status_code
                await response(scope, logged_receive, send)
                return
            if action.get("drop") or action.get("truncate"):
                entry["fault"] = action.get("kind") or ("drop" if action.get("drop") else "truncate")
                status, headers, body = await self._capture(scope, logged_receive)
                entry["status"] = status
                cut = body[: len(body) // 2]
                if action.get("drop"):
                    await send({"type": "http.response.start", "status": status, "headers": headers})
                    await send({"type": "http.response.body", "body": cut, "more_body": True})
                    raise _DropConnection()
                headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(cut)).encode()))
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": cut})
                return

            async def logged_send(message: Any) -> None:
                if message["type"] == "http.response.start":
                    entry["status"] = message["status"]
                await send(message)

            await self.api(scope, logged_receive, logged_send)
        finally:
            entry["duration_ms"] = round((time.monotonic() - started) * 1000, 3)
            if request_body:
                entry["body"] = request_body[:BODY_LOG_LIMIT].decode("utf-8", errors="replace")

    # -- hostile mode ------------------------------------------------------------------------

    def _hostile_action(self) -> dict[str, Any]:
        """Under the lock: the revoked token, or (at hostile_rate) one of HOSTILE_KINDS."""
        if self._revoke_after is not None:
            if self._revoke_after <= 0:
                return {"kind": "hostile:revoked", "response": self._backend_response(
                    "unauthorized_response", 401, {}, b"the token was revoked")}
            self._revoke_after -= 1
        if not self.hostile or self._hostile_random.random() >= self.hostile_rate:
            return {}
        kind = self._hostile_random.choice(HOSTILE_KINDS)
        tag = f"hostile:{kind}"
        if kind in ("truncate", "drop"):
            return {"kind": tag, kind: True}
        if kind == "throttle_retry_after":
            response = self._backend_response("throttle_response", 429, {}, b"Too Many Requests")
            response.headers["Retry-After"] = "1"
            return {"kind": tag, "response": response}
        if kind == "throttle":
            response = self._backend_response("throttle_response", 429, {}, b"Too Many Requests")
            if "retry-after" in response.headers:
                del response.headers["retry-after"]
            return {"kind": tag, "response": response}
        if kind in ("502", "503"):
            return {"kind": tag, "response": text_response("upstream unavailable", int(kind))}
        bodies = {
            "empty_200": (b"", "application/json"),
            "empty_object_200": (b"{}", "application/json"),
            "null_200": (b"null", "application/json"),
            "html_200": (b"<!doctype html><html><body><h1>Service is being updated</h1></body></html>", "text/html"),
        }
        content, media_type = bodies[kind]
        return {"kind": tag, "response": Response(content, status_code=200, media_type=media_type)}

    def _backend_response(self, hook: str, status: int, headers: dict[str, str], body: bytes) -> Response:
        """The backend's own shape for a throttled or refused answer when it defines one."""
        make = getattr(self.backend, hook, None)
        if make is not None:
            status, headers, body = make()
        response = Response(body, status_code=status, media_type=headers.get("content-type", "text/plain"))
        for k, v in headers.items():
            if k.lower() != "content-type":
                response.headers[k] = str(v)
        return response

    def configure_hostile(self, options: dict[str, Any]) -> dict[str, Any]:
        """Take the harness's own keys out of ``options``; answer the hostile settings in force."""
        with self._lock:
            if "hostile_rate" in options:
                rate = float(options.pop("hostile_rate"))
                if not 0 <= rate <= 1:
                    raise MutationError("hostile_rate is a probability between 0 and 1")
                self.hostile_rate = rate
            if "hostile_seed" in options:
                self.hostile_seed = options["hostile_seed"]
                self._hostile_random = random.Random(self.hostile_seed)
            if "hostile" in options:
                self.hostile = bool(options["hostile"])
            if "revoke_after" in options:
                value = options.pop("revoke_after")
                if value is not None and (not isinstance(value, int) or value < 0):
                    raise MutationError("revoke_after is a number of requests (or null)")
                self._revoke_after = value
            return {"hostile": int(self.hostile), "hostile_seed": self.hostile_seed,
                    "hostile_rate": self.hostile_rate, "revoke_after": self._revoke_after}

    async def _capture(self, scope: dict[str, Any], receive: Any) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        status = 500
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def capture(message: Any) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers") or [])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.api(scope, receive, capture)
        return status, headers, b"".join(chunks)

    # -- control plane ---------------------------------------------------------------------

    def _control_routes(self) -> list[Route]:
        return [
            Route("/_emulator/info", self._info, methods=["GET"]),
            Route("/_emulator/state", self._state, methods=["GET"]),
            Route("/_emulator/mutate", self._mutate, methods=["POST"]),
            Route("/_emulator/tables/{table}", self._table, methods=["GET"]),
            Route("/_emulator/faults", self._faults, methods=["GET", "POST", "DELETE"]),
            Route("/_emulator/requests", self._requests, methods=["GET", "DELETE"]),
            Route("/_emulator/config", self._config, methods=["GET", "POST"]),
        ]

    def _info(self, request: Request) -> Response:
        b = self.backend
        return json_response({"vendor": b.vendor, "api_key": b.api_key, "base_path": b.base_path})

    def _state(self, request: Request) -> Response:
        with self._lock:
            pending = sum(1 for r in self._rules if r.repeat or r.used < len(r.actions))
            logged = len(self._log)
        return json_response(
            {
                "vendor": self.backend.vendor,
                "tables": self.backend.state(),
                "requests": logged,
                "latency_ms": self.latency_ms,
                "fault_rules_pending": pending,
            }
        )

    async def _json_body(self, request: Request) -> Any:
        raw = await request.body()
        try:
            return orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError as exc:
            raise MutationError(f"the body is not JSON: {exc}") from None

    async def _mutate(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        try:
            op = await self._json_body(request)
            if not isinstance(op, dict) or "op" not in op:
                raise MutationError('a mutation is a JSON object with "op"')
            result = await run_in_threadpool(self.backend.mutate, op)
        except MutationError as exc:
            return text_response(str(exc), 400)
        return json_response(result)

    async def _table(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        try:
            rows = await run_in_threadpool(self.backend.export, request.path_params["table"])
        except KeyError:
            return text_response(f"no table {request.path_params['table']!r}", 404)
        return json_response(rows)

    async def _faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            with self._lock:
                self._rules.clear()
            return json_response({"rules": 0})
        if request.method == "POST":
            try:
                body = await self._json_body(request)
                raw_rules = body.get("rules") if isinstance(body, dict) else body
                if not isinstance(raw_rules, list):
                    raise MutationError('post a list of rules (or {"rules": [...]})')
                rules = [FaultRule.parse(r) for r in raw_rules]
            except MutationError as exc:
                return text_response(str(exc), 400)
            with self._lock:
                self._rules.extend(rules)
        with self._lock:
            return json_response({"rules": [r.describe() for r in self._rules]})

    def _requests(self, request: Request) -> Response:
        with self._lock:
            if request.method == "DELETE":
                self._log.clear()
                return json_response([])
            return json_response(list(self._log))

    async def _config(self, request: Request) -> Response:
        options: dict[str, Any] = {}
        if request.method == "POST":
            try:
                body = await self._json_body(request)
                if not isinstance(body, dict):
                    raise MutationError("config is a JSON object")
                if "latency_ms" in body:
                    latency = float(body.pop("latency_ms"))
                    if latency < 0:
                        raise MutationError("latency_ms must not be negative")
                    self.latency_ms = latency
                hostile = self.configure_hostile(body)
                # the backend turns on its vendor's own bad days with the same switch and seed
                options = self.backend.configure(body)
            except (MutationError, TypeError, ValueError) as exc:
                return text_response(str(exc), 400)
        else:
            hostile = self.configure_hostile({})
            options = self.backend.configure({})
        return json_response({"latency_ms": self.latency_ms, **options, **hostile})


def build_app(backend: EmulatorBackend, *, latency_ms: float = 0.0, **hostile: Any) -> Harness:
    """``hostile`` takes ``hostile``, ``hostile_seed`` and ``hostile_rate`` (see the module doc)."""
    return Harness(backend, latency_ms=latency_ms, **hostile)
