"""Lytics: user profiles through segment scans, content documents, segments and catalog tables.

Read this file and you know what is loaded (tables are named after resources):

| resource            | primary key          | write disposition | cursor                                              |
|---------------------|----------------------|-------------------|-----------------------------------------------------|
| users               | _uid (configurable)  | merge             | _modified: ad-hoc scan ``_modified > cursor − lookback`` |
| content_documents   | id                   | merge             | updated, client-side (the scan has no filter)       |
| segments            | id                   | merge             | updated, client-side (user and content segments)    |
| segment_collections | id                   | merge             | updated, client-side                                |
| segment_sizes       | id, extracted_at     | merge             | none: one row per segment per run (replay-safe)     |
| schema_fields       | table, as            | replace           | none: full snapshot                                 |
| streams             | stream               | merge             | last_msg_ts, client-side                            |
| jobs                | id                   | merge             | updated, client-side                                |

``users``: the first run reads the configured saved segment (``segment``; default: every user)
through its scan; later runs read only profiles changed since the stored cursor minus the
lookback, through the ad-hoc scan ``FILTER _modified > "<cursor − lookback>" FROM user`` (ANDed
with ``INCLUDE <segment>`` when a segment is configured). Long scans are split into ``splits``
bucket scans fetched concurrently. Rows re-read inside the lookback window unchanged since they
were loaded are dropped before loading (``sources/common/cursor.py``), so a run with no changes
loads nothing. The cursor moves only with the load package that carries it.

Bounded mode (``window_start``/``window_end``, see ``sources/common/window.py``): the source
returns only ``users`` (:data:`BACKFILL_RESOURCES`), reading the profiles whose ``_modified``
lies in ``[window_start, window_end)`` through :func:`read_users`, without cursor state. A profile
changed while the scan runs moves to a newer ``_modified``; if the scan returns it with that newer
value outside the window it is left to the window (or scheduled run) that holds it now.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import dlt
import pendulum
import pyarrow as pa
import pyarrow.compute as pc
from dlt.sources import DltResource

from sources.common.arrow import batched, quiet_arrow_hint_warning
from sources.common.cursor import LookbackCursor, admit_column_wise
from sources.common.errors import ConfigurationError, MalformedResponse
from sources.common.hints import merge_run_hints
from sources.common.http import RetryPolicy
from sources.common.lease import SharedClient
from sources.common.progress import ProgressLog, record_requests
from sources.common.window import RowCount, Window

from . import settings as S
from .client import LyticsClient, ScanSpec, ScanStats, filter_ql
from .tables import UNFIT_SUFFIX, Table, distinct_hashes, iso_to_micros

__all__ = ["lytics_source", "check_credentials", "LyticsClient", "read_users", "user_table", "BACKFILL_RESOURCES"]

#: the time-windowed resources (``cdp-sync backfill lytics --resource R``) and their time axis
BACKFILL_RESOURCES = {
    "users": "_modified (the profile's last change)",
}

logger = logging.getLogger("cdp_sync.lytics")


def check_credentials(api_key: str, base_url: str = S.DEFAULT_BASE_URL) -> str:
    """``GET /api/account``: one cheap request that answers 401 for a bad token."""
    client = LyticsClient(api_key, base_url, retry=RetryPolicy(max_attempts=3, max_total_wait=30))
    try:
        accounts = client.accounts()
    finally:
        client.close()
    if accounts:
        a = accounts[0]
        return f"account {a.get('name')!r} (aid {a.get('aid')})"
    return "credentials accepted"


# --------------------------------------------------------------------------------- time helpers


_EPOCH = _dt.datetime(1970, 1, 1)


def canonical(micros: int) -> str:
    """Epoch microseconds as a fixed-width RFC 3339 string (text order = time order), for
    example ``2026-01-05T10:00:00.123456Z``. Plain ``datetime`` arithmetic: this runs for every
    profile a scan reads (pendulum's formatter cost ten times as much)."""
    return (_EPOCH + _dt.timedelta(microseconds=micros)).isoformat(timespec="microseconds") + "Z"


#: Lytics' own layout (Go ``RFC3339Nano`` in UTC): its canonical text is a rewrite of the fraction
_UTC_NANO = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{1,9}))?Z")


