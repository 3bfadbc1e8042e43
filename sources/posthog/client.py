"""The PostHog HTTP conversation: personal-key auth, the list envelopes, HogQL queries, windows.

* **Auth.** ``Authorization: Bearer phx_…`` only (never the body or the query string, where a key
  would end up in logs). A project token (``phc_…``, the ingestion key) is refused before any
  request: the private API answers it with 401.
* **Lists** (projects, persons, cohorts, flags, annotations, insights, definitions, groups) follow
  ``next`` verbatim — PostHog builds it from the request's own host and keeps every parameter; the
  persons list is newest first with ``next`` iff the page was full, groups use an opaque cursor.
  A ``next`` on another host or scheme (a self-hosted instance behind a proxy that rewrites its own
  address) is rebased onto the configured base URL, so credentials never leave it.
* **HogQL** (``POST /api/projects/{id}/query/``) with ``refresh: "force_blocking"`` (cached
  results would be stale), ``{placeholder}`` values (never string interpolation) and at most
  :data:`~sources.posthog.settings.MAX_QUERY_CONCURRENCY` queries in flight per project, shared
  by every resource of the run and by every client of the process on the same host (backfill
  windows running side by side each have a client; PostHog's limit is per project).
* **Throttling.** PostHog's 429 carries no ``Retry-After``; the wait is in the body's ``detail``
  (``Request was throttled. Expected available in 12 seconds.``), handed to the shared retry
  policy as the vendor hint. A 429 for exhausted query concurrency says no wait and backs off
  exponentially.
* **Events** are read by window ``[start, end)`` with a keyset on ``(timestamp, uuid)`` evaluated
  by the server (``timestamp > t OR (timestamp = t AND uuid > u)``, ClickHouse UUID order), pages
  of ``LIMIT n`` in ``ORDER BY timestamp, uuid``, until a page is shorter than the limit in force.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson

from sources.common.errors import ConfigurationError, MalformedResponse
from sources.common.http import HttpClient, Request, RetryPolicy, describe_body
from sources.common.paginators import JSONLinkPaginator
from sources.common.redact import register_secret

from .columnar import EventPage
from .keys import KeySet
from .settings import EVENT_COLUMNS, MAX_QUERY_CONCURRENCY, MAX_QUERY_ROWS, VENDOR

logger = logging.getLogger("cdp_sync.posthog")

_WAIT = re.compile(r"Expected available in (\d+(?:\.\d+)?) seconds?", re.I)
US = 1_000_000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

EVENTS_SQL = (
    "SELECT uuid, event, distinct_id, timestamp, created_at, person_id, `$session_id` AS session_id, "
    "elements_chain, properties FROM events "
    "WHERE timestamp >= toDateTime({start}) AND timestamp < toDateTime({end}){keyset} "
    "ORDER BY timestamp, uuid LIMIT {limit}"
)
KEYSET = (
    " AND (timestamp > toDateTime({last_ts}) OR (timestamp = toDateTime({last_ts}) AND uuid >= toUUID({last_uuid})))"
)
SUMMARY_SQL = (
    "SELECT toDate(timestamp) AS day, event, count() AS events, count(DISTINCT person_id) AS persons "
    "FROM events WHERE timestamp >= toDateTime({start}) AND timestamp < toDateTime({end}){after} "
    "GROUP BY day, event ORDER BY day, event LIMIT {limit}"
)
BOUNDS_SQL = "SELECT count() AS events, min(timestamp) AS first FROM events"
COUNT_SQL = ("SELECT count() AS events FROM events "
             "WHERE timestamp >= toDateTime({start}) AND timestamp < toDateTime({end})")
DISTINCT_SQL = COUNT_SQL.replace("count()", "count(DISTINCT uuid)")


def retry_after_hint(response: httpx.Response) -> float | None:
    """Seconds PostHog asks to wait in a 429's ``detail`` (it sends no ``Retry-After``):
    ``Request was throttled. Expected available in 12 seconds.``; ``None`` for any other answer
    (a concurrency 429 names no wait). Handed to the shared client as ``retry_after_hint``."""
    if response.status_code != 429:
        return None
    try:
        body = orjson.loads(response.content)
        detail = body.get("detail", "") if isinstance(body, dict) else ""
    except orjson.JSONDecodeError:
        detail = response.text[:500]
    m = _WAIT.search(str(detail))
    return float(m.group(1)) if m else None


#: the earlier name, kept for callers of the previous release
retry_hint = retry_after_hint


def us_to_iso(us: int) -> str:
    """Microseconds since the epoch as fixed-width ISO 8601 UTC (sorts as text)."""
    d = EPOCH + dt.timedelta(microseconds=us)
    return (f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}."
            f"{d.microsecond:06d}Z")


def cursor_text(timestamp: str) -> str:
    """A row's ``timestamp`` (ISO 8601, any offset) as the fixed-width UTC text of
    :func:`us_to_iso`; UTC values with microseconds are rewritten without parsing."""
    if len(timestamp) == 32 and timestamp.endswith("+00:00") and timestamp[10] == "T":
        return timestamp[:26] + "Z"
    return us_to_iso(iso_to_us(timestamp))


def iso_to_us(text: str) -> int:
    """An ISO 8601 timestamp with an offset (or ``Z``) as microseconds since the epoch (UTC)."""
    value = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - EPOCH
    return (delta.days * 86400 + delta.seconds) * US + delta.microseconds


class BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        request.headers["Authorization"] = self._header
        yield request


class SameHostLink(JSONLinkPaginator):
    """``next`` followed verbatim when it is on the configured host; rebased onto it otherwise."""

    def __init__(self, base: httpx.URL) -> None:
        super().__init__("next")
        self.base = base
        self.rebased = 0

    def update_request(self, request: Request) -> None:
        assert self._next is not None
        url = httpx.URL(self._next)
        if url.is_absolute_url and (url.scheme, url.host, url.port) != (self.base.scheme, self.base.host, self.base.port):
            self.rebased += 1
            if self.rebased == 1:
                logger.warning("posthog: next link on %s://%s; following it on the configured %s instead",
                               url.scheme, url.host, self.base.host)
            url = self.base.copy_with(raw_path=url.raw_path)
        request.url = str(url)
        request.params = None


#: query slots per (host, project, limit), shared by every client of the process
_QUERY_SLOTS: dict[tuple[str, int, int], threading.BoundedSemaphore] = {}
_QUERY_SLOTS_LOCK = threading.Lock()


class IncompleteRead(MalformedResponse):
    """A read that ended short of the count PostHog itself reports for it (a HogQL ``count()``
    over the same range, a list's ``count``): not complete, so nothing of it is committed."""


class PostHogClient:
    """One PostHog host over one ``httpx.Client`` (thread-safe; shared by the run's resources).

    **A refused key stops the whole client.** The first 401 any request meets marks the client
    stopped: every other thread of the run that is waiting (out a 429's stated wait, a backoff, a
    hold while throttled, a free query slot) or about to send raises the same error at once, so
    the run ends with one line instead of finishing every other window's retries first."""

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        max_connections: int = 12,
        query_concurrency: int = MAX_QUERY_CONCURRENCY,
    ) -> None:
        key = (api_key or "").strip()
        if not key or any(c.isspace() for c in key):
            raise ConfigurationError(
                "posthog api_key is empty or malformed; create a personal API key (phx_…) under "
                "Settings > Personal API keys and set SOURCES__POSTHOG__API_KEY",
                vendor=VENDOR,
            )
        if key.startswith("phc_"):
            register_secret(key)
            raise ConfigurationError(
                "posthog api_key is a project token (phc_…), the public ingestion key; the private API "
                "needs a personal API key (phx_…) with read scopes",
                vendor=VENDOR,
            )
        if not 1 <= query_concurrency <= MAX_QUERY_CONCURRENCY:
            raise ConfigurationError(
                f"posthog query_concurrency must be between 1 and {MAX_QUERY_CONCURRENCY} (PostHog's limit per project)",
                vendor=VENDOR,
            )
        self.query_concurrency = query_concurrency
        self._lock = threading.Lock()
        self.queries = 0
        self.http = HttpClient(
            VENDOR,
            base_url.rstrip("/") + "/",
            auth=BearerAuth(key),
            secrets=[key],
            timeout=timeout,
            max_connections=max_connections,
            retry=retry or RetryPolicy(),
            retry_after_hint=retry_after_hint,
        )

    def _send(self, request: Request, expect: Callable[[Any], str | None] | None = None) -> tuple[httpx.Response, Any]:
        # the first 401 stops the shared client: every other thread's wait is cut short
        return self.http.send(request, expect=expect)

    # -- lists -------------------------------------------------------------------------------

    def check(self) -> dict[str, Any]:
        """One cheap request: the first page of projects the key can read."""
        return self._send(Request("GET", "api/projects/", params={"limit": 100}), _list_problem)[1]

    def walk(self, path: str, params: dict[str, Any] | None = None, *, key: str = "id",
             total: bool = False) -> Iterator[list[dict[str, Any]]]:
        """Every row of a list endpoint once, following ``next`` (styles A, B and D).

        Only a page without ``next`` ends the walk; a 200 that is not a page (no ``results``
        list, no ``next`` key) is retried, then an error. Offset lists (a ``next`` carrying
        ``offset``) move under a walk: a row deleted (or merged) on an earlier page shifts every
        later row one place up, so the row at the page boundary would never be read. So each page
        after the first is asked from one row before where ``next`` points and must start on a
        row already read (by ``key``); rows added in front only push read rows into the page.
        A page that starts on an unread row means the list shifted: the walk steps back a page
        and reads again. A row is yielded once per walk. ``total`` asks a list whose ``count`` is optional (persons) for it
        at the start and the end; a walk that read fewer distinct rows than both counts raises
        :class:`IncompleteRead` (a DRF list reports ``count`` on every page)."""
        request = Request("GET", path, params={**(params or {}), **({"include_total": "true"} if total else {})})
        link = SameHostLink(self.http.base_url)
        seen = KeySet()
        counts: list[int] = []
        steps = shifts = 0
        while True:
            steps += 1
            response, body = self._send(request, _list_problem)
            rows = _results(body)
            if isinstance(body, dict) and isinstance(body.get("count"), int):
                counts.append(body["count"])
            offset = _offset(response.request.url)
            keys = [r.get(key) if isinstance(r, dict) else None for r in rows]
            if offset and len(seen) and not (keys and keys[0] in seen):
                # the page does not start on a row already read: rows before it may have been
                # deleted or merged, shifting an unread row in front of the page; step back
                shifts += 1
                if shifts > MAX_LIST_SHIFTS:
                    raise MalformedResponse(
                        f"posthog list {path} kept shifting under the walk ({shifts} times); rerun",
                        vendor=VENDOR, method="GET", url=str(response.request.url))
                if shifts == 1:
                    logger.warning("posthog: %s shifted while it was read (rows deleted or merged on an earlier "
                                   "page); stepping back to re-read the page boundary", path)
                back = _limit(response.request.url) or max(1, len(rows))
                request.url = _with_offset(str(response.request.url), offset - back)
                request.params = None
                continue
            fresh = [r for r, k in zip(rows, keys, strict=True) if seen.add(k) or k is None]
            if fresh:
                yield fresh
            link.update_state(response, body, rows)
            if not link.has_next_page:
                break
            if steps > MAX_LIST_PAGES:
                raise MalformedResponse(f"posthog list {path} did not end after {MAX_LIST_PAGES} pages",
                                        vendor=VENDOR, method="GET", url=str(response.request.url))
            link.update_request(request)
            nxt = _offset(httpx.URL(request.url))
            if nxt:  # one row of overlap: the anchor
                request.url = _with_offset(request.url, nxt - 1)
            if total:
                request.url = str(httpx.URL(request.url).copy_remove_param("include_total"))
        if total:
            _, body = self._send(Request("GET", path, params={**(params or {}), "limit": 1,
                                                              "include_total": "true"}), _list_problem)
            if isinstance(body, dict) and isinstance(body.get("count"), int):
                counts.append(body["count"])
        if counts and len(seen) < min(counts[0], counts[-1]):
            raise IncompleteRead(
                f"posthog list {path} ended after {len(seen):,} rows but PostHog counts "
                f"{counts[0]:,} at the start and {counts[-1]:,} at the end of the walk; nothing of it "
                "is committed, rerun", vendor=VENDOR, method="GET", url=path)

    def get(self, path: str, params: dict[str, Any] | None = None,
            expect: Callable[[Any], str | None] | None = None) -> Any:
        return self._send(Request("GET", path, params=params), expect)[1]

    def projects(self) -> list[dict[str, Any]]:
        return [p for page in self.walk("api/projects/", {"limit": 100}) for p in page]

    # -- HogQL -------------------------------------------------------------------------------

    def _slot(self, project_id: int) -> threading.BoundedSemaphore:
        key = (str(self.http.base_url), int(project_id), self.query_concurrency)
        with _QUERY_SLOTS_LOCK:
            slot = _QUERY_SLOTS.get(key)
            if slot is None:
                slot = _QUERY_SLOTS[key] = threading.BoundedSemaphore(self.query_concurrency)
            return slot

    def query(self, project_id: int, sql: str, values: dict[str, Any], name: str) -> dict[str, Any]:
        """Run one HogQL query (fresh, never from PostHog's cache); at most ``query_concurrency``
        of this project's queries are in flight at once across the whole process. A 200 without
        ``columns`` and ``results`` (or with a row that does not match the columns) is retried,
        then an error naming the request and the body."""
        body = {
            "query": {"kind": "HogQLQuery", "query": sql, "values": values},
            "name": name,
            "refresh": "force_blocking",
            "client_query_id": f"cdp-sync-{uuid.uuid4()}",
        }
        slot = self._slot(project_id)
        while not slot.acquire(timeout=0.5):
            self.http.check_refused()
        try:
            _, data = self._send(Request("POST", f"api/projects/{project_id}/query/", json=body), _query_problem)
        finally:
            slot.release()
        with self._lock:
            self.queries += 1
        return data

    @staticmethod
    def rows(data: dict[str, Any]) -> list[dict[str, Any]]:
        """The positional ``results`` as dicts (checked against ``columns`` when received)."""
        columns = data["columns"]
        return [dict(zip(columns, r, strict=True)) for r in data["results"]]

    def event_bounds(self, project_id: int) -> tuple[int, int | None]:
        """(number of events, microseconds of the first event or ``None``)."""
        data = self.query(project_id, BOUNDS_SQL, {}, "cdp_sync_event_bounds")
        rows = self.rows(data)
        if len(rows) != 1:
            raise MalformedResponse(f"posthog answered {len(rows)} rows to an aggregate of one row "
                                    f"(project {project_id})", vendor=VENDOR, url=f"api/projects/{project_id}/query/")
        count = int(rows[0].get("events") or 0)
        first = rows[0].get("first")
        if not count or not first:
            return 0, None
        return count, iso_to_us(first)

    def count_events(self, project_id: int, start_us: int, end_us: int) -> int:
        """PostHog's own ``count()`` of the events with ``start <= timestamp < end`` (copies of one
        event ClickHouse has not merged count each; the walk reads each of them too)."""
        return self.count_between(project_id, COUNT_SQL, start_us, end_us, "cdp_sync_event_count", "events")

    def count_distinct_events(self, project_id: int, start_us: int, end_us: int) -> int:
        """PostHog's ``count(DISTINCT uuid)`` of the events with ``start <= timestamp < end``: what
        a destination holding each event once should hold (copies of one event count once)."""
        return self.count_between(project_id, DISTINCT_SQL, start_us, end_us, "cdp_sync_event_count_distinct",
                                  "events")

    def count_between(self, project_id: int, sql: str, start_us: int, end_us: int, name: str, column: str) -> int:
        """The one-row answer of a HogQL ``count()`` query over ``start <= … < end`` (``sql`` takes
        ``{start}`` and ``{end}`` and names its count ``column``); any other answer fails in one line."""
        data = self.query(project_id, sql, {"start": us_to_iso(start_us), "end": us_to_iso(end_us)}, name)
        rows = self.rows(data)
        if len(rows) != 1 or not isinstance(rows[0].get(column), (int, str)):
            raise MalformedResponse(f"posthog answered {len(rows)} rows to a count() of {column} (project {project_id})",
                                    vendor=VENDOR, url=f"api/projects/{project_id}/query/", body=str(data)[:300])
        return int(rows[0][column])

    def events_window(self, project_id: int, start_us: int, end_us: int, page_size: int) -> Iterator[list[dict[str, Any]]]:
        """:meth:`event_pages` as lists of dict rows (``properties`` parsed, ``project_id`` added)."""
        for page in self.event_pages(project_id, start_us, end_us, page_size):
            yield page.rows()

    def event_pages(self, project_id: int, start_us: int, end_us: int, page_size: int) -> Iterator[EventPage]:
        """Every event with ``start <= timestamp < end``, ascending on ``(timestamp, uuid)``, in
        pages of ``page_size`` rows, each an :class:`~sources.posthog.columnar.EventPage` (the typed
        Arrow table and the positional rows). The position is the last row's own ``timestamp``
        text and ``uuid``, compared by the server, so a page boundary inside a run of events
        sharing one microsecond neither drops nor repeats a row. A page shorter than the limit the
        server applied ends the window; a LIMIT the server clamped below ``page_size`` is detected
        from the response and honoured, so a clamp never passes for the end of the data."""
        if not 1 <= page_size <= MAX_QUERY_ROWS:
            raise ConfigurationError(f"posthog events page size must be 1..{MAX_QUERY_ROWS}", vendor=VENDOR)
        values: dict[str, Any] = {"start": us_to_iso(start_us), "end": us_to_iso(end_us)}
        position: tuple[str, str] | None = None
        carried = 0  # rows equal to the position at the end of the previous page
        while True:
            keyset = ""
            if position is not None:
                keyset = KEYSET
                values["last_ts"], values["last_uuid"] = position
            sql = EVENTS_SQL.replace("{keyset}", keyset).replace("{limit}", str(int(page_size)))
            data = self.query(project_id, sql, dict(values), "cdp_sync_events")
            columns = data["columns"]
            missing = [c for c in EVENT_COLUMNS if c not in columns]
            if missing:
                raise MalformedResponse(f"posthog events query returned no {', '.join(missing)}", vendor=VENDOR)
            ts, key = columns.index("timestamp"), columns.index("uuid")
            results = data["results"]
            applied = _applied_limit(data, page_size)
            full = len(results) >= min(page_size, applied)
            last = (str(results[-1][ts]), str(results[-1][key])) if results else None
            if position is not None:
                if full and last == position:
                    raise MalformedResponse("posthog repeated a page; the keyset did not advance", vendor=VENDOR)
                # the page starts at the position itself (``>=``): every stored copy of the last
                # event comes back, the ones read already are skipped, so a copy the previous page
                # boundary split off is read (and counted) like any row
                equal = 0
                while equal < len(results) and (str(results[equal][ts]), str(results[equal][key])) == position:
                    equal += 1
                skip = min(carried, equal)
                if skip:
                    results = results[skip:]
            page = EventPage.build(columns, results, project_id) if results else None
            carried = 0
            while full and carried < len(results) and \
                    (str(results[-1 - carried][ts]), str(results[-1 - carried][key])) == last:
                carried += 1
            data = results = None  # the page holds what it needs; the parsed answer can go
            if page is not None:
                yield page
            if not full:
                return
            position = last

    def summaries_window(self, project_id: int, start_us: int, end_us: int,
                         page_size: int = MAX_QUERY_ROWS, *, day: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """Daily counts per event (events, distinct persons) for ``[start, end)``: one project day
        (HogQL's ``toDate`` in the project time zone). More groups than one query returns are paged
        by event name. ``day``, when given, is checked against every row: a row of another day
        means PostHog's time zone for the project is not the one its settings show, and the counts
        would be split across windows, so the run stops rather than load partial counts."""
        values: dict[str, Any] = {"start": us_to_iso(start_us), "end": us_to_iso(end_us)}
        after: str | None = None
        while True:
            clause = ""
            if after is not None:
                clause = " AND event > {after_event}"
                values["after_event"] = after
            sql = SUMMARY_SQL.replace("{after}", clause).replace("{limit}", str(int(page_size)))
            data = self.query(project_id, sql, dict(values), "cdp_sync_event_summaries")
            page = self.rows(data)
            for row in page:
                row["project_id"] = project_id
                if day is not None and str(row.get("day")) != day:
                    raise MalformedResponse(
                        f"posthog counted events of {row.get('day')} in the window of {day} (project {project_id}): "
                        "the project's time zone changed or differs from its settings; rerun to re-plan the days",
                        vendor=VENDOR,
                    )
            if page:
                yield page
            applied = _applied_limit(data, page_size)
            if len(page) < min(page_size, applied):
                return
            days = {r["day"] for r in page}
            if len(days) > 1:
                raise MalformedResponse("posthog summary windows must cover one day", vendor=VENDOR)
            after = str(page[-1]["event"])

    def close(self) -> None:
        self.http.close()


#: a walk steps back at most this often (each step: one re-read page) before it gives up
MAX_LIST_SHIFTS = 50
#: pages of one list walk at most (a list whose ``next`` never ends is an error, not a hang)
MAX_LIST_PAGES = 1_000_000


def _results(body: Any) -> Any:
    """Rows of a list page: ``results`` of an envelope, or a bare list (group types)."""
    if isinstance(body, dict):
        return body.get("results")
    return body


def _list_problem(body: Any) -> str | None:
    """What is wrong with a list page (``None``: it is one): the documented envelope is an object
    with a ``results`` list and a ``next`` key (``null`` at the end)."""
    if not isinstance(body, dict):
        return f"{describe_body(body)} where a page of a list was expected"
    if not isinstance(body.get("results"), list):
        return f"{describe_body(body)} and no list of results"
    if "next" not in body:
        return f"{describe_body(body)} and no next key"
    return None


def _query_problem(body: Any) -> str | None:
    """What is wrong with a HogQL answer (``None``: it is one): ``columns`` and positional
    ``results`` rows as long as ``columns``."""
    if not isinstance(body, dict):
        return f"{describe_body(body)} where a query result was expected"
    columns, results = body.get("columns"), body.get("results")
    if not isinstance(columns, list) or not isinstance(results, list):
        return f"{describe_body(body)} and no columns and results"
    n = len(columns)
    # per row, but at C speed (``map``): a large page costs microseconds here
    if results and (set(map(type, results)) != {list} or set(map(len, results)) != {n}):
        return f"a result row that does not match its {n} columns"
    return None


def _applied_limit(data: dict[str, Any], asked: int) -> int:
    """The LIMIT the server applied (it reports it as ``limit``; a clamp shows there)."""
    try:
        applied = int(data.get("limit") or asked)
    except (TypeError, ValueError):
        return asked
    return applied if applied > 0 else asked


def _offset(url: httpx.URL) -> int | None:
    raw = url.params.get("offset")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _limit(url: httpx.URL) -> int | None:
    raw = url.params.get("limit")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _with_offset(url: str, offset: int) -> str:
    return str(httpx.URL(url).copy_set_param("offset", str(max(0, int(offset)))))


def project_days(first: int | str, last_us: int, tz_name: str) -> list[tuple[str, int, int]]:
    """The project's calendar days from the one holding ``first`` (microseconds, or a
    ``YYYY-MM-DD`` day) to the one holding ``last_us``: ``(YYYY-MM-DD, start µs, end µs)`` with
    each day's bounds in UTC (a day in a zone with daylight saving can last 23 or 25 hours)."""
    import pendulum

    tz = pendulum.timezone(tz_name or "UTC")
    if isinstance(first, str):
        d = dt.date.fromisoformat(first)
        day = pendulum.datetime(d.year, d.month, d.day, tz=tz)
    else:
        day = pendulum.instance(EPOCH + dt.timedelta(microseconds=first)).in_timezone(tz).start_of("day")
    last = pendulum.instance(EPOCH + dt.timedelta(microseconds=last_us)).in_timezone(tz).start_of("day")
    out = []
    guard = 0
    while day <= last and guard < 100_000:
        nxt = day.add(days=1)
        out.append((day.to_date_string(), _pendulum_us(day), _pendulum_us(nxt)))
        day = nxt
        guard += 1
    return out


def _pendulum_us(value: Any) -> int:
    delta = value.in_timezone("UTC") - EPOCH
    return (delta.days * 86400 + delta.seconds) * US + delta.microseconds


def parse_start(value: Any) -> int:
    """A configured ``start_date`` (ISO date or timestamp; no offset means UTC) as microseconds."""
    import pendulum

    try:
        parsed = pendulum.parse(str(value), tz="UTC")
    except Exception:  # noqa: BLE001 - pendulum raises several types
        raise ConfigurationError(f"posthog start_date is not an ISO 8601 date or timestamp: {value!r}",
                                 vendor=VENDOR) from None
    if not isinstance(parsed, pendulum.DateTime):
        parsed = pendulum.datetime(parsed.year, parsed.month, parsed.day, tz="UTC")
    return _pendulum_us(parsed)


__all__ = ["PostHogClient", "IncompleteRead", "retry_after_hint", "retry_hint", "project_days", "us_to_iso", "iso_to_us", "parse_start",
           "cursor_text"]
