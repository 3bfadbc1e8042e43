"""Personyze: users, events, sessions, daily summaries, catalogs and configuration tables.

Read this file and you know what is loaded (tables are named after resources):

| resource           | primary key          | write disposition | cursor                                     |
|--------------------|----------------------|-------------------|--------------------------------------------|
| users              | user_id              | merge             | (data_last_modified or last_session_time, user_id), lookback 300 s |
| events             | id                   | merge             | id (lookback 100 ids)                      |
| sessions_archive   | id                   | merge             | id (lookback 100 ids): archived late = new id |
| summary_actions    | date, action_id      | merge             | (date, action_id), re-reads the last 3 days |
| products, articles | id                   | merge             | none: keyset walk on id every run          |
| placeholders, actions, conditions, user_lists | id | replace  | none: full snapshot                        |

Incremental resources keep their position in dlt resource state (see
``sources/common/cursor.py``): the cursor moves only when the load package that carries it
is committed, every run re-reads the lookback window, and rows re-read there unchanged are not
loaded again. The first run of ``users``, ``events`` and ``sessions_archive`` is a backfill that
splits the id space into ranges walked concurrently.

Bounded mode (``window_start``/``window_end``, see ``sources/common/window.py``): the source
returns only the time-windowed resources of :data:`BACKFILL_RESOURCES`, each a keyset walk on
(cursor, key) bounded by ``cursor >= start & cursor < end``, reading and writing no cursor state.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.compute as pc
from dlt.sources import DltResource

from sources.common.arrow import TIMESTAMP, TableSpec, TolerantConverter, batched, quiet_arrow_hint_warning
from sources.common.concurrency import concurrent_pages
from sources.common.cursor import LookbackCursor, admit_column_wise
from sources.common.errors import ConfigurationError
from sources.common.hints import merge_run_hints
from sources.common.http import RetryPolicy
from sources.common.lease import SharedClient
from sources.common.progress import ProgressLog, record_requests
from sources.common.window import RowCount, Window

from . import settings as S
from .client import PersonyzeClient

__all__ = ["personyze_source", "check_credentials", "PersonyzeClient", "BACKFILL_RESOURCES"]

#: the time-windowed resources (``cdp-sync backfill personyze --resource R``) and their time axis
BACKFILL_RESOURCES = {
    "users": "data_last_modified (or last_session_time, as user_cursor says), Unix seconds",
    "sessions_archive": "end_time, Unix seconds",
    "summary_actions": "date: a day belongs to the window holding its midnight in the configured timezone",
}


def check_credentials(api_key: str, base_url: str = S.DEFAULT_BASE_URL) -> str:
    """``GET /rest/account``: one request that reads nothing and answers 401 for a bad key."""
    client = PersonyzeClient(api_key, base_url, retry=RetryPolicy(max_attempts=3, max_total_wait=30))
    try:
        account = client.check()
    finally:
        client.close()
    name = account.get("name") if isinstance(account, dict) else None
    return f"account {name!r}" if name else "credentials accepted"

_DATE_FMT = "%Y-%m-%d %H:%M:%S"


def _parse_date(value: Any) -> str:
    """Daily-summary dates are compared as their ``YYYY-MM-DD HH:MM:SS`` text."""
    text = str(value)
    _dt.datetime.strptime(text, _DATE_FMT)  # refuse anything else early and loudly
    return text


def _days_before(days: int) -> Callable[[str], str]:
    def behind(value: str) -> str:
        d = _dt.datetime.strptime(value, _DATE_FMT) - _dt.timedelta(days=days)
        return d.strftime(_DATE_FMT)

    return behind


def _minus(amount: int) -> Callable[[int], int]:
    return lambda v: v - amount


def _by(column: str) -> Callable[[dict[str, Any]], str]:
    return lambda row: str(row.get(column))


def _cursor_value(row: dict[str, Any], column: str, parse: Callable[[Any], Any]) -> Any:
    v = row.get(column)
    if v is None or v == "":
        return None
    return parse(v)


@dlt.source(name="personyze", max_table_nesting=0)
def personyze_source(
    api_key: str = dlt.secrets.value,
    base_url: str = S.DEFAULT_BASE_URL,
    user_cursor: str = "data_last_modified",
    lookback_seconds: int = S.DEFAULT_LOOKBACK_SECONDS,
    events_lookback_ids: int = 100,
    sessions_lookback_ids: int = 100,
    summary_days: int = S.DEFAULT_SUMMARY_DAYS,
    backfill_workers: int = S.DEFAULT_BACKFILL_WORKERS,
    page_size: int = S.MAX_ROWS,
    slow_page_size: int = S.SLOW_QUERY_ROWS,
    batch_rows: int = S.DEFAULT_BATCH_ROWS,
    timezone: str = "UTC",
    max_attempts: int = 6,
    max_retry_wait: float = 120.0,
    request_timeout: float = 30.0,
    double_encode: bool = False,
    window_start: Any = None,
    window_end: Any = None,
) -> Sequence[DltResource]:
    """The Personyze REST API as dlt resources.

    Args:
        api_key: the account's API key (40 hex characters; Settings > Integrations > API).
        base_url: ``https://app.personyze.com/rest``; only HTTPS is accepted.
        user_cursor: ``data_last_modified`` (default; moves on every change of a profile) or
            ``last_session_time`` (as the vendor docs paginate; misses edits that start no session).
        lookback_seconds: how far behind its cursor ``users`` re-reads (seconds).
        events_lookback_ids: how many ids behind its cursor ``events`` re-reads.
        sessions_lookback_ids: how many ids behind its cursor ``sessions_archive`` re-reads.
        summary_days: how many trailing days ``summary_actions`` re-reads each run.
        backfill_workers: concurrent id ranges on a first (backfill) run; 1 = one sequential walk.
        page_size: rows per request where the API allows 1,000.
        slow_page_size: rows per request for range queries on large tables (the API's cap is 50).
        batch_rows: rows per Arrow table handed to dlt.
        timezone: zone of the API's ``YYYY-MM-DD HH:MM:SS`` date strings (undocumented; UTC).
        max_attempts, max_retry_wait, request_timeout: the HTTP retry budget and timeout.
        double_encode: escape where-values twice (the vendor SDK's model), allowing ``/ & | , %``.
        window_start, window_end: bounded mode (both or neither; ISO 8601 or datetimes, UTC):
            only the resources of :data:`BACKFILL_RESOURCES`, reading exactly
            ``[window_start, window_end)`` of their time axis, without cursor state.
    """
    if user_cursor not in S.USER_CURSOR_COLUMNS:
        raise ConfigurationError(
            f"personyze user_cursor must be one of {', '.join(S.USER_CURSOR_COLUMNS)}, not {user_cursor!r}",
            vendor=S.VENDOR,
        )
    for name, value in (
        ("lookback_seconds", lookback_seconds),
        ("events_lookback_ids", events_lookback_ids),
        ("sessions_lookback_ids", sessions_lookback_ids),
        ("summary_days", summary_days - 1),
        ("backfill_workers", backfill_workers - 1),
        ("batch_rows", batch_rows - 1),
    ):
        if int(value) < 0:
            raise ConfigurationError(f"personyze {name} is out of range", vendor=S.VENDOR)
    window = Window.from_options(window_start, window_end, S.VENDOR)
    quiet_arrow_hint_warning()
    retry = RetryPolicy(max_attempts=max_attempts, max_total_wait=max_retry_wait)

    def make_client() -> PersonyzeClient:
        return PersonyzeClient(
            api_key,
            base_url,
            timeout=request_timeout,
            retry=retry,
            page_size=page_size,
            slow_page_size=slow_page_size,
            double_encode=double_encode,
            max_connections=max(8, backfill_workers * 2),
        )

    # built now, so a bad key or a non-HTTPS URL fails before any resource runs
    shared = SharedClient(make_client, on_close=lambda c: record_requests(S.VENDOR, c.http.stats["requests"]))

    def spec(table: TableSpec) -> TableSpec:
        return table if timezone == "UTC" else table.with_tz(timezone)

    def keyset_resource(
        name: str,
        table: TableSpec,
        cursor: str,
        key: str,
        parse: Callable[[Any], Any],
        behind: Callable[[Any], Any],
        split_on: str | None,
        pk: Callable[[dict[str, Any]], str],
    ) -> Iterator[pa.Table]:
        state = dlt.current.resource_state(name)
        if state.get("cursor_column", cursor) != cursor and (name, state["cursor_column"]) in _REPAGED:
            # the resource moved to another cursor (sessions_archive: end_time -> id): rows the old
            # one may have missed are only found by reading everything once more (merge on id)
            _PROGRESS.warning("%s.%s: %s", S.VENDOR, name, _REPAGED[(name, state["cursor_column"])])
            for k in ("cursor", "seen", "cursor_column"):
                state.pop(k, None)
        if state.get("cursor_column", cursor) != cursor:
            raise ConfigurationError(
                f"personyze {name} was loaded with cursor {state['cursor_column']}; switching to "
                f"{cursor} needs a full refresh (cdp-sync run personyze --full-refresh)",
                vendor=S.VENDOR,
            )
        # a backfill reads each row once; an incremental walk may read one twice: newest wins
        cur = LookbackCursor(state, behind, newest_wins=state.get("cursor") is not None)
        progress = ProgressLog(S.VENDOR, name)
        convert = TolerantConverter(kept_types(spec(table), state), S.VENDOR)
        with shared.use() as api:
            requests_before = api.http.stats["requests"]
            if cur.value is None:
                pages, new_cursor, mode = _backfill(api, name, cursor, key, parse, split_on, backfill_workers, cur)
            else:
                pages, new_cursor, mode = _incremental(api, name, cursor, key, parse, cur), None, "incremental"
            # on a backfill only rows at or above the cursor's floor (the bottom of the lookback
            # window it commits) need the cursor's per-row bookkeeping; every other row loads
            floor = behind(new_cursor) if mode.startswith("backfill") and new_cursor is not None else None
            # a backfill reads every row once (disjoint id ranges, unique keys): the merge can skip
            # its de-duplication; an incremental walk may meet a row twice if it changes meanwhile
            first = True
            for batch in batched(pages, batch_rows):
                page = convert(batch)
                page = _admitted(cur, batch, page, pk, cursor, parse, _cursor_column(page, cursor, convert.spec), floor)
                progress.update(len(batch), page.num_rows)
                if not page.num_rows:
                    continue
                if first:
                    page, first = merge_run_hints(page, unique_in_run=cur.value is None), False
                yield page
            convert.warn()
            state["cursor_column"] = cursor
            cur.commit(new_cursor, mode=mode, requests=api.http.stats["requests"] - requests_before)
            progress.done(mode)

    def window_resource(
        name: str,
        table: TableSpec,
        cursor: str,
        key: str,
        parse: Callable[[Any], Any],
        bounds: tuple[Any, Any],
        unique: bool,
    ) -> Iterator[pa.Table]:
        """Bounded mode: every row with ``bounds[0] <= cursor < bounds[1]``, one keyset walk on
        (cursor, key); no cursor state is read or written, only the window's record."""
        assert window is not None
        state = dlt.current.resource_state(name)
        progress = ProgressLog(S.VENDOR, f"{name}[{window.label}]")
        convert = TolerantConverter(kept_types(spec(table), state), S.VENDOR)
        count = RowCount()
        lo, hi = bounds
        with shared.use() as api:
            pages = api.walk(name, cursor, key, parse=parse, start=lo, extra=[(cursor, "<", hi)])
            first = True
            for batch in batched(_counted(pages, progress), batch_rows):
                page = count(convert(batch))
                if first:
                    page, first = merge_run_hints(page, unique_in_run=unique), False
                yield page
            convert.warn()
            window.record(state, count.rows, axis=cursor)
        progress.done()

    def users() -> Iterator[pa.Table]:
        if window is not None:
            # a user changed during the walk moves to a newer cursor value: past the window (so
            # read once) only when the window ended before the walk began (allowing for skew)
            yield from window_resource("users", S.USERS, user_cursor, "user_id", int,
                                       (window.start_s, window.end_s), window.is_past(lookback_seconds))
            return
        yield from keyset_resource(
            "users", S.USERS, user_cursor, "user_id", int, _minus(lookback_seconds), "user_id", _by("user_id")
        )

    def events() -> Iterator[pa.Table]:
        yield from keyset_resource(
            "events", S.EVENTS, "id", "id", int, _minus(events_lookback_ids), "id", _by("id")
        )

    def sessions_archive() -> Iterator[pa.Table]:
        if window is not None:  # an archived session's end_time never changes: each row read once
            yield from window_resource("sessions_archive", S.SESSIONS_ARCHIVE, "end_time", "id", int,
                                       (window.start_s, window.end_s), True)
            return
        # append-only with a monotonic id: a session archived late (an old end_time) still gets a
        # new id, so paging on id loads it however late it is (issue: rows archived 1.5-2.3 h
        # behind an end_time cursor were never loaded)
        yield from keyset_resource(
            "sessions_archive", S.SESSIONS_ARCHIVE, "id", "id", int, _minus(sessions_lookback_ids), "id", _by("id")
        )

    def summary_actions() -> Iterator[pa.Table]:
        if window is not None:  # (date, action_id) is the key itself: each row read once
            yield from window_resource("summary_actions", S.SUMMARY_ACTIONS, "date", "action_id", _parse_date,
                                       window.local_text(timezone, _DATE_FMT), True)
            return
        yield from keyset_resource(
            "summary_actions",
            S.SUMMARY_ACTIONS,
            "date",
            "action_id",
            _parse_date,
            _days_before(summary_days - 1),
            None,
            lambda row: f"{row.get('date')}|{row.get('action_id')}",
        )

    def catalog(table: TableSpec, merge: bool) -> Callable[[], Iterator[pa.Table]]:
        def walk_all() -> Iterator[pa.Table]:
            convert = TolerantConverter(kept_types(spec(table), dlt.current.resource_state(table.name)), S.VENDOR)
            progress = ProgressLog(S.VENDOR, table.name)
            first = merge
            with shared.use() as api:
                pages = api.walk(table.name, "id", "id", slow=False)
                for batch in batched(_counted(pages, progress), batch_rows):
                    page = convert(batch)
                    if first:  # a keyset walk on the unique id reads every row once
                        page, first = merge_run_hints(page, unique_in_run=True), False
                    yield page
            convert.warn()
            progress.done("full walk")

        walk_all.__name__ = table.name
        return walk_all

    resources: list[DltResource] = [
        dlt.resource(
            users,
            name="users",
            primary_key="user_id",
            write_disposition="merge",
            # a user changed during an incremental walk is read twice: keep the newest copy
            columns=_with_dedup_sort(S.USERS.dlt_columns(), user_cursor),
            parallelized=True,
        )(),
        dlt.resource(
            events, name="events", primary_key="id", write_disposition="merge", columns=S.EVENTS.dlt_columns(),
            parallelized=True,
        )(),
        dlt.resource(
            sessions_archive,
            name="sessions_archive",
            primary_key="id",
            write_disposition="merge",
            columns=S.SESSIONS_ARCHIVE.dlt_columns(),
            parallelized=True,
        )(),
        dlt.resource(
            summary_actions,
            name="summary_actions",
            primary_key=["date", "action_id"],
            write_disposition="merge",
            columns=S.SUMMARY_ACTIONS.dlt_columns(),
            parallelized=True,
        )(),
    ]
    if window is not None:  # bounded mode: the time-windowed resources only
        return [r for r in resources if r.name in BACKFILL_RESOURCES]
    for table in S.CATALOGS:
        resources.append(
            dlt.resource(
                catalog(table, merge=True), name=table.name, primary_key="id", write_disposition="merge",
                columns=table.dlt_columns(), parallelized=True,
            )()
        )
    for table in S.SMALL_TABLES:
        resources.append(
            dlt.resource(
                catalog(table, merge=False), name=table.name, primary_key="id", write_disposition="replace",
                columns=table.dlt_columns(), parallelized=True,
            )()
        )
    return resources


_PROGRESS = logging.getLogger("cdp_sync.progress")

#: dlt data types a column may already have in the destination, and the kind that writes them
_SIMPLE_KINDS = {"bigint": "int", "double": "float", "text": "text", "bool": "bool"}


def kept_types(table: TableSpec, state: dict[str, Any]) -> TableSpec:
    """``table`` with each column that already exists in the destination under another simple
    type kept at that type (kept in resource state once seen, because dlt's schema takes the new
    hint after one run although the destination column keeps its type).

    Why: a column whose declared type changed (users ``internal_id``: int until issue 11, text
    as the contract documents it) cannot change type in an existing table, and loading text into
    it would fail every run. Kept at its old type, values that fit load there, the rest land as
    text in ``<column>__v_text`` with the one warning; ``--full-refresh`` recreates the table
    with the documented type."""
    kept: dict[str, str] = dict(state.get("kept_types") or {})
    try:
        stored = dlt.current.source_schema().tables.get(table.name, {}).get("columns", {})
    except Exception:  # noqa: BLE001 - no pipeline context (a bare extract): nothing to keep
        stored = {}
    for column, kind in table.columns.items():
        old = _SIMPLE_KINDS.get(stored.get(column, {}).get("data_type"))
        if column not in kept and old is not None and kind in _SIMPLE_KINDS.values() and old != kind:
            kept[column] = old
    kept = {c: k for c, k in kept.items() if c in table.columns and c not in table.primary_key}
    if not kept:
        state.pop("kept_types", None)
        return table
    state["kept_types"] = kept
    return TableSpec(table.name, {c: kept.get(c, k) for c, k in table.columns.items()}, table.primary_key,
                     table.extras_column, table.tz)


#: (resource, cursor it used to page on) -> the one line logged when it re-reads everything once
_REPAGED = {
    ("sessions_archive", "end_time"): (
        "now pages on id instead of end_time, so sessions archived late are never missed; "
        "this run reads every session once more (merged on id)"
    ),
}


def _with_dedup_sort(columns: dict[str, Any], cursor: str) -> dict[str, Any]:
    out = {name: dict(hint) for name, hint in columns.items()}
    out[cursor]["dedup_sort"] = "desc"
    return out


def _cursor_column(table: pa.Table, cursor: str, kinds: TableSpec) -> pa.Array | None:
    """The cursor's values of a converted batch in the cursor's own units (ids, Unix seconds;
    null where a row has none), or ``None`` when only the rows themselves give them."""
    kind = kinds.columns.get(cursor)
    column = table.column(cursor).combine_chunks()
    if kind == "int" and column.type == pa.int64():
        return column
    if kind == "unix_s" and column.type == TIMESTAMP:
        return pc.divide(column.cast(pa.int64()), 1_000_000)
    return None


def _admitted(
    cur: LookbackCursor,
    rows: list[dict[str, Any]],
    table: pa.Table,
    pk: Callable[[dict[str, Any]], str],
    cursor: str,
    parse: Callable[[Any], Any],
    cursor_values: pa.Array | None,
    floor: Any,
) -> pa.Table:
    """``table`` (the converted ``rows``) without the rows the cursor turns away: unchanged
    re-reads of the lookback window, older copies of a row read newer. Only the rows that can
    lie inside the window the cursor commits are shown to it, one by one and in order."""
    edge = None if cursor_values is None or floor is None else pa.scalar(floor, type=cursor_values.type)
    keep = admit_column_wise(
        cur, len(rows), cursor_values, edge,
        lambda i: cur.admit(pk(rows[i]), _cursor_value(rows[i], cursor, parse), rows[i]),
    )
    return table if keep is None else table.filter(keep)


def _counted(pages: Iterator[list[dict[str, Any]]], progress: ProgressLog) -> Iterator[list[dict[str, Any]]]:
    for page in pages:
        progress.update(len(page), len(page))
        yield page


def _split(lo: int, hi: int, parts: int) -> list[tuple[int, int]]:
    """Split the ids in (lo, hi] into at most ``parts`` disjoint (after, upto] ranges."""
    span = hi - lo
    parts = max(1, min(parts, span))
    step = -(-span // parts)
    return [(a, min(a + step, hi)) for a in range(lo, hi, step)]


def _backfill(
    api: PersonyzeClient,
    obj: str,
    cursor: str,
    key: str,
    parse: Callable[[Any], Any],
    split_on: str | None,
    workers: int,
    cur: LookbackCursor,
) -> tuple[Iterator[list[dict[str, Any]]], Any, str]:
    """First run: read everything. The cursor to commit is the newest cursor value *before*
    the walk started, so rows changed while it runs are read again next time."""
    newest = api.edge(obj, cursor, last=True)
    if newest is None:
        return iter(()), None, "backfill (empty)"
    start_cursor = _cursor_value(newest, cursor, parse)
    if start_cursor is not None:
        cur.set_floor(start_cursor)
    if split_on is None:
        return api.walk(obj, cursor, key, parse=parse), start_cursor, "backfill"
    first, last = api.edge(obj, split_on, last=False), api.edge(obj, split_on, last=True)
    lo, hi = int(first[split_on]) - 1, int(last[split_on])
    ranges = _split(lo, hi, max(1, workers) * 4) if workers > 1 else [(lo, hi)]

    def task(after: int, upto: int) -> Callable[[], Iterator[list[dict[str, Any]]]]:
        return lambda: api.walk(obj, split_on, split_on, after=(after, after), extra=[(split_on, "<=", upto)])

    pages = concurrent_pages([task(a, b) for a, b in ranges], workers, name=f"personyze-{obj}")
    return pages, start_cursor, f"backfill ({len(ranges)} ranges, {workers} workers)"


def _incremental(
    api: PersonyzeClient,
    obj: str,
    cursor: str,
    key: str,
    parse: Callable[[Any], Any],
    cur: LookbackCursor,
) -> Iterator[list[dict[str, Any]]]:
    """Later runs: everything at or after (stored cursor - lookback).

    Fast path: the newest 1,000 rows by cursor need no ``where`` and so are not a slow query; if
    the smallest cursor among them is below the lower bound, every row at or above the bound is
    in that one response. Otherwise (including a page shorter than asked that stays above the
    bound) walk the keyset from the bound in pages of 50 (a range query is slow)."""
    low = cur.lower_bound()
    size = api.page_size
    newest = api.newest(obj, cursor, count=size)
    values = [_cursor_value(r, cursor, parse) for r in newest]
    present = [v for v in values if v is not None]
    # conclusive only when the page itself shows it reached past the bound: a row below it, or
    # a row without a cursor value (sorted last descending). A page merely shorter than asked is
    # not proof: the server may have returned fewer rows than it holds.
    if (present and min(present) < low) or len(present) < len(values):
        rows = [r for r, v in zip(newest, values, strict=True) if v is not None and v >= low]
        rows.sort(key=lambda r: _cursor_value(r, cursor, parse))
        return iter([rows] if rows else [])
    return api.walk(obj, cursor, key, parse=parse, start=low)
