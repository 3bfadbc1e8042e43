"""PostHog ``sessions``: one row per session from HogQL's ``sessions`` table, per project.

A session is an aggregate over its events (``$session_id``): its row changes while events for it
arrive — its end, duration, counts and exit URL grow until the session ends (30 minutes without an
event, or 24 hours after its start), and again when a late event for it is ingested. So:

* **Cursor on the session's start** (``$start_timestamp``, the column PostHog filters and sorts
  on), per project: windows ``[start, end)`` of at most ``events_window_hours`` read like
  ``events`` (up to ``query_concurrency`` windows of a project at once, projects side by side),
  each a keyset walk on ``($start_timestamp, session_id)`` evaluated by the server, ending on a
  page shorter than the LIMIT the server applied.
* **Lookback covering open sessions.** Each run re-reads ``sessions_lookback_seconds`` behind its
  cursor (default 25 h: the longest session, 24 h, plus an hour for late events), so a session
  that started before the previous run and grew since is read again; rows re-read unchanged are
  dropped before loading (fingerprints in state, as for events).
* **Merge on (``project_id``, ``session_id``), newest wins.** A session read twice in one load
  (its start moved back during the run) lands as the copy with the newest ``max_inserted_at`` —
  PostHog's newest ingestion time of the session's events, which grows with every change — through
  dlt's ``dedup_sort`` hint.
* **Count-checked.** PostHog's ``count()`` of the sessions in each project's range is asked before
  the read; a read that ends short of it fails the resource before its cursor moves.
* **Scope.** ``query:read``. A key without it skips the resource with one warning naming the
  scope (recorded in its state as ``skipped``); the other resources load. A run that asked for
  ``sessions`` alone fails instead.

HTTP goes through :class:`~sources.posthog.client.PostHogClient` (its per-project query slots are
shared with ``events`` and ``event_summaries``); nothing below the resource functions knows dlt.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import dlt
import pyarrow as pa
from dlt.sources import DltResource

from sources.common.arrow import TableSpec, batched
from sources.common.concurrency import concurrent_pages
from sources.common.cursor import LookbackCursor
from sources.common.errors import AuthError, ConfigurationError, MalformedResponse
from sources.common.hints import merge_run_hints
from sources.common.progress import ProgressLog
from sources.common.window import RowCount, Window, windows

from .client import IncompleteRead, PostHogClient, _applied_limit, cursor_text, iso_to_us, us_to_iso
from .settings import MAX_QUERY_ROWS, VENDOR

logger = logging.getLogger("cdp_sync.posthog")
US = 1_000_000
HOUR_US = 3600 * US

#: the longest session PostHog keeps one ``$session_id`` for [D]
MAX_SESSION_SECONDS = 24 * 3600
#: the default re-read behind the cursor: the longest session plus an hour of late events
DEFAULT_SESSIONS_LOOKBACK_SECONDS = MAX_SESSION_SECONDS + 3600
#: the scope the sessions table needs
SCOPE = "query:read"
#: the time axis of a backfill window (``BACKFILL_RESOURCES``)
BACKFILL_AXIS = "$start_timestamp (the session's first event), per project"

#: HogQL column -> table column
COLUMNS: dict[str, str] = {
    "session_id": "session_id",
    "distinct_id": "distinct_id",
    "$start_timestamp": "start_timestamp",
    "$end_timestamp": "end_timestamp",
    "max_inserted_at": "max_inserted_at",
    "$session_duration": "session_duration",
    "$entry_current_url": "entry_current_url",
    "$end_current_url": "end_current_url",
    "$entry_pathname": "entry_pathname",
    "$end_pathname": "end_pathname",
    "$pageview_count": "pageview_count",
    "$autocapture_count": "autocapture_count",
    "$screen_count": "screen_count",
    "$is_bounce": "is_bounce",
    "$channel_type": "channel_type",
    "$entry_referring_domain": "entry_referring_domain",
    "$entry_utm_source": "entry_utm_source",
    "$entry_utm_medium": "entry_utm_medium",
    "$entry_utm_campaign": "entry_utm_campaign",
}

SESSIONS = TableSpec(
    "sessions",
    {
        "session_id": "text",
        "project_id": "int",
        "distinct_id": "text",
        "start_timestamp": "iso",
        "end_timestamp": "iso",
        "max_inserted_at": "iso",
        "session_duration": "int",
        "entry_current_url": "text",
        "end_current_url": "text",
        "entry_pathname": "text",
        "end_pathname": "text",
        "pageview_count": "int",
        "autocapture_count": "int",
        "screen_count": "int",
        "is_bounce": "bool",
        "channel_type": "text",
        "entry_referring_domain": "text",
        "entry_utm_source": "text",
        "entry_utm_medium": "text",
        "entry_utm_campaign": "text",
    },
    primary_key=("project_id", "session_id"),
    extras_column=None,
)


def _select() -> str:
    return ", ".join(name if name == alias else f"`{name}` AS {alias}" for name, alias in COLUMNS.items())


SESSIONS_SQL = (
    f"SELECT {_select()} FROM sessions "
    "WHERE `$start_timestamp` >= toDateTime({start}) AND `$start_timestamp` < toDateTime({end}){keyset} "
    "ORDER BY `$start_timestamp`, session_id LIMIT {limit}"
)
#: sessions are aggregates, one row per id: the position itself is never read again (``>``)
KEYSET = (
    " AND (`$start_timestamp` > toDateTime({last_ts}) OR "
    "(`$start_timestamp` = toDateTime({last_ts}) AND session_id > {last_id}))"
)
COUNT_SQL = ("SELECT count() AS sessions FROM sessions "
             "WHERE `$start_timestamp` >= toDateTime({start}) AND `$start_timestamp` < toDateTime({end})")


def dlt_columns() -> dict[str, dict[str, Any]]:
    """The table's column hints; a session read twice in one load keeps its newest copy."""
    columns = SESSIONS.dlt_columns()
    columns["max_inserted_at"] = {**columns["max_inserted_at"], "dedup_sort": "desc"}
    return columns


