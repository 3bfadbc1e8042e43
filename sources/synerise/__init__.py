"""Synerise: profiles, workspace events, per-profile event history, catalogs and their items,
tags, segmentation members, analytics definitions, summaries and values.

Read this file and you know what is loaded (tables are named after resources):

| resource             | primary key                   | write disposition        | cursor / each run reads |
|----------------------|-------------------------------|--------------------------|-------------------------|
| profiles             | client_id                     | merge (+ hard delete of merged-away profiles); replace in export mode | full snapshot |
| events               | event_uuid                    | merge                    | `time` (ms): [cursor − lookback, server time − lag], windows split under the 1,000 cap |
| profile_events       | event_uuid                    | merge                    | `time` per profile (pageToken walk, oldest first) |
| catalogs             | id                            | merge                    | full snapshot |
| catalog_items        | catalog_id, item_key          | merge (delete-insert per catalog) | full snapshot per catalog |
| tags                 | id                            | replace                  | full snapshot |
| asset_tags           | hash                          | replace                  | full snapshot (tags-collector, 0-based pages) |
| segmentation_members | segmentation_uuid, id         | replace                  | configured segmentations |
| expressions          | id                            | merge                    | full snapshot |
| aggregates           | uuid                          | merge                    | full snapshot |
| expression_summaries | hash_id                       | replace                  | full snapshot |
| aggregate_summaries  | uuid                          | replace                  | full snapshot |
| analytics_values     | client_id, analytic_uuid      | merge                    | configured analytics × profiles (or the export task) |

Time-windowed reads take explicit bounds (:func:`read_events_window`,
:func:`read_profile_events`), so a past window can be loaded without touching the scheduled
cursor. Cursor state lives in dlt resource state and moves only with the load package.

Bounded mode (``window_start``/``window_end``, see ``sources/common/window.py``): the source
returns only ``events`` (:data:`BACKFILL_RESOURCES`), reading exactly ``[window_start,
window_end)`` through :func:`read_events_window`, without cursor state. Workspace activities
older than 6 hours are out of the API's reach: a window entirely beyond that horizon is an
error; a window partly beyond it loads what is reachable and reports the gap (logged loudly
and kept in the window's record as ``unreachable``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import dlt
import orjson
import pendulum
import pyarrow as pa
import pyarrow.compute as pc
from dlt.sources import DltResource

from sources.common.arrow import TableSpec, TolerantConverter, batched, quiet_arrow_hint_warning
from sources.common.concurrency import concurrent_pages
from sources.common.cursor import LookbackCursor, admit_column_wise
from sources.common.errors import ConfigurationError, MalformedResponse
from sources.common.hints import merge_run_hints
from sources.common.http import RetryPolicy
from sources.common.lease import SharedClient
from sources.common.progress import ProgressLog, record_requests
from sources.common.window import RowCount, Window

from . import columnar
from . import settings as S
from .client import SyneriseClient, Unreadable, iso_to_ms
from .keys import Keys

__all__ = ["synerise_source", "check_credentials", "SyneriseClient", "read_events_window", "events_window", "Density",
           "read_profile_events", "BACKFILL_RESOURCES"]

#: the time-windowed resources (``cdp-sync backfill synerise --resource R``) and their time axis
BACKFILL_RESOURCES = {
    "events": "time (ms); only the last 6 hours are reachable (the API's horizon)",
}

progress_logger = logging.getLogger("cdp_sync.progress")
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
#: how many unreachable gaps and truncated milliseconds the events state remembers
STATE_LIST_LIMIT = 200


def check_credentials(api_key: str, base_url: str = S.DEFAULT_BASE_URL) -> str:
    """Log in with the workspace key (one login, then ``GET /v4/server/time``)."""
    client = SyneriseClient(api_key, base_url, retry=RetryPolicy(max_attempts=3, max_total_wait=30))
    try:
        info = client.login()
    finally:
        client.close()
    life = info.get("lifetime_s")
    life_text = f", tokens live {life / 60:.0f} min" if isinstance(life, (int, float)) else ""
    return f"workspace {info.get('workspace_id')}{life_text}, server time {info.get('server_time')}"


# -------------------------------------------------------------------------------- row mapping

_V4_KEYS = {
    "clientId": "client_id", "email": "email", "phone": "phone", "customId": "custom_id", "uuid": "uuid",
    "firstName": "first_name", "lastName": "last_name", "displayName": "display_name", "company": "company",
    "address": "address", "city": "city", "province": "province", "zipCode": "zip_code",
    "countryCode": "country_code", "sex": "sex", "avatarUrl": "avatar_url", "anonymous": "anonymous",
    "agreements": "agreements", "tags": "tags", "previousClients": "previous_clients",
}
_V4_TIMES = {"birthDate": "birth_date", "lastActivityDate": "last_activity_date"}


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _ts(value: Any) -> Any:
    """A timestamp in one of the contract's forms as epoch ms; any other value is passed on as
    it is, so :func:`fitted_table` lands it as text (``<column>__v_text``) instead of failing."""
    try:
        return iso_to_ms(value)
    except Unreadable:
        return value


class Misfits:
    """The run's :class:`TolerantConverter` per table: a value that does not fit its column's
    contract type lands as text in ``<column>__v_text`` and never fails a run; :meth:`report`
    logs one warning for the table (every such column with its count)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._converters: dict[str, TolerantConverter] = {}

    def converter(self, spec: TableSpec) -> TolerantConverter:
        with self._lock:
            convert = self._converters.get(spec.name)
            if convert is None:
                convert = self._converters[spec.name] = TolerantConverter(spec, S.VENDOR, log=progress_logger)
            return convert

    def report(self, table: str) -> None:
        with self._lock:
            convert = self._converters.get(table)
        if convert is not None:
            convert.warn()


def fitted_table(spec: TableSpec, rows: Sequence[dict[str, Any]], misfits: Misfits | None = None) -> pa.Table:
    """``spec.to_arrow(rows)`` that sets aside values not fitting their column (see
    :class:`~sources.common.arrow.TolerantConverter`), counted in ``misfits`` when given."""
    convert = misfits.converter(spec) if misfits is not None else TolerantConverter(spec, S.VENDOR)
    return convert(rows)


class Tables:
    """Arrow pages gathered into tables of about ``size`` rows (one concatenation, no row
    copies); a page whose schema differs (a misfit's ``__v_text`` column) is handed on alone."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._pending: list[pa.Table] = []
        self._rows = 0

    def add(self, table: pa.Table) -> Iterator[pa.Table]:
        if self._pending and table.schema != self._pending[0].schema:
            yield from self.flush()
        self._pending.append(table)
        self._rows += table.num_rows
        if self._rows >= self.size:
            yield from self.flush()

    def flush(self) -> Iterator[pa.Table]:
        if self._pending:
            pending, self._pending, self._rows = self._pending, [], 0
            yield pending[0] if len(pending) == 1 else pa.concat_tables(pending)


def _repeats_a_key(table: pa.Table, column: str) -> bool:
    """Whether a key appears twice in ``table`` (column-wise)."""
    return table.num_rows > 1 and pc.count_distinct(table.column(column)).as_py() < table.num_rows


def _cursor_time(value: Any) -> int | None:
    """An event's ``time`` as the cursor compares it (as :func:`event_row` reads it)."""
    if type(value) is int:
        return value
    t = _event_time(value)
    return t if type(t) is int else None


class _EventRow(Mapping[str, Any]):
    """``event_row(e)``, built only when read: the lookback cursor reads a row's content only
    for the fingerprints of its window, a small part of a first run's six hours."""

    __slots__ = ("_event", "_row")

    def __init__(self, event: dict[str, Any]) -> None:
        self._event = event
        self._row: dict[str, Any] | None = None

    def _mapped(self) -> dict[str, Any]:
        if self._row is None:
            self._row = event_row(self._event)
        return self._row

    def __getitem__(self, key: str) -> Any:
        return self._mapped()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapped())

    def __len__(self) -> int:
        return len(self._mapped())


