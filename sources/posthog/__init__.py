"""PostHog: events, daily event summaries, persons, projects and the project objects.

Read this file and you know what is loaded (tables are named after resources):

| resource             | primary key                              | write disposition | cursor                                  |
|----------------------|------------------------------------------|-------------------|-----------------------------------------|
| events               | uuid                                     | merge             | (timestamp, uuid) per project, lookback 1 h |
| event_summaries      | project_id, day, event                   | merge             | day per project, re-reads the last 3 days |
| persons              | uuid                                     | merge             | none: every person each run (no server-side cursor exists) |
| projects             | id                                       | merge             | none                                    |
| cohorts, feature_flags, annotations, insights, event_definitions, property_definitions, experiments, actions, dashboards, surveys | id | merge | none |
| groups               | project_id, group_type_index, group_key  | merge             | none (cursor pagination per group type) |
| sessions             | project_id, session_id                   | merge (newest wins) | ($start_timestamp, session_id) per project, lookback 25 h (:mod:`.sessions`) |
| session_recordings   | id                                       | merge             | start_time per project (date_from/date_to windows), lookback 24 h |

The REST lists (every row above from ``cohorts`` down) are declared in :mod:`sources.posthog.lists`,
one row each, and turned into resources by :func:`sources.common.rest_lists.list_resource`; a key
without a list's scope skips that resource with one warning naming the scope.

Projects are discovered (``GET /api/projects/``) or configured (``project_ids``); every
incremental resource keeps its state per project. ``events`` reads HogQL (``POST /query/``) in
windows of at most one day, keyset-paginated on ``(timestamp, uuid)`` — the server compares, in
ClickHouse UUID order — and fetches up to three windows of a project at once (PostHog's limit of
three concurrent queries per project, shared with ``event_summaries``). Each run re-reads
``events_lookback_seconds`` behind its cursor for late events and drops rows it re-reads unchanged
(fingerprints of the rows inside the lookback window are kept in state), so a run with nothing new
loads nothing. State moves only when the load package that carries it is committed.

Bounded mode (``window_start``/``window_end``, see ``sources/common/window.py``): the source
returns only ``events``, ``event_summaries`` and ``sessions`` (:data:`BACKFILL_RESOURCES`), reading
exactly ``[window_start, window_end)`` of every project through :func:`read_events_window`,
:func:`read_summary_day` and :func:`.sessions.read_sessions_window`, without cursor state.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.compute as pc
from dlt.sources import DltResource

from sources.common.arrow import TIMESTAMP, batched, quiet_arrow_hint_warning
from sources.common.concurrency import concurrent_pages
from sources.common.cursor import LookbackCursor
from sources.common.errors import AuthError, ConfigurationError, RequestRejected
from sources.common.hints import merge_run_hints
from sources.common.http import RetryPolicy
from sources.common.lease import SharedClient
from sources.common.progress import ProgressLog, record_requests
from sources.common.rest_lists import Parent, Vendor, list_resource
from sources.common.window import RowCount, Window, windows

from . import settings as S
from .client import (
    IncompleteRead,
    PostHogClient,
    cursor_text,
    iso_to_us,
    parse_start,
    project_days,
    us_to_iso,
)
from .columnar import EventPage, UuidSet, batched_tables
from .lists import LISTS
from .sessions import BACKFILL_AXIS as _SESSIONS_AXIS
from .sessions import DEFAULT_SESSIONS_LOOKBACK_SECONDS, sessions_resource

__all__ = ["posthog_source", "check_credentials", "PostHogClient", "read_events_window", "read_summary_day",
           "BACKFILL_RESOURCES"]

#: the time-windowed resources (``cdp-sync backfill posthog --resource R``) and their time axis
BACKFILL_RESOURCES = {
    "events": "timestamp, per project",
    "event_summaries": "day, per project: a day belongs to the window holding its midnight in the project's time zone",
    "sessions": _SESSIONS_AXIS,
}

logger = logging.getLogger("cdp_sync.posthog")
_MISSING_SCOPE = re.compile(r"missing required scope '([^']+)'")
US = 1_000_000
HOUR_US = 3600 * US


def check_credentials(api_key: str, base_url: str = S.DEFAULT_BASE_URL) -> str:
    """``GET /api/projects/``: one request, 401 for a bad key, 403 without ``project:read``."""
    client = PostHogClient(api_key, base_url, retry=RetryPolicy(max_attempts=3, max_total_wait=30))
    try:
        body = client.check()
    finally:
        client.close()
    projects = body.get("results") if isinstance(body, dict) else None
    if not isinstance(projects, list):
        return "credentials accepted"
    names = ", ".join(f"{p.get('name')!r} ({p.get('id')})" for p in projects[:5])
    more = f" and {len(projects) - 5} more" if len(projects) > 5 else ""
    return f"{len(projects)} project{'s' if len(projects) != 1 else ''}: {names}{more}"


# -- bounded reads (a later backfill command reads windows through these, without state) -----------


def read_events_window(api: PostHogClient, project_id: int, start_us: int, end_us: int, *,
                       page_size: int = S.DEFAULT_EVENTS_PAGE_SIZE,
                       window_hours: int = S.MAX_WINDOW_HOURS,
                       workers: int = 1) -> Iterator[list[dict[str, Any]]]:
    """Every event of a project with ``start <= timestamp < end``, each ``uuid`` once: the range is
    cut into windows of at most ``window_hours`` read by up to ``workers`` threads; no state is
    read or written. A read that ends short of PostHog's ``count()`` of the range (asked first)
    raises :class:`~sources.posthog.client.IncompleteRead` after the last page."""
    for page in read_event_pages(api, project_id, start_us, end_us, page_size=page_size, window_hours=window_hours,
                                 workers=workers):
        yield page.rows()


def read_event_pages(api: PostHogClient, project_id: int, start_us: int, end_us: int, *,
                     page_size: int = S.DEFAULT_EVENTS_PAGE_SIZE,
                     window_hours: int = S.MAX_WINDOW_HOURS,
                     workers: int = 1) -> Iterator[EventPage]:
    """:func:`read_events_window` as :class:`~sources.posthog.columnar.EventPage` pages (typed
    Arrow tables; what the bounded ``events`` resource loads)."""
    tasks = [_window_task(api, project_id, a, b, page_size)
             for a, b in windows(start_us, end_us, window_hours * HOUR_US)]
    if not tasks:
        return
    expected = api.count_events(project_id, start_us, end_us)
    uuids = UuidSet()
    read = repeats = 0
    for page in concurrent_pages(tasks, workers, queue_pages=_queued(workers), name=f"posthog-events-{project_id}"):
        read += len(page)
        first = uuids.first_seen(page.table.column("uuid"))
        if first is not None:
            repeats += len(first) - first.true_count
            page = page.where(first)
        if len(page):
            yield page
    _check_counts({project_id: (expected, start_us, end_us)}, {project_id: read})
    _warn_repeats({project_id: repeats})


def read_summary_day(api: PostHogClient, project_id: int, day_start_us: int, day_end_us: int, *,
                     day: str | None = None) -> Iterator[list[dict]]:
    """The daily counts of one project day ``[start, end)`` (``day``: the date PostHog must
    report for it); no state is read or written."""
    yield from api.summaries_window(project_id, day_start_us, day_end_us, day=day)


def _queued(workers: int) -> int:
    """Event pages queued for the extract: :data:`~.settings.EVENT_PAGES_QUEUED_PER_WORKER` per
    reading thread."""
    return max(1, int(workers)) * S.EVENT_PAGES_QUEUED_PER_WORKER


def _window_task(api: PostHogClient, pid: int, a: int, b: int, page_size: int) -> Callable[[], Iterator[EventPage]]:
    return lambda: api.event_pages(pid, a, b, page_size)


# -- the source ---------------------------------------------------------------------------------


class _Projects:
    """The projects of this run, resolved once and shared by every resource."""

    def __init__(self, configured: Sequence[int] | None) -> None:
        self.configured = configured
        self._lock = threading.Lock()
        self._resolved: tuple[list[dict[str, Any]], dict[str, str]] | None = None
        self._first: dict[int, int | None] = {}

    def first_event(self, api: PostHogClient, pid: int) -> int | None:
        """The project's first event (microseconds), asked once per run."""
        with self._lock:
            if pid in self._first:
                return self._first[pid]
        _, first = api.event_bounds(pid)
        with self._lock:
            self._first[pid] = first
        return first

    def get(self, api: PostHogClient) -> tuple[list[dict[str, Any]], dict[str, str]]:
        with self._lock:
            if self._resolved is None:
                self._resolved = self._resolve(api)
            return self._resolved

    def _resolve(self, api: PostHogClient) -> tuple[list[dict[str, Any]], dict[str, str]]:
        reachable: list[dict[str, Any]] = []
        unreachable: dict[str, str] = {}
        if self.configured:
            for pid in self.configured:
                try:
                    reachable.append(api.get(f"api/projects/{int(pid)}/", expect=_project_problem))
                except RequestRejected as exc:
                    if exc.status == 404:
                        raise ConfigurationError(
                            f"posthog project {pid} does not exist on {api.http.base_url.host} (check project_ids)",
                            vendor=S.VENDOR,
                        ) from None
                    raise
            return reachable, unreachable
        for project in api.projects():
            pid = project.get("id")
            try:
                reachable.append(api.get(f"api/projects/{int(pid)}/", expect=_project_problem))
            except AuthError as exc:
                if exc.status != 403:
                    raise
                unreachable[str(pid)] = exc.body_excerpt or "403"
                logger.warning("posthog: project %s is listed but this key cannot read it (%s); skipped and "
                               "recorded in state as unreachable", pid, exc.body_excerpt)
        if not reachable and unreachable:
            raise AuthError("posthog: this key cannot read any of its projects", vendor=S.VENDOR, status=403)
        return reachable, unreachable