# -- reads (no dlt, no state) -----------------------------------------------------------------------


def count_sessions(api: PostHogClient, project_id: int, start_us: int, end_us: int) -> int:
    """PostHog's ``count()`` of the sessions with ``start <= $start_timestamp < end``."""
    return api.count_between(project_id, COUNT_SQL, start_us, end_us, "cdp_sync_session_count", "sessions")


def sessions_window(api: PostHogClient, project_id: int, start_us: int, end_us: int,
                    page_size: int) -> Iterator[list[dict[str, Any]]]:
    """Every session with ``start <= $start_timestamp < end``, ascending on
    ``($start_timestamp, session_id)``, in pages of ``page_size``. The position is the last row's
    own start text and id, compared by the server; a page shorter than the LIMIT the server
    applied (its ``limit``: a clamp is not the end) ends the window."""
    if not 1 <= page_size <= MAX_QUERY_ROWS:
        raise ConfigurationError(f"posthog sessions page size must be 1..{MAX_QUERY_ROWS}", vendor=VENDOR)
    values: dict[str, Any] = {"start": us_to_iso(start_us), "end": us_to_iso(end_us)}
    position: tuple[str, str] | None = None
    while True:
        keyset = ""
        if position is not None:
            keyset = KEYSET
            values["last_ts"], values["last_id"] = position
        sql = SESSIONS_SQL.replace("{keyset}", keyset).replace("{limit}", str(int(page_size)))
        data = api.query(project_id, sql, dict(values), "cdp_sync_sessions")
        missing = [c for c in COLUMNS.values() if c not in data["columns"]]
        if missing:
            raise MalformedResponse(f"posthog sessions query returned no {', '.join(missing)}", vendor=VENDOR)
        page = api.rows(data)
        full = len(page) >= min(page_size, _applied_limit(data, page_size))
        for row in page:
            row["project_id"] = project_id
        if page:
            last = (str(page[-1]["start_timestamp"]), str(page[-1]["session_id"]))
            if last == position:
                raise MalformedResponse("posthog repeated a page of sessions; the keyset did not advance",
                                        vendor=VENDOR)
            position = last
            yield page
        if not full:
            return


