"""The Lytics HTTP conversation: auth, the response envelope, segment scans and their tokens.

This module knows nothing about dlt (contract: ``api/lytics.md``).

* **Auth**: the token goes in a raw ``Authorization: <token>`` header (no ``Bearer``), never in
  the URL, so it stays out of request logs; it is registered for redaction everywhere.
* **Envelope**: ``{"status", "message", "data", …}``; ``status`` may be an int or a string
  (go-lytics' "known bug"), ``request_id`` is optional, some answers carry only ``data``.
* **Scans** (``GET /api/segment/{id|slug}/scan``, ``POST /api/segment/scan`` with a FilterQL text
  body): ``limit=100`` (the documented maximum), ``start=`` empty on the first page, the opaque
  token read from top-level ``_next`` and, failing that, ``next`` (the docs' name); missing, null
  or ``""`` ends the scan. ``total`` is recorded to check that every member was read.
* **Expired tokens**: a scan token "must be recent" and the error for a stale one is unknown; a
  400 on a page that sent a token restarts that scan from its first page (bounded), and the
  destination's merge on the primary key absorbs the rows read twice.
* **Splits**: ``splits=<buckets>`` restricts a scan to hash buckets 0–99 of the users; the buckets
  partition the users, so scans of disjoint bucket groups read concurrently are, together, the
  single scan.
"""

from __future__ import annotations

import logging
import re
import threading
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from sources.common.concurrency import concurrent_pages
from sources.common.errors import ConfigurationError, MalformedResponse, RequestRejected
from sources.common.http import HttpClient, Request, RetryPolicy
from sources.common.paginators import JSONResponseCursorPaginator
from sources.common.redact import register_secret

from .settings import BUCKETS, MAX_SCAN_LIMIT, VENDOR
from .tables import distinct_hashes

logger = logging.getLogger("cdp_sync.lytics")

_SLUG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]*")


def unwrap(body: Any, what: str = "response") -> Any:
    """``data`` out of the envelope (callers that get here have passed :func:`envelope_problem`)."""
    if isinstance(body, dict) and "data" in body:
        return body["data"]
    if isinstance(body, dict) and "status" in body and "message" in body:
        return None  # an envelope without data (e.g. a validation answer)
    return body


def _status_problem(body: dict[str, Any]) -> str | None:
    status = body.get("status")
    if isinstance(status, int) and not isinstance(status, bool) and status >= 400:
        return f"an error envelope (status {status}: {str(body.get('message'))[:80]!r}) inside a 2xx answer"
    return None


def envelope_problem(body: Any, data: str = "any") -> str | None:
    """What is wrong with a parsed 2xx body for the envelope of contract §2.1 (``None``: fine).

    ``data`` is what ``data`` must hold: ``"list"`` (a list of objects, or ``null``: the
    documented empty answer), ``"object"``, or ``"any"``. A body without ``data`` is not an answer
    (the retry policy retries it), unless it is the documented ``status``/``message`` envelope
    and ``data="any"``."""
    if not isinstance(body, dict):
        return "not the Lytics envelope (an object with data)"
    problem = _status_problem(body)
    if problem:
        return problem
    if "data" not in body:
        if data == "any" and "status" in body and "message" in body:
            return None
        return "the Lytics envelope without its data"
    value = body["data"]
    if data == "list" and value is not None:
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            return "data that is not a list of objects"
    if data == "object" and not isinstance(value, dict):
        return "data that is not an object"
    return None


def scan_rows(body: Any) -> list[dict[str, Any]] | None:
    """The rows of one scan page, or ``None`` when the body is not a scan page (the common
    client then retries it): only the scan envelope (contract §3.3: ``data`` plus ``_next``,
    ``next`` or ``total``) is data; ``"data": null`` is the documented empty page. A body that
    parsed but lacks the envelope never ends a scan."""
    if not isinstance(body, dict) or "data" not in body or _status_problem(body):
        return None
    if not ("_next" in body or "next" in body or "total" in body):
        return None
    data = body["data"]
    if data is None:
        return []
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        return None
    return data


def _next_token(body: Any) -> Any:
    if not isinstance(body, dict):
        return None
    token = body.get("_next")
    if token in (None, ""):
        token = body.get("next")
    return token if token not in (None, "") else None


