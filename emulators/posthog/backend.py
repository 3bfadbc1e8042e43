"""The PostHog private API as the emulator serves it (contract ``api/posthog.md`` §7).

Routes (every project route also answers under ``/api/environments/{id}/…``, contract §1.1):

=====================================================  =============================  ==================
``GET  /api/projects/``, ``/api/projects/{id}/``       projects (style A)              ``project:read``
``GET  …/persons/``                                    persons, newest first (style B)  ``person:read``
``GET  …/events/``                                     legacy events list (style C)     ``query:read``
``POST …/query/``; ``GET``/``DELETE …/query/{qid}/``   HogQL (style F), async status    ``query:read``
``GET  …/cohorts/ feature_flags/ annotations/``        style A                          ``<object>:read``
``GET  …/insights/ event_definitions/``                style A                          ``<object>:read``
``GET  …/property_definitions/?type=``                 style A                          ``property_definition:read``
``GET  …/groups_types/``, ``…/groups/?group_type_index=``  plain list; DRF cursor (style D)  ``group:read``
``GET  …/experiments/ actions/ dashboards/ surveys/``  style A                          ``<object>:read``
``GET  …/dashboards/{id}/``                            one dashboard, tiles expanded    ``dashboard:read``
``GET  …/session_recordings/``                         style E (``has_next``)           ``session_recording:read``
=====================================================  =============================  ==================

Behaviours reproduced, with the contract's numbering:

1. Personal-key auth (``Authorization: Bearer phx_…``, else ``personal_api_key`` in the JSON body,
   else in the query string), scopes per endpoint, keys limited to some projects; project tokens
   (``phc_…``) are refused like any unknown key. Errors use exactly ``{type, code, detail, attr}``.
2. DRF ``LimitOffsetPagination``: ``{count, next, previous, results}``, default ``limit=100``, absolute
   ``next``/``previous`` on the request's own host keeping every other parameter.
3. Persons ``created_at DESC, id DESC``; ``next`` iff ``len(results) >= limit`` (a full last page
   leads to an empty one); ``count`` only with ``include_total``; ``id == uuid`` (or the docs shape:
   integer ``id`` + ``last_seen_at``, option ``persons_shape="docs"``); filters ``distinct_id``,
   ``email``, ``search``, ``properties``.
4. Legacy ``/events/``: newest first, ``limit`` default 100 clamped silently to 1,000, ``after``
   default now − 24 h, ``before`` default now + 5 s, both exclusive, ``next`` = same parameters with
   ``before=<last timestamp>`` only when more rows exist, ``offset > 50000`` refused; fault switches
   ``legacy_events_truncate_long_windows`` (a window over one day returns its newest day and
   ``next: null``) and ``legacy_events_repeat_next`` (``next`` repeats the request).
5–6. HogQL subset (:mod:`emulators.posthog.hogql`): LIMIT default 100, clamp 50,000, ``hasMore``
   only without LIMIT, OFFSET refused with the exact message.
7. Rate limits per bucket (ClickHouse 240/min + 1200/h; query 240/min + 2400/h, or the legacy
   120/h; CRUD 480/min + 4800/h), DRF's wait arithmetic, 429 ``Request was throttled. Expected
   available in N seconds.`` with **no** ``Retry-After`` (option ``send_retry_after``); at most
   ``query_concurrency`` (3) queries running per project, the next one refused at once with 429.
8. Ties down to the microsecond, ClickHouse UUID order, ISO timestamps with microseconds and offset.
9. Late events through the control plane (``add_events`` with ``late_seconds``).
   ``query_max_rows`` (default 50,000) lowers the clamp so tests can reach it cheaply.
10. Query cache: an identical query within ``cache_ttl_seconds`` answers ``is_cached: true`` with the
    old rows unless ``refresh`` forces; ``refresh: "async"`` answers 202 and is polled; ``DELETE``
    cancels; optional execution budget ``query_timeout_rows`` (a query whose time range holds more
    rows answers 500 ``ClickHouse error while executing query.``).

Where the contract is unknown the stricter choice is made (see ``emulators/posthog/README.md``).
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import datetime as dt
import hashlib
import itertools
import math
import random
import threading
import time
import urllib.parse
import uuid as _uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulators.common.backend import MutationError

from . import hogql, objects
from . import sessions as session_table
from .data import (
    DAY_US,
    HOUR_US,
    US,
    Event,
    EventStore,
    Person,
    PersonStore,
    Project,
    derive_seed,
    drf_datetime,
    from_datetime,
    h2,
    iso_us,
    iso_us_many,
    to_datetime,
    uuid_str,
    v7,
)
from .rows import EventPages, Renderer, RowCache, json_default

VENDOR = "posthog"
ALL_SCOPES = (
    "project:read", "person:read", "query:read", "cohort:read", "feature_flag:read", "annotation:read",
    "insight:read", "event_definition:read", "property_definition:read", "group:read",
    "session_recording:read", "experiment:read", "action:read", "dashboard:read", "survey:read",
)
DEFAULT_RATES: dict[str, list[tuple[int, int]]] = {
    "clickhouse": [(240, 60), (1200, 3600)],
    "query": [(240, 60), (2400, 3600)],
    "crud": [(480, 60), (4800, 3600)],
}
LEGACY_QUERY_RATES = [(120, 3600)]
#: PostHog's own bad days in hostile mode (option ``hostile_kinds`` picks some; default all)
HOSTILE_KINDS = ("short_page", "clamp", "persons_shift", "list_shift")
TIMEZONES = ("UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata")
#: cached query results kept (least recently stored dropped first), so memory stays bounded
CACHE_ENTRIES = 64
LEGACY_EVENTS_MAX_LIMIT = 1000
LEGACY_EVENTS_MAX_OFFSET = 50_000
REFRESH_MODES = ("blocking", "async", "force_blocking", "force_async", "force_cache", "lazy_async",
                 "async_except_on_cache_miss")


class ApiError(Exception):
    def __init__(self, status: int, type_: str, code: str, detail: str, attr: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.body = {"type": type_, "code": code, "detail": detail, "attr": attr}
        self.headers = headers or {}


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data, default=json_default), status_code=status, media_type="application/json",
                    headers=headers)


def not_found() -> ApiError:
    return ApiError(404, "invalid_request", "not_found", "Not found.")


def validation(detail: str, code: str = "invalid_input", attr: str | None = None) -> ApiError:
    return ApiError(400, "validation_error", code, detail, attr)


@dataclass
class Key:
    value: str
    scopes: frozenset[str]
    projects: frozenset[int] | None = None  # None: every project of the organization
    label: str = ""


@dataclass
class Options:
    projects: int = 2
    events_per_person: int = 8
    history_days: int = 30
    persons_shape: str = "code"
    rate_limits: Any = True
    query_throttle: str = "api"
    throttle_by: str = "key"
    send_retry_after: bool = False
    query_concurrency: int = 3
    query_timeout_rows: int | None = None
    query_max_rows: int = hogql.MAX_LIMIT
    cache_ttl_seconds: float = 3600.0
    async_polls: int = 1
    legacy_events_truncate_long_windows: bool = False
    legacy_events_repeat_next: bool = False
    render_cache_mb: float = 512
    hostile: int = 0
    hostile_seed: int | None = None
    hostile_vendor_rate: float = 0.05
    hostile_kinds: Any = None
    recordings_next_cursor: bool = False
    hostile_shift_tables: Any = None

    RUNTIME = ("persons_shape", "rate_limits", "query_throttle", "throttle_by", "send_retry_after",
               "query_concurrency", "query_timeout_rows", "query_max_rows", "cache_ttl_seconds", "async_polls",
               "legacy_events_truncate_long_windows", "legacy_events_repeat_next", "render_cache_mb",
               "hostile", "hostile_seed", "hostile_vendor_rate", "hostile_kinds", "recordings_next_cursor",
               "hostile_shift_tables")

    def check(self) -> None:
        if self.persons_shape not in ("code", "docs"):
            raise MutationError('persons_shape is "code" or "docs"')
        if self.query_throttle not in ("api", "legacy"):
            raise MutationError('query_throttle is "api" or "legacy"')
        if self.throttle_by not in ("key", "team"):
            raise MutationError('throttle_by is "key" or "team"')
        if not 1 <= int(self.projects) <= 20:
            raise MutationError("projects must be between 1 and 20")
        if int(self.query_concurrency) < 1:
            raise MutationError("query_concurrency must be at least 1")
        if int(self.query_max_rows) < 1:
            raise MutationError("query_max_rows must be at least 1")
        if not isinstance(self.render_cache_mb, (int, float)) or isinstance(self.render_cache_mb, bool) \
                or self.render_cache_mb < 0:
            raise MutationError("render_cache_mb is a number of megabytes, 0 or more")
        if not 0 <= float(self.hostile_vendor_rate) <= 1:
            raise MutationError("hostile_vendor_rate is a probability between 0 and 1")
        if self.hostile_kinds is not None and (
                not isinstance(self.hostile_kinds, list) or not set(self.hostile_kinds) <= set(HOSTILE_KINDS)):
            raise MutationError(f"hostile_kinds is a list of {', '.join(HOSTILE_KINDS)} (or null: all)")
        if self.hostile_shift_tables is not None and (
                not isinstance(self.hostile_shift_tables, list)
                or not set(self.hostile_shift_tables) <= {*objects.MUTABLE_TABLES, "session_recordings"}):
            raise MutationError(f"hostile_shift_tables is a list of {', '.join(objects.MUTABLE_TABLES)}, "
                                "session_recordings (or null: the lists of issue 14)")
        if not (self.rate_limits is True or self.rate_limits is False or isinstance(self.rate_limits, dict)):
            raise MutationError("rate_limits is true, false or {bucket: [[requests, seconds], ...]}")
        if isinstance(self.rate_limits, dict):
            for bucket, rates in self.rate_limits.items():
                if bucket not in DEFAULT_RATES:
                    raise MutationError(f"unknown rate-limit bucket {bucket!r}; known: {', '.join(DEFAULT_RATES)}")
                if not isinstance(rates, list) or not all(
                    isinstance(r, (list, tuple)) and len(r) == 2 and int(r[0]) > 0 and float(r[1]) > 0 for r in rates
                ):
                    raise MutationError(f"rate_limits[{bucket!r}] must be a list of [requests, seconds]")


class Throttles:
    """DRF's ``SimpleRateThrottle`` per (bucket, rate, key): a history of request times; a request
    is allowed while fewer than ``num`` fall inside ``duration``; the wait is DRF's
    ``remaining_duration / available_requests``; the largest wait of the failing throttles wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._history: dict[tuple[str, int, float, str], deque[float]] = {}

    def hit(self, bucket: str, rates: list[tuple[int, float]], ident: str, now: float) -> float | None:
        waits: list[float] = []
        with self._lock:
            for num, duration in rates:
                hist = self._history.setdefault((bucket, int(num), float(duration), ident), deque())
                while hist and hist[-1] <= now - duration:
                    hist.pop()
                if len(hist) >= num:
                    remaining = duration - (now - hist[-1]) if hist else duration
                    available = num - len(hist) + 1
                    waits.append(remaining / available if available > 0 else remaining)
                    continue
                hist.appendleft(now)
        return max(waits) if waits else None

    def clear(self) -> None:
        with self._lock:
            self._history.clear()