def _note_unreachable(state: dict[str, Any], unreachable: dict[str, str]) -> None:
    if unreachable:
        state["unreachable_projects"] = dict(unreachable)
    else:
        state.pop("unreachable_projects", None)


def _check(name: str, value: Any, low: float, high: float | None = None) -> None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"posthog {name} must be a number, not {value!r}", vendor=S.VENDOR) from None
    if v < low or (high is not None and v > high):
        bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise ConfigurationError(f"posthog {name} must be {bounds} (got {value!r})", vendor=S.VENDOR)


def _project_ids(value: Any) -> list[int] | None:
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        value = [v for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
    if isinstance(value, int):
        value = [value]
    try:
        return [int(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigurationError(f"posthog project_ids must be a list of integers, not {value!r}",
                                 vendor=S.VENDOR) from None


@dlt.source(name="posthog", max_table_nesting=0)
def posthog_source(
    api_key: str = dlt.secrets.value,
    base_url: str = S.DEFAULT_BASE_URL,
    project_ids: list[int] | None = None,
    start_date: str | None = None,
    events_lookback_seconds: int = S.DEFAULT_LOOKBACK_SECONDS,
    events_page_size: int = S.DEFAULT_EVENTS_PAGE_SIZE,
    events_window_hours: int = S.MAX_WINDOW_HOURS,
    events_max_windows: int | None = None,
    events_max_fingerprints: int = S.DEFAULT_MAX_FINGERPRINTS,
    sessions_lookback_seconds: int = DEFAULT_SESSIONS_LOOKBACK_SECONDS,
    query_concurrency: int = S.MAX_QUERY_CONCURRENCY,
    summary_days: int = S.DEFAULT_SUMMARY_DAYS,
    persons_page_size: int = S.DEFAULT_PERSONS_PAGE_SIZE,
    page_size: int = S.DEFAULT_PAGE_SIZE,
    batch_rows: int = S.DEFAULT_BATCH_ROWS,
    max_attempts: int = 6,
    max_retry_wait: float = 120.0,
    request_timeout: float = 60.0,
    window_start: Any = None,
    window_end: Any = None,
) -> Sequence[DltResource]:
    """PostHog's private API (US Cloud by default) as dlt resources.

    Args:
        api_key: a personal API key (``phx_…``) with the read scopes of the resources loaded
            (``project:read``, ``query:read`` for events and summaries, ``person:read``,
            ``cohort:read``, ``feature_flag:read``, ``annotation:read``, ``insight:read``,
            ``event_definition:read``, ``property_definition:read``, ``group:read``,
            ``experiment:read``, ``action:read``, ``dashboard:read``, ``survey:read``,
            ``session_recording:read``); a list whose scope the key lacks is skipped with a warning.
        base_url: ``https://us.posthog.com`` (US Cloud), ``https://eu.posthog.com`` (EU Cloud) or a
            self-hosted instance's HTTPS address. Keys are bound to their region.
        project_ids: projects to load; default: every project the key can read.
        start_date: where the first run of ``events`` and ``event_summaries`` starts (ISO date or
            timestamp, UTC); default: the project's first event.
        events_lookback_seconds: how far behind its cursor ``events`` re-reads for late events.
        events_page_size: rows per HogQL query (PostHog returns at most 50,000).
        events_window_hours: the longest events window (1..24); lower it when a day of a busy
            project does not fit PostHog's 10-second query budget.
        events_max_windows: at most this many windows per project per run (a long backfill then
            commits its progress run by run); default: no limit.
        events_max_fingerprints: fingerprints of lookback-window events kept in state per project;
            a busier window keeps none and is merged again on the next run (state stays small).
        sessions_lookback_seconds: how far behind its cursor ``sessions`` re-reads (sessions still
            open or changed by late events); at least 24 h, the longest session.
        query_concurrency: HogQL queries in flight per project (1..3, PostHog's limit).
        summary_days: trailing days ``event_summaries`` re-reads each run (today included).
        persons_page_size: persons per request.
        page_size: rows per request of the other lists.
        batch_rows: rows per Arrow table handed to dlt.
        max_attempts, max_retry_wait, request_timeout: the HTTP retry budget and timeout.
        window_start, window_end: bounded mode (both or neither; ISO 8601 or datetimes, UTC):
            only the resources of :data:`BACKFILL_RESOURCES`, reading exactly
            ``[window_start, window_end)`` of every project, without cursor state.
    """
    window = Window.from_options(window_start, window_end, S.VENDOR)
    _check("events_lookback_seconds", events_lookback_seconds, 0)
    _check("events_page_size", events_page_size, 1, S.MAX_QUERY_ROWS)
    _check("events_window_hours", events_window_hours, 1, S.MAX_WINDOW_HOURS)
    _check("query_concurrency", query_concurrency, 1, S.MAX_QUERY_CONCURRENCY)
    _check("summary_days", summary_days, 1)
    _check("persons_page_size", persons_page_size, 1, 10_000)
    _check("page_size", page_size, 1, 1000)
    _check("batch_rows", batch_rows, 1)
    if events_max_windows is not None:
        _check("events_max_windows", events_max_windows, 1)
    _check("events_max_fingerprints", events_max_fingerprints, 0)
    _check("sessions_lookback_seconds", sessions_lookback_seconds, 24 * 3600)
    start_us = parse_start(start_date) if start_date not in (None, "") else None
    configured = _project_ids(project_ids)
    lookback_us = int(events_lookback_seconds) * US
    window_us = int(events_window_hours) * HOUR_US
    quiet_arrow_hint_warning()
    retry = RetryPolicy(max_attempts=int(max_attempts), max_total_wait=float(max_retry_wait))

    def make_client() -> PostHogClient:
        return PostHogClient(api_key, base_url, timeout=float(request_timeout), retry=retry,
                             max_connections=max(12, int(query_concurrency) * 4),
                             query_concurrency=int(query_concurrency))

    # built now, so a malformed key or a non-HTTPS URL fails before any resource runs
    shared = SharedClient(make_client, on_close=lambda c: record_requests(S.VENDOR, c.http.stats["requests"]))
    catalog = _Projects(configured)

    def project_start(api: PostHogClient, pid: int) -> int | None:
        return start_us if start_us is not None else catalog.first_event(api, pid)

    # -- events ------------------------------------------------------------------------------

    def events() -> Iterator[pa.Table]:
        state = dlt.current.resource_state()
        per_project = state.setdefault("projects", {})
        progress = ProgressLog(S.VENDOR, "events")
        with shared.use() as api:
            projects, unreachable = catalog.get(api)
            now_us = int(time.time() * US)
            queries_before = api.queries
            cursors: dict[int, tuple[LookbackCursor, int | None, str, int]] = {}
            expected: dict[int, tuple[int, int, int]] = {}
            tasks_by_project: list[list[Callable[[], Iterator[list[dict]]]]] = []
            for project in projects:
                pid = int(project["id"])
                cur = LookbackCursor(per_project.setdefault(str(pid), {}), _minus(lookback_us),
                                     max_seen=int(events_max_fingerprints))
                if cur.value is None:
                    start = project_start(api, pid)
                    mode = "backfill"
                else:
                    start = iso_to_us(cur.lower_bound())
                    mode = "incremental"
                if start is None:
                    cursors[pid] = (cur, None, "no events yet", 0)
                    continue
                planned = windows(start, now_us, window_us)
                if events_max_windows is not None and len(planned) > int(events_max_windows):
                    planned = planned[: int(events_max_windows)]
                    mode += f" (first {len(planned)} windows)"
                if not planned:  # nothing to read yet (a start in the future): the cursor stays put
                    cursors[pid] = (cur, None, mode, 0)
                    continue
                end = planned[-1][1]
                cur.set_floor(us_to_iso(end))
                cursors[pid] = (cur, end, mode, len(planned))
                # PostHog's own count() of the range, taken before it is read: a read that ends
                # short of it is not complete (events only arrive; copies count on both sides)
                expected[pid] = (api.count_events(pid, planned[0][0], end), planned[0][0], end)
                tasks_by_project.append([_window_task(api, pid, a, b, int(events_page_size)) for a, b in planned])
            # interleave projects so every project's three query slots are used at once
            tasks = [t for group in _round_robin(tasks_by_project) for t in group]
            workers = min(int(query_concurrency) * max(1, len(tasks_by_project)), 8)
            pages = concurrent_pages(tasks, workers, queue_pages=_queued(workers), name="posthog-events")
            read = dict.fromkeys(cursors, 0)
            uuids = {pid: UuidSet() for pid in cursors}
            repeats = dict.fromkeys(cursors, 0)

            def admitted() -> Iterator[pa.Table]:
                for page in pages:
                    pid = page.project_id
                    cur, end = cursors[pid][0], cursors[pid][1]
                    read[pid] += len(page)
                    # each uuid once per run: ClickHouse returns an event stored twice as two rows
                    # until it merges them, not always side by side (the copies' timestamps may
                    # differ); the first copy read is the one loaded
                    first = uuids[pid].first_seen(page.table.column("uuid"))
                    if first is not None:
                        repeats[pid] += len(first) - first.true_count
                        page = page.where(first)
                    keep = _admit_page(page, cur, end - lookback_us)
                    progress.update(len(page), keep.num_rows)
                    if keep.num_rows:
                        yield keep

            first = True
            for page in batched_tables(admitted(), int(batch_rows)):
                if first:
                    # each event once per run: the windows are disjoint, each is walked on the
                    # strictly increasing (timestamp, uuid) keyset and every uuid read before in
                    # this run is dropped above, so the merge can skip dlt's de-duplication of the
                    # staging table (a window function that needs memory in proportion to the load).
                    # A package finished after a kill may copy a file into staging twice: cdp-sync
                    # loads such a package with de-duplication (pipelines.destinations.run_within_cap)
                    page, first = merge_run_hints(page, unique_in_run=True), False
                yield page
            _check_counts(expected, read)
            _warn_repeats(repeats)
            for cur, end, mode, n_windows in cursors.values():
                cur.commit(us_to_iso(end) if end is not None else None, mode=mode, windows=n_windows)
            _note_unreachable(state, unreachable)
            progress.done(f"{api.queries - queries_before} queries")
        uuids.clear()  # the freed memory goes back before the load (pipelines.runtime.release_freed_memory)

    # -- event summaries -----------------------------------------------------------------------

    def event_summaries() -> Iterator[pa.Table]:
        state = dlt.current.resource_state()
        per_project = state.setdefault("projects", {})
        progress = ProgressLog(S.VENDOR, "event_summaries")
        with shared.use() as api:
            projects, unreachable = catalog.get(api)
            now_us = int(time.time() * US)
            plans: list[tuple[int, LookbackCursor, str | None, list[tuple[str, int, int]]]] = []
            for project in projects:
                pid = int(project["id"])
                tz = str(project.get("timezone") or "UTC")
                cur = LookbackCursor(per_project.setdefault(str(pid), {}), _days_before(int(summary_days) - 1))
                today = project_days(now_us, now_us, tz)[0][0]
                if cur.value is None:
                    first = project_start(api, pid)
                    days = project_days(first, now_us, tz) if first is not None else []
                    mode = "backfill"
                else:
                    days = project_days(cur.lower_bound(), now_us, tz)
                    mode = "trailing days"
                cur.set_floor(today)
                plans.append((pid, cur, mode, days))
            tasks = [
                _summary_task(api, pid, day, a, b)
                for group in _round_robin([[(pid, d, a, b) for d, a, b in days] for pid, _, _, days in plans])
                for pid, day, a, b in group
            ]
            newest = {pid: (days[-1][0] if days else None) for pid, _, _, days in plans}
            workers = min(int(query_concurrency) * max(1, len(plans)), 8)
            by_pid = {pid: cur for pid, cur, _, _ in plans}
            first = True
            for page in concurrent_pages(tasks, workers, name="posthog-summaries"):
                cur = by_pid[page[0]["project_id"]]
                keep = [r for r in page if cur.admit(f"{r['day']}|{r['event']}", str(r["day"]), r)]
                progress.update(len(page), len(keep))
                if keep:
                    table = S.EVENT_SUMMARIES.to_arrow(keep)
                    if first:  # written every run: a bounded run's "unique" must not persist
                        table, first = merge_run_hints(table, unique_in_run=False), False
                    yield table
            for pid, cur, mode, days in plans:
                cur.commit(newest[pid], mode=mode, days=len(days))
            _note_unreachable(state, unreachable)
            progress.done()

    # -- bounded mode ------------------------------------------------------------------------------

    def events_in_window() -> Iterator[pa.Table]:
        """Every event of every project with ``start <= timestamp < end``; events never change
        and the windows are disjoint, so each row is read once."""
        assert window is not None
        state = dlt.current.resource_state()
        progress = ProgressLog(S.VENDOR, f"events[{window.label}]")
        count = RowCount()
        with shared.use() as api:
            projects, unreachable = catalog.get(api)
            per_project = [_project_window(api, int(p["id"]), window.start_us, window.end_us, int(events_page_size),
                                           int(events_window_hours), int(query_concurrency)) for p in projects]
            # each project keeps its own three query slots busy; projects run side by side
            workers = max(1, min(len(per_project), 8 // int(query_concurrency)))
            pages = (p.table for p in _counted(concurrent_pages(per_project, workers, queue_pages=_queued(workers),
                                                                name="posthog-events-window"), progress))
            first = True
            for page in batched_tables(pages, int(batch_rows)):
                page = count(page)
                if first:
                    page, first = merge_run_hints(page, unique_in_run=True), False
                yield page
            _note_unreachable(state, unreachable)
            window.record(state, count.rows, axis="timestamp", projects=len(projects))
        progress.done()

    def event_summaries_in_window() -> Iterator[pa.Table]:
        """The daily counts of every project day whose first instant (in the project's time zone)
        lies in the window; one (project, day) is read by exactly one window."""
        assert window is not None
        state = dlt.current.resource_state()
        progress = ProgressLog(S.VENDOR, f"event_summaries[{window.label}]")
        count = RowCount()
        with shared.use() as api:
            projects, unreachable = catalog.get(api)
            groups = []
            for project in projects:
                pid, tz = int(project["id"]), str(project.get("timezone") or "UTC")
                days = [d for d in project_days(window.start_us, window.end_us - 1, tz)
                        if window.start_us <= d[1] < window.end_us]
                groups.append([(pid, d, a, b) for d, a, b in days])
            tasks = [_summary_task(api, pid, day, a, b) for group in _round_robin(groups) for pid, day, a, b in group]
            workers = min(int(query_concurrency) * max(1, len(groups)), 8)
            first = True
            for page in _counted(concurrent_pages(tasks, workers, name="posthog-summaries-window"), progress):
                table = count(S.EVENT_SUMMARIES.to_arrow(page))
                if first:
                    table, first = merge_run_hints(table, unique_in_run=True), False
                yield table
            _note_unreachable(state, unreachable)
            window.record(state, count.rows, axis="day", project_days=len(tasks))
        progress.done()

    # -- persons and objects ------------------------------------------------------------------------

    def persons() -> Iterator[pa.Table]:
        state = dlt.current.resource_state()
        progress = ProgressLog(S.VENDOR, "persons")
        with shared.use() as api:
            projects, unreachable = catalog.get(api)

            def walk(pid: int) -> Callable[[], Iterator[list[dict]]]:
                def pages() -> Iterator[list[dict]]:
                    for page in api.walk(f"api/projects/{pid}/persons/", {"limit": int(persons_page_size)},
                                         key="uuid", total=True):
                        yield [_person(row, pid) for row in page]
                return pages

            tasks = [walk(int(p["id"])) for p in projects]
            for batch in batched(_counted(concurrent_pages(tasks, min(2, len(tasks)), name="posthog-persons"),
                                          progress), int(batch_rows)):
                yield S.PERSONS.to_arrow(batch)
            _note_unreachable(state, unreachable)
            progress.done("full walk")

    def projects_resource() -> Iterator[pa.Table]:
        with shared.use() as api:
            projects, _ = catalog.get(api)
            rows = [{k: v for k, v in p.items() if k not in S.DROPPED_PROJECT_FIELDS} for p in projects]
            if rows:
                yield S.PROJECTS.to_arrow(rows)

    # the REST lists: one declared row each (lists.py), one resource each
    vendor = Vendor(
        S.VENDOR,
        use=shared.use,
        parents=lambda api: _parents(catalog, api),
        missing_scope=_missing_scope,
        progress=lambda name: ProgressLog(S.VENDOR, name),
        parents_state_key="projects",
    )

    windowed: list[DltResource] = [
        dlt.resource(events if window is None else events_in_window, name="events", primary_key="uuid",
                     write_disposition="merge", columns=S.EVENTS.dlt_columns(), parallelized=True)(),
        dlt.resource(event_summaries if window is None else event_summaries_in_window, name="event_summaries",
                     primary_key=["project_id", "day", "event"], write_disposition="merge",
                     columns=S.EVENT_SUMMARIES.dlt_columns(), parallelized=True)(),
    ]
    windowed.append(sessions_resource(
        shared, catalog, project_start, window, lookback_seconds=int(sessions_lookback_seconds),
        page_size=int(events_page_size), window_hours=int(events_window_hours),
        query_concurrency=int(query_concurrency), batch_rows=int(batch_rows),
        max_fingerprints=int(events_max_fingerprints), max_windows=events_max_windows))
    if window is not None:  # bounded mode: the time-windowed resources only
        return windowed
    resources: list[DltResource] = [
        *windowed,
        dlt.resource(persons, name="persons", primary_key="uuid", write_disposition="merge",
                     columns=S.PERSONS.dlt_columns(), parallelized=True)(),
        dlt.resource(projects_resource, name="projects", primary_key="id", write_disposition="merge",
                     columns=S.PROJECTS.dlt_columns(), parallelized=True)(),
    ]
    resources += [list_resource(spec, vendor, page_size=int(page_size)) for spec in LISTS]
    return resources


def _person(row: dict[str, Any], pid: int) -> dict[str, Any]:
    """Both documented person shapes: the code's (``id`` = the UUID string, ``is_identified``)
    and the docs' (integer ``id``, ``last_seen_at``); the key is ``uuid`` in both."""
    out = dict(row)
    out["project_id"] = pid
    if out.get("uuid") is None and isinstance(out.get("id"), str):
        out["uuid"] = out["id"]
    if out.get("id") is not None:
        out["id"] = str(out["id"])
    return out


def _parents(catalog: _Projects, api: PostHogClient) -> tuple[list[Parent], Callable[[dict[str, Any]], None]]:
    """The projects of the run as the parents of every REST list (rows get ``project_id``)."""
    projects, unreachable = catalog.get(api)
    parents = [Parent(f"api/projects/{int(p['id'])}/", {"project_id": int(p["id"])}, str(int(p["id"])))
               for p in projects]
    return parents, lambda state: _note_unreachable(state, unreachable)


def _missing_scope(exc: BaseException) -> str | None:
    """The scope PostHog says the key lacks (403 ``API key missing required scope 'x:read'``)."""
    if isinstance(exc, AuthError) and exc.status == 403:
        m = _MISSING_SCOPE.search(exc.body_excerpt or str(exc))
        if m:
            return m.group(1)
    return None


def _project_window(api: PostHogClient, pid: int, start_us: int, end_us: int, page_size: int, window_hours: int,
                    workers: int) -> Callable[[], Iterator[EventPage]]:
    return lambda: read_event_pages(api, pid, start_us, end_us, page_size=page_size, window_hours=window_hours,
                                    workers=workers)


def _admit_page(page: EventPage, cur: LookbackCursor, floor_us: int) -> pa.Table:
    """The rows of ``page`` to load. A row older than the lookback window of the run's end
    (``floor_us``) needs no fingerprint and loads as read (counted column-wise, as ``admit``
    would); the rows inside it go through ``cur.admit`` one by one, as dicts in the shape they
    always had, so their fingerprints are the ones earlier runs kept."""
    inside = pc.fill_null(pc.greater_equal(page.table.column("timestamp"), pa.scalar(floor_us, TIMESTAMP)), False)
    indices = pc.indices_nonzero(inside.combine_chunks() if isinstance(inside, pa.ChunkedArray) else inside)
    below = len(page) - len(indices)
    cur.admit_below_floor(below)
    if not len(indices):
        return page.table
    indices = indices.to_pylist()
    keep = [True] * len(page)
    for i, row in zip(indices, page.rows(indices), strict=True):
        keep[i] = cur.admit(row["uuid"], cursor_text(row["timestamp"]), row)
    if all(keep):
        return page.table
    return page.table.filter(pa.array(keep, type=pa.bool_()))


def _summary_task(api: PostHogClient, pid: int, day: str, a: int, b: int) -> Callable[[], Iterator[list[dict]]]:
    return lambda: read_summary_day(api, pid, a, b, day=day)


def _round_robin(groups: list[list[Any]]) -> list[list[Any]]:
    """Items of several groups interleaved: [[a1, b1], [a2, b2], …]."""
    out: list[list[Any]] = []
    longest = max((len(g) for g in groups), default=0)
    for i in range(longest):
        out.append([g[i] for g in groups if i < len(g)])
    return out


def _minus(amount_us: int) -> Callable[[str], str]:
    return lambda value: us_to_iso(iso_to_us(value) - amount_us)


def _days_before(days: int) -> Callable[[str], str]:
    import datetime as _dt

    return lambda value: (_dt.date.fromisoformat(value) - _dt.timedelta(days=days)).isoformat()


def _counted(pages: Iterator[list[dict[str, Any]]], progress: ProgressLog) -> Iterator[list[dict[str, Any]]]:
    for page in pages:
        progress.update(len(page), len(page))
        yield page



def _check_counts(expected: dict[int, tuple[int, int, int]], read: dict[int, int]) -> None:
    """Each project's rows read against PostHog's ``count()`` of the same range (taken before the
    read): fewer is a short read, and the resource fails before its cursor moves."""
    short = {pid: (n, read.get(pid, 0), a, b) for pid, (n, a, b) in expected.items() if read.get(pid, 0) < n}
    if short:
        pid, (n, got, a, b) = next(iter(short.items()))
        raise IncompleteRead(
            f"posthog project {pid}: read {got:,} events in [{us_to_iso(a)}, {us_to_iso(b)}) but PostHog counted "
            f"{n:,} there before the read" + (f" (and {len(short) - 1} more projects short)" if len(short) > 1 else "")
            + "; nothing of this run is committed, rerun", vendor=S.VENDOR)


def _warn_repeats(repeats: dict[int, int]) -> None:
    total = sum(repeats.values())
    if total:
        logger.warning("posthog: %s event(s) came back more than once in this run (copies ClickHouse has not "
                       "merged yet); each uuid was loaded once, the first copy read", f"{total:,}")


def _project_problem(body: Any) -> str | None:
    if not isinstance(body, dict) or "id" not in body:
        return "a body without a project id where a project was expected"
    return None