def read_sessions_window(api: PostHogClient, project_id: int, start_us: int, end_us: int, *,
                         page_size: int, window_hours: int, workers: int = 1) -> Iterator[list[dict[str, Any]]]:
    """Every session of a project with ``start <= $start_timestamp < end``: windows of at most
    ``window_hours`` read by up to ``workers`` threads, checked against PostHog's ``count()``
    of the range (asked first); no state is read or written."""
    tasks = [_window_task(api, project_id, a, b, page_size) for a, b in windows(start_us, end_us, window_hours * HOUR_US)]
    if not tasks:
        return
    expected = count_sessions(api, project_id, start_us, end_us)
    read = 0
    for page in concurrent_pages(tasks, workers, name=f"posthog-sessions-{project_id}"):
        read += len(page)
        yield page
    check_counts({project_id: (expected, start_us, end_us)}, {project_id: read})


def check_counts(expected: dict[int, tuple[int, int, int]], read: dict[int, int]) -> None:
    """Sessions read per project against PostHog's ``count()`` of the same range, taken before
    the read: fewer is a short read, and the resource fails before its cursor moves."""
    short = {pid: (n, read.get(pid, 0), a, b) for pid, (n, a, b) in expected.items() if read.get(pid, 0) < n}
    if short:
        pid, (n, got, a, b) = next(iter(short.items()))
        raise IncompleteRead(
            f"posthog project {pid}: read {got:,} sessions starting in [{us_to_iso(a)}, {us_to_iso(b)}) but "
            f"PostHog counted {n:,} there before the read"
            + (f" (and {len(short) - 1} more projects short)" if len(short) > 1 else "")
            + "; nothing of this run is committed, rerun", vendor=VENDOR)


def missing_scope(exc: BaseException) -> str | None:
    """The scope a 403 says the key lacks (``API key missing required scope 'query:read'``),
    ``None`` for any other error (another 403 — a project the key may not read — is not one)."""
    if not isinstance(exc, AuthError) or getattr(exc, "status", None) != 403:
        return None
    text = str(getattr(exc, "body_excerpt", "") or "") + " " + str(exc)
    m = re.search(r"missing required scope '([^']+)'", text)
    return m.group(1) if m else None


def _window_task(api: PostHogClient, pid: int, a: int, b: int, page_size: int) -> Callable[[], Iterator[list[dict]]]:
    return lambda: sessions_window(api, pid, a, b, page_size)


def _project_task(api: PostHogClient, pid: int, a: int, b: int, page_size: int, window_hours: int,
                  workers: int) -> Callable[[], Iterator[list[dict]]]:
    return lambda: read_sessions_window(api, pid, a, b, page_size=page_size, window_hours=window_hours,
                                        workers=workers)


def _skipped(exc: BaseException, state: dict[str, Any]) -> bool:
    """Whether the resource is skipped for a scope the key lacks: one warning, and the scope in
    its state (``skipped``, which ``cdp-sync verify`` reports); a run that asked for ``sessions``
    alone fails instead, as the declared lists do."""
    from sources.common.rest_lists import only_selected

    scope = missing_scope(exc)
    if scope is None or only_selected("sessions"):
        return False
    logger.warning("posthog: sessions skipped: this key lacks the scope %s (PostHog: %s); the other resources "
                   "load, and the sessions cursor stays where it was", scope, getattr(exc, "body_excerpt", "") or exc)
    state["skipped"] = {"missing_scope": scope}
    return True


# -- the resource -------------------------------------------------------------------------------------


