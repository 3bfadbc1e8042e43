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
from collections.abc import Iterator
from typing import Any

import httpx
import orjson

from sources.common.errors import ConfigurationError, MalformedResponse
from sources.common.http import HttpClient, Request, RetryPolicy
from sources.common.paginators import JSONLinkPaginator
from sources.common.redact import register_secret

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
    " AND (timestamp > toDateTime({last_ts}) OR (timestamp = toDateTime({last_ts}) AND uuid > toUUID({last_uuid})))"
)
SUMMARY_SQL = (
    "SELECT toDate(timestamp) AS day, event, count() AS events, count(DISTINCT person_id) AS persons "
    "FROM events WHERE timestamp >= toDateTime({start}) AND timestamp < toDateTime({end}){after} "
    "GROUP BY day, event ORDER BY day, event LIMIT {limit}"
)
BOUNDS_SQL = "SELECT count() AS events, min(timestamp) AS first FROM events"


def retry_hint(response: httpx.Response) -> float | None:
    """Seconds PostHog asks to wait in a 429's ``detail`` (it sends no ``Retry-After``)."""
    if response.status_code != 429:
        return None
    try:
        detail = orjson.loads(response.content).get("detail", "")
    except (orjson.JSONDecodeError, AttributeError):
        detail = response.text[:500]
    m = _WAIT.search(str(detail))
    return float(m.group(1)) if m else None


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


class PostHogClient:
    """One PostHog host over one ``httpx.Client`` (thread-safe; shared by the run's resources)."""

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
            retry_after_hint=retry_hint,
        )

    # -- lists -------------------------------------------------------------------------------

    def check(self) -> dict[str, Any]:
        """One cheap request: the first page of projects the key can read."""
        return self.http.get_json("api/projects/", params={"limit": 100})

    def walk(self, path: str, params: dict[str, Any] | None = None) -> Iterator[list[dict[str, Any]]]:
        """Every page of a list endpoint, following ``next`` (style A, B or D)."""
        paginator = SameHostLink(self.http.base_url)
        request = Request("GET", path, params=dict(params or {}))
        yield from self.http.paginate(request, paginator, _results)

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.http.get_json(path, params=params)

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
        of this project's queries are in flight at once across the whole process."""
        body = {
            "query": {"kind": "HogQLQuery", "query": sql, "values": values},
            "name": name,
            "refresh": "force_blocking",
            "client_query_id": f"cdp-sync-{uuid.uuid4()}",
        }
        with self._slot(project_id):
            _, data = self.http.send(Request("POST", f"api/projects/{project_id}/query/", json=body))
        with self._lock:
            self.queries += 1
        if not isinstance(data, dict) or not isinstance(data.get("results"), list) \
                or not isinstance(data.get("columns"), list):
            raise MalformedResponse(
                f"posthog answered a query without columns and results (project {project_id}, {name})",
                vendor=VENDOR, url=f"api/projects/{project_id}/query/", body=str(data)[:500],
            )
        return data

    @staticmethod
    def rows(data: dict[str, Any]) -> list[dict[str, Any]]:
        columns = data["columns"]
        out = []
        for r in data["results"]:
            if not isinstance(r, list) or len(r) != len(columns):
                raise MalformedResponse("posthog query results do not match their columns", vendor=VENDOR)
            out.append(dict(zip(columns, r, strict=True)))
        return out

    def event_bounds(self, project_id: int) -> tuple[int, int | None]:
        """(number of events, microseconds of the first event or ``None``)."""
        data = self.query(project_id, BOUNDS_SQL, {}, "cdp_sync_event_bounds")
        rows = self.rows(data)
        if not rows:
            return 0, None
        count = int(rows[0].get("events") or 0)
        first = rows[0].get("first")
        if not count or not first:
            return 0, None
        return count, iso_to_us(first)

    def events_window(self, project_id: int, start_us: int, end_us: int, page_size: int) -> Iterator[list[dict[str, Any]]]:
        """Every event with ``start <= timestamp < end``, ascending on ``(timestamp, uuid)``, in
        pages of ``page_size`` rows. The position is the last row's own ``timestamp`` text and
        ``uuid``, compared by the server, so a page boundary inside a run of events sharing one
        microsecond neither drops nor repeats a row. A page shorter than the limit the server
        applied ends the window; a LIMIT the server clamped below ``page_size`` is detected from
        the response and honoured, so a clamp never passes for the end of the data."""
        if not 1 <= page_size <= MAX_QUERY_ROWS:
            raise ConfigurationError(f"posthog events page size must be 1..{MAX_QUERY_ROWS}", vendor=VENDOR)
        values: dict[str, Any] = {"start": us_to_iso(start_us), "end": us_to_iso(end_us)}
        position: tuple[str, str] | None = None
        while True:
            keyset = ""
            if position is not None:
                keyset = KEYSET
                values["last_ts"], values["last_uuid"] = position
            sql = EVENTS_SQL.replace("{keyset}", keyset).replace("{limit}", str(int(page_size)))
            data = self.query(project_id, sql, dict(values), "cdp_sync_events")
            missing = [c for c in EVENT_COLUMNS if c not in data["columns"]]
            if missing:
                raise MalformedResponse(f"posthog events query returned no {', '.join(missing)}", vendor=VENDOR)
            page = self.rows(data)
            applied = int(data.get("limit") or page_size)
            loads = orjson.loads
            for row in page:
                props = row["properties"]
                if isinstance(props, str):
                    row["properties"] = loads(props) if props else None
                row["project_id"] = project_id
            if page:
                last = (str(page[-1]["timestamp"]), str(page[-1]["uuid"]))
                if position is not None and last == position:
                    raise MalformedResponse("posthog repeated a page; the keyset did not advance", vendor=VENDOR)
                yield page
            if len(page) < min(page_size, applied):
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
            applied = int(data.get("limit") or page_size)
            if len(page) < min(page_size, applied):
                return
            days = {r["day"] for r in page}
            if len(days) > 1:
                raise MalformedResponse("posthog summary windows must cover one day", vendor=VENDOR)
            after = str(page[-1]["event"])

    def close(self) -> None:
        self.http.close()


def _results(body: Any) -> Any:
    """Rows of a list page: ``results`` of an envelope, or a bare list (group types)."""
    if isinstance(body, dict):
        return body.get("results")
    return body


def windows(start_us: int, end_us: int, size_us: int) -> list[tuple[int, int]]:
    """``[start, end)`` cut into consecutive windows of at most ``size_us``, their inner
    boundaries aligned to multiples of ``size_us`` (UTC midnights for one day)."""
    if end_us <= start_us:
        return []
    out = []
    a = start_us
    while a < end_us:
        b = min(end_us, (a // size_us + 1) * size_us)
        out.append((a, b))
        a = b
    return out


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


__all__ = ["PostHogClient", "retry_hint", "windows", "project_days", "us_to_iso", "iso_to_us", "parse_start",
           "cursor_text"]