class ScanPaginator(JSONResponseCursorPaginator):
    """``_next`` (or ``next``) → ``start``; records ``total`` and refuses a token that repeats."""

    def __init__(self) -> None:
        super().__init__(cursor_path=_next_token, cursor_param="start")
        self.total: int | None = None
        self.pages = 0
        self._tokens: set[str] = set()

    def init_request(self, request: Request) -> None:
        params = dict(request.params or {})
        params["start"] = ""  # as go-lytics: an empty start is the first page
        request.params = params

    def update_state(self, response: httpx.Response, body: Any, data: list[Any]) -> None:
        super().update_state(response, body, data)
        self.pages += 1
        if isinstance(body, dict) and body.get("total") is not None:
            try:
                total = int(body["total"])
            except (TypeError, ValueError):
                total = None
            # the same on every page (contract §3.3); if it moves, the largest is the stricter
            if total is not None and (self.total is None or total > self.total):
                self.total = total
        if self.cursor is not None:
            if self.cursor in self._tokens:
                raise MalformedResponse(
                    "lytics scan handed back a token it had already given; refusing to loop",
                    vendor=VENDOR, url=str(response.request.url),
                )
            self._tokens.add(self.cursor)


@dataclass(frozen=True)
class ScanSpec:
    """What a scan reads: a saved segment (id or slug) or a FilterQL text."""

    segment: str | None = None
    ql: str | None = None

    def request(self, limit: int, splits: tuple[int, ...] | None, fields: tuple[str, ...] | None) -> Request:
        params: dict[str, Any] = {"limit": limit}
        if splits is not None:
            params["splits"] = ",".join(map(str, splits))
        if fields:
            params["fields"] = ",".join(fields)
        if self.segment is not None:
            return Request("GET", f"api/segment/{httpx.URL(self.segment).raw_path.decode()}/scan", params=params)
        return Request("POST", "api/segment/scan", params=params, content=(self.ql or "").encode(),
                       headers={"Content-Type": "text/plain"})

    def describe(self) -> str:
        return f"segment {self.segment}" if self.segment is not None else f"query {self.ql!r}"


def filter_ql(*, since: str | None = None, until: str | None = None, include: str | None = None,
              table: str = "user", start: str | None = None, end: str | None = None) -> str:
    """``FILTER … FROM <table>``: ``_modified`` in ``(since, until]`` and in ``[start, end)``
    (a backfill window), inside segment ``include``."""
    conds: list[str] = []
    for value in (since, until, start, end):
        if value is not None and '"' in value:
            raise ConfigurationError(f"lytics: bad time literal {value!r}", vendor=VENDOR)
    if since is not None:
        conds.append(f'_modified > "{since}"')
    if start is not None:
        conds.append(f'_modified >= "{start}"')
    if until is not None:
        conds.append(f'_modified <= "{until}"')
    if end is not None:
        conds.append(f'_modified < "{end}"')
    if include is not None:
        if not _SLUG.fullmatch(include):
            raise ConfigurationError(f"lytics segment slug {include!r} is not a valid slug", vendor=VENDOR)
        conds.append(f"INCLUDE {include}")
    expr = "*" if not conds else conds[0] if len(conds) == 1 else f"AND({', '.join(conds)})"
    return f"FILTER {expr} FROM {table}"


def _span(buckets: tuple[int, ...]) -> str:
    return f"{buckets[0]}-{buckets[-1]}" if len(buckets) > 1 else str(buckets[0])


