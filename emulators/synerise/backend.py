"""The Synerise API as the emulator serves it (contract: ``api/synerise.md``, section 8).

Services are path prefixes on one host (``/uauth``, ``/v4``, ``/activities-api``, ``/catalogs``,
``/crm/v1``, ``/client-exporter/v2``, ``/analytics-backend``, ``/notes-service``), so
``base_path`` is empty and the base URL is the server root.

Choices where the contract is silent (each is the stricter reading; see README.md):

* 401 bodies are family A (the gateway's Spring shape) on every service; 403 and 400 bodies use
  the service's own family (A ``/v4``, ``/activities-api``, ``/crm``, exporter; B tags; D
  analytics; E catalogs).
* ``Content-Type: application/json`` is required on ``/v4/clients*`` (family A, 415) and on
  every ``/analytics-backend`` call (family D, 415), GETs included, as the reference marks it.
* ``/activities-api/activities``: ``dateFrom``/``dateTo`` are inclusive; the 6-hour horizon is
  measured on event time against the server clock; results are the newest ``limit`` events in
  the window, newest first, ties in one millisecond in an arbitrary fixed order; no ``limit``
  means 100; ``format=csv`` is refused (not emulated).
* ``pageSize`` of ``/v4/clients`` is 1..500, CRM ``limit`` 1..100, catalog ``limit`` 1..1000,
  analytics ``size`` 1..100: larger values get 400 (never a silent clamp). ``/v4/clients``
  without ``sortBy`` is ordered by ``clientId``.
* The export-task *create* path is not in the reference: the emulator serves it at
  ``POST /client-exporter/v2/export/clients``. A task is frozen at creation and answers 404
  (family A) once its TTL has passed.
* Rate limiting is **invented**: off by default, ``rate_limit_per_s`` turns on a token bucket that
  answers 429 with ``Retry-After`` and a family-A body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulators.common.app import json_response
from emulators.common.backend import MutationError

from .data import HOUR_MS, Workspace, derive_seed, iso_ms, iso_ms_frac, uuid_from

API_VERSION = "4.4"
V4_SORT_FIELDS = ("firstName", "lastName", "lastActivityDate", "email", "city", "phone")
V4_FILTERS = ("anonymous", "firstName", "lastName", "email", "phone")
V4_MAX_PAGE_SIZE = 500
CRM_MAX_LIMIT = 100
CATALOG_MAX_LIMIT = 1000
ANALYTICS_MAX_SIZE = 100
ACTIVITIES_MAX_LIMIT = 1000
EXPORT_MAX_LIMIT = 10_000
ANALYTICS = "/analytics-backend/analytics/definitions-manager"
#: lowercase export field names -> ProfileV4 keys (other names are read from custom attributes)
EXPORT_FIELDS = {
    "firstname": "firstName", "lastname": "lastName", "email": "email", "phone": "phone", "city": "city",
    "zipcode": "zipCode", "countrycode": "countryCode", "birthdate": "birthDate", "sex": "sex", "uuid": "uuid",
    "customid": "customId", "custom_identify": "customId", "company": "company", "address": "address",
    "province": "province", "anonymous": "anonymous", "lastactivitydate": "lastActivityDate",
}
WORKSPACE_REALMS = frozenset({"business_profile", "user"})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _stamp(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}+00:00"


class Problem(Exception):
    """An error answer; ``family`` picks the body shape."""

    def __init__(self, status: int, message: str, family: str = "A", *, error: str | None = None,
                 code: str | None = None, errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.family = family
        self.error = error or _REASONS.get(status, "Error")
        self.code = code
        self.errors = errors
        self.headers = headers or {}


_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            415: "Unsupported Media Type", 429: "Too Many Requests", 500: "Internal Server Error"}


class SyneriseBackend:
    vendor = "synerise"
    base_path = ""

    def __init__(self, seed: int = 1, scale: int = 1000, *, token_ttl_s: float = 3600.0, rate_limit_per_s: float = 0.0,
                 denied_permissions: list[str] | None = None, export_ttl_s: float = 7200.0,
                 horizon_hours: float = 6.0, start_ms: int | None = None, hostile: Any = 0,
                 hostile_seed: Any = None, hostile_odds: float = 0.2) -> None:
        self.ws = Workspace(seed, scale, start_ms=start_ms)
        self.seed = seed
        self.api_key = uuid_from(derive_seed(seed, "synerise-api-key"), 1)
        self.workspace_uuid = uuid_from(derive_seed(seed, "workspace"), 2)
        self.username = f"etl-{seed}@example.com"
        self.password = _b64(hashlib.sha256(f"pw:{seed}".encode()).digest())[:16]
        self._signing_key = hashlib.sha256(f"jwt:{seed}:{self.api_key}".encode()).digest()
        self.options: dict[str, Any] = {
            "token_ttl_s": float(token_ttl_s),
            "rate_limit_per_s": float(rate_limit_per_s),
            "denied_permissions": list(denied_permissions or []),
            "export_ttl_s": float(export_ttl_s),
            "horizon_hours": float(horizon_hours),
            "hostile": 1.0 if hostile and str(hostile) not in ("0", "false", "False") else 0.0,
            "hostile_seed": hostile_seed,
            "hostile_odds": float(hostile_odds),
        }
        self._hostile_random = random.Random(f"synerise-hostile:{hostile_seed}")
        self._hostile_lock = threading.Lock()
        self.hostile_log: list[dict[str, Any]] = []
        self._revoked_before_ms = 0
        self._tokens_issued = 0
        self._bucket = (float("inf"), time.monotonic())  # starts full (clamped to the rate)
        self._bucket_lock = threading.Lock()
        self._tasks: dict[int, dict[str, Any]] = {}
        self._next_task = 500 + derive_seed(seed, "task") % 100

    # ------------------------------------------------------------------ tokens

    def mint(self, realm: str, **claims: Any) -> str:
        now = self.ws.clock.now_ms()
        self._tokens_issued += 1
        payload = {
            "aud": "API", "rlm": realm, "ctd": now, "iss": "Synerise", "bpi": self.ws.workspace_id,
            "exp": int(now / 1000 + self.options["token_ttl_s"]), "jti": f"{self.seed}-{self._tokens_issued}", **claims,
        }
        head = _b64(orjson.dumps({"alg": "HS512", "typ": "JWT"}))
        body = _b64(orjson.dumps(payload))
        sig = _b64(hmac.new(self._signing_key, f"{head}.{body}".encode(), hashlib.sha512).digest())
        return f"{head}.{body}.{sig}"

    def _claims(self, request: Request) -> dict[str, Any]:
        header = request.headers.get("authorization")
        if not header:
            raise Problem(401, "Full authentication is required to access this resource")
        if not header.startswith("Bearer "):
            raise Problem(401, "Authorization header must be 'Bearer <token>'")
        token = header[len("Bearer "):].strip()
        parts = token.split(".")
        if len(parts) != 3:
            raise Problem(401, "Invalid token")
        expected = _b64(hmac.new(self._signing_key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha512).digest())
        if not hmac.compare_digest(expected, parts[2]):
            raise Problem(401, "Invalid token")
        try:
            claims = orjson.loads(_unb64(parts[1]))
        except (ValueError, orjson.JSONDecodeError):
            raise Problem(401, "Invalid token") from None
        now = self.ws.clock.now_ms()
        if claims.get("exp", 0) * 1000 <= now:
            raise Problem(401, "Token expired")
        if claims.get("ctd", 0) < self._revoked_before_ms:
            raise Problem(401, "Token expired")
        return claims

    # ------------------------------------------------------------------ hostile mode

    @property
    def hostile(self) -> bool:
        return bool(self.options["hostile"])

    def _bad_day(self, kind: str, **detail: Any) -> bool:
        """Whether this request gets the vendor bad day ``kind`` (seeded, at ``hostile_odds``);
        each one taken is kept in ``hostile_log`` (``GET /_emulator/tables/hostile_log``)."""
        if not self.hostile:
            return False
        with self._hostile_lock:
            if self._hostile_random.random() >= self.options["hostile_odds"]:
                return False
            self.hostile_log.append({"kind": kind, "at_ms": self.ws.clock.now_ms(), **detail})
            return True

    def _hostile_pick(self, n: int) -> int:
        with self._hostile_lock:
            return self._hostile_random.randrange(n)

    def _clamped(self, size: int, cap: int) -> int:
        """Hostile: a page is served with half the size asked for (at most ``cap``), silently:
        maxima the contract leaves unknown; a client must not take the short page for the end."""
        return min(cap, max(1, size // 2)) if self.hostile else size

    def throttle_response(self) -> tuple[int, dict[str, str], bytes]:
        """The 429 the harness sends in hostile mode: family A (the gateway's shape; the contract
        documents no 429 body), ``Retry-After`` as the invented limiter sends it."""
        now = self.ws.clock.now_ms()
        body = {"timestamp": _stamp(now), "status": 429, "error": "Too Many Requests",
                "message": "Too many requests; slow down", "path": "/"}
        return 429, {"content-type": "application/json", "Retry-After": "1"}, orjson.dumps(body)

    def unauthorized_response(self) -> tuple[int, dict[str, str], bytes]:
        now = self.ws.clock.now_ms()
        body = {"timestamp": _stamp(now), "status": 401, "error": "Unauthorized", "message": "Token expired",
                "path": "/"}
        return 401, {"content-type": "application/json"}, orjson.dumps(body)

    def _hostile_modify(self, ids: Any, start: int) -> None:
        """Hostile: a profile not yet served in this walk (position >= ``start``) is modified
        right now, so in an order by ``lastActivityDate`` it moves to the end and every profile
        between shifts back by one (a walk by index skips one unless it reads again)."""
        if start >= len(ids) or not self._bad_day("profile_modified_mid_walk"):
            return
        cid = int(ids[start + self._hostile_pick(len(ids) - start)])
        from .mutations import modify_profile

        modify_profile(self, cid, strictly_latest=True)
        self.hostile_log[-1]["client_id"] = cid

    def _shifted(self, start: int, kind: str) -> int:
        """Hostile: the page served one row off (a replica a moment behind or ahead), so one row
        of the list repeats or is skipped in this walk."""
        if start > 0 and self._bad_day(f"{kind}_page_shifted"):
            return max(0, start + (1 if self._hostile_pick(2) else -1))
        return start

    # ------------------------------------------------------------------ plumbing

    def _rate_limit(self) -> None:
        rate = self.options["rate_limit_per_s"]
        if rate <= 0:
            return
        with self._bucket_lock:
            tokens, at = self._bucket
            now = time.monotonic()
            tokens = min(rate, tokens + (now - at) * rate)
            if tokens < 1:
                self._bucket = (tokens, now)
                wait = math.ceil((1 - tokens) / rate)
                raise Problem(429, "Too many requests; slow down", headers={"Retry-After": str(max(1, wait))})
            self._bucket = (tokens - 1, now)

    def _render_problem(self, p: Problem, path: str) -> Response:
        now = self.ws.clock.now_ms()
        trace = f"{derive_seed(self.seed, path, now) % (1 << 48):012x}"
        if p.family == "B":
            body: Any = {"error": p.error, "status": p.status, "timestamp": _stamp(now), "path": path,
                         "message": p.message, "errors": [{"path": path, "timestamp": _stamp(now),
                                                           "errorCode": p.code or p.error.upper().replace(" ", "_"),
                                                           "status": p.status, "message": p.message,
                                                           "traceId": trace}]}
        elif p.family == "D":
            body = {"httpStatus": p.status, "errorCode": p.code or p.error.upper().replace(" ", "_"),
                    "message": p.message, "timestamp": _stamp(now), "traceId": trace,
                    "help": "https://help.synerise.com"}
        elif p.family == "E":
            body = {"status": p.status, "error": p.error, "message": p.message, "timestamp": _stamp(now)}
        else:
            body = {"timestamp": _stamp(now), "status": p.status, "error": p.error, "message": p.message, "path": path}
            if p.errors is not None:
                body["errors"] = p.errors
        response = json_response(body, p.status)
        for k, v in p.headers.items():
            response.headers[k] = v
        return response

    def _endpoint(self, fn: Callable[..., Any], *, family: str = "A", permission: str | None = None,
                  realms: frozenset[str] | None = WORKSPACE_REALMS, version: bool = False,
                  content_type: str | None = None) -> Callable[[Request], Any]:
        """Wrap a handler with the checks the API makes, in order: rate limit, ``Api-Version``,
        bearer token and realm, ``Content-Type``, permission."""

        async def endpoint(request: Request) -> Response:
            from starlette.concurrency import run_in_threadpool

            body = await request.body()
            try:
                self._rate_limit()
                if version and request.headers.get("api-version") != API_VERSION:
                    raise Problem(400, "Version header content is invalid")
                claims: dict[str, Any] = {}
                if realms is not None:
                    claims = self._claims(request)
                    if claims.get("rlm") not in realms:
                        raise Problem(403, f"Access denied for a {claims.get('rlm')} token", family)
                if content_type is not None:
                    ct = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
                    if ct != "application/json":
                        raise Problem(415, f"Content type '{ct}' not supported; send application/json",
                                      content_type, code="UNSUPPORTED_MEDIA_TYPE")
                if permission and permission in self.options["denied_permissions"]:
                    raise Problem(403, f"Access denied: the API key lacks the {permission} permission", family,
                                  code="ACCESS_DENIED")
                result = await run_in_threadpool(fn, request, body, claims)
            except Problem as p:
                return self._render_problem(p, request.url.path)
            if isinstance(result, Response):
                return result
            return json_response(result)

        return endpoint

    # ------------------------------------------------------------------ routes

    def routes(self) -> list[Route]:
        e = self._endpoint
        A = ANALYTICS
        return [
            Route("/uauth/v2/auth/login/profile", e(self._login, realms=None), methods=["POST"]),
            Route("/uauth/auth/login/user", e(self._login_user, realms=None), methods=["POST"]),
            Route("/uauth/auth/login/user/profile/{bp}", e(self._select_workspace, realms=frozenset({"user_pre"})),
                  methods=["POST"]),
            Route("/v4/server/time", e(self._server_time, realms=None, version=True), methods=["GET"]),
            Route("/v4/clients", e(self._clients, permission="API_LIST_CLIENT_READ", version=True,
                                   content_type="A"), methods=["GET"]),
            Route("/v4/clients/tags", e(self._tags, family="B", permission="API_TAGS_CLIENT_READ", version=True),
                  methods=["GET"]),
            Route("/v4/clients/{client_id:int}/tags", e(self._client_tags, family="B", permission="API_TAGS_READ",
                                                        version=True), methods=["GET"]),
            Route("/v4/clients/{client_id:int}", e(self._client, permission="API_BY_ID_CLIENT_READ", version=True,
                                                   content_type="A"), methods=["GET"]),
            Route("/v4/clients/{kind}/{value}", e(self._client_by, permission="API_BY_IDENTIFIER_CLIENT_READ",
                                                  version=True, content_type="A"), methods=["GET"]),
            Route("/activities-api/activities", e(self._activities, permission="ACTIVITIES_API_ACTIVITIES_READ"),
                  methods=["GET"]),
            Route("/activities-api/events/by/{kind}", e(self._profile_events,
                                                        permission="ACTIVITIES_API_ACTIVITIES_READ"),
                  methods=["POST"]),
            Route("/activities-api/events", e(lambda *a: [], realms=frozenset({"client", "anonymous_client"})),
                  methods=["GET"]),
            Route("/catalogs/bags", e(self._bags, family="E", permission="CATALOGS_CATALOG_READ"), methods=["GET"]),
            Route("/catalogs/bags/{catalog_id:int}", e(self._bag, family="E", permission="CATALOGS_CATALOG_READ"),
                  methods=["GET"]),
            Route("/catalogs/bags/{catalog_id:int}/items", e(self._items, family="E",
                                                             permission="CATALOGS_CATALOG_READ"), methods=["GET"]),
            Route("/crm/v1/list", e(self._crm_list, permission="CRM_LIST_CLIENT_READ"), methods=["GET"]),
            Route("/tags-collector/tags", e(self._asset_tags, permission="TAGS_COLLECTOR_TAG_READ"), methods=["GET"]),
            Route("/tags-collector/directories", e(self._tag_directories, permission="TAGS_COLLECTOR_DIRECTORY_READ"),
                  methods=["GET"]),
            Route("/crm/v1/segmentations/{seg}/clients", e(self._segment_clients,
                                                           permission="CRM_LIST_FROM_SEGMENTATION_CLIENT_READ"),
                  methods=["GET"]),
            Route(f"{A}/expressions", e(self._expressions, family="D", content_type="D",
                                        permission="ANALYTICS_BACKEND_LIST_EXPRESSION_READ"), methods=["GET"]),
            Route(f"{A}/expressions/projections", e(self._expression_projections, family="D", content_type="D",
                                                    permission="ANALYTICS_BACKEND_EXPRESSION_READ"), methods=["GET"]),
            Route(f"{A}/expressions/{{uuid}}", e(self._expression, family="D", content_type="D",
                                                 permission="ANALYTICS_BACKEND_EXPRESSION_READ"), methods=["GET"]),
            Route(f"{A}/expressions/{{uuid}}/client/{{client_id:int}}/calculate",
                  e(self._expression_value, family="D", content_type="D",
                    permission="ANALYTICS_BACKEND_EXPRESSION_FOR_CLIENT_READ"), methods=["GET"]),
            Route(f"{A}/aggregates", e(self._aggregates, family="D", content_type="D",
                                       permission="ANALYTICS_BACKEND_LIST_AGGREGATE_READ"), methods=["GET"]),
            Route(f"{A}/aggregates/projections", e(self._aggregate_projections, family="D", content_type="D",
                                                   permission="ANALYTICS_BACKEND_AGGREGATE_PROJECTION_READ"),
                  methods=["GET"]),
            Route(f"{A}/aggregates/{{uuid}}", e(self._aggregate, family="D", content_type="D",
                                                permission="ANALYTICS_BACKEND_AGGREGATE_READ"), methods=["GET"]),
            Route(f"{A}/aggregates/{{uuid}}/client/{{client_id:int}}/calculate",
                  e(self._aggregate_value, family="D", content_type="D",
                    permission="ANALYTICS_BACKEND_AGGREGATE_FOR_CLIENT_READ"), methods=["POST"]),
            Route("/client-exporter/v2/export/clients", e(self._export_create,
                                                          permission="CLIENT_EXPORTER_REPORT_CREATE"),
                  methods=["POST"]),
            Route("/client-exporter/v2/export/clients/task/{task_id:int}",
                  e(self._export_read, permission="CLIENT_EXPORTER_REPORT_CREATE"), methods=["GET"]),
            Route("/notes-service/by-id/{client_id:int}", e(self._notes, realms=frozenset({"user"}),
                                                            permission="NOTES_SERVICE_ALL_NOTES_READ"),
                  methods=["GET"]),
        ]

    # ------------------------------------------------------------------ parameter helpers

    @staticmethod
    def _json(body: bytes) -> Any:
        try:
            return orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            raise Problem(400, "Malformed JSON request body") from None

    @staticmethod
    def _int(request: Request, name: str, default: int | None, lo: int | None = None, hi: int | None = None,
             family: str = "A") -> int | None:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(float(raw)) if "." in raw else int(raw)
        except ValueError:
            raise Problem(400, f"Failed to convert value of type 'java.lang.String' to required type 'int' for "
                               f"'{name}': {raw!r}", family,
                          errors=[{"code": 400, "field": name, "message": "must be a number",
                                   "rejectedValue": raw}] if family == "A" else None) from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise Problem(400, f"{name} must be {bound}", family,
                          errors=[{"code": 400, "field": name, "message": f"must be {bound}",
                                   "rejectedValue": value}] if family == "A" else None)
        return value

    # ------------------------------------------------------------------ auth endpoints

    def _login(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        data = self._json(body)
        if not isinstance(data, dict) or not isinstance(data.get("apiKey"), str):
            raise Problem(400, "apiKey is required", errors=[{"code": 400, "field": "apiKey",
                                                              "message": "must not be null", "rejectedValue": None}])
        if not hmac.compare_digest(data["apiKey"], self.api_key):
            raise Problem(401, "Bad credentials")
        return {"token": self.mint("business_profile")}

    def _login_user(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        data = self._json(body) or {}
        if data.get("username") != self.username or data.get("password") != self.password:
            raise Problem(401, "Bad credentials")
        consumer = {"type": "USER", "businessProfileId": None, "name": "ETL user", "id": 12,
                    "authorities": [], "roles": ["ADMIN"]}
        return {"consumer": consumer, "token": self.mint("user_pre")}

    def _select_workspace(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        if request.path_params["bp"] != self.workspace_uuid:
            raise Problem(403, "No access to this workspace")
        consumer = {"type": "USER", "businessProfileId": self.ws.workspace_id, "name": "ETL user", "id": 12,
                    "authorities": [], "roles": ["ADMIN"]}
        return {"consumer": consumer, "token": self.mint("user")}

    def _server_time(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        return {"serverTime": iso_ms(self.ws.clock.now_ms())}

    # ------------------------------------------------------------------ profiles

    def _clients(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        q = request.query_params
        page = self._int(request, "pageIndex", 1, 1)
        size = self._int(request, "pageSize", 20, 1, V4_MAX_PAGE_SIZE)
        sort_by = q.get("sortBy")
        if sort_by is not None and sort_by not in V4_SORT_FIELDS:
            raise Problem(400, f"sortBy must be one of {', '.join(V4_SORT_FIELDS)}",
                          errors=[{"code": 400, "field": "sortBy", "message": "invalid value", "rejectedValue": sort_by}])
        order = (q.get("sortOrder") or "ASC").upper()
        if order not in ("ASC", "DESC"):
            raise Problem(400, "sortOrder must be ASC or DESC")
        filters = []
        for key, value in q.multi_items():
            if key.startswith("filters[") and key.endswith("]"):
                name = key[len("filters["):-1]
                if name not in V4_FILTERS:
                    raise Problem(400, f"unknown filter {name}")
                filters.append((name, value.lower() == "true" if name == "anonymous" else value))
        assert page is not None and size is not None
        size = self._clamped(size, 100)
        ws = self.ws
        with ws.lock:
            def ordered() -> Any:
                if filters:
                    ids: Any = ws.filtered_ids(tuple(sorted(filters)))
                    if sort_by:
                        rank = {cid: k for k, cid in enumerate(ws.sorted_ids(sort_by, order == "DESC"))}
                        ids = sorted(ids, key=rank.__getitem__)
                    return ids
                if sort_by:
                    return ws.sorted_ids(sort_by, order == "DESC")
                if self.hostile:  # the order the contract leaves unstated: recently active last
                    return ws.sorted_ids("lastActivityDate", False)
                return ws.live_ids()

            start = (page - 1) * size
            ids = ordered()
            if self.hostile and not filters and not sort_by:
                self._hostile_modify(ids, start)
                ids = ordered()
                start = self._shifted(start, "v4_clients")
            return [ws.profile(cid) for cid in ids[start:start + size]]

    def _client(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        cid = request.path_params["client_id"]
        with self.ws.lock:
            if not self.ws.exists(cid):
                raise Problem(404, f"Client with id {cid} not found")
            return self.ws.profile(cid)

    def _client_by(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        kind = {"by-custom-id": "customId", "by-phone": "phone", "by-uuid": "uuid", "by-email": "email"}.get(
            request.path_params["kind"])
        if kind is None:
            raise Problem(404, "No handler found")
        with self.ws.lock:
            cid = self.ws.find_profile(kind, request.path_params["value"])
            if cid is None:
                raise Problem(404, "Client not found")
            return self.ws.profile(cid)

    def _tags(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        return self.ws.tags

    def _client_tags(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        cid = request.path_params["client_id"]
        with self.ws.lock:
            if not self.ws.exists(cid):
                raise Problem(404, f"Client with id {cid} not found", "B", code="CLIENT_NOT_FOUND")
            names = set(self.ws.profile(cid).get("tags") or [])
        return [t for t in self.ws.tags if t["name"] in names]

    def _asset_tags(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        """tags-collector: 0-based ``page``, ``size`` (default 10, 1..100),
        ``pagination: {limit, page, pages, total}``."""
        page = self._int(request, "page", 0, 0) or 0
        size = self._int(request, "size", 10, 1, ANALYTICS_MAX_SIZE) or 10
        rows = self.ws.asset_tags
        return {"data": rows[page * size:(page + 1) * size],
                "pagination": {"limit": size, "page": page, "pages": -(-len(rows) // size), "total": len(rows)}}

    def _tag_directories(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        return self.ws.tag_directories

    def _crm_list(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        """P4 ``/crm/v1/list``: every live profile in the CRM shape, offset/limit."""
        offset = self._int(request, "offset", 0, 0) or 0
        limit = self._int(request, "limit", 25, 1, CRM_MAX_LIMIT) or 25
        recognized = (request.query_params.get("recognized") or "NONE").upper()
        ws = self.ws
        with ws.lock:
            ids: Any = ws.live_ids()
            if recognized in ("RECOGNIZED", "TRUE", "ANONYMOUS", "FALSE"):
                want = recognized in ("ANONYMOUS", "FALSE")
                ids = [c for c in ids if bool(ws._sort_key(c, "anonymous")) == want]
            page = [ws.crm_profile(c) for c in ids[offset:offset + limit]]
            return {"customers": page, "all": len(ws.live_ids()), "limit": limit, "offset": offset,
                    "matching": len(ids)}

    # ------------------------------------------------------------------ events

    def _activities(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        ws = self.ws
        now = ws.clock.now_ms()
        date_from = self._int(request, "dateFrom", now - 2 * HOUR_MS)
        date_to = self._int(request, "dateTo", now)
        limit = self._int(request, "limit", 100, 1, ACTIVITIES_MAX_LIMIT)
        raw = (request.query_params.get("raw") or "false").lower() == "true"
        if (request.query_params.get("format") or "json") != "json":
            raise Problem(400, "only format=json is emulated")
        assert date_from is not None and date_to is not None and limit is not None
        if date_from > date_to:
            raise Problem(400, "dateFrom must not be after dateTo")
        horizon = now - int(self.options["horizon_hours"] * HOUR_MS)
        if self._bad_day("late_event"):
            # hostile: an event arrives now, time-stamped up to 590 s ago (behind a running walk's
            # position; within the source's default lookbacks: 600 s per profile, 600 s + 60 s lag)
            with ws.lock:
                live = ws.live_ids()
                if len(live):
                    late = ws.add_event(int(live[self._hostile_pick(len(live))]), now - 1 - self._hostile_pick(589_000))
                    ws.bump()
                    self.hostile_log[-1].update(event_uuid=late["eventUUID"], time=late["time"])
        lo, hi = max(date_from, horizon), min(date_to, now)
        if lo > hi:
            return []
        with ws.lock:
            _, events = ws.window(lo, hi, limit)
            return [ws.render_event(ev, raw) for ev in events]

    def _profile_events(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        kind = request.path_params["kind"]
        if kind not in ("id", "uuid", "email", "custom_identify"):
            raise Problem(400, "identifierType must be one of id, uuid, email, custom_identify")
        data = self._json(body)
        if not isinstance(data, dict) or data.get("identifierValue") in (None, ""):
            raise Problem(400, "identifierValue is required",
                          errors=[{"code": 400, "field": "identifierValue", "message": "must not be blank"}])
        extra = data.get("additionalData") or {}
        if not isinstance(extra, dict):
            raise Problem(400, "additionalData must be an object")

        def num(name: str, default: int | None, lo: int | None = None, hi: int | None = None) -> int | None:
            v = extra.get(name)
            if v in (None, ""):
                return default
            try:
                n = int(v)
            except (TypeError, ValueError):
                raise Problem(400, f"additionalData.{name} must be a number") from None
            if (lo is not None and n < lo) or (hi is not None and n > hi):
                raise Problem(400, f"additionalData.{name} must be between {lo} and {hi}")
            return n

        limit = num("limit", 50, 1, ACTIVITIES_MAX_LIMIT)
        date_from, date_to = num("dateFrom", None), num("dateTo", None)
        sort = extra.get("sortBy") or "time:desc"
        if sort not in ("time:asc", "time:desc"):
            raise Problem(400, "sortBy must be time:asc or time:desc")
        actions = {a.strip() for a in str(extra.get("actions") or "").split(",") if a.strip()}
        raw = str(extra.get("raw") or "false").lower() == "true"
        token = request.query_params.get("pageToken") or extra.get("pageToken")
        query_key = f"{kind}:{data['identifierValue']}:{date_from}:{date_to}:{sorted(actions)}:{sort}"
        fingerprint = hashlib.blake2b(query_key.encode(), digest_size=6).hexdigest()
        position, backwards = None, False
        if token:
            try:
                t = orjson.loads(_unb64(str(token)))
                position, backwards, tok_q = (t["t"], t["u"]), bool(t.get("b")), t["q"]
            except Exception:  # noqa: BLE001 - any garbage is an invalid token
                raise Problem(400, "Invalid pageToken") from None
            if tok_q != fingerprint:
                raise Problem(400, "pageToken does not belong to this query")
        assert limit is not None
        ws = self.ws
        with ws.lock:
            cid = ws.find_profile(kind, str(data["identifierValue"]))
            if cid is None:
                raise Problem(404, "Profile not found")
            evs = [e for e in ws.profile_events(cid)
                   if (date_from is None or e["time"] >= date_from) and (date_to is None or e["time"] <= date_to)
                   and (not actions or e["action"]["name"] in actions)]
            if sort == "time:desc":
                evs.reverse()
            keys = [(e["time"], e["eventUUID"]) for e in evs]
            desc = sort == "time:desc"

            n = len(evs)

            def is_after(k: tuple[int, str]) -> bool:
                return k < position if desc else k > position  # type: ignore[operator]

            def is_before(k: tuple[int, str]) -> bool:
                return k > position if desc else k < position  # type: ignore[operator]

            if position is None:
                start, end = 0, min(limit, n)
            elif not backwards:
                start = next((i for i, k in enumerate(keys) if is_after(k)), n)
                end = min(start + limit, n)
            else:
                end = next((i for i, k in enumerate(keys) if not is_before(k)), n)
                start = max(0, end - limit)
            page = evs[start:end]
            rendered = [ws.render_event(e, raw) for e in page]

        def tok(k: tuple[int, str], back: bool) -> str:
            return _b64(orjson.dumps({"t": k[0], "u": k[1], "b": back, "q": fingerprint}))

        cursors: dict[str, Any] = {}
        if page and end < len(evs):
            cursors["after"] = tok(keys[end - 1], False)
        if page and start > 0:
            cursors["before"] = tok(keys[start], True)
        path = request.url.path
        links = [{"url": path, "rel": "first"}]
        if "after" in cursors:
            links.append({"url": f"{path}?pageToken={cursors['after']}", "rel": "next"})
        if "before" in cursors:
            links.append({"url": f"{path}?pageToken={cursors['before']}", "rel": "prev"})
        return {"meta": {"links": links, "cursors": cursors, "limit": limit, "count": len(rendered)},
                "data": rendered}

    # ------------------------------------------------------------------ catalogs

    def _envelope(self, data: Any, total: int | None, started: float) -> dict[str, Any]:
        meta: dict[str, Any] = {"requestTime": f"{time.perf_counter() - started:.2f} [s]"}
        if total is not None:
            meta["totalCount"] = total
        return {"data": data, "metaData": meta}

    def _bags(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        started = time.perf_counter()
        offset = self._int(request, "offset", 0, 0, family="E") or 0
        limit = self._int(request, "limit", 20, 1, CATALOG_MAX_LIMIT, family="E") or 20
        order = request.query_params.get("orderBy")
        if order is not None and order not in ("id", "author", "lastModified", "creationDate"):
            raise Problem(400, "orderBy must be one of id, author, lastModified, creationDate", "E")
        search = (request.query_params.get("searchBy") or "").lower()
        with self.ws.lock:
            bags = [b for b in self.ws.catalogs if not search or search in b["name"].lower()
                    or search in b["author"].lower()]
            if order:
                bags = sorted(bags, key=lambda b: (b[order], b["id"]))
            return self._envelope(bags[offset:offset + limit], len(bags), started)

    def _bag(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        bag = self.ws.catalog(request.path_params["catalog_id"])
        if bag is None:
            raise Problem(404, "Catalog not found", "E")
        return self._envelope(bag, None, time.perf_counter())

    def _items(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        started = time.perf_counter()
        catalog_id = request.path_params["catalog_id"]
        offset = self._int(request, "offset", 0, 0, family="E") or 0
        limit = self._int(request, "limit", 20, 1, CATALOG_MAX_LIMIT, family="E") or 20
        item_key = request.query_params.get("itemKey")
        ws = self.ws
        with ws.lock:
            if ws.catalog(catalog_id) is None:
                raise Problem(404, "Catalog not found", "E")
            indexes = ws.item_indexes(catalog_id)
            if item_key is not None:
                rows = [ws.item(catalog_id, i) for i in indexes]
                rows = [r for r in rows if r["itemKey"] == item_key]
                return self._envelope(rows[offset:offset + limit], len(rows), started)
            limit = self._clamped(limit, 100)
            if offset > 0 and offset < len(indexes) and self._bad_day("catalog_items_scan_ended_short",
                                                                     catalog_id=catalog_id, offset=offset):
                return self._envelope([], len(indexes), started)  # the scan ends before totalCount
            offset = self._shifted(offset, "catalog_items")
            return self._envelope([ws.item(catalog_id, i) for i in indexes[offset:offset + limit]],
                                  len(indexes), started)

    # ------------------------------------------------------------------ CRM

    def _segment_clients(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        seg = request.path_params["seg"]
        offset = self._int(request, "offset", 0, 0) or 0
        limit = self._int(request, "limit", 25, 1, CRM_MAX_LIMIT) or 25
        recognized = (request.query_params.get("recognized") or "NONE").upper()
        if recognized not in ("RECOGNIZED", "TRUE", "ANONYMOUS", "FALSE", "NONE"):
            raise Problem(400, "recognized must be one of RECOGNIZED, true, ANONYMOUS, false, NONE")
        ws = self.ws
        with ws.lock:
            if ws.segmentation(seg) is None:
                raise Problem(404, f"Segmentation {seg} not found")
            members = ws.members(seg)
            if recognized in ("RECOGNIZED", "TRUE"):
                members = [c for c in members if not ws.profile(c).get("anonymous")]
            elif recognized in ("ANONYMOUS", "FALSE"):
                members = [c for c in members if ws.profile(c).get("anonymous")]
            limit = self._clamped(limit, 20)
            offset = self._shifted(offset, "segmentation")
            page = [ws.crm_profile(c) for c in members[offset:offset + limit]]
            return {"customers": page, "all": len(ws.live_ids()), "limit": limit, "offset": offset,
                    "matching": len(members)}

    # ------------------------------------------------------------------ analytics

    def _spring(self, request: Request, rows: list[Any], sorted_: bool) -> dict[str, Any]:
        page = self._int(request, "page", 0, 0, family="D") or 0
        size = self._clamped(self._int(request, "size", 20, 1, ANALYTICS_MAX_SIZE, family="D") or 20, 10)
        total = len(rows)
        return {"content": rows[page * size:(page + 1) * size],
                "pagination": {"currentPageNumber": page, "pageSize": size, "sorted": sorted_,
                               "totalElements": total, "totalPages": -(-total // size)}}

    def _expressions(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        flt = (request.query_params.get("filter") or "NONE").upper()
        if flt not in ("NONE", "CLIENT", "EVENT"):
            raise Problem(400, "filter must be one of NONE, CLIENT, EVENT", "D", code="VALIDATION_ERROR")
        rows = [x for x in self.ws.expressions if flt == "NONE" or x["payload"]["analysis"]["type"] == flt]
        return self._spring(request, rows, False)

    def _expression_projections(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        return [{"createdAt": x["payload"]["createdBy"]["atTime"], "hashId": x["id"],
                 "isDynamicAnalytic": x["payload"]["isDynamicAnalytic"], "name": x["payload"]["analysis"]["name"],
                 "variables": x["payload"]["variables"]} for x in self.ws.expressions]

    def _expression(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        x = self.ws.expression(request.path_params["uuid"])
        if x is None:
            raise Problem(404, "Expression not found", "D", code="NOT_FOUND")
        return x

    def _expression_value(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        x = self.ws.expression(request.path_params["uuid"])
        cid = request.path_params["client_id"]
        with self.ws.lock:
            if x is None or not self.ws.exists(cid):
                raise Problem(404, "Expression or profile not found", "D", code="NOT_FOUND")
            return {"clientId": cid, "expressionId": x["id"], "result": self.ws.analytic_result(x["id"], cid),
                    "title": x["payload"]["analysis"]["name"], "variables": []}

    @staticmethod
    def _public_aggregate(a: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in a.items() if not k.startswith("_")}

    def _aggregates(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        rows = list(self.ws.aggregates)
        sort = request.query_params.get("sort")
        if sort:
            field, _, direction = sort.partition(",")
            keys = {"name": lambda a: a["name"], "isPredefinedAnalytic": lambda a: a["isPredefinedAnalytic"],
                    "isDynamicAnalytic": lambda a: a["isDynamicAnalytic"], "created": lambda a: a["_created_ms"],
                    "title": lambda a: a["aggregate"]["name"]}
            if field not in keys or direction.lower() not in ("", "asc", "desc"):
                raise Problem(400, "sort must be one of name, isPredefinedAnalytic, isDynamicAnalytic, created, "
                                   "title followed by ,asc or ,desc", "D", code="VALIDATION_ERROR")
            rows.sort(key=lambda a: (keys[field](a), a["aggregate"]["uuid"]), reverse=direction.lower() == "desc")
        return self._spring(request, [self._public_aggregate(a) for a in rows], bool(sort))

    def _aggregate_projections(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        return [{"createdAt": a["createdBy"]["atTime"], "isDynamicAnalytic": a["isDynamicAnalytic"],
                 "name": a["name"], "uuid": a["aggregate"]["uuid"], "variables": a["variables"],
                 "hashId": 8000 + k} for k, a in enumerate(self.ws.aggregates)]

    def _aggregate(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        a = self.ws.aggregate(request.path_params["uuid"])
        if a is None:
            raise Problem(404, "Aggregate not found", "D", code="NOT_FOUND")
        return self._public_aggregate(a)

    def _aggregate_value(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        a = self.ws.aggregate(request.path_params["uuid"])
        cid = request.path_params["client_id"]
        with self.ws.lock:
            if a is None or not self.ws.exists(cid):
                raise Problem(404, "Aggregate or profile not found", "D", code="NOT_FOUND")
            now = self.ws.clock.now_ms()
            return {"aggregateId": a["aggregate"]["id"], "aggregateUuid": a["aggregate"]["uuid"], "clientId": cid,
                    "result": self.ws.analytic_result(a["aggregate"]["uuid"], cid), "variables": [],
                    "dateFilter": {"from": iso_ms_frac(now - 30 * 24 * HOUR_MS), "to": iso_ms_frac(now)}}

    # ------------------------------------------------------------------ export task

    def _export_create(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        data = self._json(body)
        errors = []
        if not isinstance(data, dict):
            data = {}
        for name, kind in (("name", str), ("fields", list), ("agreementFilter", str), ("segmentationHash", str),
                           ("excludedIds", list)):
            if not isinstance(data.get(name), kind):
                errors.append({"code": 400, "field": name, "message": "must not be null", "rejectedValue": data.get(name)})
        if errors:
            raise Problem(400, "Validation failed", errors=errors)
        if data["agreementFilter"] not in ("NONE", "RECOGNIZED", "ANONYMOUS"):
            raise Problem(400, "agreementFilter must be NONE, RECOGNIZED or ANONYMOUS")
        if data["excludedIds"]:
            raise Problem(400, "excludedIds must be empty")
        expressions = list(data.get("expressions") or [])
        aggregates = list(data.get("aggregates") or [])
        ws = self.ws
        with ws.lock:
            if ws.segmentation(data["segmentationHash"]) is None:
                raise Problem(404, f"Segmentation {data['segmentationHash']} not found")
            for x in expressions:
                if ws.expression(x) is None:
                    raise Problem(400, f"Unknown expression {x}")
            for a in aggregates:
                if ws.aggregate(a) is None:
                    raise Problem(400, f"Unknown aggregate {a}")
            members = ws.members(data["segmentationHash"])
            if data["agreementFilter"] == "RECOGNIZED":
                members = [c for c in members if not ws.profile(c).get("anonymous")]
            elif data["agreementFilter"] == "ANONYMOUS":
                members = [c for c in members if ws.profile(c).get("anonymous")]
            task_id = self._next_task
            self._next_task += 1
            fields = [str(f) for f in data["fields"] if str(f) != "id"]
            # frozen: the member list and the overlay of changed profiles as of now
            self._tasks[task_id] = {
                "ids": list(members), "overlay": dict(ws.profiles_overlay), "revs": dict(ws.revs), "fields": fields,
                "analytics": expressions + aggregates, "created_ms": ws.clock.now_ms(),
            }
            columns = ["id", *fields, *expressions, *aggregates]
        return {"taskId": task_id, "columnOrder": columns, "estimatedCount": len(members), "ttl": "2h"}

    def _export_read(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        task = self._tasks.get(request.path_params["task_id"])
        ws = self.ws
        if task is None or ws.clock.now_ms() - task["created_ms"] > self.options["export_ttl_s"] * 1000:
            raise Problem(404, "Export task not found or expired")
        limit = self._int(request, "limit", 100, 1, EXPORT_MAX_LIMIT) or 100
        offset = self._int(request, "offset", 0, 0) or 0
        with ws.lock:
            return [self._export_row(cid, task) for cid in task["ids"][offset:offset + limit]]

    def _export_row(self, cid: int, task: dict[str, Any]) -> dict[str, Any]:
        ws = self.ws
        overlay = task["overlay"]
        p = overlay.get(cid) or ws._generated_profile(cid)
        row: dict[str, Any] = {"id": cid}
        for f in task["fields"]:
            key = EXPORT_FIELDS.get(f.lower())
            row[f] = p.get(key) if key else (p.get("attributes") or {}).get(f)
        rev = task["revs"].get(cid, 0)
        for a in task["analytics"]:
            row[a] = ws.analytic_result(a, cid, rev)
        return row

    # ------------------------------------------------------------------ notes (user realm only)

    def _notes(self, request: Request, body: bytes, claims: dict[str, Any]) -> Any:
        cid = request.path_params["client_id"]
        if not self.ws.exists(cid):
            raise Problem(404, "Client not found")
        base = self.ws.clock.start_ms / 1000
        return [{"body": "<p>Called about an order</p>", "created": base - 86400.5, "createdBy": "anna@example.com",
                 "id": uuid_from(cid, 7), "subject": "Call", "updated": base - 3600.25, "updatedBy": "anna@example.com",
                 "userId": 12}] if cid % 4 == 1 else []

    # ------------------------------------------------------------------ control plane

    def state(self) -> dict[str, int]:
        ws = self.ws
        with ws.lock:
            return {
                "profiles": len(ws.live_ids()),
                "recent_events": len(ws.ev_time) + len(ws.added_rows),
                "catalogs": len(ws.catalogs),
                "catalog_items": sum(len(ws.item_indexes(c["id"])) for c in ws.catalogs),
                "tags": len(ws.tags),
                "segmentations": len(ws.segmentations),
                "expressions": len(ws.expressions),
                "aggregates": len(ws.aggregates),
                "export_tasks": len(self._tasks),
            }

    def configure(self, options: dict[str, Any]) -> dict[str, Any]:
        for k, v in options.items():
            if k not in self.options:
                raise MutationError(f"unknown synerise option {k!r}; known: {', '.join(sorted(self.options))}")
            if k == "hostile_seed":
                self.options[k] = v
                with self._hostile_lock:
                    self._hostile_random = random.Random(f"synerise-hostile:{v}")
                continue
            if k == "hostile":
                v = 0.0 if not v or str(v) in ("0", "false", "False") else 1.0
            self.options[k] = list(v) if k == "denied_permissions" else float(v)
            if k == "rate_limit_per_s":
                with self._bucket_lock:
                    self._bucket = (float("inf"), time.monotonic())
        return dict(self.options)

    def export(self, table: str) -> list[dict[str, Any]]:
        from .mutations import export_table

        return export_table(self, table)

    def mutate(self, operation: dict[str, Any]) -> dict[str, Any]:
        from .mutations import apply

        with self.ws.lock:
            return apply(self, operation)
