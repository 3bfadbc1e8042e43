"""The Lytics REST API (``api/lytics.md``), as a backend for the shared emulator harness.

The ten behaviours of contract §11, and where the contract is silent the stricter choice:

1. **Auth**: the raw token in ``Authorization`` (no ``Bearer``: a ``Bearer`` prefix is refused,
   stricter than unknown), ``?key=`` or ``?access_token=``. Missing or wrong: 401
   ``{"data":null,"message":"Not authorized","status":401}``. The account's *data* key
   (``data_api_key``) may only write to ``/collect``: anywhere else it gets 403 with the same
   envelope.
2. **Envelope** ``{"status":200,"message":"success","data":…,"request_id":…}``; option
   ``string_status`` answers ``"status":"success"`` on the account list (tolerant parsing).
3. **Saved-segment scan** ``GET /api/segment/{id|slug}/scan`` (and ``GET /api/segment/scan?id=``):
   ``limit`` defaults to 10 and is clamped to 100 (the spec says max 100; clamping rather than a
   400 is unknown, and a client that asks for more than 100 and counts on it breaks either way);
   ``start=`` empty is the first page; top-level opaque ``_next`` (``""`` on the last page);
   ``total`` is the scan's member count, the same on every page; unknown segment → 404.
4. **Ad-hoc scan** ``POST /api/segment/scan`` with a FilterQL text body (see
   :mod:`emulators.lytics.filterql`), the same pagination; 400 ``Failed parsing segment QL …``.
5. **Scan rows**: flat maps with ``segments`` (public slugs), identity fields, ``_created`` and
   ``_modified`` (RFC3339Nano, UTC), numbers sent as strings (``score_intensity``, ``visitct``,
   ``ltv``), nested maps (``hourly``); ``fields=`` projects. Rows come in an internal key order.
6. **Cursor validity**: a token is bound to its scan (segment or query, ``limit``, ``splits``,
   ``fields``); a garbage or foreign token → 400. Membership is fixed when a scan starts (its
   first page), values are read live; the scan state expires after ``scan_ttl_seconds``
   (default: never) or on the ``expire_scans`` option, and its tokens then answer 400
   ``scan expired, start a new scan`` (the real error is unknown).
7. **Segments**: ``GET /api/segment?table=&valid=``, ``GET /api/segment/{id|slug}``,
   ``GET /api/segment/sizes?ids=`` (every list format of §1.3; omitted = all),
   ``GET /api/segment/{id}/sizes``, ``GET /api/segmentcollection[/{id|slug}]``.
8. **Collect**: ``POST /collect/json/{stream}`` (object or array of flat objects; an object nested
   inside an array is rejected and counted; ``dryrun``) upserts the profile by its first identity
   field present (``_uid``, ``email``, ``user_id``) and bumps ``_modified``; stream counters move.
9. **Entity and catalog**: ``GET /api/entity/user/{field}/{value}`` (404 if absent),
   ``GET /api/schema/{table}``, ``GET /api/schema/_streams``, ``GET /api/content/doc``,
   ``GET /api/work``, ``GET /api/account``.
10. **Faults**: ``throttle_every`` (every N-th API request answers 429
    ``{"status":429,"message":"Too Many Requests"}``, with ``Retry-After`` only if
    ``retry_after`` is set), ``scan_faults`` (the N-th page of scans answers 500/503),
    ``/api/segment/{slug}/fieldinfo`` answers 500 (ids work), ``mid_scan_modify`` (profiles change
    while a scan is being read). The harness adds generic faults (drops, truncation, latency).

``splits`` (a list of buckets 0–99) restricts a scan to the users whose hash bucket is listed;
the buckets partition the users, so the union of split scans is the single scan.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import itertools
import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulators.common.backend import MutationError

from .data import DEFAULT_EPOCH, Account, derive, rfc3339
from .filterql import All, FilterQLError, compile_expr, indexed_range, parse

MAX_LIMIT = 100
DEFAULT_LIMIT = 10
SCAN_CACHE = 512
OPTIONS = {
    "next_key": "_next",  # "_next" | "next" | "both"
    "string_status": False,
    "scan_ttl_seconds": None,
    "expire_scans": None,  # {"after_pages": N, "times": K}
    "scan_faults": None,  # {"page": N, "status": 500, "times": K}
    "throttle_every": 0,
    "retry_after": None,
    "mid_scan_modify": None,  # {"page": N, "count": M}
    "request_id": True,
    "short_scans": None,  # {"page": N, "drop": M, "times": K}
    "repeat_rows": None,  # {"page": N, "count": M, "stale": "first"|"last", "times": K}
    "clamp_limit": None,  # serve at most this many rows a page, whatever limit asks
    "unbucketed": 0,  # this many users (the first slots) are in no splits bucket: split scans miss them
    "revoked": False,  # the API key is refused (401), as after a revocation mid-run
    "hostile": 0,
    "hostile_seed": None,
    "hostile_odds": 1.0,  # multiplies every HOSTILE_CHANCES entry
}

#: hostile mode: the chance, per scan page, of each vendor-specific bad day (option
#: ``hostile_odds`` multiplies them); late arrivals are decided once per scan
HOSTILE_CHANCES = {
    "short": 0.03,  # rows silently missing from the scan ahead (total unchanged)
    "repeat_first": 0.05,  # a profile already served changes and is served again (newer second)
    "repeat_last": 0.05,  # a profile ahead changes, is served now, and a stale copy comes later
    "modify": 0.05,  # profiles change mid-scan (behind and ahead), each served once
    "clamp": 0.05,  # the page holds fewer rows than the limit asked for
    "late": 0.05,  # per scan: a profile changes with a _modified up to LATE_MAX_S in the past
}
#: how far in the past a hostile late arrival's ``_modified`` lies, at most (seconds); the
#: source's documented limit is its lookback (900 s by default)
LATE_MAX_S = 300


def envelope(data: Any, status: int = 200, **extra: Any) -> Response:
    body = {"status": status, "message": "success", "data": data, **extra}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def error(status: int, message: str) -> Response:
    body = {"data": None, "message": message, "status": status}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def list_param(request: Request, name: str) -> list[str] | None:
    """A ``[]string`` parameter in any documented form: ``a``, ``[a,b]``, ``a,b``, repeated,
    ``name[]=``. ``None`` when absent."""
    pairs = parse_qsl(request.url.query, keep_blank_values=True)
    raw = [v for k, v in pairs if k in (name, f"{name}[]")]
    if not raw:
        return None
    out: list[str] = []
    for v in raw:
        v = v.strip()
        if v.startswith("[") and v.endswith("]"):
            v = v[1:-1]
        out += [p.strip().strip("\"'") for p in v.split(",") if p.strip()]
    return out


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> Any:
    """:func:`parse`, once per distinct query text (a scan sends its query with every page; the
    parsed query is immutable). A text that does not parse raises every time."""
    return parse(text)


@dataclass
class Scan:
    id: str
    binding: str  # what the token is bound to
    slots: Any  # a range or an array of slots/doc indexes, in order (a list once perturbed:
    #             an int is served live, bytes are a stale rendering served as they are)
    table: str
    expr: Any
    started: float
    pages: int = 0
    total: int = 0  # the member count when the scan started: ``total`` on every page
    repeated: set[int] = field(default_factory=set)  # slots served twice (repeat_rows)

    def entries(self) -> list[Any]:
        if not isinstance(self.slots, list):
            self.slots = list(self.slots)
        return self.slots


class LyticsBackend:
    vendor = "lytics"
    base_path = ""

    def __init__(self, seed: int = 1, scale: int = 1000, hostile: Any = 0, hostile_seed: Any = None,
                 **options: Any) -> None:
        epoch = options.pop("epoch", DEFAULT_EPOCH)
        self.options = dict(OPTIONS)
        options = {**options, "hostile": hostile, "hostile_seed": hostile_seed}
        self._check_options(options)
        self.options.update(options)
        self._rng = random.Random(hostile_seed if hostile_seed is not None else seed)
        self.hostile_events: dict[str, int] = {}
        #: uids the emulator itself changed while scans ran without serving the new version for
        #: sure (hostile changes, mid_scan_modify, late arrivals): a run may load them as they
        #: were, the next run must catch up
        self.changed_mid_scan: set[str] = set()
        #: uids served twice in one scan after a change (repeat_rows): the newest copy was served
        self.served_twice: set[str] = set()
        self.account = Account(seed, scale, epoch)
        self.api_key = f"lyt{derive(seed, 'api-key'):016x}{derive(seed, 'api-key-2'):016x}"
        self.data_api_key = f"lytd{derive(seed, 'data-key'):016x}{derive(seed, 'data-key-2'):012x}"
        self._secret = derive(seed, "scan-secret").to_bytes(8, "big")
        self._lock = threading.RLock()
        self._scans: OrderedDict[str, Scan] = OrderedDict()
        self._scan_ids = itertools.count(1)
        self._requests = 0
        self._scan_pages = 0
        self._faults_used: dict[str, int] = {}

    # -- options ---------------------------------------------------------------------------------

    @staticmethod
    def _check_options(options: dict[str, Any]) -> None:
        unknown = set(options) - set(OPTIONS)
        if unknown:
            raise MutationError(f"unknown lytics options {sorted(unknown)}; known: {sorted(OPTIONS)}")
        if options.get("next_key", "_next") not in ("_next", "next", "both"):
            raise MutationError('next_key must be "_next", "next" or "both"')

    def configure(self, options: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._check_options(options)
            self.options.update(options)
            if "hostile_seed" in options or "hostile" in options:
                seed = self.options.get("hostile_seed")
                self._rng = random.Random(seed if seed is not None else self.account.seed)
            for k in ("expire_scans", "scan_faults", "mid_scan_modify", "short_scans", "repeat_rows"):
                if k in options:
                    self._faults_used.pop(k, None)
            return dict(self.options)

    def unauthorized_response(self) -> tuple[int, dict[str, str], bytes]:
        """A revoked token (harness ``revoke_after``): Lytics' 401 envelope (contract §11.1)."""
        return 401, {"Content-Type": "application/json"}, orjson.dumps(
            {"data": None, "message": "Not authorized", "status": 401})

    def throttle_response(self) -> tuple[int, dict[str, str], bytes]:
        """Lytics' 429 (contract §2.3, §11.10): the error envelope, no ``Retry-After``."""
        return 429, {"Content-Type": "application/json"}, orjson.dumps({"status": 429, "message": "Too Many Requests"})

    # -- routes ------------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        g = self._guard
        return [
            Route("/api/account", g(self._accounts), methods=["GET"]),
            Route("/api/account/{id}", g(self._account), methods=["GET"]),
            Route("/api/segment", g(self._segment_list), methods=["GET"]),
            Route("/api/segment/sizes", g(self._sizes), methods=["GET"]),
            Route("/api/segment/scan", g(self._scan_route), methods=["GET", "POST"]),
            Route("/api/segment/{id}", g(self._segment_detail), methods=["GET"]),
            Route("/api/segment/{id}/scan", g(self._saved_scan), methods=["GET"]),
            Route("/api/segment/{id}/sizes", g(self._segment_size), methods=["GET"]),
            Route("/api/segment/{id}/fieldinfo", g(self._fieldinfo), methods=["GET"]),
            Route("/api/segmentcollection", g(self._collections), methods=["GET"]),
            Route("/api/segmentcollection/{id}", g(self._collection), methods=["GET"]),
            Route("/api/entity/{table}/{field}/{value:path}", g(self._entity), methods=["GET"]),
            Route("/api/schema", g(self._schemas), methods=["GET"]),
            Route("/api/schema/_streams", g(self._streams), methods=["GET"]),
            Route("/api/schema/{table}", g(self._schema), methods=["GET"]),
            Route("/api/content/doc", g(self._content_docs), methods=["GET"]),
            Route("/api/work", g(self._works), methods=["GET"]),
            Route("/api/work/{id}", g(self._work), methods=["GET"]),
            Route("/collect/json/{stream}", g(self._collect, collect=True), methods=["POST"]),
        ]

    def _token(self, request: Request) -> str | None:
        header = request.headers.get("authorization")
        if header:
            return header.strip()
        return request.query_params.get("access_token") or request.query_params.get("key")

    def _guard(self, fn: Any, collect: bool = False) -> Any:
        async def endpoint(request: Request) -> Response:
            from starlette.concurrency import run_in_threadpool

            token = self._token(request)
            if token not in (self.api_key, self.data_api_key) or self.options.get("revoked"):
                return error(401, "Not authorized")
            if token == self.data_api_key and not collect:
                return error(403, "Forbidden: this token's role cannot use this API")
            with self._lock:
                self._requests += 1
                every = int(self.options.get("throttle_every") or 0)
                throttled = every > 0 and self._requests % every == 0
            if throttled:
                response = Response(orjson.dumps({"status": 429, "message": "Too Many Requests"}), status_code=429,
                                    media_type="application/json")
                if self.options.get("retry_after") is not None:
                    response.headers["Retry-After"] = str(self.options["retry_after"])
                return response
            body = await request.body() if request.method == "POST" else b""
            return await run_in_threadpool(fn, request, body)

        return endpoint

    def _ok(self, data: Any, **extra: Any) -> Response:
        if self.options.get("request_id"):
            extra.setdefault("request_id", f"req-{time.monotonic_ns():x}")
        return envelope(data, **extra)

    # -- account ----------------------------------------------------------------------------------

    def _accounts(self, request: Request, body: bytes) -> Response:
        data = [self.account.account_record(self.api_key, self.data_api_key)]
        if self.options.get("string_status"):
            return Response(orjson.dumps({"status": "success", "message": "success", "data": data}),
                            media_type="application/json")
        return self._ok(data)

    def _account(self, request: Request, body: bytes) -> Response:
        rec = self.account.account_record(self.api_key, self.data_api_key)
        if request.path_params["id"] not in (rec["id"], str(rec["aid"])):
            return error(404, "Not Found")
        return self._ok(rec)

    # -- segments -----------------------------------------------------------------------------------

    def _segment_list(self, request: Request, body: bytes) -> Response:
        table = request.query_params.get("table") or "user"
        valid = (request.query_params.get("valid") or "true").lower()
        if table not in ("user", "content"):
            return error(400, f"unknown table {table!r}")
        with self._lock:
            rows = [self.account.segment_record(s) for s in self.account.segments if s.d.table == table]
        if valid == "false":
            rows = [r for r in rows if r["invalid"]]
        return self._ok(rows)

    def _segment_detail(self, request: Request, body: bytes) -> Response:
        seg = self.account.segment(request.path_params["id"])
        if seg is None:
            return error(404, "Segment Not Found")
        return self._ok(self.account.segment_record(seg))

    def _size_record(self, seg: Any, sizes: dict[str, int]) -> dict[str, Any]:
        return {"id": seg.id, "name": seg.d.name, "slug_name": seg.d.slug, "size": sizes[seg.id]}

    def _sizes(self, request: Request, body: bytes) -> Response:
        ids = list_param(request, "ids")
        with self._lock:
            sizes = self.account.sizes()
            if ids is None:
                segs = list(self.account.segments)
            else:
                segs = []
                for i in ids:
                    seg = self.account.segment(i)
                    if seg is None:
                        return error(404, f"Segment Not Found: {i}")
                    segs.append(seg)
            return self._ok([self._size_record(s, sizes) for s in segs])

    def _segment_size(self, request: Request, body: bytes) -> Response:
        seg = self.account.segment(request.path_params["id"])
        if seg is None:
            return error(404, "Segment Not Found")
        with self._lock:
            return self._ok(self._size_record(seg, self.account.sizes()))

    def _fieldinfo(self, request: Request, body: bytes) -> Response:
        ident = request.path_params["id"]
        seg = self.account.segment(ident)
        if seg is None:
            return error(404, "Segment Not Found")
        if ident != seg.id:  # the documented quirk: a slug here is a 500
            return error(500, "Internal Server Error")
        return self._ok({"table": seg.d.table, "fields": []})

    def _collections(self, request: Request, body: bytes) -> Response:
        with self._lock:
            return self._ok(self.account.collections())

    def _collection(self, request: Request, body: bytes) -> Response:
        ident = request.path_params["id"]
        for c in self.account.collections():
            if ident in (c["id"], c["slug_name"]):
                return self._ok(c)
        return error(404, "Not Found")

    # -- scans -------------------------------------------------------------------------------------

    def _scan_route(self, request: Request, body: bytes) -> Response:
        if request.method == "GET":
            ident = request.query_params.get("id")
            if not ident:
                return error(400, "a saved segment scan needs id=")
            return self._saved(ident, request)
        text = body.decode("utf-8", errors="replace")
        if not text.strip():
            text = request.query_params.get("segments") or ""
        try:
            query = _parse(text)
        except FilterQLError as exc:
            return error(400, f"Failed parsing segment QL {exc}")
        table = request.query_params.get("table")
        if table and table != query.table:
            return error(400, f"Failed parsing segment QL table {table!r} does not match FROM {query.table}")
        return self._scan(request, f"adhoc:{' '.join(text.split())}", query.table, query.expr)

    def _saved_scan(self, request: Request, body: bytes) -> Response:
        return self._saved(request.path_params["id"], request)

    def _saved(self, ident: str, request: Request) -> Response:
        seg = self.account.segment(ident)
        if seg is None:
            return error(404, "Segment Not Found")
        return self._scan(request, f"segment:{seg.id}", seg.d.table, self.account.parsed[seg.id].expr)

    def _sign(self, scan_id: str, pos: int, binding: str) -> str:
        mac = hmac.new(self._secret, f"{scan_id}|{pos}|{binding}".encode(), hashlib.sha256).hexdigest()[:16]
        raw = f"{scan_id}.{pos}.{mac}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _unsign(self, token: str, binding: str) -> tuple[str, int] | None:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            scan_id, pos_text, mac = raw.split(".")
            pos = int(pos_text)
        except (ValueError, UnicodeDecodeError):
            return None
        want = self._sign(scan_id, pos, binding)
        return (scan_id, pos) if hmac.compare_digest(want, token.rstrip("=")) else None

    def _snapshot(self, table: str, expr: Any, buckets: set[int] | None) -> Any:
        acct = self.account
        now = acct.clock.now()
        matches = compile_expr(expr)
        if table == "content":
            idxs = range(acct.n_docs)
            if buckets is not None:
                idxs = [i for i in idxs if acct.bucket(i ^ 0x3C3C) in buckets]
            if isinstance(expr, All):
                return list(idxs)
            return [i for i in idxs if self._doc_matches(matches, i, now)]
        rng = indexed_range(expr, "_modified", now)
        if rng is not None:
            candidates: Any = acct.modified_between(*rng)
            if buckets is not None:
                candidates = [s for s in candidates if acct.bucket(s) in buckets]
        elif buckets is not None:
            candidates = acct.bucket_slots(buckets)
        else:
            candidates = range(acct.n_users)
        hidden = int(self.options.get("unbucketed") or 0)
        if buckets is not None and hidden:
            candidates = [c for c in candidates if c >= hidden]
        if isinstance(expr, All):
            return candidates
        return [s for s in candidates if self._user_matches(matches, s, now)]

    def _user_matches(self, matches: Any, slot: int, now: int) -> bool:
        acct = self.account
        cache: dict[str, Any] = {}  # the row is rendered only if a field other than _modified is read
        return matches(lambda f: acct.user_value(slot, f, cache),
                       lambda slug: acct._include(slug, slot, cache.get("row"), 0), now)

    def _doc_matches(self, matches: Any, idx: int, now: int) -> bool:
        acct = self.account
        return matches(acct.doc(idx).get, lambda slug: acct._include_doc(slug, idx, 0), now)

    def _scan(self, request: Request, what: str, table: str, expr: Any) -> Response:
        q = request.query_params
        try:
            limit = int(q.get("limit") or DEFAULT_LIMIT)
        except ValueError:
            return error(400, "limit must be an integer")
        limit = max(1, min(limit, MAX_LIMIT))
        splits_raw = list_param(request, "splits")
        buckets: set[int] | None = None
        if splits_raw is not None:
            try:
                buckets = {int(s) for s in splits_raw}
            except ValueError:
                return error(400, "splits must be integers 0-99")
            if not buckets or any(not 0 <= b <= 99 for b in buckets):
                return error(400, "splits must be integers 0-99")
        fields = list_param(request, "fields")
        binding = f"{what}|{limit}|{sorted(buckets) if buckets is not None else '*'}|{fields or '*'}"
        start = q.get("start") or ""
        with self._lock:
            self._expire_old()
            if start:
                found = self._unsign(start, binding)
                if found is None:
                    return error(400, "invalid start token for this scan")
                scan_id, pos = found
                scan = self._scans.get(scan_id)
                if scan is None:
                    return error(400, "scan expired, start a new scan")
                self._scans.move_to_end(scan_id)
            else:
                slots = self._snapshot(table, expr, buckets)
                scan = Scan(str(next(self._scan_ids)), binding, slots, table, expr, time.monotonic(),
                            total=len(slots))
                self._scans[scan.id] = scan
                while len(self._scans) > SCAN_CACHE:
                    self._scans.popitem(last=False)
                pos = 0
                if self.options.get("hostile") and table == "user" and self._chance("late"):
                    self._late_arrival()
            page_no = scan.pages + 1
            fault = self._take_fault("scan_faults", page_no)
            if fault is not None:  # the same page fails again on a retry, up to ``times``
                status = int(fault.get("status", 500))
                return error(status, "Internal Server Error" if status == 500 else "Service Unavailable")
            scan.pages = page_no
            modify = self._take_fault("mid_scan_modify", page_no)
            if modify is not None:
                self._modify_mid_scan(scan, pos, int(modify.get("count", 10)))
            short = self._take_fault("short_scans", page_no)
            if short is not None:
                self._drop_ahead(scan, pos, int(short.get("drop", 1)))
            repeat = self._take_fault("repeat_rows", page_no)
            if repeat is not None:
                self._repeat(scan, pos, int(repeat.get("count", 1)), str(repeat.get("stale", "first")))
            clamp = self.options.get("clamp_limit")
            served = limit if not clamp else max(1, min(limit, int(clamp)))
            if self.options.get("hostile"):
                served = self._hostile_page(scan, pos, served)
            end = min(pos + served, len(scan.slots))
            chunk = scan.slots[pos:end]  # a copy (slice of a range, array or list)
            more = end < len(scan.slots)
            if more and self._take_fault("expire_scans", page_no, key="after_pages"):
                self._scans.pop(scan.id, None)  # the token handed out with this page is dead
        rows: list[Any]
        if table == "content":
            rows = [self.account.doc(i) for i in chunk]
        elif fields:
            rows = [orjson.loads(s if isinstance(s, bytes) else self.account.user_json(s)) for s in chunk]
        else:  # rendered rows go into the page as they are (orjson.Fragment: no re-encoding)
            rows = [orjson.Fragment(s if isinstance(s, bytes) else self.account.user_json(s)) for s in chunk]
        if fields:
            keep = set(fields)
            rows = [{k: v for k, v in r.items() if k in keep} for r in rows]
        token = self._sign(scan.id, end, binding) if more else ""
        extra: dict[str, Any] = {"total": scan.total}
        mode = self.options.get("next_key", "_next")
        if mode in ("_next", "both"):
            extra["_next"] = token
        if mode in ("next", "both"):
            extra["next"] = token
        if not rows and self.options.get("hostile"):
            return self._ok(None, **extra)  # the envelope's documented "no rows"
        return self._ok(rows, **extra)

    # -- bad days: deterministic options and hostile mode ------------------------------------------

    def _chance(self, what: str) -> bool:
        return self._rng.random() < HOSTILE_CHANCES[what] * float(self.options.get("hostile_odds") or 1.0)

    def _event(self, what: str, n: int = 1) -> None:
        self.hostile_events[what] = self.hostile_events.get(what, 0) + n

    def _hostile_page(self, scan: Scan, pos: int, served: int) -> int:
        """Seeded vendor-specific bad days for one page of a scan; answers the rows to serve."""
        if scan.table == "user":
            if self._chance("short"):
                self._drop_ahead(scan, pos, self._rng.randint(1, 3))
            if self._chance("repeat_first"):
                self._repeat(scan, pos, self._rng.randint(1, 3), "first")
            if self._chance("repeat_last"):
                self._repeat(scan, pos, self._rng.randint(1, 3), "last")
            if self._chance("modify"):
                self._modify_mid_scan(scan, pos, self._rng.randint(1, 4))
        if self._chance("clamp") and served > 1:
            self._event("clamp")
            served = self._rng.randint(1, served - 1)
        return served

    def _drop_ahead(self, scan: Scan, pos: int, count: int) -> None:
        """A short scan: ``count`` members ahead are never served; ``total`` does not change."""
        entries = scan.entries()
        for _ in range(min(count, len(entries) - pos)):
            gone = entries.pop(self._rng.randrange(pos, len(entries)))
            if isinstance(gone, int) and gone in scan.repeated:
                # the newest copy of a profile served twice: the scan may end with its stale copy
                self.changed_mid_scan.add(self.account.uid_of(gone))
            self._event("short")

    def _repeat(self, scan: Scan, pos: int, count: int, stale: str) -> None:
        """Profiles served twice in one scan after changing mid-scan. ``stale="first"``: one
        already served changes and is served again at the end (old copy first, new second).
        ``stale="last"``: one ahead changes, is served on this page, and its old rendering is
        served where it stood (new copy first, stale second)."""
        if scan.table != "user":
            return
        entries = scan.entries()
        if stale == "first":
            served = [e for e in entries[:pos] if isinstance(e, int)]
            picked = sorted(set(self._rng.sample(served, min(count, len(served))))) if served else []
            if picked:
                self._modify_slots(picked, {"mid_scan": True}, excuse=False)
                self._served_twice(scan, picked)
                entries.extend(picked)
                self._event("repeat_first", len(picked))
            return
        ahead = [i for i in range(pos, len(entries)) if isinstance(entries[i], int)]
        picked = sorted(self._rng.sample(ahead, min(count, len(ahead)))) if ahead else []
        slots = [entries[i] for i in picked]
        if not slots:
            return
        old = {s: self.account.user_json(s) for s in slots}
        self._modify_slots(slots, {"mid_scan": True}, excuse=False)
        self._served_twice(scan, slots)
        for i, s in zip(picked, slots, strict=True):
            entries[i] = old[s]  # the stale copy, where the profile stood
        entries[pos:pos] = slots  # the new copy, on this page
        self._event("repeat_last", len(slots))

    def _served_twice(self, scan: Scan, slots: list[int]) -> None:
        scan.repeated.update(slots)
        self.served_twice.update(self.account.uid_of(s) for s in slots)

    def _late_arrival(self) -> None:
        """A profile changes with a ``_modified`` up to :data:`LATE_MAX_S` in the past (an event
        processed late): it lands behind a cursor that may already have passed that instant."""
        acct = self.account
        if not acct.n_users:
            return
        slot = self._rng.randrange(acct.n_users)
        now = acct.clock.tick()
        late = now - self._rng.randint(1, LATE_MAX_S) * 1_000_000_000
        cur = acct.user(slot, with_segments=False)
        late = max(late, acct.modified[slot] + 1000)  # _modified never moves backwards
        acct.update_user(slot, {"visitct": str(int(cur.get("visitct") or 0) + 1), "late": True}, late)
        self.changed_mid_scan.add(acct.uid_of(slot))
        acct.version += 1
        self._event("late")

    def _take_fault(self, name: str, page: int, key: str = "page") -> dict[str, Any] | None:
        """The option ``name`` as a one-shot fault for page ``page`` of a scan (``times`` uses)."""
        rule = self.options.get(name)
        if not rule or page != int(rule.get(key, 1)):
            return None
        used = self._faults_used.get(name, 0)
        if used >= int(rule.get("times", 1)):
            return None
        self._faults_used[name] = used + 1
        return rule

    def _expire_old(self) -> None:
        ttl = self.options.get("scan_ttl_seconds")
        if ttl is None:
            return
        cutoff = time.monotonic() - float(ttl)
        for sid in [sid for sid, s in self._scans.items() if s.started < cutoff]:
            del self._scans[sid]

    def _modify_mid_scan(self, scan: Scan, pos: int, count: int) -> None:
        """Change profiles while the scan is read: half already returned, half still ahead."""
        if scan.table != "user" or not len(scan.slots):
            return
        behind = [scan.slots[i] for i in range(0, pos, max(1, pos // max(1, count // 2)))][: count // 2]
        ahead_n = len(scan.slots) - pos
        ahead = [scan.slots[pos + i] for i in range(0, ahead_n, max(1, ahead_n // max(1, count - len(behind))))]
        slots = sorted({s for s in (behind + ahead)[:count] if isinstance(s, int)})
        if slots:
            self._modify_slots(slots, {"mid_scan": True})
            self._event("modify", len(slots))

    # -- users: entity, collect ---------------------------------------------------------------------

    def _entity(self, request: Request, body: bytes) -> Response:
        table, field, value = (request.path_params[k] for k in ("table", "field", "value"))
        if table != "user":
            return error(404, "Not Found")
        with self._lock:
            slot = self.account.find_user(field, value)
            if slot is None:
                return error(404, "Not Found")
            row = self.account.user(slot)
        row["segments_all"] = [s.id for s in self.account.segments
                               if s.d.table == "user" and self.account.in_segment(s, slot)]
        meta = {"by_fields": list(self.account.BY_FIELDS), "format": "json", "name": "user"}
        return self._ok(row, meta=meta)

    def _collect(self, request: Request, body: bytes) -> Response:
        stream = request.path_params["stream"]
        dryrun = (request.query_params.get("dryrun") or "").lower() in ("true", "1")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return error(400, "Invalid JSON")
        events = payload if isinstance(payload, list) else [payload]
        accepted, rejected = [], 0
        for ev in events:
            flat = isinstance(ev, dict) and all(
                not isinstance(v, dict) and not (isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v))
                for v in ev.values()
            )
            if flat:
                accepted.append(ev)
            else:
                rejected += 1
        if not dryrun and accepted:
            with self._lock:
                self._apply_events(stream, accepted)
        data = {
            "message_count": len(accepted),
            "rejected_count": rejected,
            "content-type": request.headers.get("content-type", "application/json"),
            "droperrors": False,
            "dryrun": dryrun,
            "timestamp_field": request.query_params.get("timestamp_field", ""),
            "filename": request.query_params.get("filename", ""),
        }
        return self._ok(data)

    def _apply_events(self, stream: str, events: list[dict[str, Any]]) -> list[int]:
        acct = self.account
        now = acct.clock.tick()
        slots = []
        for ev in events:
            fields = {k: v for k, v in ev.items() if k not in ("_e", "_ts") and v is not None}
            slot = None
            for name in acct.BY_FIELDS:
                if isinstance(ev.get(name), str) and ev[name]:
                    slot = acct.find_user(name, ev[name])
                    break
            if slot is None:
                if "_uid" not in fields:
                    fields["_uid"] = acct.uid_of(acct.n_users)
                    fields["_uids"] = [fields["_uid"]]
                    fields["_num_aliases"] = 1
                slot = acct.add_user(fields, now)
            else:
                acct.update_user(slot, fields, now)
            slots.append(slot)
        st = acct.streams.setdefault(stream, {"ct": 0, "last_ns": now, "fields": sorted(events[0])[:4]})
        st["ct"] += len(events)
        st["last_ns"] = now
        acct.version += 1
        return slots

    def _modify_slots(self, slots: list[int], extra: dict[str, Any] | None = None, excuse: bool = True) -> int:
        """``excuse=False``: a mid-scan change whose new version the scan serves (repeat_rows)."""
        acct = self.account
        if extra and extra.get("mid_scan") and excuse:
            self.changed_mid_scan.update(acct.uid_of(s) for s in slots)
        now = acct.clock.tick()
        for s in slots:
            cur = acct.user(s, with_segments=False)
            fields = {"score_momentum": (int(cur.get("score_momentum") or 0) + 7) % 101,
                      "visitct": str(int(cur.get("visitct") or 0) + 1)}
            fields.update(extra or {})
            acct.update_user(s, fields, now)
        acct.version += 1
        return now

    # -- catalog, content, jobs ----------------------------------------------------------------------

    def _schemas(self, request: Request, body: bytes) -> Response:
        return self._ok({t: self.account.schema(t) for t in ("user", "content")})

    def _schema(self, request: Request, body: bytes) -> Response:
        table = request.path_params["table"]
        if table not in ("user", "content"):
            return error(404, "Not Found")
        return self._ok(self.account.schema(table))

    def _streams(self, request: Request, body: bytes) -> Response:
        with self._lock:
            return self._ok([self.account.stream_record(n) for n in sorted(self.account.streams)])

    def _content_docs(self, request: Request, body: bytes) -> Response:
        acct = self.account
        urls = list_param(request, "urls")
        ids = list_param(request, "ids")
        try:
            limit = int(request.query_params.get("limit") or 10)
        except ValueError:
            return error(400, "limit must be an integer")
        if urls or ids:
            wanted_urls, wanted_ids = set(urls or ()), set(ids or ())
            docs = [d for d in (acct.doc(i) for i in range(acct.n_docs))
                    if d["url"] in wanted_urls or d["id"] in wanted_ids]
        else:
            docs = sorted((acct.doc(i) for i in range(acct.n_docs)), key=lambda d: d["updated"], reverse=True)
            docs = docs[: max(1, limit)]
        return self._ok({"total": len(docs), "urls": docs})

    def _works(self, request: Request, body: bytes) -> Response:
        with self._lock:
            return self._ok([dict(w) for w in self.account.works])

    def _work(self, request: Request, body: bytes) -> Response:
        for w in self.account.works:
            if w["id"] == request.path_params["id"]:
                return self._ok(dict(w))
        return error(404, "Not Found")

    # -- control plane --------------------------------------------------------------------------------

    def state(self) -> dict[str, int]:
        acct = self.account
        with self._lock:
            return {
                "users": acct.n_users,
                "content": acct.n_docs,
                "segments": len(acct.segments),
                "segment_collections": len(acct.collections()),
                "streams": len(acct.streams),
                "jobs": len(acct.works),
                "live_scans": len(self._scans),
            }

    def mutate(self, operation: dict[str, Any]) -> dict[str, Any]:
        op = operation.get("op")
        acct = self.account
        if op == "warm_cache":  # changes no data: renders outside the lock, as scans do
            started = time.monotonic()
            cached = acct.warm_row_cache()
            return {"users": acct.n_users, "cached": cached, "seconds": round(time.monotonic() - started, 3)}
        with self._lock:
            if op == "modify_users":
                count = int(operation.get("count", 10))
                if count < 1:
                    raise MutationError("count must be positive")
                step = max(1, acct.n_users // count)
                offset = int(operation.get("offset", derive(acct.seed, "mod", acct.version) % step))
                slots = [(offset + i * step) % acct.n_users for i in range(count)]
                slots = sorted(set(slots))
                now = self._modify_slots(slots)
                return {"uids": [acct.uid_of(s) for s in slots], "modified": rfc3339(now)}
            if op == "add_users":
                count = int(operation.get("count", 10))
                now = acct.clock.tick()
                first = acct.n_users
                for i in range(count):
                    uid = acct.uid_of(first + i)
                    acct.add_user({"_uid": uid, "_uids": [uid], "_num_aliases": 1,
                                   "email": f"new.user{first + i}@example.com", "first_name": "New",
                                   "score_intensity": str(i % 101)}, now)
                acct.version += 1
                return {"uids": [acct.uid_of(first + i) for i in range(count)], "created": rfc3339(now)}
            if op == "advance_clock":
                acct.clock.offset_ns += int(float(operation.get("seconds", 0)) * 1e9)
                return {"now": rfc3339(acct.clock.now())}
            if op == "update_segment":
                seg = acct.segment(str(operation.get("id") or operation.get("slug") or ""))
                if seg is None:
                    raise MutationError("no such segment")
                seg.updated_ns = acct.clock.tick()
                seg.extra["description"] = str(operation.get("description", "changed"))
                acct.version += 1
                return {"id": seg.id, "updated": rfc3339(seg.updated_ns)}
            if op == "update_job":
                idx = int(operation.get("index", 0))
                if not 0 <= idx < len(acct.works):
                    raise MutationError("no such job")
                w = acct.works[idx]
                now = acct.clock.tick()
                w["statuscode"] = str(operation.get("statuscode", "completed"))
                w["updated"] = rfc3339(now).split(".")[0].rstrip("Z") + "Z"
                w["modified_ms"] = now // 1_000_000
                return {"id": w["id"], "updated": w["updated"]}
            if op == "update_content":
                count = int(operation.get("count", 5))
                now = acct.clock.tick()
                idxs = [(i * max(1, acct.n_docs // count)) % acct.n_docs for i in range(count)]
                for i in idxs:
                    acct.doc_overlay.setdefault(i, {}).update(
                        {"updated": rfc3339(now), "title": f"Updated doc {i}"})
                acct.version += 1
                return {"ids": [acct.doc(i)["id"] for i in idxs], "updated": rfc3339(now)}
            if op == "collect":
                events = operation.get("events") or []
                if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
                    raise MutationError("events must be a list of objects")
                slots = self._apply_events(str(operation.get("stream", "default")), events)
                return {"uids": [acct.user(s, with_segments=False)["_uid"] for s in slots]}
            if op == "expire_scans":
                n = len(self._scans)
                self._scans.clear()
                return {"expired": n}
            if op == "add_field":
                name, typ = str(operation.get("name") or ""), str(operation.get("type") or "string")
                if not name:
                    raise MutationError("add_field needs a name")
                try:
                    acct.add_schema_field(name, typ, int(operation.get("position", 0)))
                except ValueError as exc:
                    raise MutationError(str(exc)) from None
                count = int(operation.get("count", 10))
                slots = sorted({(i * max(1, acct.n_users // max(1, count))) % acct.n_users for i in range(count)})
                now = acct.clock.tick()
                for i, slot in enumerate(slots):
                    acct.update_user(slot, {name: str(i) if typ in ("int", "number") else f"{name}-{i}"}, now)
                acct.version += 1
                return {"uids": [acct.uid_of(s) for s in slots], "modified": rfc3339(now)}
            if op == "late_users":
                # profiles that change with a _modified in the past (events processed late)
                count, age = int(operation.get("count", 1)), float(operation.get("age_seconds", 60))
                step = max(1, acct.n_users // max(1, count))
                offset = int(operation.get("offset", derive(acct.seed, "late", acct.version) % step))
                slots = sorted({(offset + i * step) % acct.n_users for i in range(count)})
                late = acct.clock.tick() - int(age * 1e9)
                if any(acct.modified[slot] >= late for slot in slots):  # checked before any change
                    raise MutationError("a chosen profile changed after that instant; pick another offset")
                for slot in slots:
                    cur = acct.user(slot, with_segments=False)
                    acct.update_user(slot, {"visitct": str(int(cur.get("visitct") or 0) + 1), "late": True}, late)
                acct.version += 1
                return {"uids": [acct.uid_of(s) for s in slots], "modified": rfc3339(late)}
        raise MutationError(
            f"unknown lytics op {op!r}; known: modify_users, add_users, advance_clock, update_segment, "
            "update_job, update_content, collect, expire_scans, warm_cache, add_field, late_users"
        )

    def export(self, table: str) -> list[dict[str, Any]]:
        acct = self.account
        with self._lock:
            if table == "users":
                rows = [acct.user(s) for s in range(acct.n_users)]
                return sorted(rows, key=lambda r: r["_uid"])
            if table == "content_documents":
                return sorted((acct.doc(i) for i in range(acct.n_docs)), key=lambda d: d["id"])
            if table == "segments":
                return sorted((acct.segment_record(s) for s in acct.segments), key=lambda r: r["id"])
            if table == "segment_collections":
                return sorted(acct.collections(), key=lambda r: r["id"])
            if table == "segment_sizes":
                sizes = acct.sizes()
                return sorted((self._size_record(s, sizes) for s in acct.segments), key=lambda r: r["id"])
            if table == "streams":
                return [acct.stream_record(n) for n in sorted(acct.streams)]
            if table == "jobs":
                return sorted((dict(w) for w in acct.works), key=lambda r: r["id"])
            if table == "schema_fields":
                out = []
                for t in ("user", "content"):
                    for c in acct.schema(t)["columns"]:
                        out.append({"table": t, **c})
                return sorted(out, key=lambda r: (r["table"], r["as"]))
            if table == "buckets":
                return [{"_uid": acct.uid_of(s), "bucket": acct.bucket(s)} for s in range(acct.n_users)]
        raise KeyError(table)


def create_backend(seed: int = 1, scale: int = 1000, hostile: Any = 0, hostile_seed: Any = None,
                   **options: Any) -> LyticsBackend:
    return LyticsBackend(seed=seed, scale=scale, hostile=hostile, hostile_seed=hostile_seed, **options)