def admitted_events(spec: TableSpec, page: list[dict[str, Any]], cur: LookbackCursor,
                    misfits: Misfits | None) -> tuple[pa.Table | None, int]:
    """One page of activities as a table of the rows ``cur`` admits (``None`` when it admits
    none), and how many it admitted. Columnar (:func:`columnar.events_table`) when the page
    allows it, else row by row as :func:`event_row` maps them; each row is admitted with the
    same key, cursor value and content either way. On the columnar path the rows below the
    cursor's floor (:meth:`LookbackCursor.set_floor`: no fingerprint needed) are found and
    counted column-wise, and only the rest are shown to ``admit`` one by one."""
    table = columnar.events_table(spec, page)
    if table is None:
        keep = []
        for e in page:
            row = event_row(e)
            t = row["time"]
            if cur.admit(str(row["event_uuid"]), t if type(t) is int else None, row):
                keep.append(row)
        return (fitted_table(spec, keep, misfits) if keep else None), len(keep)
    floor = cur.floor
    # a row older than the lookback window of the cursor this run commits needs no fingerprint
    # and loads as read: found column-wise and only counted. A null ``time`` in the table is a
    # missing one (no cursor value: loaded) or 0 (below any floor > 0).
    edge = pa.scalar(floor * 1000, pa.int64()) if type(floor) is int and floor > 0 else None
    at = table.column("time").cast(pa.int64()) if edge is not None else None

    def show(i: int) -> bool:
        e = page[i]
        return cur.admit(str(e["eventUUID"]), _cursor_time(e.get("time")), _EventRow(e))

    keep = admit_column_wise(cur, len(page), at, edge, show)
    if keep is None:
        return table, len(page)
    kept = pc.sum(keep).as_py() or 0
    return (table.filter(keep) if kept else None), kept


def profile_row(p: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A ``/v4/clients`` profile as (declared columns, open-ended attributes).

    The custom ``attributes`` object is the open-ended part; a top-level key the API adds later
    joins it under its own name (unless a custom attribute already has that name)."""
    row = {col: p.get(key) for key, col in _V4_KEYS.items()}
    for key, col in _V4_TIMES.items():
        row[col] = _ts(p.get(key))
    extras = dict(p.get("attributes") or {})
    for key, value in p.items():
        if key not in _V4_KEYS and key not in _V4_TIMES and key != "attributes":
            extras.setdefault(key, value)
    return row, (extras or None)


def export_row(r: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """An export-task row (``id`` + requested fields) as (declared columns, attributes)."""
    row: dict[str, Any] = {"client_id": r.get("id")}
    extras: dict[str, Any] = {}
    for key, value in r.items():
        if key == "id":
            continue
        col = S.EXPORT_FIELDS.get(key.lower())
        if col is None:
            extras[key] = value
        elif col in ("birth_date", "last_activity_date"):
            row[col] = _ts(value)
        else:
            row[col] = value
    return row, (extras or None)


def profiles_table(rows: list[tuple[dict[str, Any], dict[str, Any] | None]],
                   misfits: Misfits | None = None) -> pa.Table:
    table = fitted_table(S.PROFILES, [r for r, _ in rows], misfits)
    return table.append_column("attributes", pa.array([_json_text(e) for _, e in rows], type=pa.string()))


def _event_time(value: Any) -> Any:
    """``time`` (ms) as an integer, so it compares as the cursor does; a value that is not a
    whole number is passed on (it lands as text, the row is loaded without moving the cursor)."""
    if value is None or (type(value) is int):
        return value
    try:
        f = float(value)
    except (TypeError, ValueError):
        return value
    return int(f) if f.is_integer() else value


_EVENT_TOP = {"eventUUID", "time", "action", "description", "label", "icon", "unique", "client", "userAgent",
              "modifiedBy"}


def event_row(e: dict[str, Any]) -> dict[str, Any]:
    """An activity as a flat row. The profile's name and e-mail the API copies into each event
    are left out (they change with the profile; join ``profiles`` on ``client_id``); ``params``
    (``raw=true``) and keys the API adds later go to the JSON ``attributes`` column."""
    action = e.get("action") or {}
    client = e.get("client") or {}
    agent = e.get("userAgent") or {}
    row = {
        "event_uuid": e.get("eventUUID"),
        "time": _event_time(e.get("time")),
        "action_name": action.get("name"),
        "action_label": action.get("label"),
        "action_description": action.get("description"),
        "description": e.get("description"),
        "label": e.get("label"),
        "icon": e.get("icon"),
        "unique": e.get("unique"),
        "client_id": client.get("id"),
        "client_uuid": client.get("uuid"),
        "user_agent_system": agent.get("system"),
        "user_agent_browser": agent.get("browser"),
        "modified_by": e.get("modifiedBy"),
    }
    for key, value in e.items():
        if key not in _EVENT_TOP:
            row[key] = value
    return row


def item_row(item: dict[str, Any]) -> dict[str, Any]:
    """A catalog item; ``value`` arrives as a JSON-encoded string and is decoded."""
    value = item.get("value")
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            pass  # not JSON after all: kept as the string it is
    row = {
        "catalog_id": (item.get("bag") or {}).get("id"),
        "item_key": item.get("itemKey"),
        "id": item.get("id"),
        "value": value,
        "creation_date": _ts(item.get("creationDate")),
    }
    for key, v in item.items():
        if key not in ("bag", "itemKey", "id", "value", "creationDate"):
            row[key] = v
    return row


def asset_tag_row(t: dict[str, Any]) -> dict[str, Any]:
    directory = t.get("directory") or {}
    row = {"hash": t.get("hash"), "value": t.get("value"), "description": t.get("description"),
           "color": t.get("color"), "icon": t.get("icon"), "priority": t.get("priority"),
           "author_id": t.get("authorId"), "created_at": _ts(t.get("createdAt")),
           "directory_hash": directory.get("hash"), "directory_name": directory.get("name"),
           "directory_type": (directory.get("type") or {}).get("name")}
    for key, v in t.items():
        if key not in ("hash", "value", "description", "color", "icon", "priority", "authorId", "createdAt",
                       "directory"):
            row[key] = v
    return row


def catalog_row(bag: dict[str, Any]) -> dict[str, Any]:
    row = {"id": bag.get("id"), "name": bag.get("name"), "business_profile_id": bag.get("businessProfileId"),
           "author": bag.get("author"), "last_modified": _ts(bag.get("lastModified")),
           "creation_date": _ts(bag.get("creationDate"))}
    for key, v in bag.items():
        if key not in ("id", "name", "businessProfileId", "author", "lastModified", "creationDate"):
            row[key] = v
    return row


_CRM_KEYS = {"id": "id", "uuid": "uuid", "anonymous_type": "anonymous_type", "email": "email",
             "firstname": "first_name", "lastName": "last_name", "custom_identify": "custom_identify",
             "company": "company", "phone": "phone", "address": "address", "city": "city", "zipCode": "zip_code",
             "province": "province", "country_id": "country_id", "countryCode": "country_code",
             "avatarUrl": "avatar_url", "sex": "sex", "tags": "tags"}
_CRM_DATES = {"birthdate": "birthdate", "last_activity_date": "last_activity_date", "created": "created",
              "updated": "updated", "deletedAt": "deleted_at"}


def member_row(segmentation_uuid: str, c: dict[str, Any]) -> dict[str, Any]:
    """A CRM profile of a segmentation. Its dates are date-only (``2019-08-24``): they load as
    UTC midnight (the vendor does not say which zone they are in)."""
    row: dict[str, Any] = {"segmentation_uuid": segmentation_uuid}
    row.update({col: c.get(key) for key, col in _CRM_KEYS.items()})
    row.update({col: _ts(c.get(key)) for key, col in _CRM_DATES.items()})
    for key, v in c.items():
        if key not in _CRM_KEYS and key not in _CRM_DATES:
            row[key] = v
    return row


def _by(d: Any, *path: str) -> Any:
    for p in path:
        d = d.get(p) if isinstance(d, dict) else None
    return d


def expression_row(x: dict[str, Any]) -> dict[str, Any]:
    payload = x.get("payload") or {}
    analysis = payload.get("analysis") or {}
    return {
        "id": x.get("id"),
        "name": analysis.get("name"),
        "description": analysis.get("description"),
        "type": analysis.get("type"),
        "action_name": _by(analysis, "action", "name"),
        "action_id": analysis.get("actionId", _by(analysis, "action", "id")),
        "expression": analysis.get("expression"),
        "variables": payload.get("variables"),
        "created_at": _ts(_by(payload, "createdBy", "atTime")),
        "created_by": _by(payload, "createdBy", "id"),
        "modified_at": _ts(_by(payload, "modifiedBy", "atTime")),
        "modified_by": _by(payload, "modifiedBy", "id"),
        "is_dynamic_analytic": payload.get("isDynamicAnalytic"),
        "is_predefined_analytic": payload.get("isPredefinedAnalytic"),
        "is_visible_for_client_profile": payload.get("isVisibleForClientProfile"),
        "analytic_version": payload.get("analyticVersion"),
    }


def aggregate_row(a: dict[str, Any]) -> dict[str, Any]:
    agg = a.get("aggregate") or {}
    return {
        "uuid": agg.get("uuid"),
        "id": agg.get("id"),
        "name": a.get("name"),
        "title": agg.get("name"),
        "description": a.get("description"),
        "type": agg.get("type"),
        "action_name": _by(agg, "action", "name"),
        "action_id": agg.get("actionId", _by(agg, "action", "id")),
        "attribute": agg.get("attribute"),
        "size": agg.get("size"),
        "unique": agg.get("unique"),
        "date_filter": agg.get("dateFilter"),
        "expressions": agg.get("expressions"),
        "variables": a.get("variables"),
        "created_at": _ts(_by(a, "createdBy", "atTime")),
        "created_by": _by(a, "createdBy", "id"),
        "modified_at": _ts(_by(a, "modifiedBy", "atTime")),
        "modified_by": _by(a, "modifiedBy", "id"),
        "deleted": a.get("deleted"),
        "is_dynamic_analytic": a.get("isDynamicAnalytic"),
        "is_predefined_analytic": a.get("isPredefinedAnalytic"),
        "is_visible_for_client_profile": a.get("isVisibleForClientProfile"),
        "analytic_version": a.get("analyticVersion"),
    }


def _number(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def analytics_value_row(client_id: int, analytic_uuid: str, kind: str, result: Any, at_ms: int) -> dict[str, Any]:
    """Analytics results are strings in every answer: kept as sent, plus a numeric reading."""
    text = None if result is None else str(result)
    return {"client_id": client_id, "analytic_uuid": analytic_uuid, "kind": kind, "result": text,
            "result_number": _number(text), "calculated_at": at_ms}



# -------------------------------------------------------------------------------- complete walks


class IncompleteRead(MalformedResponse):
    """A full read of a list that ended short of the list's own count (or kept changing while it
    was read, pass after pass): not complete, so nothing of it is committed."""


class Walk:
    """What :func:`complete_walk` found: passes, rows read, the list's stated size, repeats."""

    def __init__(self) -> None:
        self.passes = 0
        self.complete = False
        self.distinct = 0
        self.reported: int | None = None
        self.repeated = 0
        self.newer_copies = 0
        self.history: list[dict[str, Any]] = []
        #: every key read, with the modification field of the newest copy handed on
        self.seen = Keys()

    def info(self) -> dict[str, Any]:
        return {"passes": self.passes, "complete": self.complete, "rows_read": self.distinct,
                "reported": self.reported, "repeated_rows_skipped": self.repeated,
                "newer_copies": self.newer_copies}