def to_canonical(value: Any, where: str) -> str | None:
    """An RFC 3339 value as :func:`canonical` text (``None`` for none). Go's ``RFC3339Nano`` in
    UTC (what Lytics sends) is rewritten directly once its date and time are checked; anything
    else (offsets, other layouts) is parsed."""
    if value is None or value == "":
        return None
    text = str(value)
    m = _UTC_NANO.fullmatch(text)
    if m is not None:
        head = m.group(1)
        try:
            _dt.datetime.fromisoformat(head)  # a real date and time (no month 13, no second 60)
        except ValueError:
            pass
        else:
            return f"{head}.{(m.group(2) or '')[:6]:0<6}Z"
    return canonical(iso_to_micros(text, where))


def _seconds_before(seconds: float) -> Callable[[str], str]:
    def behind(value: str) -> str:
        return canonical(iso_to_micros(value) - int(seconds * 1_000_000))

    return behind


def _ms_before(seconds: float) -> Callable[[int], int]:
    return lambda v: v - int(seconds * 1000)


def _epoch_ms(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        raise MalformedResponse(f"lytics: cannot read {value!r} as epoch milliseconds", vendor=S.VENDOR) from None


# ------------------------------------------------------------------------- newest copy wins


#: the merge keeps the copy with the newest value of this column when a load holds a key twice
def _newest_wins(columns: dict[str, dict[str, Any]], column: str) -> dict[str, dict[str, Any]]:
    columns[column] = {**columns[column], "dedup_sort": "desc"}
    return columns


# ------------------------------------------------------------------------- rows unique in a run


class RunKeys:
    """The primary keys of the rows a run loads, kept as 8-byte hashes (a million profiles:
    8 MB), to tell dlt whether the run's rows are unique.

    A run normally reads each profile once, and then the merge can skip de-duplicating its
    staging table (a window function over whole rows that DuckDB cannot spill: a million profiles
    would need far more than cdp-sync's memory cap). A profile loaded twice (a scan restarted
    after its token expired, a profile served again after it changed) makes the run not unique:
    the merge then de-duplicates and keeps the newest copy (``dedup_sort`` on ``_modified``).
    Two different keys with one hash only cost that de-duplication. The decision rides on the
    run's last Arrow table (:meth:`hinted`), when every key is known; a package finished after an
    interruption de-duplicates whatever it says (``pipelines.destinations.run_within_cap``)."""

    def __init__(self) -> None:
        self._hashes = array("q")

    def extend(self, keys: pa.ChunkedArray | pa.Array) -> None:
        """The keys of a batch's loaded rows, as the destination holds them (the text column)."""
        self._hashes.extend(map(hash, keys.to_pylist()))

    def unique(self) -> bool:
        return distinct_hashes(self._hashes) == len(self._hashes)

    def hinted(self, tables: Iterable[pa.Table]) -> Iterator[pa.Table]:
        """``tables`` as they come, the last one held back until every key is known and marked
        with :func:`merge_run_hints` (written on every run: a table's hints persist in the schema)."""
        held: pa.Table | None = None
        for t in tables:
            if held is not None:
                yield held
            held = t
        if held is not None:
            yield merge_run_hints(held, unique_in_run=self.unique())


# ------------------------------------------------------------------------------ short scans

SHORT_SCAN_CHOICES = ("fail", "load_incomplete")


def _compact_reason(mark: Any) -> str:
    if not isinstance(mark, dict):
        return str(mark)
    return f"since {mark.get('since')}, {mark.get('runs', 1)} run(s): {'; '.join(mark.get('short_scans') or [])[:200]}"


def _short_read(name: str, state: dict[str, Any], mode: str, stats: ScanStats, cur: LookbackCursor,
                on_short_scan: str, **run_info: Any) -> None:
    """A scan of ``name`` read fewer distinct rows than its ``total``: the read is not complete.

    ``fail`` (default): raise, so the resource fails and nothing of this run is committed (the
    next run reads the same range again). ``load_incomplete``: the rows read are loaded, the
    cursor and fingerprints stay where they were, and ``incomplete`` is stored in the resource
    state (shown by ``cdp-sync state``) so the next run repeats the read; it is cleared by the
    first complete read."""
    what = "; ".join(stats.short[:3]) + (f" (and {len(stats.short) - 3} more)" if len(stats.short) > 3 else "")
    if on_short_scan != "load_incomplete":
        raise MalformedResponse(
            f"lytics {name}: a scan ended short of its total ({what}); nothing of {name} was committed and the "
            "next run reads the same range again (on_short_scan=load_incomplete loads what was read instead "
            "and marks the resource incomplete)",
            vendor=S.VENDOR,
        )
    previous = state.get("incomplete") or {}
    now = pendulum.now("UTC").to_iso8601_string()
    state["incomplete"] = {
        "since": previous.get("since", now),
        "runs": int(previous.get("runs", 0)) + 1,
        "mode": mode,
        "short_scans": stats.short[:10],
        "note": "the last read ended short of its total; the next run repeats it (cursor not moved)",
    }
    state["last_run"] = {"finished_at": now, "rows_read": cur.rows_read, "rows_loaded": cur.rows_admitted,
                         "mode": f"{mode}, incomplete", **run_info, **stats.as_state()}
    logger.warning("lytics %s: a scan ended short of its total (%s); loaded what was read and marked %s "
                   "incomplete: the next run repeats the read", name, what, name)


# ------------------------------------------------------------------------- users, column-wise


def _users_batch(table: Table, rows: list[dict[str, Any]], unfit: Counter[str], primary_key: str) -> pa.Table:
    """A batch of profiles as read, in Arrow; every one must carry its key and a ``_modified``
    that reads as a time (or none): a profile the cursor cannot place fails the run."""
    converted = _to_arrow(table, rows, unfit)
    _check_keys(converted.column(primary_key), rows, primary_key)
    if unfit.get("_modified"):
        for row in rows:
            to_canonical(row.get("_modified"), "users._modified")  # raises for the first one that does not read
    return converted


def _check_keys(keys: pa.ChunkedArray, rows: list[dict[str, Any]], primary_key: str) -> None:
    """Every profile of a batch carries its primary key (not null, not empty)."""
    missing = pc.or_kleene(pc.is_null(keys), pc.equal(keys, ""))
    if pc.any(missing).as_py():
        row = rows[pc.index(missing, True).as_py()]
        raise MalformedResponse(
            f"lytics user without {primary_key} (the configured user_primary_key); fields present: {sorted(row)[:12]}",
            vendor=S.VENDOR,
        )


def _admit_rows(cur: LookbackCursor, rows: list[dict[str, Any]], modified: pa.ChunkedArray,
                primary_key: str) -> pa.Array | None:
    """The mask of the batch's rows the cursor keeps (``None``: all of them), by
    :func:`admit_column_wise`. The floor is compared on the parsed times, a microsecond wide of it
    (the cursor itself compares the exact text of the rows it is shown)."""
    edge = None
    if cur.floor is not None:
        edge = pa.scalar(iso_to_micros(cur.floor) - 1, type=pa.int64()).cast(modified.type)

    def show(i: int) -> bool:
        row = rows[i]
        return cur.admit(str(row[primary_key]), to_canonical(row.get("_modified"), "users._modified"), row)

    return admit_column_wise(cur, len(rows), modified, edge, show)


# ---------------------------------------------------------------------------------- users table


def user_table(schema: dict[str, Any] | None, primary_key: str, extra_columns: Sequence[str] | None,
               max_columns: int, typed_before: dict[str, str] | None = None) -> tuple[Table, dict[str, str]]:
    """The ``users`` table and the schema kind of every field the schema types.

    ``extra_columns=None``: every scalar schema field (``string``/``int``/``number``/``bool``/
    ``date``) becomes a typed column, up to ``max_columns``; a list names them instead. Lists,
    maps and anything undeclared go to ``attributes``, with numbers sent as strings converted
    where the schema says they are numbers.

    ``typed_before`` (column -> kind, from the resource state) are the typed columns of earlier
    runs: they stay typed, with their kind, whatever the schema's order or the cap says now, and
    count towards the cap. The typed set only grows: a field inserted early in the schema never
    pushes an existing column out (whose new values would otherwise land in ``attributes`` while
    the column holds NULL)."""
    kinds: dict[str, str] = {}
    for col in (schema or {}).get("columns") or []:
        name, typ = col.get("as"), str(col.get("type") or "")
        if name and typ in S.SCHEMA_KINDS:
            kinds[name] = S.SCHEMA_KINDS[typ]
        elif name and typ in ("map[string]int", "map[string]number", "[]int", "[]number"):
            kinds[name] = typ
    columns = dict(S.USER_CORE)
    for c, kind in (typed_before or {}).items():
        columns.setdefault(c, kind)
    wanted = [c for c, k in kinds.items() if k in S.SCHEMA_KINDS.values()] if extra_columns is None else list(extra_columns)
    for c in wanted:
        if c in columns:
            continue
        if len(columns) - len(S.USER_CORE) >= max_columns:
            logger.info("lytics users: more than %d typed fields; the rest go to attributes", max_columns)
            break
        kind = kinds.get(c, "text")
        columns[c] = kind if kind in S.SCHEMA_KINDS.values() else "json"
    return Table("users", columns, primary_key=(primary_key,), extras_kinds=kinds), kinds


def _to_arrow(table: Table, rows: list[dict[str, Any]], unfit: Counter[str] | None = None) -> pa.Table:
    """``table.to_arrow(rows, unfit)``: a value that does not read as its column's kind (the
    account schema says ``int`` and a profile holds ``"n/a"``) goes to ``attributes`` as
    ``<column>__v_text`` (the column is NULL in that row) instead of failing the run, counted in
    ``unfit`` for one warning per column."""
    return table.to_arrow(rows, unfit)


def _warn_unfit(name: str, table: Table, unfit: Counter[str]) -> None:
    for c, n in sorted(unfit.items()):
        logger.warning("lytics %s: %d value(s) of %s do not read as %s; loaded into attributes as %s%s",
                       name, n, c, table.columns[c], c, UNFIT_SUFFIX)


def typed_columns(table: Table) -> dict[str, str]:
    """The typed columns beyond the identity/system ones (kept in state: the set only grows)."""
    return {c: k for c, k in table.columns.items() if c not in S.USER_CORE}


def read_users(
    api: LyticsClient,
    *,
    segment: str | None = None,
    since: str | None = None,
    until: str | None = None,
    start: str | None = None,
    end: str | None = None,
    workers: int = S.DEFAULT_SCAN_WORKERS,
    parts: int = S.DEFAULT_SCAN_SPLITS,
    split_min_pages: int = S.DEFAULT_SPLIT_MIN_PAGES,
    stats: ScanStats | None = None,
    key: str | None = S.DEFAULT_USER_PRIMARY_KEY,
) -> Iterator[list[dict[str, Any]]]:
    """Pages of the profiles whose ``_modified`` lies in ``(since, until]`` and in ``[start, end)``
    (any bound may be ``None``) and that belong to segment ``segment`` (a slug; ``None``: every user).

    Without bounds a configured segment is read through its saved scan; everything else is an
    ad-hoc FilterQL scan. Reads no state and writes none: a scheduled run and a backfill of a
    past window call this with their own bounds."""
    if since is None and until is None and start is None and end is None:
        spec = ScanSpec(segment=segment) if segment else ScanSpec(ql=filter_ql())
    else:
        spec = ScanSpec(ql=filter_ql(since=since, until=until, start=start, end=end, include=segment))
    return api.scan(spec, workers=workers, parts=parts, split_min_pages=split_min_pages, stats=stats, key=key)


def _segment_slug(api: LyticsClient, segment: str | None) -> str | None:
    """The slug of the configured user segment (``None``: every user)."""
    if not segment:
        return None
    seg = api.segment(segment)
    if seg.get("table", "user") != "user":
        raise ConfigurationError(f"lytics segment {segment!r} is a {seg.get('table')} segment, not a user segment",
                                 vendor=S.VENDOR)
    return str(seg.get("slug_name") or segment)


# --------------------------------------------------------------------------------------- source


@dlt.source(name="lytics", max_table_nesting=0)
def lytics_source(
    api_key: str = dlt.secrets.value,
    base_url: str = S.DEFAULT_BASE_URL,
    segment: str | None = None,
    users_mode: str = "incremental",
    user_primary_key: str = S.DEFAULT_USER_PRIMARY_KEY,
    user_columns: list[str] | None = None,
    max_user_columns: int = S.DEFAULT_MAX_USER_COLUMNS,
    lookback_seconds: int = S.DEFAULT_LOOKBACK_SECONDS,
    scan_workers: int = S.DEFAULT_SCAN_WORKERS,
    scan_splits: int = S.DEFAULT_SCAN_SPLITS,
    split_min_pages: int = S.DEFAULT_SPLIT_MIN_PAGES,
    scan_limit: int = S.MAX_SCAN_LIMIT,
    max_scan_restarts: int = S.DEFAULT_SCAN_RESTARTS,
    batch_rows: int = S.DEFAULT_BATCH_ROWS,
    max_attempts: int = 6,
    max_retry_wait: float = 120.0,
    max_throttle_wait: float = 900.0,
    request_timeout: float = 60.0,
    on_short_scan: str = "fail",
    window_start: Any = None,
    window_end: Any = None,
) -> Sequence[DltResource]:
    """The Lytics REST API as dlt resources.

    Args:
        api_key: an access token (Account > Security > Access Tokens) with read roles; sent as the
            raw ``Authorization`` header.
        base_url: ``https://api.lytics.io`` (``…/api`` is accepted too); only HTTPS.
        segment: id or slug of a saved user segment to load (default: every user).
        users_mode: ``incremental`` (default: changed profiles only after the first run) or
            ``snapshot`` (the whole segment every run, merged).
        user_primary_key: ``_uid`` (default), ``email`` or ``user_id``; every row must carry it.
        user_columns: scalar profile fields to load as typed columns (default: every scalar field
            of ``/api/schema/user``, at most ``max_user_columns``); the rest go to ``attributes``.
        lookback_seconds: how far behind its cursor ``users`` re-reads (and the client-side
            cursors of the catalog tables).
        scan_workers: concurrent bucket scans for a long scan (1: one sequential scan).
        scan_splits: how many bucket groups a long scan is split into (at most 100).
        split_min_pages: a scan longer than this many pages is split.
        scan_limit: rows per scan page (the API's maximum, 100, by default).
        max_scan_restarts: how often one scan may restart after its token is refused.
        batch_rows: rows per Arrow table handed to dlt.
        max_attempts, max_retry_wait, request_timeout: the HTTP retry budget and timeout.
        max_throttle_wait: seconds one request may spend waiting out 429s (Lytics states no wait;
            the common client backs off exponentially within this budget).
        on_short_scan: ``fail`` (default): a scan that reads fewer distinct rows than its
            ``total`` fails the resource and commits nothing; ``load_incomplete``: load what was
            read, keep the cursor, and mark the resource ``incomplete`` in its state so the next
            run repeats the read.
        window_start, window_end: bounded mode (both or neither; ISO 8601 or datetimes, UTC): only
            ``users``, the profiles with ``_modified`` in ``[window_start, window_end)``, without
            cursor state.
    """
    window = Window.from_options(window_start, window_end, S.VENDOR)
    if users_mode not in ("incremental", "snapshot"):
        raise ConfigurationError(f"lytics users_mode must be incremental or snapshot, not {users_mode!r}",
                                 vendor=S.VENDOR)
    if on_short_scan not in SHORT_SCAN_CHOICES:
        raise ConfigurationError(
            f"lytics on_short_scan must be one of {', '.join(SHORT_SCAN_CHOICES)}, not {on_short_scan!r}",
            vendor=S.VENDOR,
        )
    if user_primary_key not in S.USER_KEY_CHOICES:
        raise ConfigurationError(
            f"lytics user_primary_key must be one of {', '.join(S.USER_KEY_CHOICES)}, not {user_primary_key!r}",
            vendor=S.VENDOR,
        )
    for name, value, low, high in (
        ("lookback_seconds", lookback_seconds, 0, 10**9),
        ("scan_workers", scan_workers, 1, 32),
        ("scan_splits", scan_splits, 1, S.BUCKETS),
        ("split_min_pages", split_min_pages, 1, 10**9),
        ("max_scan_restarts", max_scan_restarts, 0, 100),
        ("batch_rows", batch_rows, 1, 10**7),
        ("max_user_columns", max_user_columns, 0, 10_000),
    ):
        if not low <= int(value) <= high:
            raise ConfigurationError(f"lytics {name} must be between {low} and {high}", vendor=S.VENDOR)
    if isinstance(user_columns, str):
        user_columns = [c.strip() for c in user_columns.split(",") if c.strip()]
    quiet_arrow_hint_warning()
    retry = RetryPolicy(max_attempts=max_attempts, max_total_wait=max_retry_wait, max_throttle_wait=max_throttle_wait)

    def make_client() -> LyticsClient:
        return LyticsClient(
            api_key, base_url, timeout=request_timeout, retry=retry, scan_limit=scan_limit,
            max_restarts=max_scan_restarts, max_connections=max(8, scan_workers * 2 + 2),
        )

    shared = SharedClient(make_client, on_close=lambda c: record_requests(S.VENDOR, c.http.stats["requests"]))

    def users() -> Iterator[pa.Table]:
        state = dlt.current.resource_state("users")
        for key, value in (("segment", segment or ""), ("primary_key", user_primary_key)):
            if state.get(key, value) != value:
                raise ConfigurationError(
                    f"lytics users were loaded with {key} {state[key]!r}; switching to {value!r} needs a full "
                    "refresh (cdp-sync run lytics --full-refresh)",
                    vendor=S.VENDOR,
                )
        cur = LookbackCursor(state, _seconds_before(lookback_seconds), newest_wins=True)
        progress = ProgressLog(S.VENDOR, "users")
        run_start = canonical(pendulum.now("UTC").int_timestamp * 1_000_000)
        stats = ScanStats()
        incomplete = state.get("incomplete")
        with shared.use() as api:
            before = api.http.stats["requests"]
            table, _ = user_table(api.schema("user"), user_primary_key, user_columns, max_user_columns,
                                  typed_before=state.get("typed_columns"))
            slug = _segment_slug(api, segment)
            if cur.value is None or users_mode == "snapshot":
                mode = "full scan" if cur.value is None else "snapshot"
                pages = read_users(api, segment=slug, workers=scan_workers, parts=scan_splits,
                                   split_min_pages=split_min_pages, stats=stats, key=user_primary_key)
            else:
                mode = "incremental"
                pages = read_users(api, segment=slug, since=cur.lower_bound(), workers=scan_workers,
                                   parts=scan_splits, split_min_pages=split_min_pages, stats=stats,
                                   key=user_primary_key)
            if incomplete:
                logger.warning("lytics users: the last read was incomplete (%s); repeating it (%s)",
                               _compact_reason(incomplete), mode)

            newest: list[str] = []
            # first run: the cursor committed is at least min(newest so far, run_start), so rows
            # further behind than the lookback need no fingerprint (nothing is in state to match)
            def admitted(batch: list[dict[str, Any]]) -> pa.Table:
                converted = _users_batch(table, batch, unfit, user_primary_key)
                keys = converted.column(user_primary_key)
                modified = converted.column("_modified")
                top = pc.max(modified)
                if top.is_valid:
                    text = to_canonical(batch[pc.index(modified, top).as_py()].get("_modified"), "users._modified")
                    if text is not None and (not newest or text > newest[0]):
                        newest[:] = [text]
                        if first_run:
                            cur.set_floor(min(text, run_start))
                kept = _admit_rows(cur, batch, modified, user_primary_key)
                if kept is not None:
                    converted, keys = converted.filter(kept), keys.filter(kept)
                loaded.extend(keys)
                progress.update(len(batch), converted.num_rows)
                return converted

            first_run = cur.value is None
            if not first_run:
                # the committed cursor never moves back: rows behind the stored cursor's lookback
                # match no fingerprint in state and never need one (a snapshot reads them all)
                cur.set_floor(cur.value)
            unfit: Counter[str] = Counter()
            loaded = RunKeys()
            yield from loaded.hinted(t for t in map(admitted, batched(pages, batch_rows)) if t.num_rows)
            requests = api.http.stats["requests"] - before
        _warn_unfit("users", table, unfit)
        if stats.short:
            _short_read("users", state, mode, stats, cur, on_short_scan, requests=requests)
        state["segment"] = segment or ""
        state["primary_key"] = user_primary_key
        state["cursor_column"] = "_modified"
        # the typed columns only grow (they exist in the destination from now on)
        state["typed_columns"] = typed_columns(table)
        if not stats.short:
            # the cursor never passes this run's start: profiles changed while the scan ran
            # (and read before they changed) lie after it and are read again next time
            new_cursor = min(newest[0], run_start) if newest else None
            state.pop("incomplete", None)
            cur.commit(new_cursor, mode=mode, requests=requests, **stats.as_state())
        progress.done(mode)

    def users_in_window() -> Iterator[pa.Table]:
        """Bounded mode: the profiles with ``start <= _modified < end``. A scan whose token
        expires restarts and reads rows again: the merge then de-duplicates (:class:`RunKeys`)."""
        assert window is not None
        state = dlt.current.resource_state("users")
        progress = ProgressLog(S.VENDOR, f"users[{window.label}]")
        count = RowCount()
        stats = ScanStats()
        lo, hi = canonical(window.start_us), canonical(window.end_us)
        moved = 0
        with shared.use() as api:
            table, _ = user_table(api.schema("user"), user_primary_key, user_columns, max_user_columns)
            slug = _segment_slug(api, segment)
            pages = read_users(api, segment=slug, start=lo, end=hi, workers=scan_workers, parts=scan_splits,
                               split_min_pages=split_min_pages, stats=stats, key=user_primary_key)

            edges = [pa.scalar(window.start_us, pa.int64()), pa.scalar(window.end_us, pa.int64())]

            def inside(batch: list[dict[str, Any]]) -> pa.Table:
                nonlocal moved
                converted = _users_batch(table, batch, unfit, user_primary_key)
                at = converted.column("_modified")
                lo_ts, hi_ts = (e.cast(at.type) for e in edges)
                # a profile changed during the scan belongs to a later window now ("moved out")
                out = pc.fill_null(pc.or_(pc.less(at, lo_ts), pc.greater_equal(at, hi_ts)), False)
                n_out = pc.sum(out).as_py() or 0
                if n_out:
                    moved += n_out
                    converted = converted.filter(pc.invert(out))
                loaded.extend(converted.column(user_primary_key))
                progress.update(len(batch), converted.num_rows)
                return converted

            unfit: Counter[str] = Counter()
            loaded = RunKeys()
            yield from loaded.hinted(count(t) for t in map(inside, batched(pages, batch_rows)) if t.num_rows)
            _warn_unfit("users", table, unfit)
            if stats.short:  # a window is never recorded as done on a short read
                raise MalformedResponse(
                    f"lytics users[{window.label}]: a scan ended short of its total ({'; '.join(stats.short[:3])}); "
                    "the window is not complete and is not recorded as done", vendor=S.VENDOR)
            window.record(state, count.rows, axis="_modified", segment=segment or "", moved_out=moved,
                          **stats.as_state())
        progress.done()

    def client_side(
        name: str,
        table: Table,
        fetch: Callable[[LyticsClient], list[dict[str, Any]]],
        key: Callable[[dict[str, Any]], str],
        cursor_of: Callable[[dict[str, Any]], Any],
        behind: Callable[[Any], Any],
    ) -> Callable[[], Iterator[pa.Table]]:
        """A resource over an unfiltered list: rows older than the stored cursor minus the lookback
        are unchanged since loaded and skipped; inside the window, unchanged rows are skipped."""

        def resource() -> Iterator[pa.Table]:
            state = dlt.current.resource_state(name)
            cur = LookbackCursor(state, behind)
            low = cur.lower_bound()
            with shared.use() as api:
                rows = fetch(api)
            keep = []
            for row in rows:
                c = cursor_of(row)
                if low is not None and c is not None and c < low:
                    continue
                if cur.admit(key(row), c, row):
                    keep.append(row)
            unfit: Counter[str] = Counter()
            for i in range(0, len(keep), batch_rows):
                yield _to_arrow(table, keep[i : i + batch_rows], unfit)
            _warn_unfit(name, table, unfit)
            cur.commit(mode="full list, client-side cursor", rows_listed=len(rows))

        resource.__name__ = name
        return resource

    def updated(row: dict[str, Any]) -> str | None:
        return to_canonical(row.get("updated"), "updated")

    def content_documents() -> Iterator[pa.Table]:
        state = dlt.current.resource_state("content_documents")
        cur = LookbackCursor(state, _seconds_before(lookback_seconds), newest_wins=True)
        low = cur.lower_bound()
        stats = ScanStats()
        progress = ProgressLog(S.VENDOR, "content_documents")
        with shared.use() as api:
            pages = api.scan(ScanSpec(ql=filter_ql(table="content")), workers=scan_workers, parts=scan_splits,
                             split_min_pages=split_min_pages, stats=stats, key="id")

            def admitted() -> Iterator[list[dict[str, Any]]]:
                for page in pages:
                    keep = []
                    for row in page:
                        if row.get("id") in (None, ""):
                            raise MalformedResponse("lytics content document without id", vendor=S.VENDOR)
                        c = updated(row)
                        if low is not None and c is not None and c < low:
                            continue
                        if cur.admit(str(row["id"]), c, row):
                            keep.append(row)
                    progress.update(len(page), len(keep))
                    if keep:
                        yield keep

            unfit: Counter[str] = Counter()
            for batch in batched(admitted(), batch_rows):
                yield _to_arrow(S.CONTENT_DOCUMENTS, batch, unfit)
        _warn_unfit("content_documents", S.CONTENT_DOCUMENTS, unfit)
        mode = "full scan, client-side cursor"
        if stats.short:
            _short_read("content_documents", state, mode, stats, cur, on_short_scan)
        else:
            state.pop("incomplete", None)
            cur.commit(mode=mode, **stats.as_state())
        progress.done()

    def segment_sizes() -> Iterator[pa.Table]:
        extracted_at = pendulum.now("UTC").to_iso8601_string()
        with shared.use() as api:
            segs = api.segments("user") + api.segments("content")
            ids = [str(s["id"]) for s in segs if s.get("id")]
            rows = api.sizes(ids, S.SIZE_IDS_PER_REQUEST) if ids else []
        for r in rows:
            r["extracted_at"] = extracted_at
        if rows:
            unfit: Counter[str] = Counter()
            yield _to_arrow(S.SEGMENT_SIZES, rows, unfit)
            _warn_unfit("segment_sizes", S.SEGMENT_SIZES, unfit)

    def schema_fields() -> Iterator[pa.Table]:
        rows = []
        with shared.use() as api:
            for t in ("user", "content"):
                for col in api.schema(t).get("columns") or []:
                    rows.append({"table": t, **col})
        unfit: Counter[str] = Counter()
        yield _to_arrow(S.SCHEMA_FIELDS, rows, unfit)
        _warn_unfit("schema_fields", S.SCHEMA_FIELDS, unfit)

    def stream_cursor(row: dict[str, Any]) -> int | None:
        return _epoch_ms(row.get("last_msg_ts"))

    def _resource(fn: Callable[[], Iterator[pa.Table]], name: str, table: Table, disposition: str,
                  newest: str | None = None) -> DltResource:
        columns = table.dlt_columns()
        if newest is not None:
            columns = _newest_wins(columns, newest)
        return dlt.resource(fn, name=name, primary_key=list(table.primary_key), write_disposition=disposition,
                            columns=columns, parallelized=True)()

    def users_columns() -> dict[str, dict[str, Any]]:
        return _newest_wins(user_table(None, user_primary_key, [], 0)[0].dlt_columns(), "_modified")

    behind_s = _seconds_before(lookback_seconds)
    if window is not None:  # bounded mode: the time-windowed resources only
        return [dlt.resource(users_in_window, name="users", primary_key=user_primary_key, write_disposition="merge",
                             columns=users_columns(), parallelized=True)()]
    return [
        dlt.resource(users, name="users", primary_key=user_primary_key, write_disposition="merge",
                     columns=users_columns(), parallelized=True)(),
        _resource(content_documents, "content_documents", S.CONTENT_DOCUMENTS, "merge", newest="updated"),
        _resource(client_side("segments", S.SEGMENTS, lambda api: api.segments("user") + api.segments("content"),
                              lambda r: str(r["id"]), updated, behind_s), "segments", S.SEGMENTS, "merge"),
        _resource(client_side("segment_collections", S.SEGMENT_COLLECTIONS,
                              lambda api: api.rows("api/segmentcollection"), lambda r: str(r["id"]), updated,
                              behind_s), "segment_collections", S.SEGMENT_COLLECTIONS, "merge"),
        # one snapshot per run, merged on (id, extracted_at): a load package replayed after an
        # interrupted load (a SIGKILL in the load step) replaces its own rows instead of adding a copy
        _resource(segment_sizes, "segment_sizes", S.SEGMENT_SIZES, "merge"),
        _resource(schema_fields, "schema_fields", S.SCHEMA_FIELDS, "replace"),
        _resource(client_side("streams", S.STREAMS, lambda api: api.rows("api/schema/_streams"),
                              lambda r: str(r["stream"]), stream_cursor, _ms_before(lookback_seconds)),
                  "streams", S.STREAMS, "merge"),
        _resource(client_side("jobs", S.JOBS, lambda api: api.rows("api/work"), lambda r: str(r["id"]), updated,
                              behind_s), "jobs", S.JOBS, "merge"),
    ]

