"""PostHog's own counts, for ``cdp-sync verify``: the cheapest request that counts, never the rows.

* **Events per UTC day**: one HogQL ``count(DISTINCT uuid)`` grouped by ``toDate(timestamp)`` when
  the project's time zone is UTC (HogQL's ``toDate`` takes the project's calendar day); otherwise
  one ``count(DISTINCT uuid)`` per UTC day with explicit UTC bounds. Distinct ``uuid``: copies of one event ClickHouse has not merged yet
  count once, as they load once.
* **Lists** (DRF style A): ``count`` of a ``limit=1`` page; persons ask ``include_total``; the
  declared lists (``lists.py``) marked ``countable``, one count per fan-out value
  (``property_definitions`` per ``type``).

Over :class:`~sources.posthog.client.PostHogClient`; nothing here knows dlt.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sources.common.errors import MalformedResponse

from .client import PostHogClient, _list_problem, iso_to_us, us_to_iso
from .settings import VENDOR

DAILY_SQL = (
    "SELECT toDate(timestamp) AS day, count(DISTINCT uuid) AS events FROM events "
    "WHERE timestamp >= toDateTime({start}) AND timestamp < toDateTime({end}) "
    "GROUP BY day ORDER BY day LIMIT 10000"
)
DAY_US = 86_400 * 1_000_000


def projects(api: PostHogClient) -> dict[int, dict[str, Any]]:
    """Every project the key can read, by id (for its ``timezone``)."""
    return {int(p["id"]): p for p in api.projects()}


def events_between(api: PostHogClient, project_id: int, start_us: int, end_us: int) -> int:
    """Distinct events with ``start <= timestamp < end`` (UTC microseconds)."""
    if end_us <= start_us:
        return 0
    return api.count_distinct_events(project_id, start_us, end_us)


def events_per_utc_day(api: PostHogClient, project_id: int, timezone: str | None,
                       start_us: int, end_us: int) -> dict[str, int]:
    """Distinct events per UTC day (``YYYY-MM-DD``) with ``start <= timestamp < end``; ``start``
    is a UTC midnight. One grouped query in a UTC project, one count per day elsewhere."""
    out: dict[str, int] = {}
    day = start_us
    while day < end_us:
        out[us_to_iso(day)[:10]] = 0
        day += DAY_US
    if end_us <= start_us:
        return out
    if (timezone or "UTC") in ("UTC", "Etc/UTC", "GMT", "Etc/GMT"):
        data = api.query(project_id, DAILY_SQL, {"start": us_to_iso(start_us), "end": us_to_iso(end_us)},
                         "cdp_sync_verify_events_per_day")
        for row in api.rows(data):
            key = str(row.get("day"))[:10]
            if key not in out:
                raise MalformedResponse(f"posthog counted events of {key} outside [{us_to_iso(start_us)}, "
                                        f"{us_to_iso(end_us)}) (project {project_id})", vendor=VENDOR)
            out[key] = int(row.get("events") or 0)
        return out
    day = start_us
    while day < end_us:
        out[us_to_iso(day)[:10]] = api.count_distinct_events(project_id, day, min(day + DAY_US, end_us))
        day += DAY_US
    return out


def list_count(api: PostHogClient, path: str, params: dict[str, Any] | None = None, *,
               include_total: bool = False) -> int | None:
    """The ``count`` of a list (one row asked for), ``None`` when the list states none."""
    query = {**(params or {}), "limit": 1}
    if include_total:
        query["include_total"] = "true"
    body = api.get(path, query, expect=_list_problem)
    count = body.get("count") if isinstance(body, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def declared_list_counts(api: PostHogClient, project_id: int,
                         name: str) -> list[tuple[str, int | None, tuple[tuple[str, Any], ...]]]:
    """The counts of one declared list of a project: ``(slice label, count, the columns that
    select the slice)``, one per fixed fan-out value (``""`` and ``()`` without a fan-out)."""
    from .lists import BY_NAME

    spec = BY_NAME[name]
    if not spec.countable:
        raise ValueError(f"posthog list {name} states no count")
    path = f"api/projects/{int(project_id)}/{spec.path}"
    fan = spec.fan_out
    if fan is None:
        return [("", list_count(api, path, dict(spec.params)), ())]
    if fan.discover is not None or not fan.column:
        raise ValueError(f"posthog list {name} fans out over discovered values: not counted")
    out = []
    for value in fan.values:
        label = fan.labels.get(value, value) if fan.labels else value
        n = list_count(api, path, {**spec.params, fan.param: value})
        out.append((f" {fan.param} {label}", n, ((fan.column, label),)))
    return out


def parse_instant_us(text: str) -> int:
    return iso_to_us(text)


def to_us(value: dt.datetime) -> int:
    return iso_to_us(value.astimezone(dt.UTC).isoformat())


def sessions_between(api: PostHogClient, project_id: int, start_us: int, end_us: int) -> int:
    """Sessions with ``start <= $start_timestamp < end`` (UTC microseconds): HogQL ``count()`` on
    the sessions table (one row per session)."""
    from .sessions import count_sessions

    if end_us <= start_us:
        return 0
    return count_sessions(api, project_id, start_us, end_us)