def throttled_detail(wait: float) -> str:
    wait = math.ceil(wait)
    unit = "second" if wait == 1 else "seconds"
    return f"Request was throttled. Expected available in {wait} {unit}."


@dataclass
class AsyncQuery:
    id: str
    project_id: int
    response: dict[str, Any] | None
    error: ApiError | None
    polls_left: int
    cancelled: bool = False
    started: float = field(default_factory=time.time)


class PostHogBackend:
    vendor = VENDOR
    base_path = ""

    def __init__(self, seed: int = 1, scale: int = 1000, **options: Any) -> None:
        if not 1 <= scale <= 1_000_000:
            raise ValueError("scale must be between 1 and 1,000,000")
        unknown = set(options) - set(Options.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown posthog emulator options: {', '.join(sorted(unknown))}")
        self.opts = Options(**options)
        self.opts.check()
        self.seed = seed
        self.scale = scale
        self._lock = threading.RLock()
        self.now_us = int(time.time() * US)
        self.clock_offset_us = 0
        self._mutations = 0
        # keys: derived from the seed
        token = hashlib.blake2b(f"posthog:{seed}".encode(), digest_size=20).hexdigest()
        self.api_key = f"phx_{token}"
        self.ids = objects.Ids()
        self.org_id = str(_uuid.UUID(int=derive_seed(seed, "org") << 64 | derive_seed(seed, "org2")))
        self.projects: dict[int, Project] = {}
        self.groups: dict[int, dict[int, list[dict[str, Any]]]] = {}
        self._build_projects()
        first = next(iter(self.projects))
        restricted = f"phx_{hashlib.blake2b(f'posthog:r:{seed}'.encode(), digest_size=20).hexdigest()}"
        self.keys: dict[str, Key] = {
            self.api_key: Key(self.api_key, frozenset(ALL_SCOPES), None, "full"),
            restricted: Key(restricted, frozenset({"project:read", "person:read", "query:read"}),
                            frozenset({first}), "restricted"),
        }
        self.restricted_key = restricted
        self.throttles = Throttles()
        self._in_flight: dict[int, int] = {}
        self.max_in_flight: dict[int, int] = {}
        self.concurrency_refusals = 0
        self._cache: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._async: dict[str, AsyncQuery] = {}
        self._summary_cache: dict[tuple[int, int], list[dict[str, Any]]] = {}
        self._table_cache: dict[int, dict[str, hogql.Table]] = {}
        self.row_cache = RowCache(int(self.opts.render_cache_mb * 2**20))
        self._hostile_random = random.Random(self.opts.hostile_seed)
        #: what hostile mode did, by kind (tests read it through ``GET /_emulator/tables/hostile``)
        self.hostile_log: list[dict[str, Any]] = []
        #: every person deleted (control plane or hostile mode): ``{"project_id", "uuid"}``
        self.deleted_persons: list[dict[str, Any]] = []
        #: every object or recording deleted (control plane or hostile mode): ``{"project_id", "table", "id"}``
        self.deleted_objects: list[dict[str, Any]] = []

    # -- data ----------------------------------------------------------------------------

    def _build_projects(self) -> None:
        t1 = self.now_us
        t0 = t1 - self.opts.history_days * DAY_US
        for k in range(self.opts.projects):
            pid = 10_000 + derive_seed(self.seed, "project") % 80_000 + 17 * k
            share = 1 if k == 0 else 4 * k
            n_persons = max(10, self.scale // share)
            persons = PersonStore(self.seed, pid, n_persons, t0 - 60 * DAY_US, t1 - HOUR_US)
            events = EventStore(self.seed, pid, n_persons * self.opts.events_per_person, t0, t1 - 60 * US, persons)
            r = derive_seed(self.seed, "project", k)
            tz = TIMEZONES[k % len(TIMEZONES)]
            project = Project(
                id=pid,
                uuid=uuid_str(*v7((t0 - 90 * DAY_US) // 1000, r, h2(r, 1))),
                name=("Default project", "Mobile app", "Marketing site", "Staging")[k % 4],
                timezone=tz,
                api_token=f"phc_{hashlib.blake2b(f'phc:{self.seed}:{pid}'.encode(), digest_size=21).hexdigest()}",
                created_at=t0 - 90 * DAY_US,
                persons=persons,
                events=events,
            )
            project.objects = objects.generate(self.seed, pid, n_persons, t0, t1, self.ids)
            project.objects["session_recordings"] = objects.recordings(self.seed, pid, n_persons, t1)
            project.group_types, self.groups[pid] = objects.groups(self.seed, pid, n_persons, t0, t1)
            self.projects[pid] = project

    def now(self) -> int:
        """The server clock in microseconds (wall time plus any ``advance_clock``)."""
        return int(time.time() * US) + self.clock_offset_us

    # -- EmulatorBackend ---------------------------------------------------------------------

    def routes(self) -> list[Route]:
        out: list[Route] = [
            Route("/api/projects/", self._sync(self.projects_list), methods=["GET"]),
            Route("/api/projects/{pid:int}/", self._sync(self.project_detail), methods=["GET"]),
        ]
        for prefix in ("/api/projects/{pid:int}", "/api/environments/{pid:int}"):
            out += [
                Route(f"{prefix}/persons/", self._sync(self.persons_list), methods=["GET"]),
                Route(f"{prefix}/events/", self._sync(self.legacy_events), methods=["GET"]),
                Route(f"{prefix}/query/", self.query, methods=["POST"]),
                Route(f"{prefix}/query/{{qid}}/", self._sync(self.query_status), methods=["GET", "DELETE"]),
                Route(f"{prefix}/groups_types/", self._sync(self.group_types), methods=["GET"]),
                Route(f"{prefix}/groups/", self._sync(self.groups_list), methods=["GET"]),
            ]
            for table in objects.OBJECT_SCOPES:
                out.append(Route(f"{prefix}/{table}/", self._sync(self._object_list(table)), methods=["GET"]))
            out += [
                Route(f"{prefix}/dashboards/{{oid:int}}/", self._sync(self.dashboard_detail), methods=["GET"]),
                Route(f"{prefix}/session_recordings/", self._sync(self.recordings_list), methods=["GET"]),
            ]
        return out

    def state(self) -> dict[str, int]:
        counts: dict[str, int] = {"projects": len(self.projects)}
        for p in self.projects.values():
            counts["events"] = counts.get("events", 0) + len(p.events)
            counts["persons"] = counts.get("persons", 0) + p.persons.alive
            for table, rows in p.objects.items():
                counts[table] = counts.get(table, 0) + len(rows)
            counts["groups"] = counts.get("groups", 0) + sum(len(v) for v in self.groups[p.id].values())
        return counts

    def configure(self, options: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            for name in options:
                if name not in Options.RUNTIME:
                    raise MutationError(f"unknown or start-up-only posthog option {name!r}; run-time options: "
                                        f"{', '.join(Options.RUNTIME)}")
            previous = dict(self.opts.__dict__)
            for name, value in options.items():
                setattr(self.opts, name, value)
            try:
                self.opts.check()
            except MutationError:
                self.opts.__dict__.update(previous)
                raise
            if "rate_limits" in options:
                self.throttles.clear()
            if "render_cache_mb" in options:
                self.row_cache.resize(int(self.opts.render_cache_mb * 2**20))
            if "hostile_seed" in options or "hostile" in options:
                self._hostile_random = random.Random(self.opts.hostile_seed)
            return {name: getattr(self.opts, name) for name in Options.RUNTIME}

    # -- hostile mode: PostHog's own bad days ----------------------------------------------

    def _hostile(self, kind: str, **detail: Any) -> bool:
        """With ``hostile`` on: ``True`` at ``hostile_vendor_rate`` (seeded by ``hostile_seed``),
        and the event is logged (``GET /_emulator/tables/hostile``)."""
        if not self.opts.hostile or (self.opts.hostile_kinds is not None and kind not in self.opts.hostile_kinds):
            return False
        with self._lock:
            if self._hostile_random.random() >= float(self.opts.hostile_vendor_rate):
                return False
            self.hostile_log.append({"kind": kind, **detail})
            return True

    def throttle_response(self) -> tuple[int, dict[str, str], bytes]:
        """PostHog's 429: the DRF throttle envelope, the wait only in ``detail`` (no Retry-After)."""
        with self._lock:
            wait = self._hostile_random.choice((1, 1, 2))
        body = {"type": "throttled_error", "code": "throttled", "detail": throttled_detail(wait), "attr": None}
        return 429, {"content-type": "application/json"}, orjson.dumps(body)

    def unauthorized_response(self) -> tuple[int, dict[str, str], bytes]:
        """PostHog's 401 for a key that was revoked (or never existed)."""
        body = {"type": "authentication_error", "code": "authentication_failed",
                "detail": "Personal API key found in request Authorization header is invalid.", "attr": None}
        return 401, {"content-type": "application/json"}, orjson.dumps(body)

    # -- plumbing ----------------------------------------------------------------------------

    def _sync(self, handler: Callable[..., Response]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            return await run_in_threadpool(self._guard, handler, request)

        return endpoint

    def _guard(self, handler: Callable[..., Response], request: Request, *args: Any) -> Response:
        try:
            return handler(request, *args)
        except ApiError as e:
            return _json(e.body, e.status, e.headers)

    def authenticate(self, request: Request, body: Any = None) -> Key:
        token: str | None = None
        source = ""
        header = request.headers.get("authorization", "")
        if header:
            parts = header.split(None, 1)
            if len(parts) == 2 and parts[0].lower() == "bearer":
                token, source = parts[1].strip(), "Authorization header"
        if token is None and isinstance(body, dict) and body.get("personal_api_key"):
            token, source = str(body["personal_api_key"]), "body"
        if token is None and request.query_params.get("personal_api_key"):
            token, source = request.query_params["personal_api_key"], "query string"
        if token is None:
            raise ApiError(401, "authentication_error", "not_authenticated",
                           "Authentication credentials were not provided.")
        key = self.keys.get(token)
        if key is None:
            raise ApiError(401, "authentication_error", "authentication_failed",
                           f"Personal API key found in request {source} is invalid.")
        return key

    def authorize(self, key: Key, scope: str, pid: int | None = None) -> Project | None:
        if scope not in key.scopes:
            raise ApiError(403, "authentication_error", "permission_denied", f"API key missing required scope '{scope}'")
        if pid is None:
            return None
        project = self.projects.get(pid)
        if project is None:
            raise not_found()
        if key.projects is not None and pid not in key.projects:
            raise ApiError(403, "authentication_error", "permission_denied",
                           f"API key does not have access to the requested project: ID {pid}.")
        return project

    def throttle(self, key: Key, bucket: str, project: Project | None) -> None:
        rates = self._rates(bucket)
        if not rates:
            return
        ident = key.value if self.opts.throttle_by == "key" or project is None else f"team:{project.id}"
        ident = hashlib.sha256(ident.encode()).hexdigest()
        wait = self.throttles.hit(bucket, rates, ident, time.monotonic())
        if wait is not None:
            headers = {"Retry-After": str(math.ceil(wait))} if self.opts.send_retry_after else None
            raise ApiError(429, "throttled_error", "throttled", throttled_detail(wait), None, headers)

    def _rates(self, bucket: str) -> list[tuple[int, float]]:
        limits = self.opts.rate_limits
        if limits is False:
            return []
        if isinstance(limits, dict) and bucket in limits:
            return [(int(n), float(s)) for n, s in limits[bucket]]
        if bucket == "query" and self.opts.query_throttle == "legacy":
            return [(n, float(s)) for n, s in LEGACY_QUERY_RATES]
        return [(n, float(s)) for n, s in DEFAULT_RATES[bucket]]

    def _open(self, request: Request, scope: str, bucket: str, body: Any = None) -> tuple[Key, Project]:
        key = self.authenticate(request, body)
        project = self.authorize(key, scope, int(request.path_params["pid"]))
        assert project is not None
        self.throttle(key, bucket, project)
        return key, project

    @staticmethod
    def _int_param(request: Request, name: str, default: int) -> int:
        """DRF's ``_positive_int``: a missing or malformed value gives the default."""
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            return default
        return value if value >= 0 else default

    @staticmethod
    def _url(request: Request, **params: Any) -> str:
        """The request's absolute URL (its own host) with ``params`` replaced; ``None`` removes."""
        url = request.url
        remove = [k for k, v in params.items() if v is None]
        keep = {k: v for k, v in params.items() if v is not None}
        if remove:
            url = url.remove_query_params(remove)
        if keep:
            url = url.include_query_params(**keep)
        return str(url)

    def _style_a(self, request: Request, items: list[Any], render: Callable[[Any], Any] = lambda x: x) -> Response:
        limit = self._int_param(request, "limit", 100) or 100
        offset = self._int_param(request, "offset", 0)
        count = len(items)
        page = [render(x) for x in items[offset : offset + limit]]
        nxt = self._url(request, limit=limit, offset=offset + limit) if offset + limit < count else None
        if offset <= 0:
            prev = None
        elif offset - limit <= 0:
            prev = self._url(request, limit=limit, offset=None)
        else:
            prev = self._url(request, limit=limit, offset=offset - limit)
        return _json({"count": count, "next": nxt, "previous": prev, "results": page})

    # -- projects ----------------------------------------------------------------------------

    def render_project(self, p: Project) -> dict[str, Any]:
        return {
            "id": p.id,
            "uuid": p.uuid,
            "organization": self.org_id,
            "api_token": p.api_token,
            "name": p.name,
            "completed_snippet_onboarding": True,
            "has_completed_onboarding_for": {"product_analytics": True},
            "ingested_event": True,
            "is_demo": False,
            "timezone": p.timezone,
            "access_control": False,
            "created_at": drf_datetime(p.created_at),
        }

    def projects_list(self, request: Request) -> Response:
        key = self.authenticate(request)
        self.authorize(key, "project:read")
        self.throttle(key, "crud", None)
        return self._style_a(request, sorted(self.projects.values(), key=lambda p: p.id), self.render_project)

    def project_detail(self, request: Request) -> Response:
        key, project = self._open(request, "project:read", "crud")
        return _json(self.render_project(project))

    # -- persons -----------------------------------------------------------------------------

    def render_person(self, p: Person) -> dict[str, Any]:
        name = p.properties.get("email") or (p.distinct_ids[0] if p.distinct_ids else p.uuid)
        created = to_datetime(p.created_at).isoformat()
        created = created[:-6] + "Z" if created.endswith("+00:00") else created
        if self.opts.persons_shape == "docs":
            return {
                "id": p.index + 1,
                "name": name,
                "distinct_ids": list(p.distinct_ids),
                "properties": dict(p.properties),
                "created_at": created,
                "uuid": p.uuid,
                "last_seen_at": drf_datetime(p.last_seen_at),
            }
        return {
            "type": "person",
            "id": p.uuid,
            "uuid": p.uuid,
            "created_at": created,
            "properties": dict(p.properties),
            "is_identified": p.is_identified,
            "name": name,
            "distinct_ids": list(p.distinct_ids),
            "matched_recordings": [],
            "value_at_data_point": None,
        }

    def persons_list(self, request: Request) -> Response:
        key, project = self._open(request, "person:read", "clickhouse")
        params = request.query_params
        if params.get("format") == "csv":
            raise validation("format=csv is not implemented by this emulator", "unsupported", "format")
        limit = self._int_param(request, "limit", 100) or 100
        offset = self._int_param(request, "offset", 0)
        store = project.persons
        if offset > 0 and store.alive > 1 and self._hostile("persons_shift", project_id=project.id, offset=offset):
            # a person on an earlier page is deleted (or merged into another) between two pages:
            # every later person moves one place up, the one at the page boundary to the page
            # already read (the contract's warning, §2.3)
            with self._lock:
                k = self._hostile_random.randrange(min(offset, store.alive))
                victim = next(itertools.islice(store.newest_first(k), 1), None)
                if victim is not None:
                    self.deleted_persons.append({"project_id": project.id, "uuid": store.person(victim).uuid})
                    store.delete([victim])
        filtered = self._person_filter(store, params)
        if filtered is None:
            indices = []
            for i in store.newest_first(offset):
                indices.append(i)
                if len(indices) >= limit:
                    break
            total = store.alive
        else:
            total = len(filtered)
            indices = filtered[offset : offset + limit]
        results = [self.render_person(store.person(i)) for i in indices]
        body: dict[str, Any] = {
            "results": results,
            "next": self._url(request, offset=offset + limit, limit=limit) if len(results) >= limit else None,
            "previous": self._url(request, offset=offset - limit, limit=limit) if offset - limit >= 0 else None,
        }
        if "include_total" in params:
            body["count"] = total
        return _json(body)

    def _person_filter(self, store: PersonStore, params: Any) -> list[int] | None:
        """Matching indices newest first, or ``None`` when no filter is given. ``distinct_id`` and
        ``email`` are index lookups; ``search`` and ``properties`` scan (the emulator's cost)."""
        if not any(k in params for k in ("distinct_id", "email", "search", "properties")):
            return None
        candidates: list[int] | None = None
        if "distinct_id" in params:
            i = store.find_distinct(params["distinct_id"])
            candidates = [] if i is None else [i]
        if "email" in params:
            i = store.find_distinct(params["email"])
            found = [] if i is None or store.person(i).properties.get("email") != params["email"] else [i]
            candidates = found if candidates is None else [c for c in candidates if c in found]
        predicates: list[Callable[[Person], bool]] = []
        if params.get("search"):
            term = params["search"]
            exact = store.find_distinct(term)
            if exact is not None:
                candidates = [exact] if candidates is None else [c for c in candidates if c == exact]
            else:
                low = term.lower()
                predicates.append(lambda p: low in str(p.properties.get("email", "")).lower())
        if params.get("properties"):
            try:
                filters = orjson.loads(params["properties"])
            except orjson.JSONDecodeError:
                raise validation("properties must be a JSON array", attr="properties") from None
            if not isinstance(filters, list):
                raise validation("properties must be a JSON array", attr="properties")
            for f in filters:
                if not isinstance(f, dict) or "key" not in f:
                    raise validation("each property filter needs a key", attr="properties")
                if f.get("type") == "cohort":
                    raise validation("cohort filters are not implemented by this emulator", "unsupported", "properties")
                op = f.get("operator", "exact")
                k, v = f["key"], f.get("value")
                if op == "exact":
                    vals = v if isinstance(v, list) else [v]
                    predicates.append(lambda p, k=k, vals=vals: p.properties.get(k) in vals)
                elif op == "is_set":
                    predicates.append(lambda p, k=k: k in p.properties)
                elif op == "icontains":
                    predicates.append(lambda p, k=k, v=v: str(v).lower() in str(p.properties.get(k, "")).lower())
                else:
                    raise validation(f"operator {op!r} is not implemented by this emulator", "unsupported", "properties")
        if candidates is None:
            candidates = list(store.newest_first(0))
        return [i for i in candidates if all(pred(store.person(i)) for pred in predicates)]

    # -- legacy events -------------------------------------------------------------------------

    def _parse_time(self, text: str, attr: str) -> int:
        try:
            return int(hogql.parse_ts(text, dt.UTC))
        except hogql.HogQLError:
            raise validation(f"{attr} is not a valid ISO 8601 timestamp", attr=attr) from None

    def legacy_events(self, request: Request) -> Response:
        key, project = self._open(request, "query:read", "clickhouse")
        params = request.query_params
        now = self.now()
        after = self._parse_time(params["after"], "after") if params.get("after") else now - DAY_US
        before = self._parse_time(params["before"], "before") if params.get("before") else now + 5 * US
        limit = min(self._int_param(request, "limit", 100) or 100, LEGACY_EVENTS_MAX_LIMIT)
        offset = self._int_param(request, "offset", 0)
        headers: dict[str, str] = {}
        if offset > LEGACY_EVENTS_MAX_OFFSET:
            raise validation(f"Offset is deprecated. Max supported offset value is {LEGACY_EVENTS_MAX_OFFSET}", attr="offset")
        if offset:
            headers["X-PostHog-Warn"] = "offset is deprecated; use the query endpoint with keyset pagination"
        order = params.get("orderBy")
        descending = True
        if order is not None:
            try:
                descending = orjson.loads(order) == ["-timestamp"]
            except orjson.JSONDecodeError:
                raise validation("orderBy must be a JSON array", attr="orderBy") from None
        truncated = False
        if self.opts.legacy_events_truncate_long_windows and before - after > DAY_US:
            # the execution budget runs out on a long window: the newest day only, and no next
            if descending:
                after = before - DAY_US
            else:
                before = after + DAY_US
            truncated = True
        store = project.events
        wanted_event = params.get("event")
        wanted_distinct = params.get("distinct_id")
        wanted_person = params.get("person_id")
        if descending:
            rows = store.scan(store.position((before, 0, 0)), reverse=True)
        else:
            rows = store.scan(store.position((after + 1, 0, 0)))
        page: list[Event] = []
        skipped = 0
        for e in rows:
            if descending and e.ts <= after:
                break
            if not descending and e.ts >= before:
                break
            if (wanted_event and e.event != wanted_event) or (wanted_distinct and e.distinct_id != wanted_distinct) \
                    or (wanted_person and e.person_id != wanted_person):
                continue
            if skipped < offset:
                skipped += 1
                continue
            page.append(e)
            if len(page) > limit:
                break
        has_more = len(page) > limit
        page = page[:limit]
        include_person = params.get("include_person", "").lower() in ("1", "true", "yes")
        results = [self._render_legacy_event(project, e, include_person) for e in page]
        nxt = None
        if has_more and page and not truncated:
            last = to_datetime(page[-1].ts).isoformat()
            nxt = self._url(request, **({"before": last} if descending else {"after": last}))
        if self.opts.legacy_events_repeat_next and page:
            nxt = str(request.url)
        return _json({"next": nxt, "results": results}, headers=headers)

    def _render_legacy_event(self, project: Project, e: Event, include_person: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": e.uuid,
            "distinct_id": e.distinct_id,
            "properties": dict(e.properties),
            "event": e.event,
            "timestamp": to_datetime(e.ts).isoformat(),
            "elements": [],
            "elements_chain": e.elements_chain,
        }
        if include_person:
            out["person"] = {"is_identified": True, "distinct_ids": [e.distinct_id], "properties": {}}
        return out

    # -- HogQL -------------------------------------------------------------------------------

    def _tables(self, project: Project) -> dict[str, hogql.Table]:
        tables = self._table_cache.get(project.id)
        if tables is None:
            tables = self._table_cache[project.id] = self._make_tables(project)
        return tables

    def _make_tables(self, project: Project) -> dict[str, hogql.Table]:
        C = hogql.Column
        TS, U = hogql.TS, hogql.UUIDV
        dumps = orjson.dumps
        ev = {
            "uuid": C("uuid", "UUID", lambda e: U((e.low, e.high)), lambda e, tz: uuid_str(e.low, e.high)),
            "event": C("event", "String", lambda e: e.event, lambda e, tz: e.event),
            "distinct_id": C("distinct_id", "String", lambda e: e.distinct_id, lambda e, tz: e.distinct_id),
            "timestamp": C("timestamp", "DateTime64(6, 'UTC')", lambda e: TS(e.ts), lambda e, tz: iso_us(e.ts, tz)),
            "created_at": C("created_at", "DateTime64(6, 'UTC')", lambda e: TS(e.created_at),
                            lambda e, tz: iso_us(e.created_at, tz)),
            "person_id": C("person_id", "UUID", lambda e: U(e.person), lambda e, tz: uuid_str(*e.person)),
            "properties": C("properties", "String", lambda e: dumps(e.properties).decode(),
                            lambda e, tz: dumps(e.properties).decode()),
            "elements_chain": C("elements_chain", "String", lambda e: e.elements_chain, lambda e, tz: e.elements_chain),
            "$session_id": C("$session_id", "String", lambda e: e.session_id, lambda e, tz: e.session_id),
            "$window_id": C("$window_id", "String", lambda e: "", lambda e, tz: ""),
        }
        people = {
            "id": C("id", "UUID", lambda p: U((p.low, p.high))),
            "created_at": C("created_at", "DateTime64(6, 'UTC')", lambda p: TS(p.created_at)),
            "properties": C("properties", "String", lambda p: orjson.dumps(p.properties).decode()),
            "is_identified": C("is_identified", "Bool", lambda p: p.is_identified),
        }
        pages = EventPages(project.events, _event_renderers(ev), self.row_cache)
        return {
            "events": hogql.Table("events", ev, "timestamp", "uuid", project.events, pages),
            "persons": hogql.Table("persons", people, "created_at", "id", project.persons),
            "sessions": session_table.table(project.events),
        }

    async def query(self, request: Request) -> Response:
        raw = await request.body()
        return await run_in_threadpool(self._guard, self._query, request, raw)

    def _query(self, request: Request, raw: bytes) -> Response:
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError as e:
            self.authenticate(request)
            raise ApiError(400, "invalid_request", "parse_error", f"JSON parse error - {e}") from None
        key = self.authenticate(request, body)
        project = self.authorize(key, "query:read", int(request.path_params["pid"]))
        assert project is not None
        self.throttle(key, "query", project)
        if not isinstance(body, dict) or not isinstance(body.get("query"), dict):
            raise validation("This field is required.", "required", "query")
        q = body["query"]
        kind = q.get("kind")
        if kind is None:
            raise validation("This field is required.", "required", "kind")
        if kind != "HogQLQuery":
            raise validation(f"This emulator answers HogQLQuery only, not {kind}", "unsupported", "kind")
        sql = q.get("query")
        if not isinstance(sql, str) or not sql.strip():
            raise validation("This field is required.", "required", "query")
        values = q.get("values") or {}
        if not isinstance(values, dict):
            raise validation("values must be an object", attr="values")
        refresh = body.get("refresh", "blocking")
        if refresh is True:
            refresh = "force_blocking"
        if refresh is False or refresh is None:
            refresh = "blocking"
        if refresh not in REFRESH_MODES:
            raise validation(f'"{refresh}" is not a valid choice.', "invalid_choice", "refresh")
        cache_key = "cache_" + hashlib.sha256(
            orjson.dumps([project.id, sql, values], option=orjson.OPT_SORT_KEYS)
        ).hexdigest()[:32]
        cached = self._cached(cache_key)
        use_cache = refresh in ("blocking", "async", "lazy_async", "force_cache", "async_except_on_cache_miss")
        if cached is not None and use_cache:
            return _json({**cached, "is_cached": True})
        query_id = str(q.get("client_query_id") or body.get("client_query_id") or _uuid.uuid4())
        if refresh in ("async", "force_async", "lazy_async", "async_except_on_cache_miss"):
            try:
                response, error = self._run_query(project, sql, values, cache_key, query_id), None
            except ApiError as e:
                response, error = None, e
            job = AsyncQuery(query_id, project.id, response, error, int(self.opts.async_polls))
            with self._lock:
                self._async[query_id] = job
            return _json({"query_status": self._status(job)}, 202)
        return _json(self._run_query(project, sql, values, cache_key, query_id))

    def _cached(self, cache_key: str) -> dict[str, Any] | None:
        with self._lock:
            hit = self._cache.get(cache_key)
        if hit is None or time.monotonic() - hit[0] > float(self.opts.cache_ttl_seconds):
            return None
        return hit[1]

    def _run_query(self, project: Project, sql: str, values: dict[str, Any], cache_key: str, query_id: str) -> dict:
        limit = int(self.opts.query_concurrency)
        with self._lock:
            running = self._in_flight.get(project.id, 0)
            if running >= limit:
                self.concurrency_refusals += 1
                refused = True
            else:
                refused = False
                self._in_flight[project.id] = running + 1
                self.max_in_flight[project.id] = max(self.max_in_flight.get(project.id, 0), running + 1)
        if refused:
            raise ApiError(429, "throttled_error", "throttled",
                           f"Exceeded maximum concurrency limit: {limit} for key: api_query_concurrency_team_"
                           f"{project.id} and task: {query_id}")
        try:
            max_rows = int(self.opts.query_max_rows)
            if self._hostile("clamp", project_id=project.id):
                # a LIMIT clamped below the one asked (reported in ``limit``, as PostHog does)
                with self._lock:
                    max_rows = self._hostile_random.randint(1, max(1, min(max_rows, 500)))
            ctx = hogql.Context(ZoneInfo(project.timezone), self.now(), self.opts.query_timeout_rows, max_rows)
            try:
                result = hogql.execute(sql, values, self._tables(project), ctx)
            except hogql.HogQLError as e:
                raise validation(str(e), e.code) from None
            except hogql.QueryTimeout:
                raise ApiError(500, "server_error", "error", "ClickHouse error while executing query.") from None
        finally:
            with self._lock:
                self._in_flight[project.id] -= 1
        results = result.results
        if result.limit > 1 and len(results) == result.limit and self._hostile("short_page", project_id=project.id):
            # the execution budget ran out: fewer rows than the LIMIT, nothing says so (the
            # documented end-of-data signal, given too early; the stricter reading of §3.1's
            # partial pages): only a count of the range can tell
            with self._lock:
                results = results[: self._hostile_random.randrange(result.limit)]
        now = dt.datetime.now(dt.UTC)
        response = {
            "cache_key": cache_key,
            "is_cached": False,
            "last_refresh": now.isoformat(),
            "next_allowed_client_refresh": (now + dt.timedelta(seconds=60)).isoformat(),
            "cache_target_age": (now + dt.timedelta(seconds=float(self.opts.cache_ttl_seconds))).isoformat(),
            "timezone": project.timezone,
            "columns": result.columns,
            "types": result.types,
            "results": results,
            "hasMore": result.has_more,
            "limit": result.limit,
            "offset": 0,
            "hogql": result.hogql,
            "clickhouse": None,
            "timings": [],
            "modifiers": {"personsOnEventsMode": "person_id_override_properties_on_events"},
            "query": sql,
            "query_status": None,
            "error": None,
        }
        with self._lock:
            self._cache[cache_key] = (time.monotonic(), response)
            self._cache.move_to_end(cache_key)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return response

    def _status(self, job: AsyncQuery) -> dict[str, Any]:
        complete = job.polls_left <= 0 or job.cancelled
        status: dict[str, Any] = {
            "id": job.id,
            "team_id": job.project_id,
            "query_async": True,
            "complete": complete,
            "error": bool(job.error) if complete else False,
            "error_message": job.error.body["detail"] if complete and job.error else None,
            "start_time": dt.datetime.fromtimestamp(job.started, dt.UTC).isoformat(),
            "results": job.response if complete and job.response is not None else None,
        }
        return status

    def query_status(self, request: Request) -> Response:
        key, project = self._open(request, "query:read", "query")
        qid = request.path_params["qid"]
        with self._lock:
            job = self._async.get(qid)
            if job is None or job.project_id != project.id:
                raise not_found()
            if request.method == "DELETE":
                job.cancelled = True
                del self._async[qid]
                return Response(status_code=204)
            if job.polls_left > 0:
                job.polls_left -= 1
                return _json({"query_status": self._status(job)}, 202)
        if job.error is not None:
            raise job.error
        return _json({"query_status": self._status(job)})

    # -- objects -----------------------------------------------------------------------------

    def _object_list(self, table: str) -> Callable[[Request], Response]:
        scope = objects.OBJECT_SCOPES[table]

        def handler(request: Request) -> Response:
            key, project = self._open(request, scope, "crud")
            self._hostile_list_shift(request, project, table)
            items = project.objects[table]
            render: Callable[[Any], Any] = objects.dashboard_list_item if table == "dashboards" else dict
            if table == "property_definitions":
                kind = request.query_params.get("type", "event")
                if kind not in objects.PROPERTY_TYPES:
                    raise validation(f'"{kind}" is not a valid choice.', "invalid_choice", "type")
                wanted = objects.PROPERTY_TYPES[kind]
                items = [d for d in items if d["type"] == wanted]
            if table == "insights" and request.query_params.get("basic", "").lower() not in ("1", "true"):
                def render(item: dict[str, Any]) -> dict[str, Any]:
                    return {**item, "result": objects.insight_result(item), "is_sample": False}
            return self._style_a(request, items, render)

        return handler

    def _hostile_list_shift(self, request: Request, project: Project, table: str) -> None:
        """Hostile ``list_shift``: before a page with ``offset > 0`` an object on an earlier page is
        deleted, so every later row moves one place up (the persons warning of §2.3, for any
        offset list)."""
        offset = self._int_param(request, "offset", 0)
        rows = project.objects[table]
        earlier = rows
        if table == "session_recordings":  # rows before the offset of this request's window
            try:
                earlier = objects.recordings_window(rows, request.query_params, self.now())
            except ValueError:
                return
        tables = self.opts.hostile_shift_tables or objects.SHIFTING_BY_DEFAULT
        if offset <= 0 or len(earlier) < 2 or table not in tables \
                or not self._hostile("list_shift", project_id=project.id, table=table, offset=offset):
            return
        with self._lock:
            victim = earlier[self._hostile_random.randrange(min(offset, len(earlier)))]
            rows.remove(victim)
            self.deleted_objects.append({"project_id": project.id, "table": table, "id": victim["id"]})

    def dashboard_detail(self, request: Request) -> Response:
        key, project = self._open(request, "dashboard:read", "crud")
        oid = int(request.path_params["oid"])
        item = next((d for d in project.objects["dashboards"] if d["id"] == oid), None)
        if item is None:
            raise not_found()
        return _json(objects.dashboard_detail(item, {i["id"]: i for i in project.objects["insights"]}))

    def recordings_list(self, request: Request) -> Response:
        """Style E over recordings newest first; ``limit``/``offset`` (or ``after`` when
        ``recordings_next_cursor`` is on) — see :func:`objects.recordings_page`."""
        key, project = self._open(request, objects.RECORDINGS_SCOPE, "clickhouse")
        self._hostile_list_shift(request, project, "session_recordings")
        try:
            body = objects.recordings_page(project.objects["session_recordings"], request.query_params, self.now(),
                                           cursor=bool(self.opts.recordings_next_cursor))
        except ValueError as e:
            raise validation(str(e)) from None
        return _json(body)

    def group_types(self, request: Request) -> Response:
        key, project = self._open(request, "group:read", "crud")
        return _json(project.group_types)

    def groups_list(self, request: Request) -> Response:
        key, project = self._open(request, "group:read", "crud")
        raw_index = request.query_params.get("group_type_index")
        if raw_index is None or raw_index == "":
            raise validation("This field is required.", "required", "group_type_index")
        try:
            index = int(raw_index)
        except ValueError:
            raise validation("A valid integer is required.", "invalid", "group_type_index") from None
        rows = self.groups[project.id].get(index, [])
        if request.query_params.get("group_key"):
            needle = request.query_params["group_key"].lower()
            rows = [g for g in rows if needle in g["group_key"].lower()]
        return _json(_drf_cursor_page(request, rows, 100, self._url))

    # -- control plane -------------------------------------------------------------------------

    def _project_arg(self, op: dict[str, Any]) -> Project:
        pid = op.get("project_id")
        if pid is None:
            return next(iter(self.projects.values()))
        try:
            return self.projects[int(pid)]
        except (KeyError, TypeError, ValueError):
            raise MutationError(f"no project {pid!r}; projects: {', '.join(map(str, self.projects))}") from None

    @staticmethod
    def _count(op: dict[str, Any], default: int = 1, maximum: int = 100_000) -> int:
        try:
            n = int(op.get("count", default))
        except (TypeError, ValueError):
            raise MutationError("count must be an integer") from None
        if not 1 <= n <= maximum:
            raise MutationError(f"count must be between 1 and {maximum:,}")
        return n

    def mutate(self, op: dict[str, Any]) -> dict[str, Any]:
        name = op.get("op")
        handlers = {
            "add_events": self._add_events,
            "duplicate_events": self._duplicate_events,
            "add_persons": self._add_persons,
            "modify_persons": self._modify_persons,
            "delete_persons": self._delete_persons,
            "add_objects": self._add_objects,
            "modify_objects": self._modify_objects,
            "delete_objects": self._delete_objects,
            "add_recordings": self._add_recordings,
            "grow_recordings": self._grow_recordings,
            "advance_clock": self._advance_clock,
            "add_session": lambda op: self._session_events(op, grow=False),
            "grow_session": lambda op: self._session_events(op, grow=True),
        }
        if name not in handlers:
            raise MutationError(f"unknown op {name!r}; known: {', '.join(handlers)}")
        with self._lock:
            self._mutations += 1
            return handlers[name](op)

    def _session_events(self, op: dict[str, Any], *, grow: bool) -> dict[str, Any]:
        """A new session (``add_session``) or more events in one (``grow_session``): see
        :func:`emulators.posthog.sessions.session_events`."""
        project = self._project_arg(op)
        store = self._tables(project)["sessions"].store
        out = session_table.session_events(self, project, store, op, self._mutations, grow=grow)
        self._summary_cache.clear()
        return out

    def _advance_clock(self, op: dict[str, Any]) -> dict[str, Any]:
        seconds = float(op.get("seconds", 0))
        if seconds < 0:
            raise MutationError("the clock only moves forward")
        self.clock_offset_us += int(seconds * US)
        return {"now": iso_us(self.now())}

    def _add_events(self, op: dict[str, Any]) -> dict[str, Any]:
        """New events: at ``at`` (ISO), or ``late_seconds`` before now (default 0 = now);
        ``same_timestamp`` gives all of them one microsecond; ``spread_seconds`` spreads them
        over that many seconds before the anchor."""
        project = self._project_arg(op)
        n = self._count(op)
        if op.get("at"):
            try:
                anchor = int(hogql.parse_ts(str(op["at"]), dt.UTC))
            except hogql.HogQLError as e:
                raise MutationError(str(e)) from None
        else:
            anchor = self.now() - int(float(op.get("late_seconds", 0)) * US)
        same = bool(op.get("same_timestamp"))
        spread = int(float(op.get("spread_seconds", 0 if same else max(1, n // 100))) * US)
        name = str(op.get("event", "late_event"))
        store = project.events
        persons = project.persons
        base = derive_seed(self.seed, "added-events", project.id, self._mutations)
        created = self.now()
        added: list[Event] = []
        for m in range(n):
            r = h2(base, m)
            ts = anchor if same or n == 1 else anchor - spread + (spread * m) // n
            low, high = v7(ts // 1000, r, h2(r, 1))
            k = r % max(1, persons.n)
            pk = persons.key(k)
            added.append(Event(ts, low, high, name, persons.anon_id(k), (pk[1], pk[2]),
                               {"$current_url": "https://shop.example.com/late", "batch": self._mutations,
                                "seq": m, "amount": str(r % 1000)},
                               "", created, f"late-{self._mutations}"))
        store.add(added)
        self._summary_cache.clear()
        return {"project_id": project.id, "uuids": [e.uuid for e in added],
                "timestamps": sorted({iso_us(e.ts) for e in added})[:5], "count": n}

    def _duplicate_events(self, op: dict[str, Any]) -> dict[str, Any]:
        """``count`` stored events (spread evenly over the project's generated events) stored a
        second time (``shift_seconds``: the copy's timestamp that much later), as PostHog's ClickHouse tables (ReplacingMergeTree) keep an event sent twice
        until they merge their parts: until then every query returns both copies, side by side in
        ``(timestamp, uuid)`` order. Inferred, not documented; the stricter behaviour."""
        project = self._project_arg(op)
        store = project.events
        n = min(self._count(op), store.n)
        step = max(1, store.n // n)
        copies = [store.base_event(i) for i in range(0, store.n, step)][:n]
        shift = int(float(op.get("shift_seconds", 0)) * US)
        if shift:
            # the same event sent again with another timestamp: a different ClickHouse sort key,
            # so the copies are never merged and never come back side by side
            copies = [dataclasses.replace(e, ts=e.ts + shift) for e in copies]
        store.add(copies)
        self._summary_cache.clear()
        return {"project_id": project.id, "uuids": [e.uuid for e in copies], "count": len(copies)}

    def _add_persons(self, op: dict[str, Any]) -> dict[str, Any]:
        project = self._project_arg(op)
        added = project.persons.add(self._count(op), self.now())
        return {"project_id": project.id, "uuids": [p.uuid for p in added]}

    def _pick_persons(self, project: Project, n: int) -> list[int]:
        store = project.persons
        base = derive_seed(self.seed, "pick", project.id, self._mutations)
        picked: list[int] = []
        seen: set[int] = set()
        attempts = 0
        while len(picked) < min(n, store.alive) and attempts < 20 * n:
            attempts += 1
            i = h2(base, attempts) % store.total
            if i in seen or store.is_deleted(i):
                continue
            seen.add(i)
            picked.append(i)
        return picked

    def _modify_persons(self, op: dict[str, Any]) -> dict[str, Any]:
        project = self._project_arg(op)
        changed = project.persons.modify(self._pick_persons(project, self._count(op)), self._mutations)
        return {"project_id": project.id, "uuids": [p.uuid for p in changed]}

    def _delete_persons(self, op: dict[str, Any]) -> dict[str, Any]:
        project = self._project_arg(op)
        picked = self._pick_persons(project, self._count(op))
        uuids = [project.persons.person(i).uuid for i in picked]
        project.persons.delete(picked)
        self.deleted_persons += [{"project_id": project.id, "uuid": u} for u in uuids]
        return {"project_id": project.id, "uuids": uuids}

    def _object_table(self, op: dict[str, Any]) -> str:
        table = op.get("table")
        if table not in objects.MUTABLE_TABLES:
            raise MutationError(f"table must be one of {', '.join(objects.MUTABLE_TABLES)}")
        return str(table)

    _MAKERS = {
        "cohorts": objects.cohort,
        "feature_flags": objects.feature_flag,
        "annotations": objects.annotation,
        "insights": objects.insight,
        "experiments": objects.experiment,
        "actions": objects.action,
        "dashboards": objects.dashboard,
        "surveys": objects.survey,
    }

    def _add_objects(self, op: dict[str, Any]) -> dict[str, Any]:
        project = self._project_arg(op)
        table = self._object_table(op)
        s = derive_seed(self.seed, "objects", project.id)
        rows = project.objects[table]
        made = []
        for _ in range(self._count(op, maximum=1000)):
            oid = self.ids.next(table)
            item = self._MAKERS[table](s, oid, 10_000 + oid, self.now())
            rows.insert(0, item)
            made.append(oid)
        return {"project_id": project.id, "table": table, "ids": made}

    def _modify_objects(self, op: dict[str, Any]) -> dict[str, Any]:
        project = self._project_arg(op)
        table = self._object_table(op)
        rows = project.objects[table]
        n = min(self._count(op, maximum=1000), len(rows))
        s = derive_seed(self.seed, "objects", project.id)
        changed = []
        for j in range(n):
            pos = (j * 7 + self._mutations) % len(rows)
            old = rows[pos]
            created = from_datetime(dt.datetime.fromisoformat(old["created_at"].replace("Z", "+00:00")))
            version = int(old.get("version", 1)) + self._mutations if table in ("cohorts", "feature_flags") \
                else self._mutations
            n_i = 20_000 + old["id"] if isinstance(old["id"], int) else 20_000 + pos
            fresh = self._MAKERS[table](s, old["id"], n_i, created, version)
            if table == "dashboards":
                fresh["tiles"] = old["tiles"]
            rows[pos] = fresh
            changed.append(old["id"])
        return {"project_id": project.id, "table": table, "ids": changed}

    def _delete_objects(self, op: dict[str, Any]) -> dict[str, Any]:
        project = self._project_arg(op)
        table = op.get("table")
        if table not in (*objects.MUTABLE_TABLES, "session_recordings"):
            raise MutationError(f"table must be one of {', '.join(objects.MUTABLE_TABLES)}, session_recordings")
        rows = project.objects[table]
        n = min(self._count(op, maximum=1000), len(rows))
        gone = []
        for j in range(n):
            victim = rows.pop((j * 5 + self._mutations) % len(rows))
            gone.append(victim["id"])
            self.deleted_objects.append({"project_id": project.id, "table": table, "id": victim["id"]})
        return {"project_id": project.id, "table": table, "ids": gone}

    def _add_recordings(self, op: dict[str, Any]) -> dict[str, Any]:
        """New recordings starting ``late_seconds`` before now (or ``at``); ``same_start`` gives
        them one ``start_time``; ``ongoing`` marks them in progress."""
        project = self._project_arg(op)
        n = self._count(op, maximum=10_000)
        now = self.now()
        anchor = self._parse_time(str(op["at"]), "at") if op.get("at") else now - int(float(op.get("late_seconds", 0)) * US)
        s = derive_seed(self.seed, "added-recordings", project.id, self._mutations)
        made = []
        for m in range(n):
            start = anchor if op.get("same_start") else anchor - (n - m) * 7 * US
            made.append(objects.recording(s, m, start - start % 1000, now, ongoing=bool(op.get("ongoing"))))
        rows = project.objects["session_recordings"]
        rows[:] = objects.sort_recordings(rows + made)
        return {"project_id": project.id, "ids": [r["id"] for r in made]}

    def _grow_recordings(self, op: dict[str, Any]) -> dict[str, Any]:
        """Recordings still in progress (``ongoing``) get longer: duration, end time, counts; with
        ``end`` they finish. ``ids`` picks them (default: every ongoing one)."""
        project = self._project_arg(op)
        rows = project.objects["session_recordings"]
        wanted = set(op.get("ids") or [r["id"] for r in rows if r.get("ongoing")])
        grown = []
        for pos, r in enumerate(rows):
            if r["id"] not in wanted:
                continue
            r = dict(r)
            extra = int(op.get("seconds", 120))
            r["recording_duration"] += extra
            r["active_seconds"] += extra // 2
            r["inactive_seconds"] = r["recording_duration"] - r["active_seconds"]
            r["click_count"] += 3
            end = from_datetime(dt.datetime.fromisoformat(r["end_time"].replace("Z", "+00:00"))) + extra * US
            r["end_time"] = drf_datetime(end)
            r["ongoing"] = not op.get("end")
            rows[pos] = r
            grown.append(r["id"])
        return {"project_id": project.id, "ids": grown}

    # -- exports -------------------------------------------------------------------------------

    def export(self, table: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if table == "projects":
            return [self.render_project(p) for p in sorted(self.projects.values(), key=lambda p: p.id)]
        if table == "hostile":
            with self._lock:
                return list(self.hostile_log)
        if table == "deleted_persons":
            with self._lock:
                return list(self.deleted_persons)
        if table == "deleted_objects":
            with self._lock:
                return list(self.deleted_objects)
        for project in self.projects.values():
            if table == "events":
                tz = ZoneInfo(project.timezone)
                for e in project.events.scan(project.events.begin()):
                    out.append({
                        "project_id": project.id,
                        "uuid": e.uuid,
                        "event": e.event,
                        "distinct_id": e.distinct_id,
                        "timestamp": iso_us(e.ts, tz),
                        "created_at": iso_us(e.created_at, tz),
                        "person_id": e.person_id,
                        "session_id": e.session_id,
                        "elements_chain": e.elements_chain,
                        "properties": e.properties,
                    })
            elif table == "persons":
                store = project.persons
                for i in range(store.total):
                    if not store.is_deleted(i):
                        out.append({"project_id": project.id, **self.render_person(store.person(i))})
            elif table == "sessions":
                out += session_table.export(self._tables(project)["sessions"].store, project,
                                            ZoneInfo(project.timezone))
            elif table == "event_summaries":
                out += self._summaries(project)
            elif table == "groups":
                for rows in self.groups[project.id].values():
                    out += [{"project_id": project.id, **g} for g in rows]
            elif table == "group_types":
                out += [{"project_id": project.id, **t} for t in project.group_types]
            elif table in objects.OBJECT_SCOPES or table == "session_recordings":
                out += [{"project_id": project.id, **x} for x in project.objects[table]]
            else:
                raise KeyError(table)
        return out

    def _summaries(self, project: Project) -> list[dict[str, Any]]:
        key = (project.id, project.events.version)
        with self._lock:
            cached = self._summary_cache.get(key)
        if cached is not None:
            return cached
        tz = ZoneInfo(project.timezone)
        counts: dict[tuple[str, str], list[Any]] = {}
        for e in project.events.scan(project.events.begin()):
            day = to_datetime(e.ts, tz).date().isoformat()
            slot = counts.setdefault((day, e.event), [0, set()])
            slot[0] += 1
            slot[1].add(e.person_id)
        rows = [{"project_id": project.id, "day": d, "event": ev, "events": c, "persons": len(p)}
                for (d, ev), (c, p) in sorted(counts.items())]
        with self._lock:
            self._summary_cache[key] = rows
        return rows


def _event_renderers(columns: dict[str, hogql.Column]) -> dict[str, Renderer]:
    """Each event column's JSON values for a list of events: ``[column.out(e, tz) for e in events]``,
    with the costly columns done a list at a time."""
    def per_row(out: Callable[[Event, Any], Any]) -> Renderer:
        return lambda events, tz: [out(e, tz) for e in events]

    def person_ids(events: list[Event], tz: Any) -> list[str]:
        seen: dict[tuple[int, int], str] = {}
        out = []
        for e in events:
            text = seen.get(e.person)
            if text is None:
                text = seen[e.person] = uuid_str(*e.person)
            out.append(text)
        return out

    dumps = orjson.dumps
    renderers = {c.name: per_row(c.out) for c in columns.values() if c.out is not None}
    renderers.update({
        "uuid": lambda events, tz: [uuid_str(e.low, e.high) for e in events],
        "timestamp": lambda events, tz: iso_us_many([e.ts for e in events], tz),
        "created_at": lambda events, tz: iso_us_many([e.created_at for e in events], tz),
        "person_id": person_ids,
        "properties": lambda events, tz: [dumps(e.properties).decode() for e in events],
    })
    return renderers


def _drf_cursor_page(request: Request, rows: list[dict[str, Any]], page_size: int,
                     url: Callable[..., str]) -> dict[str, Any]:
    """DRF ``CursorPagination`` over rows ordered ``-created_at``: the cursor is the base64 of
    ``o=<offset>&p=<position>``; a position is a ``created_at`` strictly after which (in the
    ordering) the next page starts, ``offset`` skips rows that tie with it."""
    cursor = request.query_params.get("cursor")
    position: str | None = None
    offset = 0
    if cursor:
        try:
            decoded = urllib.parse.parse_qs(base64.b64decode(cursor.encode()).decode(), keep_blank_values=True)
            offset = int(decoded.get("o", ["0"])[0])
            position = decoded.get("p", [None])[0]
        except (ValueError, UnicodeDecodeError):
            raise ApiError(404, "invalid_request", "not_found", "Invalid cursor") from None
    start = 0
    if position is not None:
        # rows are sorted by created_at descending: the page starts after every row at or
        # after the position (DRF filters ``created_at__lt=position``)
        ascending = [r["created_at"] for r in reversed(rows)]
        start = len(ascending) - bisect.bisect_left(ascending, position)
    chunk = rows[start + offset : start + offset + page_size + 1]
    has_next = len(chunk) > page_size
    page = chunk[:page_size]
    nxt = None
    if has_next:
        # DRF: walk back from the end of the page to the last row whose position differs from
        # the row after it; that position is the marker, the rows after it the offset
        following = chunk[page_size]["created_at"]
        marker, skip = None, 0
        compare = following
        for row in reversed(page):
            if row["created_at"] != compare:
                marker = row["created_at"]
                break
            skip += 1
            compare = row["created_at"]
        if marker is None:
            marker = position
            skip = offset + page_size
        token = urllib.parse.urlencode({"o": skip, "p": marker} if marker is not None else {"o": skip})
        nxt = url(request, cursor=base64.b64encode(token.encode()).decode())
    return {"next": nxt, "previous": None if not cursor else url(request, cursor=None), "results": page}


def create_backend(seed: int = 1, scale: int = 1000, **options: Any) -> PostHogBackend:
    return PostHogBackend(seed=seed, scale=scale, **options)