def complete_walk(
    label: str, read_pass: Callable[[], Iterable[tuple[int | None, list[dict[str, Any]]]]],
    key: Callable[[dict[str, Any]], Any], walk: Walk, *, version_field: str | None = None,
    version: Callable[[Any], Any] | None = None,
    count: Callable[[], int | None] | None = None, max_passes: int = 3,
    versions_of: Callable[[list[Any]], pa.Array | None] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Every row of a list read by offset or page index while it may change (contract §3: these
    lists are live), each key once, plus later copies that are newer by their modification field
    (``row[version_field]``, made comparable by ``version``; ``None`` when it cannot be).

    ``read_pass()`` walks the list once, yielding ``(stated size or None, rows)`` per page;
    ``count()`` (optional) states the size before and after a pass when the pages do not. A pass
    is *clean* when it read at least as many distinct keys as the largest size stated during it
    and saw no key twice: nothing was added before its position, nothing removed or moved ahead
    of it (which would have skipped a row). An unclean pass is followed by another (each pass
    yields only keys not yet read, or newer copies), up to ``max_passes``; when no pass was clean,
    ``walk.complete`` stays False and the caller fails the resource (or, by option, loads what
    was read and marks it incomplete). Without any stated size, a pass is clean when no key
    repeats (a skip cannot be seen: documented).

    The keys read are kept compactly (:class:`~sources.synerise.keys.Keys`: flat memory at a
    million rows); ``versions_of`` (optional) parses a list of modification fields at once, as
    ``version`` would each."""
    if walk.passes == 0 and version_field is not None and not len(walk.seen):
        walk.seen = Keys(versions=True, version=version, versions_of=versions_of)
    seen = walk.seen
    while walk.passes < max_passes and not walk.complete:
        walk.passes += 1
        sizes: set[int] = set()
        if count is not None:
            before = count()
            if before is not None:
                sizes.add(before)
        # the first pass's keys are the walk's keys: one store serves both (half the memory)
        first = not len(seen)
        in_pass = seen if first else Keys()
        repeats = 0
        for size, page in read_pass():
            if size is not None:
                sizes.add(size)
            keys = [key(row) for row in page]
            if first:
                new_in_pass = len(keys) if len(set(keys)) == len(keys) and seen.isdisjoint(keys) else -1
            else:
                new_in_pass = in_pass.add_new(keys)
                repeats += len(keys) - new_in_pass  # rows whose key this pass had already read
            if new_in_pass == len(keys) and seen.isdisjoint(keys):
                # the common page: every key new to the walk (set operations, no row loop)
                seen.update(keys, [row.get(version_field) for row in page] if version_field is not None else None)
                if page:
                    yield page
                continue
            out = []
            for row, k in zip(page, keys, strict=True):
                raw = row.get(version_field) if version_field is not None else None
                if k not in seen:
                    seen.add(k, raw)  # the version as sent: parsed only when it has to be
                    out.append(row)
                    continue
                if first:
                    repeats += 1  # read before in this (first) pass
                v = version(raw) if version is not None else None
                w = seen.version(k) if version is not None else None
                if v is not None and (w is None or _newer(v, w)):
                    seen.add(k, raw)  # read again and newer: its newer copy must land (dedup keeps it)
                    walk.newer_copies += 1
                    out.append(row)
                else:
                    walk.repeated += 1
            if out:
                yield out
        if count is not None:
            after = count()
            if after is not None:
                sizes.add(after)
        walk.reported = max(sizes) if sizes else None
        walk.distinct = len(seen)
        clean = repeats == 0 and (walk.reported is None or len(in_pass) >= walk.reported)
        walk.history.append({"read": len(in_pass), "sizes": sorted(sizes), "repeats": repeats, "clean": clean})
        walk.complete = clean
        if not clean and walk.passes < max_passes:
            progress_logger.info(
                "synerise.%s: the list changed while it was read (%s distinct rows read, %s stated, %s read twice); "
                "reading it again", label, f"{len(in_pass):,}",
                "?" if walk.reported is None else f"{walk.reported:,}", repeats)


def _version(value: Any) -> int | None:
    """A modification field as a comparable version (epoch ms), or ``None``."""
    return value if type(value) is int else None


def _newer(a: Any, b: Any) -> bool:
    try:
        return bool(a > b)
    except TypeError:  # a version that did not parse (text) against a number: not provably newer
        return False


def _finish_walk(label: str, walk: Walk, state: dict[str, Any], allow_incomplete: bool, key: str | None = None) -> None:
    """A walk that never had a clean pass fails the resource (nothing committed) unless
    ``allow_incomplete``: then it is loaded, and ``incomplete`` in state says so until a complete
    read; the next run reads the whole list again either way."""
    marks = state.setdefault("incomplete", {}) if (not walk.complete or "incomplete" in state) else None
    where = key or label
    if walk.complete:
        if marks is not None:
            marks.pop(where, None)
            if not marks:
                state.pop("incomplete", None)
        return
    last = walk.history[-1] if walk.history else {"read": 0, "repeats": 0}
    stated = "?" if walk.reported is None else f"{walk.reported:,}"
    detail = (f"no pass read the whole list in {walk.passes} passes (the last read {last['read']:,} of the "
              f"{stated} rows the API states, {last['repeats']} served twice: the list kept moving while it was "
              f"read, or the API ended it short; {walk.distinct:,} distinct rows read in all)")
    if not allow_incomplete:
        raise IncompleteRead(
            f"synerise {where}: the full read is incomplete: {detail}; nothing of it was loaded. Run again, or set "
            "allow_incomplete=true to load what was read and mark it incomplete", vendor=S.VENDOR)
    assert marks is not None
    marks[where] = {"at": pendulum.now("UTC").to_iso8601_string(), "read": walk.distinct,
                    "reported": walk.reported, "passes": walk.passes}
    progress_logger.warning("synerise.%s: INCOMPLETE read loaded (allow_incomplete): %s; recorded in state as "
                            "'incomplete'; the next run reads it in full again", where, detail)


# -------------------------------------------------------------------------------- time windows


def events_window(
    cursor: int | None, server_now: int, *, lookback_ms: int, lag_ms: int, initial_ms: int,
    horizon_ms: int = S.ACTIVITIES_HORIZON_HOURS * HOUR_MS, margin_ms: int = S.HORIZON_MARGIN_MS,
) -> tuple[int, int, tuple[int, int] | None]:
    """The window a scheduled ``events`` run reads: ``(lo, hi, gap)`` in ms, inclusive.

    ``hi`` is the server time minus the safety lag. ``lo`` is the cursor minus the lookback (the
    first run: ``initial_ms`` back), but never earlier than the 6-hour horizon (plus a margin).
    ``gap`` is the unreachable stretch ``(cursor + 1, earliest reachable - 1)`` when the cursor
    has fallen behind the horizon, else ``None``."""
    hi = server_now - lag_ms
    earliest = server_now - horizon_ms + margin_ms
    gap = None
    if cursor is None:
        lo = server_now - min(initial_ms, horizon_ms - margin_ms)
    else:
        lo = cursor - lookback_ms
        if cursor + 1 < earliest:
            gap = (cursor + 1, earliest - 1)
    return max(lo, earliest), hi, gap


class Overflow:
    """Milliseconds holding at least the cap of events: the API cannot return all of them."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def __call__(self, ms: int, returned: int) -> None:
        self.items.append({"time_ms": ms, "time": pendulum.from_timestamp(ms / 1000).to_iso8601_string(),
                           "returned": returned})
        progress_logger.error(
            "synerise.events: %s events share the millisecond %s; the API returns at most %s and cannot be "
            "split further, so events of that millisecond may be missing (recorded in state as 'truncated')",
            f"{returned:,}", pendulum.from_timestamp(ms / 1000).to_iso8601_string(), f"{returned:,}",
        )


def _within(rows: list[dict[str, Any]], lo: int, hi: int) -> bool:
    """Whether every event's ``time`` is an integer inside the window it was asked for."""
    for e in rows:
        t = e.get("time")
        if type(t) is not int or not lo <= t <= hi:
            return False
    return True


class Density:
    """Events per millisecond in the answers under the cap so far, shared by the pieces of one
    window: a guess at how finely to cut what is still to be read, so that fewer answers come
    back full (a full answer is read and thrown away, then its window read again in parts).
    It changes how many requests a window takes, never which events they return: every window
    is still read whole, and an answer at the cap is still split until it is under the cap."""

    #: cut a window before asking when about this share of the cap is expected in it ...
    LIKELY_FULL = 0.9
    #: ... into parts expected to hold about this share of the cap each
    TARGET = 0.5
    #: never more parts than this at once: a guess from a burst must not fan out without bound
    MAX_PARTS = 16

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events = 0
        self._ms = 0

    @property
    def known(self) -> bool:
        with self._lock:
            return self._ms > 0

    def add(self, events: int, ms: int) -> None:
        with self._lock:
            self._events += events
            self._ms += ms

    def parts(self, a: int, b: int, limit: int, *, full: bool) -> int:
        """How many parts to cut ``[a, b]`` into: after a full answer 2 to :attr:`MAX_PARTS` (4
        while no answer under the cap has been read: the events per millisecond are not known
        yet); before asking, 1 unless the window is expected to hold about the cap or more."""
        span = b - a + 1
        with self._lock:
            expected = self._events * span / self._ms if self._ms else None
        if expected is None:
            return min(4, span) if full else 1
        if full:
            expected = max(expected, float(limit))  # at least `limit` events are in [a, b]
        elif expected < self.LIKELY_FULL * limit:
            return 1
        k = -int(-expected // (self.TARGET * limit))  # ceil
        return max(2 if full else 1, min(k, self.MAX_PARTS, span))


def _cut(a: int, b: int, k: int) -> list[tuple[int, int]]:
    """``[a, b]`` as ``k`` disjoint windows covering it, oldest first (``1 <= k <= b - a + 1``)."""
    span = b - a + 1
    edges = [a + (i * span) // k for i in range(k + 1)]
    return [(edges[i], edges[i + 1] - 1) for i in range(k)]


def _split_read(api: SyneriseClient, lo: int, hi: int, limit: int, overflow: Callable[[int, int], None],
                stray: Callable[[], None] | None = None, density: Density | None = None) -> Iterator[list[dict[str, Any]]]:
    """Every event in [lo, hi]: a full answer (``limit`` rows, no continuation) means the window
    may hold more, so it is split, depth first, oldest part first — in halves, or (``density``)
    in as many parts as the events per millisecond read so far suggest.

    With ``density``, a window cut before that rate was known may be cut again, once, before it
    is asked for, when the rate then says it would come back full; every other part is asked
    for as it is (so a rate learnt from a burst costs at most :attr:`Density.MAX_PARTS` small
    requests where it is wrong, and the answers correct it). Bounded: each split shrinks the
    window, so the depth is at most log2(hi - lo) ≈ 25 for hours of milliseconds."""
    stack = [(lo, hi, False)]  # (from, to, ask as it is)
    while stack:
        a, b, ask = stack.pop()
        if density is not None and not ask and a < b:
            k = density.parts(a, b, limit, full=False)
            if k > 1:
                stack += [(x, y, True) for x, y in reversed(_cut(a, b, k))]
                continue
        rows = api.activities(a, b, limit)
        if len(rows) < limit:
            if density is not None:
                density.add(len(rows), b - a + 1)
            if rows:
                if stray is not None and not _within(rows, a, b):
                    stray()
                yield rows
            continue
        if a >= b:
            overflow(a, len(rows))
            if stray is not None and not _within(rows, a, b):
                stray()
            yield rows
            continue
        if density is None:
            stack += [(x, y, True) for x, y in reversed(_cut(a, b, 2))]
            continue
        blind = not density.known  # parts cut without a rate may be cut again once it is known
        stack += [(x, y, not blind) for x, y in reversed(_cut(a, b, density.parts(a, b, limit, full=True)))]


def read_events_window(
    api: SyneriseClient, lo: int, hi: int, *, limit: int = S.ACTIVITIES_LIMIT, chunk_ms: int = HOUR_MS,
    workers: int = S.DEFAULT_EVENTS_WORKERS, overflow: Callable[[int, int], None] | None = None,
    stray: Callable[[], None] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Pages of every workspace activity with ``lo <= time <= hi`` (ms), whatever the cap.

    The window is cut into ``chunk_ms`` pieces read concurrently by ``workers`` threads; each
    piece is split further wherever a response comes back full, and cut before it is asked for
    where the events per millisecond read so far say it would be (:class:`Density`). Touches no state: a scheduled run
    and a backfill of a past window both call it with explicit bounds. ``stray()`` (optional) is
    called for each response holding an event outside the bounds it was asked for (or without
    an integer ``time``): the pieces are disjoint, so without one each event is read once."""
    if hi < lo:
        return iter(())
    overflow = overflow or Overflow()
    chunk_ms = max(1, chunk_ms)
    pieces = [(a, min(a + chunk_ms - 1, hi)) for a in range(lo, hi + 1, chunk_ms)]
    density = Density()
    tasks = [lambda a=a, b=b: _split_read(api, a, b, limit, overflow, stray, density) for a, b in pieces]
    return concurrent_pages(tasks, workers, name="synerise-events")


def read_profile_events(
    api: SyneriseClient, client_ids: Sequence[int], date_from: Callable[[int], int | None], *,
    date_to: int | None = None, page_size: int = S.DEFAULT_PROFILE_EVENTS_PAGE_SIZE,
    workers: int = S.DEFAULT_PROFILE_EVENTS_WORKERS,
) -> Iterator[tuple[int, list[dict[str, Any]] | None]]:
    """``(client_id, page)`` for every page of every profile's events (oldest first), then
    ``(client_id, None)`` when that profile is done. Up to ``workers`` profiles are walked at once.
    ``date_from(client_id)`` gives each profile's lower bound; no state is touched here."""

    def task(cid: int) -> Callable[[], Iterator[tuple[int, list[dict[str, Any]] | None]]]:
        def run() -> Iterator[tuple[int, list[dict[str, Any]] | None]]:
            for page in api.profile_event_pages(cid, date_from=date_from(cid), date_to=date_to, page_size=page_size):
                yield cid, page
            yield cid, None

        return run

    return concurrent_pages([task(int(c)) for c in client_ids], workers, name="synerise-profile-events")


# -------------------------------------------------------------------------------- the source


def _positive(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"synerise {name} must be an integer, not {value!r}", vendor=S.VENDOR) from None
    if v < minimum or (maximum is not None and v > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigurationError(f"synerise {name} must be {bound} (got {v})", vendor=S.VENDOR)
    return v


def _list(name: str, value: Any, kind: type) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        value = [v.strip() for v in str(value).split(",") if v.strip()]
    try:
        return [kind(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigurationError(f"synerise {name} must be a list of {kind.__name__}", vendor=S.VENDOR) from None


@dlt.source(name="synerise", max_table_nesting=0)
def synerise_source(
    api_key: str = dlt.secrets.value,
    base_url: str = S.DEFAULT_BASE_URL,
    events_lookback_minutes: int = S.DEFAULT_EVENTS_LOOKBACK_MINUTES,
    events_safety_lag_seconds: int = S.DEFAULT_EVENTS_SAFETY_LAG_SECONDS,
    events_window_minutes: int = S.DEFAULT_EVENTS_WINDOW_MINUTES,
    events_initial_hours: float = S.ACTIVITIES_HORIZON_HOURS,
    events_workers: int = S.DEFAULT_EVENTS_WORKERS,
    profiles_page_size: int = S.DEFAULT_PROFILES_PAGE_SIZE,
    export_segmentation_uuid: str | None = None,
    export_fields: list[str] | None = None,
    export_expressions: list[str] | None = None,
    export_aggregates: list[str] | None = None,
    profile_event_ids: list[int] | None = None,
    profile_events_backfill: bool = False,
    profile_events_lookback_minutes: int = S.DEFAULT_EVENTS_LOOKBACK_MINUTES,
    profile_events_workers: int = S.DEFAULT_PROFILE_EVENTS_WORKERS,
    profile_events_page_size: int = S.DEFAULT_PROFILE_EVENTS_PAGE_SIZE,
    segmentation_uuids: list[str] | None = None,
    analytics_expression_uuids: list[str] | None = None,
    analytics_aggregate_uuids: list[str] | None = None,
    analytics_profile_ids: list[int] | None = None,
    catalog_page_size: int = S.DEFAULT_CATALOG_PAGE_SIZE,
    crm_page_size: int = S.DEFAULT_CRM_PAGE_SIZE,
    analytics_page_size: int = S.DEFAULT_ANALYTICS_PAGE_SIZE,
    batch_rows: int = S.DEFAULT_BATCH_ROWS,
    max_connections: int = 8,
    token_refresh_margin_s: float = S.DEFAULT_TOKEN_REFRESH_MARGIN_S,
    max_attempts: int = 6,
    max_retry_wait: float = 120.0,
    max_throttle_wait: float = 900.0,
    request_timeout: float = 30.0,
    allow_incomplete: bool = False,
    window_start: Any = None,
    window_end: Any = None,
) -> Sequence[DltResource]:
    """The Synerise REST API of one workspace as dlt resources.

    Args:
        api_key: the workspace API key (Settings > API Keys); exchanged for a JWT at login.
        base_url: ``https://api.synerise.com`` (Azure EU), ``https://api.azu.synerise.com``
            (Azure US) or ``https://api.geb.synerise.com`` (GCP): the host of the workspace's region.
        events_lookback_minutes: how far behind its cursor ``events`` re-reads (late events).
        events_safety_lag_seconds: ``events`` reads up to server time minus this.
        events_window_minutes: ``events`` reads its window in pieces of this size, concurrently.
        events_initial_hours: how far back the first ``events`` run reads (at most the 6-hour horizon).
        events_workers: concurrent pieces of the ``events`` window.
        profiles_page_size: ``/v4/clients`` page size.
        export_segmentation_uuid: read ``profiles`` through the export task of this segmentation
            (a snapshot frozen at creation) instead of ``/v4/clients``; ``export_fields``,
            ``export_expressions`` and ``export_aggregates`` pick its columns (analytics values
            load into ``analytics_values``).
        profile_event_ids: profiles (clientId) whose event history ``profile_events`` loads.
        profile_events_backfill: load every profile's event history (a transformer over ``profiles``).
        profile_events_lookback_minutes: how far behind each profile's cursor it re-reads.
        profile_events_workers: profiles walked at once.
        profile_events_page_size: events per page of one profile.
        segmentation_uuids: segmentations whose members ``segmentation_members`` loads.
        analytics_expression_uuids, analytics_aggregate_uuids: analytics whose values
            ``analytics_values`` calculates for ``analytics_profile_ids`` (default: ``profile_event_ids``).
        catalog_page_size, crm_page_size, analytics_page_size: rows per request.
        batch_rows: rows per Arrow table handed to dlt.
        max_connections: HTTP connections to the workspace (an upper bound on concurrent requests).
        token_refresh_margin_s: log in again this long before the JWT expires.
        max_attempts, max_retry_wait, request_timeout: the HTTP retry budget and timeout.
        max_throttle_wait: seconds one request may spend waiting out 429s (``Retry-After``).
        allow_incomplete: a full read of a list that ends short of the list's own count (or
            keeps changing while it is read, pass after pass) fails its resource, nothing of it
            committed; with this option it is loaded and marked ``incomplete`` in state instead.
        window_start, window_end: bounded mode (both or neither; ISO 8601 or datetimes, UTC): only
            ``events``, reading exactly ``[window_start, window_end)``, without cursor state.
    """
    window = Window.from_options(window_start, window_end, S.VENDOR)
    lookback_ms = _positive("events_lookback_minutes", events_lookback_minutes, 0, 24 * 60) * MINUTE_MS
    lag_ms = _positive("events_safety_lag_seconds", events_safety_lag_seconds, 0, 3600) * 1000
    window_ms = _positive("events_window_minutes", events_window_minutes, 1, 6 * 60) * MINUTE_MS
    try:
        initial_ms = int(float(events_initial_hours) * HOUR_MS)
    except (TypeError, ValueError):
        raise ConfigurationError("synerise events_initial_hours must be a number", vendor=S.VENDOR) from None
    if not 0 < initial_ms <= S.ACTIVITIES_HORIZON_HOURS * HOUR_MS:
        raise ConfigurationError(
            f"synerise events_initial_hours must be in (0, {S.ACTIVITIES_HORIZON_HOURS}]: workspace activities "
            "older than 6 hours are never returned; use profile_events for older history",
            vendor=S.VENDOR,
        )
    ev_workers = _positive("events_workers", events_workers, 1, 32)
    pe_workers = _positive("profile_events_workers", profile_events_workers, 1, 64)
    pe_lookback_ms = _positive("profile_events_lookback_minutes", profile_events_lookback_minutes, 0) * MINUTE_MS
    pe_page = _positive("profile_events_page_size", profile_events_page_size, 1, S.ACTIVITIES_LIMIT)
    v4_page = _positive("profiles_page_size", profiles_page_size, 1, 10_000)
    cat_page = _positive("catalog_page_size", catalog_page_size, 1, 10_000)
    crm_page = _positive("crm_page_size", crm_page_size, 1, 10_000)
    an_page = _positive("analytics_page_size", analytics_page_size, 1, 10_000)
    batch = _positive("batch_rows", batch_rows, 1)
    connections = _positive("max_connections", max_connections, 1, 64)
    event_ids = _list("profile_event_ids", profile_event_ids, int)
    segments = _list("segmentation_uuids", segmentation_uuids, str)
    expr_uuids = _list("analytics_expression_uuids", analytics_expression_uuids, str)
    agg_uuids = _list("analytics_aggregate_uuids", analytics_aggregate_uuids, str)
    value_ids = _list("analytics_profile_ids", analytics_profile_ids, int) or event_ids
    fields = _list("export_fields", export_fields, str) or list(S.DEFAULT_EXPORT_FIELDS)
    exp_exprs = _list("export_expressions", export_expressions, str)
    exp_aggs = _list("export_aggregates", export_aggregates, str)
    export_mode = bool(export_segmentation_uuid)
    if (exp_exprs or exp_aggs) and not export_mode:
        raise ConfigurationError(
            "synerise export_expressions/export_aggregates need export_segmentation_uuid", vendor=S.VENDOR
        )
    quiet_arrow_hint_warning()
    misfits = Misfits()
    retry = RetryPolicy(max_attempts=max_attempts, max_total_wait=max_retry_wait,
                        max_throttle_wait=float(max_throttle_wait))

    def make_client() -> SyneriseClient:
        return SyneriseClient(api_key, base_url, timeout=request_timeout, max_connections=connections, retry=retry,
                              refresh_margin_s=token_refresh_margin_s)

    # built now, so a malformed key or a non-HTTPS URL fails before any resource runs
    shared = SharedClient(make_client, on_close=lambda c: record_requests(S.VENDOR, c.http.stats["requests"]))

    def tables(spec: TableSpec, rows: Iterable[list[dict[str, Any]]], progress: ProgressLog) -> Iterator[pa.Table]:
        def counted() -> Iterator[list[dict[str, Any]]]:
            for page in rows:
                progress.update(len(page), len(page))
                yield page

        for chunk in batched(counted(), batch):
            yield fitted_table(spec, chunk, misfits)
        misfits.report(spec.name)

    # ---------------------------------------------------------------- profiles

    def profiles() -> Iterator[pa.Table]:
        state = dlt.current.resource_state()
        progress = ProgressLog(S.VENDOR, "profiles")
        with shared.use() as api:
            if export_mode:
                yield from _profiles_export(api, progress)
            else:
                yield from _profiles_v4(api, state, progress)

    def _profiles_v4(api: SyneriseClient, state: dict[str, Any], progress: ProgressLog) -> Iterator[pa.Table]:
        """``/v4/clients`` pages by index over a live list in an order the contract does not
        state: a profile added, removed or moved (modified) during the walk repeats a row or
        skips one. :func:`complete_walk` reads it again until a pass is clean against the
        profile total (``all`` of ``/crm/v1/list``, before and after each pass); a profile read
        twice lands once, the copy with the newest ``lastActivityDate`` (a later copy that is
        newer is loaded too and the merge keeps it: ``dedup_sort``)."""
        walk = Walk()
        previous: set[int] = set()

        def read_pass() -> Iterator[tuple[int | None, list[dict[str, Any]]]]:
            for page in api.profile_pages(v4_page):
                yield None, page

        def version(raw: Any) -> Any:
            return _version(_ts(raw))

        def pages() -> Iterator[pa.Table]:
            out = Tables(batch)
            for page in complete_walk("profiles", read_pass, lambda p: p.get("clientId"), walk,
                                      version_field="lastActivityDate", version=version, count=api.profile_count,
                                      versions_of=columnar.iso_versions):
                for p in page:
                    merged = p.get("previousClients")
                    if merged:
                        previous.update(int(x) for x in merged)
                progress.update(len(page), len(page))
                table = columnar.profiles_table(page)
                if table is None:
                    table = profiles_table([profile_row(p) for p in page], misfits)
                # the hard-delete marker as a null column: the file then has the table's columns
                # in its order, and dlt's normalize moves it as it is instead of rewriting it
                yield from out.add(table.append_column(pa.field(S.MERGED_AWAY, pa.bool_()),
                                                       pa.nulls(table.num_rows, pa.bool_())))
            yield from out.flush()

        unique = True
        first = True
        for table in pages():
            if first or (unique and walk.newer_copies):
                # written every run; a newer copy of a profile read before turns the merge's
                # de-duplication on, and `dedup_sort` (last_activity_date) keeps that copy
                unique = unique and not walk.newer_copies
                table, first = merge_run_hints(table, unique_in_run=unique), False
            yield table
        misfits.report("profiles")
        _finish_walk("profiles", walk, state, allow_incomplete)
        # profiles merged into another are gone from the API: remove them from the destination once
        # the ids read, as ints (the walk's own keys when the API sent ints: no second set)
        seen: Any = walk.seen if all(type(k) is int for k in walk.seen) else {
            int(k) for k in walk.seen if k is not None}
        done = {int(x) for x in state.get("merged_away") or []}
        gone = sorted(c for c in previous if c not in seen and c not in done)
        if gone:
            yield pa.table({"client_id": pa.array(gone, type=pa.int64()),
                            S.MERGED_AWAY: pa.array([True] * len(gone), type=pa.bool_())})
        if gone or "merged_away" in state:
            state["merged_away"] = sorted(done | set(gone))
        state["last_run"] = {"finished_at": pendulum.now("UTC").to_iso8601_string(), "mode": "snapshot (/v4/clients)",
                             "rows_loaded": len(seen), "merged_away_removed": len(gone), **walk.info()}
        progress.done(f"snapshot, {len(gone)} merged-away removed")

    def _profiles_export(api: SyneriseClient, progress: ProgressLog) -> Iterator[Any]:
        task = api.create_export(str(export_segmentation_uuid), fields, exp_exprs, exp_aggs)
        analytics = {u: "expression" for u in exp_exprs} | {u: "aggregate" for u in exp_aggs}
        created = int(pendulum.now("UTC").timestamp() * 1000)
        for page in api.export_pages(int(task["taskId"]), S.EXPORT_LIMIT):
            rows, values = [], []
            for r in page:
                plain = {k: v for k, v in r.items() if k not in analytics}
                rows.append(export_row(plain))
                values += [analytics_value_row(int(r["id"]), u, kind, r.get(u), created) for u, kind in analytics.items()]
            progress.update(len(page), len(page))
            if rows:
                yield profiles_table(rows, misfits)
            if values:
                yield dlt.mark.with_table_name(S.ANALYTICS_VALUES.to_arrow(values), "analytics_values")
        misfits.report("profiles")
        progress.done(f"export task {task['taskId']}")

    # ---------------------------------------------------------------- events

    def events() -> Iterator[pa.Table]:
        state = dlt.current.resource_state()
        cur = LookbackCursor(state, lambda v: v - lookback_ms)
        progress = ProgressLog(S.VENDOR, "events")
        with shared.use() as api:
            before = api.http.stats["requests"]
            now = api.server_time_ms()
            lo, hi, gap = events_window(cur.value, now, lookback_ms=lookback_ms, lag_ms=lag_ms, initial_ms=initial_ms)
            if gap is not None:
                _record_gap(state, gap)
            overflow = Overflow()

            # every row this run reads is below `hi`, and the cursor it commits is at least `hi`
            # (or the stored one): only rows inside the lookback window behind the lower of the
            # two need a fingerprint (on a first run: the last minutes, not all six hours)
            cur.set_floor(hi if cur.value is None else min(cur.value, hi))

            doubts: list[str] = []  # why this run's rows may hold an event twice (appended by any thread)

            def admitted() -> Iterator[pa.Table]:
                out = Tables(batch)
                for page in read_events_window(api, lo, hi, chunk_ms=window_ms, workers=ev_workers, overflow=overflow,
                                               stray=lambda: doubts.append("stray")):
                    table, kept = admitted_events(S.EVENTS, page, cur, misfits)
                    progress.update(len(page), kept)
                    if table is not None:
                        if _repeats_a_key(table, "event_uuid"):
                            doubts.append("repeat")
                        yield from out.add(table)
                yield from out.flush()

            # the pieces of the window are disjoint and events never change, so a run reads each
            # event once, unless a response strays outside its piece or repeats an event: then
            # the merge de-duplicates (the hint on a later page wins; written every run)
            unique = True
            first = True
            for page in admitted():
                if first or (unique and doubts):
                    unique = unique and not doubts
                    page, first = merge_run_hints(page, unique_in_run=unique), False
                yield page
            misfits.report("events")
            if overflow.items:
                state["truncated"] = (list(state.get("truncated") or []) + overflow.items)[-STATE_LIST_LIMIT:]
            state["cursor_column"] = "time"
            if hi >= lo:
                cur.commit(hi, mode="first run" if cur.value is None else "incremental", window_from=lo,
                           window_to=hi, requests=api.http.stats["requests"] - before)
            progress.done(f"window {_iso(lo)} .. {_iso(hi)}")

    def events_in_window() -> Iterator[pa.Table]:
        """Bounded mode: every activity with ``start <= time < end`` that the API still holds.
        Events never change and the pieces of the window are disjoint: each row is read once."""
        assert window is not None
        state = dlt.current.resource_state()
        progress = ProgressLog(S.VENDOR, f"events[{window.label}]")
        count = RowCount()
        with shared.use() as api:
            now = api.server_time_ms()
            earliest = now - S.ACTIVITIES_HORIZON_HOURS * HOUR_MS + S.HORIZON_MARGIN_MS
            lo, hi = window.start_ms, window.end_ms - 1
            if hi < earliest:
                raise ConfigurationError(
                    f"synerise events: the window {window.label} lies entirely beyond the API's "
                    f"{S.ACTIVITIES_HORIZON_HOURS}-hour horizon (the earliest reachable activity is at {_iso(earliest)} "
                    "server time); workspace activities that old cannot be read: use profile_events for older history",
                    vendor=S.VENDOR,
                )
            extra: dict[str, Any] = {"axis": "time"}
            if lo < earliest:
                extra["unreachable"] = _gap_entry(lo, earliest - 1)
                progress_logger.warning(
                    "synerise.events[%s]: UNREACHABLE GAP: workspace activities from %s to %s (%.2f h) are beyond the "
                    "API's 6-hour horizon and were NOT loaded; the rest of the window is loaded. Recorded in the "
                    "window's state as 'unreachable'.",
                    window.label, extra["unreachable"]["from"], extra["unreachable"]["to"],
                    extra["unreachable"]["hours"],
                )
                lo = earliest
            overflow = Overflow()
            doubts: list[str] = []
            pages = read_events_window(api, lo, hi, chunk_ms=window_ms, workers=ev_workers, overflow=overflow,
                                       stray=lambda: doubts.append("stray"))

            def tables_of() -> Iterator[pa.Table]:
                out = Tables(batch)
                for page in pages:
                    progress.update(len(page), len(page))
                    table = columnar.events_table(S.EVENTS, page)
                    if table is None:
                        table = fitted_table(S.EVENTS, [event_row(e) for e in page], misfits)
                    if _repeats_a_key(table, "event_uuid"):
                        doubts.append("repeat")
                    yield from out.add(table)
                yield from out.flush()

            unique = True
            first = True
            for table in tables_of():
                table = count(table)
                if first or (unique and doubts):
                    unique = unique and not doubts
                    table, first = merge_run_hints(table, unique_in_run=unique), False
                yield table
            if overflow.items:
                extra["truncated"] = overflow.items[-STATE_LIST_LIMIT:]
            window.record(state, count.rows, read_from=_iso(lo), **extra)
        progress.done()

    # ---------------------------------------------------------------- per-profile events

    def _profile_events_of(api: SyneriseClient, ids: Sequence[int], state: dict[str, Any],
                           progress: ProgressLog) -> Iterator[pa.Table]:
        per_profile = state.setdefault("profiles", {})
        cursors = {int(c): LookbackCursor(per_profile.setdefault(str(int(c)), {}), lambda v: v - pe_lookback_ms)
                   for c in ids}
        bounds = {c: cur.lower_bound() for c, cur in cursors.items()}

        def admitted() -> Iterator[list[dict[str, Any]]]:
            for cid, page in read_profile_events(api, list(cursors), bounds.__getitem__, page_size=pe_page,
                                                 workers=pe_workers):
                cur = cursors[cid]
                if page is None:
                    cur.commit(mode="first walk" if cur.value is None else "incremental")
                    continue
                keep = []
                for e in page:
                    row = event_row(e)
                    t = row["time"]
                    if cur.admit(str(row["event_uuid"]), t if type(t) is int else None, row):
                        keep.append(row)
                progress.update(len(page), len(keep))
                if keep:
                    yield keep

        for chunk in batched(admitted(), batch):
            yield fitted_table(S.PROFILE_EVENTS, chunk, misfits)
        misfits.report("profile_events")

    def profile_events() -> Iterator[pa.Table]:
        state = dlt.current.resource_state()
        progress = ProgressLog(S.VENDOR, "profile_events")
        if not event_ids:
            return
        with shared.use() as api:
            yield from _profile_events_of(api, event_ids, state, progress)
        progress.done(f"{len(event_ids)} profiles")

    def profile_events_for_page(page: Any) -> Iterator[pa.Table]:
        """Transformer: every profile of one ``profiles`` page (merged-away markers skipped)."""
        if not isinstance(page, pa.Table) or "client_id" not in page.column_names or "analytic_uuid" in page.column_names:
            return
        ids = page.column("client_id").to_pylist()
        if S.MERGED_AWAY in page.column_names:
            gone = page.column(S.MERGED_AWAY).to_pylist()
            ids = [c for c, g in zip(ids, gone, strict=True) if not g]
        if not ids:
            return
        state = dlt.current.resource_state()
        progress = ProgressLog(S.VENDOR, "profile_events")
        with shared.use() as api:
            yield from _profile_events_of(api, ids, state, progress)

    # ---------------------------------------------------------------- catalogs, tags

    def _newest(rows: Iterable[list[dict[str, Any]]], key: Callable[[dict[str, Any]], Any]) -> list[dict[str, Any]]:
        """Rows of a small list, one per key: the last copy a walk handed on (a later copy is
        handed on only when newer by the list's modification field)."""
        out: dict[Any, dict[str, Any]] = {}
        for page in rows:
            for r in page:
                out[key(r)] = r
        return list(out.values())

    def _catalog_walk(api: SyneriseClient, walk: Walk) -> Iterator[list[dict[str, Any]]]:
        return complete_walk("catalogs", lambda: api.catalog_pages(cat_page), lambda b: b.get("id"), walk,
                             version_field="lastModified", version=lambda raw: _version(_ts(raw)))

    def catalogs() -> Iterator[pa.Table]:
        progress = ProgressLog(S.VENDOR, "catalogs")
        state = dlt.current.resource_state()
        walk = Walk()
        with shared.use() as api:
            bags = _newest(_catalog_walk(api, walk), lambda b: b.get("id"))
        _finish_walk("catalogs", walk, state, allow_incomplete)
        progress.update(len(bags), len(bags))
        yield fitted_table(S.CATALOGS, [catalog_row(b) for b in bags], misfits)
        misfits.report("catalogs")
        progress.done("snapshot")

    def catalog_items() -> Iterator[pa.Table]:
        """Every item of every catalog, each catalog a complete walk against its
        ``metaData.totalCount`` (items have no modification field: an item read twice lands
        once, as first read; a change made during the walk lands in the next run)."""
        progress = ProgressLog(S.VENDOR, "catalog_items")
        state = dlt.current.resource_state()
        with shared.use() as api:
            cat_walk = Walk()
            ids = [int(b["id"]) for b in _newest(_catalog_walk(api, cat_walk), lambda b: b.get("id"))]
            _finish_walk("catalogs", cat_walk, state, allow_incomplete, key="catalogs")
            walks = {c: Walk() for c in ids}

            # each catalog's walk hands on each item key once: the run's rows are unique on
            # (catalog_id, item_key) while every item names the catalog it was listed under
            doubts = [] if len(set(ids)) == len(ids) else ["a catalog listed twice"]

            def walk(cid: int) -> Callable[[], Iterator[pa.Table]]:
                def run() -> Iterator[pa.Table]:
                    pages = complete_walk(f"catalog_items[{cid}]", lambda: api.item_pages(cid, cat_page),
                                          lambda i: i.get("itemKey"), walks[cid])
                    for page in pages:
                        table = columnar.items_table(page)
                        if table is None:
                            table = fitted_table(S.CATALOG_ITEMS, [item_row(i) for i in page], misfits)
                        if pc.all(pc.equal(table.column("catalog_id"), cid)).as_py() is not True:
                            doubts.append("an item of another catalog")
                        yield table
                    walks[cid].seen = Keys()  # the walk is over: its keys are counted, not needed

                return run

            def gathered() -> Iterator[pa.Table]:
                out = Tables(batch)
                for table in concurrent_pages([walk(c) for c in ids], min(4, connections), name="synerise-items"):
                    progress.update(table.num_rows, table.num_rows)
                    yield from out.add(table)
                yield from out.flush()

            unique = True
            first = True
            for table in gathered():
                if first or (unique and doubts):  # written every run (the hint persists)
                    unique = unique and not doubts
                    table, first = merge_run_hints(table, unique_in_run=unique), False
                yield table
            misfits.report(S.CATALOG_ITEMS.name)
        for cid, w in walks.items():
            _finish_walk("catalog_items", w, state, allow_incomplete, key=f"catalog {cid}")
        progress.done(f"{len(ids)} catalogs")

    def tags() -> Iterator[pa.Table]:
        progress = ProgressLog(S.VENDOR, "tags")
        with shared.use() as api:
            rows = api.tags()
        progress.update(len(rows), len(rows))
        yield fitted_table(S.TAGS, rows, misfits)
        misfits.report("tags")

    def asset_tags() -> Iterator[pa.Table]:
        progress = ProgressLog(S.VENDOR, "asset_tags")
        state = dlt.current.resource_state()
        walk = Walk()
        with shared.use() as api:
            pages = complete_walk("asset_tags", lambda: api.asset_tag_pages(S.DEFAULT_ASSET_TAGS_PAGE_SIZE),
                                  lambda t: t.get("hash"), walk)
            yield from tables(S.ASSET_TAGS, ([asset_tag_row(t) for t in p] for p in pages), progress)
        _finish_walk("asset_tags", walk, state, allow_incomplete)

    # ---------------------------------------------------------------- segmentations

    def segmentation_members() -> Iterator[pa.Table]:
        progress = ProgressLog(S.VENDOR, "segmentation_members")
        state = dlt.current.resource_state()
        with shared.use() as api:
            for seg in segments:
                walk = Walk()
                pages = complete_walk(f"segmentation_members[{seg}]", lambda seg=seg: api.segmentation_pages(seg, crm_page),
                                      lambda c: c.get("id"), walk)
                yield from tables(S.SEGMENTATION_MEMBERS, ([member_row(seg, c) for c in p] for p in pages), progress)
                _finish_walk("segmentation_members", walk, state, allow_incomplete, key=f"segmentation {seg}")
                state.setdefault("segmentations", {})[seg] = {
                    "members": walk.distinct, "finished_at": pendulum.now("UTC").to_iso8601_string(), **walk.info()}
        progress.done(f"{len(segments)} segmentations")

    # ---------------------------------------------------------------- analytics

    def definitions(kind: str, spec: TableSpec, mapper: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[], Iterator[pa.Table]]:
        key = spec.primary_key[0]

        def read() -> Iterator[pa.Table]:
            progress = ProgressLog(S.VENDOR, spec.name)
            state = dlt.current.resource_state()
            walk = Walk()
            with shared.use() as api:
                pages = complete_walk(spec.name, lambda: mapped_pages(api), lambda r: r.get(key), walk,
                                      version_field="modified_at", version=_version)
                rows = _newest(pages, lambda r: r.get(key))
            _finish_walk(spec.name, walk, state, allow_incomplete)
            progress.update(len(rows), len(rows))
            yield fitted_table(spec, rows, misfits)
            misfits.report(spec.name)

        def mapped_pages(api: SyneriseClient) -> Iterator[tuple[int | None, list[dict[str, Any]]]]:
            for total, page in api.analytics_pages(kind, an_page):
                yield total, [mapper(x) for x in page]

        read.__name__ = spec.name
        return read

    def summaries(kind: str, spec: TableSpec, mapper: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[], Iterator[pa.Table]]:
        def read() -> Iterator[pa.Table]:
            with shared.use() as api:
                rows = [mapper(x) for x in api.analytics_projections(kind)]
            yield fitted_table(spec, rows, misfits)
            misfits.report(spec.name)

        read.__name__ = spec.name
        return read

    def analytics_values() -> Iterator[pa.Table]:
        if not value_ids or not (expr_uuids or agg_uuids):
            return
        progress = ProgressLog(S.VENDOR, "analytics_values")
        with shared.use() as api:
            def one(kind: str, uuid: str, cid: int) -> Callable[[], Iterator[list[dict[str, Any]]]]:
                def run() -> Iterator[list[dict[str, Any]]]:
                    at = int(pendulum.now("UTC").timestamp() * 1000)
                    body = api.expression_value(uuid, cid) if kind == "expression" else api.aggregate_value(uuid, cid)
                    yield [analytics_value_row(cid, uuid, kind, (body or {}).get("result"), at)]

                return run

            jobs = [one("expression", u, c) for u in expr_uuids for c in value_ids]
            jobs += [one("aggregate", u, c) for u in agg_uuids for c in value_ids]
            yield from tables(S.ANALYTICS_VALUES, concurrent_pages(jobs, min(8, connections)), progress)

    # ---------------------------------------------------------------- resources

    def hints(spec: TableSpec, **extra: Any) -> dict[str, Any]:
        return {"columns": spec.dlt_columns(), "primary_key": list(spec.primary_key), **extra}

    profile_columns = S.PROFILES.dlt_columns()
    profile_columns["attributes"] = {"data_type": "json", "nullable": True}
    # a profile read twice in one walk (the list moved under it) lands as its newest copy
    profile_columns["last_activity_date"] = {**profile_columns["last_activity_date"], "dedup_sort": "desc"}
    if not export_mode:
        profile_columns[S.MERGED_AWAY] = {"data_type": "bool", "nullable": True, "hard_delete": True}
    # the walk loads each client_id once unless a later copy is newer (then `_profiles_v4` turns
    # the merge's staging de-duplication on for that run); otherwise the merge can skip it
    profiles_res = dlt.resource(
        profiles, name="profiles", primary_key="client_id", columns=profile_columns,
        write_disposition="replace" if export_mode else
        {"disposition": "merge", "strategy": "delete-insert", "deduplicated": True},
        parallelized=True,
    )()
    if profile_events_backfill:
        profile_events_res = dlt.transformer(
            profile_events_for_page, name="profile_events", write_disposition="merge",
            **hints(S.PROFILE_EVENTS),
        )
        profile_events_res = profiles_res | profile_events_res
    else:
        profile_events_res = dlt.resource(
            profile_events, name="profile_events", write_disposition="merge", parallelized=True,
            **hints(S.PROFILE_EVENTS),
        )()

    if window is not None:  # bounded mode: the time-windowed resources only
        return [dlt.resource(events_in_window, name="events", write_disposition="merge", parallelized=True,
                             **hints(S.EVENTS))()]
    resources: list[DltResource] = [
        profiles_res,
        dlt.resource(events, name="events", write_disposition="merge", parallelized=True, **hints(S.EVENTS))(),
        profile_events_res,
        dlt.resource(catalogs, name="catalogs", write_disposition="merge", parallelized=True, **hints(S.CATALOGS))(),
        dlt.resource(catalog_items, name="catalog_items", write_disposition="merge", merge_key="catalog_id",
                     parallelized=True, **hints(S.CATALOG_ITEMS))(),
        dlt.resource(tags, name="tags", write_disposition="replace", parallelized=True, **hints(S.TAGS))(),
        dlt.resource(asset_tags, name="asset_tags", write_disposition="replace", parallelized=True,
                     **hints(S.ASSET_TAGS))(),
        dlt.resource(segmentation_members, name="segmentation_members", write_disposition="replace",
                     parallelized=True, **hints(S.SEGMENTATION_MEMBERS))(),
        dlt.resource(definitions("expressions", S.EXPRESSIONS, expression_row), name="expressions",
                     write_disposition="merge", parallelized=True, **hints(S.EXPRESSIONS))(),
        dlt.resource(definitions("aggregates", S.AGGREGATES, aggregate_row), name="aggregates",
                     write_disposition="merge", parallelized=True, **hints(S.AGGREGATES))(),
        dlt.resource(summaries("expressions", S.EXPRESSION_SUMMARIES, _expression_summary),
                     name="expression_summaries", write_disposition="replace", parallelized=True,
                     **hints(S.EXPRESSION_SUMMARIES))(),
        dlt.resource(summaries("aggregates", S.AGGREGATE_SUMMARIES, _aggregate_summary),
                     name="aggregate_summaries", write_disposition="replace", parallelized=True,
                     **hints(S.AGGREGATE_SUMMARIES))(),
        dlt.resource(analytics_values, name="analytics_values", write_disposition="merge", parallelized=True,
                     **hints(S.ANALYTICS_VALUES))(),
    ]
    return resources


def _expression_summary(x: dict[str, Any]) -> dict[str, Any]:
    return {"hash_id": x.get("hashId"), "name": x.get("name"), "created_at": _ts(x.get("createdAt")),
            "is_dynamic_analytic": x.get("isDynamicAnalytic"), "variables": x.get("variables")}


def _aggregate_summary(x: dict[str, Any]) -> dict[str, Any]:
    return {"uuid": x.get("uuid"), "hash_id": x.get("hashId"), "name": x.get("name"),
            "created_at": _ts(x.get("createdAt")), "is_dynamic_analytic": x.get("isDynamicAnalytic"),
            "variables": x.get("variables")}


def _iso(ms: int) -> str:
    return pendulum.from_timestamp(ms / 1000).to_iso8601_string()


def _gap_entry(lo: int, hi: int) -> dict[str, Any]:
    """The unreachable stretch ``[lo, hi]`` (ms) as state keeps it."""
    return {"from_ms": lo, "to_ms": hi, "from": _iso(lo), "to": _iso(hi), "hours": round((hi - lo + 1) / HOUR_MS, 3),
            "detected_at": pendulum.now("UTC").to_iso8601_string()}


def _record_gap(state: dict[str, Any], gap: tuple[int, int]) -> None:
    """Say loudly that workspace activity between two instants can no longer be read, and keep
    it in state (``cdp-sync state synerise`` shows it)."""
    lo, hi = gap
    entry = _gap_entry(lo, hi)
    hours = entry["hours"]
    state["unreachable"] = (list(state.get("unreachable") or []) + [entry])[-STATE_LIST_LIMIT:]
    progress_logger.warning(
        "synerise.events: UNREACHABLE GAP: workspace activities from %s to %s (%.2f h) are beyond the API's "
        "6-hour horizon and were NOT loaded; run more often than every 6 hours, and use profile_events "
        "(per-profile history) to recover that period. Recorded in state as 'unreachable'.",
        entry["from"], entry["to"], hours,
    )