def sessions_resource(
    shared: Any,
    catalog: Any,
    project_start: Callable[[PostHogClient, int], int | None],
    window: Window | None,
    *,
    lookback_seconds: int,
    page_size: int,
    window_hours: int,
    query_concurrency: int,
    batch_rows: int,
    max_fingerprints: int,
    max_windows: int | None,
) -> DltResource:
    """The ``sessions`` resource of :func:`sources.posthog.posthog_source` (bounded mode when
    ``window`` is given): ``shared`` is the run's client lease, ``catalog`` its projects,
    ``project_start`` where a first run starts (``start_date`` or the first event)."""
    lookback_us = int(lookback_seconds) * US
    window_us = int(window_hours) * HOUR_US

    def behind(value: str) -> str:
        return us_to_iso(iso_to_us(value) - lookback_us)

    def sessions() -> Iterator[pa.Table]:
        from sources.posthog import _note_unreachable, _round_robin  # the package imports this module

        state = dlt.current.resource_state()
        per_project = state.setdefault("projects", {})
        progress = ProgressLog(VENDOR, "sessions")
        with shared.use() as api:
            projects, unreachable = catalog.get(api)
            now_us = int(time.time() * US)
            cursors: dict[int, tuple[LookbackCursor, int | None, str, int]] = {}
            expected: dict[int, tuple[int, int, int]] = {}
            tasks_by_project: list[list[Callable[[], Iterator[list[dict]]]]] = []
            try:
                for project in projects:
                    pid = int(project["id"])
                    cur = LookbackCursor(per_project.setdefault(str(pid), {}), behind, max_seen=int(max_fingerprints))
                    if cur.value is None:
                        start, mode = project_start(api, pid), "backfill"
                    else:
                        start, mode = iso_to_us(cur.lower_bound()), "incremental"
                    if start is None:
                        cursors[pid] = (cur, None, "no events yet", 0)
                        continue
                    planned = windows(start, now_us, window_us)
                    if max_windows is not None and len(planned) > int(max_windows):
                        planned = planned[: int(max_windows)]
                        mode += f" (first {len(planned)} windows)"
                    if not planned:
                        cursors[pid] = (cur, None, mode, 0)
                        continue
                    end = planned[-1][1]
                    cur.set_floor(us_to_iso(end))
                    cursors[pid] = (cur, end, mode, len(planned))
                    expected[pid] = (count_sessions(api, pid, planned[0][0], end), planned[0][0], end)
                    tasks_by_project.append([_window_task(api, pid, a, b, int(page_size)) for a, b in planned])
            except AuthError as exc:
                if _skipped(exc, state):
                    return
                raise
            state.pop("skipped", None)
            tasks = [t for group in _round_robin(tasks_by_project) for t in group]
            workers = min(int(query_concurrency) * max(1, len(tasks_by_project)), 8)
            read = dict.fromkeys(cursors, 0)

            def admitted() -> Iterator[list[dict[str, Any]]]:
                for page in concurrent_pages(tasks, workers, name="posthog-sessions"):
                    pid = page[0]["project_id"]
                    cur = cursors[pid][0]
                    read[pid] += len(page)
                    keep = [r for r in page if cur.admit(r["session_id"], cursor_text(r["start_timestamp"]), r)]
                    progress.update(len(page), len(keep))
                    if keep:
                        yield keep

            first = True
            for batch in batched(admitted(), int(batch_rows)):
                table = SESSIONS.to_arrow(batch)
                if first:  # a session may come back twice in a run: dlt keeps the newest (dedup_sort)
                    table, first = merge_run_hints(table, unique_in_run=False), False
                yield table
            check_counts(expected, read)
            for cur, end, mode, n_windows in cursors.values():
                cur.commit(us_to_iso(end) if end is not None else None, mode=mode, windows=n_windows)
            _note_unreachable(state, unreachable)
            progress.done()

    def sessions_in_window() -> Iterator[pa.Table]:
        """Every session of every project whose start lies in the window (each read by exactly
        one window, as long as its start does not move)."""
        from sources.posthog import _note_unreachable

        assert window is not None
        state = dlt.current.resource_state()
        progress = ProgressLog(VENDOR, f"sessions[{window.label}]")
        count = RowCount()
        with shared.use() as api:
            projects, unreachable = catalog.get(api)
            per_project = [_project_task(api, int(p["id"]), window.start_us, window.end_us, int(page_size),
                                         int(window_hours), int(query_concurrency)) for p in projects]
            workers = max(1, min(len(per_project), 8 // int(query_concurrency)))
            first = True
            try:
                for batch in batched(concurrent_pages(per_project, workers, name="posthog-sessions-window"),
                                     int(batch_rows)):
                    progress.update(len(batch), len(batch))
                    table = count(SESSIONS.to_arrow(batch))
                    if first:
                        table, first = merge_run_hints(table, unique_in_run=False), False
                    yield table
            except AuthError as exc:
                if first and _skipped(exc, state):
                    return
                raise
            _note_unreachable(state, unreachable)
            window.record(state, count.rows, axis="$start_timestamp", projects=len(projects))
        progress.done()

    return dlt.resource(sessions if window is None else sessions_in_window, name="sessions",
                        primary_key=list(SESSIONS.primary_key), write_disposition="merge", columns=dlt_columns(),
                        parallelized=True)()


__all__ = ["SESSIONS", "DEFAULT_SESSIONS_LOOKBACK_SECONDS", "count_sessions", "sessions_window",
           "read_sessions_window", "sessions_resource", "missing_scope"]