def bucket_groups(parts: int) -> list[tuple[int, ...]]:
    """Buckets 0..99 in ``parts`` contiguous, disjoint groups covering all of them."""
    parts = max(1, min(parts, BUCKETS))
    size = -(-BUCKETS // parts)
    return [tuple(range(a, min(a + size, BUCKETS))) for a in range(0, BUCKETS, size)]


@dataclass
class ScanStats:
    """What one (possibly split) scan read, for the resource state and the logs."""

    scans: int = 0
    pages: int = 0
    rows: int = 0
    reported_total: int = 0
    restarts: int = 0
    split: bool = False
    #: scans that read more rows than their total (rows read twice, or members that joined)
    mismatches: list[str] = field(default_factory=list)
    #: scans that read fewer distinct rows than their total: the read is not complete
    short: list[str] = field(default_factory=list)
    #: scans whose pages carried no ``total`` (nothing to check against)
    no_total: int = 0

    def as_state(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scans": self.scans, "pages": self.pages, "scan_total": self.reported_total,
                               "restarts": self.restarts, "split": self.split}
        if self.mismatches:
            out["total_mismatches"] = self.mismatches[:10]
        if self.short:
            out["short_scans"] = self.short[:10]
        if self.no_total:
            out["scans_without_total"] = self.no_total
        return out


class LyticsClient:
    """One account's REST API over one ``httpx.Client`` (thread-safe; shared by resources)."""

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        timeout: float = 60.0,
        max_connections: int = 8,
        retry: RetryPolicy | None = None,
        scan_limit: int = MAX_SCAN_LIMIT,
        max_restarts: int = 3,
    ) -> None:
        key = (api_key or "").strip()
        if len(key) < 8 or any(c.isspace() for c in key) or not key.isprintable():
            raise ConfigurationError(
                "lytics API key is empty or malformed (an access token from Account > Security > Access "
                "Tokens); set SOURCES__LYTICS__API_KEY",
                vendor=VENDOR,
            )
        if key.lower().startswith("bearer"):
            raise ConfigurationError("lytics API key must be the raw token, without 'Bearer'", vendor=VENDOR)
        if not 1 <= scan_limit <= MAX_SCAN_LIMIT:
            raise ConfigurationError(f"lytics scan_limit must be between 1 and {MAX_SCAN_LIMIT}", vendor=VENDOR)
        base = base_url.rstrip("/")
        if base.endswith("/api"):  # go-lytics' LIOAPI form
            base = base[: -len("/api")]
        self.scan_limit = scan_limit
        self.max_restarts = max_restarts
        self._lock = threading.Lock()
        # the first 401 stops the shared client: every bucket scan still running (waiting out a
        # 429, a backoff, or about to ask for its next page) ends with the same error at once
        self.http = HttpClient(
            VENDOR,
            base + "/",
            headers={"Authorization": key},
            secrets=[key],
            timeout=timeout,
            max_connections=max_connections,
            retry=retry or RetryPolicy(),
        )

    # -- plain reads --------------------------------------------------------------------------

    def data(self, path: str, params: dict[str, Any] | None = None, shape: str = "any") -> Any:
        """``data`` of one enveloped answer; a 2xx without the envelope (or with ``data`` not of
        ``shape``) is retried, then :class:`MalformedResponse` naming the request and the body."""
        body = self.http.get_json(path, params=params, expect=lambda b: envelope_problem(b, shape))
        return unwrap(body, path)

    def rows(self, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The list in ``data`` (``"data": null`` is the documented empty answer)."""
        return self.data(path, params, "list") or []

    def accounts(self) -> list[dict[str, Any]]:
        rows = self.rows("api/account")
        for r in rows:  # the account list carries secrets: never let them reach a log
            register_secret(*(str(r.get(k) or "") for k in ("apikey", "dataapikey")))
        return rows

    def segments(self, table: str) -> list[dict[str, Any]]:
        return self.rows("api/segment", {"table": table, "valid": "all"})

    def segment(self, ident: str) -> dict[str, Any]:
        return self.data(f"api/segment/{httpx.URL(ident).raw_path.decode()}", shape="object")

    def sizes(self, ids: list[str], per_request: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i in range(0, len(ids), per_request):
            out += self.rows("api/segment/sizes", {"ids": ",".join(ids[i : i + per_request])})
        return out

    def schema(self, table: str) -> dict[str, Any]:
        data = self.data(f"api/schema/{table}", shape="object")
        if "columns" not in data and isinstance(data.get("fields"), list):  # the V1 OpenAPI variant
            data = {**data, "columns": data["fields"]}
        return data

    # -- scans ----------------------------------------------------------------------------------

    def scan_pages(
        self,
        spec: ScanSpec,
        *,
        splits: tuple[int, ...] | None = None,
        fields: tuple[str, ...] | None = None,
        stats: ScanStats | None = None,
        first: Callable[[ScanPaginator], bool] | None = None,
        key: str | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Every page of one scan. ``first(paginator)`` is called after the first page; if it
        answers False the scan stops there, before that page is yielded. A 400 on a page sent
        with a token (an expired scan) restarts the scan, at most ``max_restarts`` times.

        Only an empty ``_next`` on a page that parsed as a scan page ends the scan (anything else
        is retried by the common client). At the end, the distinct rows read (by ``key``) are
        compared with the scan's ``total``: fewer is a *short scan*, recorded in
        ``stats.short`` for the resource to fail on (or, if configured, to mark incomplete)."""
        stats = stats if stats is not None else ScanStats()
        restarts = 0
        while True:
            paginator = ScanPaginator()
            request = spec.request(self.scan_limit, splits, fields)
            stats.scans += 1
            got = 0
            keys = array("q")  # hashes of the keys read (8 bytes each), to count distinct rows against total
            try:
                for page in self.http.paginate(request, paginator, data_selector=scan_rows):
                    self.http.check_refused()  # another request of this run was refused
                    stats.pages += 1
                    if paginator.pages == 1 and first is not None and not first(paginator):
                        stats.scans -= 1
                        stats.pages -= 1
                        return
                    got += len(page)
                    stats.rows += len(page)
                    if key is not None:
                        keys.extend([hash(r.get(key)) for r in page])
                    yield page
            except RequestRejected as exc:
                if exc.status == 400 and paginator.cursor is not None and restarts < self.max_restarts:
                    restarts += 1
                    stats.restarts += 1
                    logger.warning(
                        "lytics: the scan token of %s was refused after %d pages (%s); restarting that scan "
                        "(restart %d of %d; rows read again are merged on the primary key)",
                        spec.describe(), paginator.pages, exc.body_excerpt, restarts, self.max_restarts,
                    )
                    continue
                raise
            distinct = distinct_hashes(keys) if key is not None else got
            if paginator.total is not None:
                stats.reported_total += paginator.total
                if distinct < paginator.total:
                    what = (f"{spec.describe()}{f' splits={_span(splits)}' if splits else ''}: "
                            f"total {paginator.total}, read {distinct}")
                    stats.short.append(what)
                    logger.warning("lytics: a scan ended short of its total (%s)", what)
                elif got != paginator.total:
                    stats.mismatches.append(f"{spec.describe()}: total {paginator.total}, read {got} ({distinct} distinct)")
            else:
                stats.no_total += 1
            return

    def scan(
        self,
        spec: ScanSpec,
        *,
        workers: int = 1,
        parts: int = 20,
        split_min_pages: int = 5,
        fields: tuple[str, ...] | None = None,
        stats: ScanStats | None = None,
        key: str | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Every row of a scan, in pages (``key``: the rows' primary key, for the total check). With ``workers > 1`` a scan whose first page says it
        is longer than ``split_min_pages`` pages is read instead as ``parts`` bucket scans
        (``splits``) run ``workers`` at a time; a short scan stays one sequential scan (one
        request when nothing changed)."""
        stats = stats if stats is not None else ScanStats()
        decided: dict[str, bool] = {}

        first_total: list[int | None] = [None]

        def first(p: ScanPaginator) -> bool:
            long = p.has_next_page and p.total is not None and p.total > self.scan_limit * split_min_pages
            decided["split"] = workers > 1 and long
            first_total[0] = p.total
            return not decided["split"]

        yield from self.scan_pages(spec, fields=fields, stats=stats, first=first, key=key)
        if not decided.get("split"):
            return
        stats.split = True
        groups = bucket_groups(parts)
        tasks = [
            (lambda g=g: self.scan_pages(spec, splits=g, fields=fields, stats=stats, key=key))  # type: ignore[misc]
            for g in groups
        ]
        before = stats.reported_total
        yield from concurrent_pages(tasks, workers, name="lytics-scan")
        # the bucket scans partition the scan: together they count what its first page counted
        split_total = stats.reported_total - before
        if first_total[0] is not None and split_total < first_total[0]:
            what = f"{spec.describe()}: total {first_total[0]}, its bucket scans' totals add up to {split_total}"
            stats.short.append(what)
            logger.warning("lytics: a scan ended short of its total (%s)", what)

    def close(self) -> None:
        self.http.close()
