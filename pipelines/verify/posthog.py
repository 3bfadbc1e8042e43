"""What ``cdp-sync verify posthog`` counts, where, and the tolerances.

==================== ===================================================== ==========================================
resource             slices (vendor count)                                 tolerance
==================== ===================================================== ==========================================
events               per project: each of the last ``--days`` UTC days and rows still inside the lookback behind the
                     everything before them (HogQL ``count(DISTINCT       project's cursor (``events_lookback_seconds``,
                     uuid)``, up to the project's cursor: what the last    1 h) may be missing: late events the next
                     run read to)                                          run picks up; nothing else
sessions             per project: sessions starting on each of the last    sessions starting inside the lookback behind
                     ``--days`` UTC days and before them (HogQL           the project's cursor (``sessions_lookback_
                     ``count()`` on ``$start_timestamp``, up to the        seconds``, 25 h) may be missing or counted on
                     project's cursor)                                     another day (a late event moved a start):
                                                                           the next run settles them; nothing else
persons              per project: the list's ``count`` (``include_total``) exact
cohorts, feature_flags, annotations, insights, event_definitions,          exact
experiments, actions, dashboards, surveys
                     per project: the list's ``count`` (every list of
                     ``sources/posthog/lists.py`` declared ``countable``)
property_definitions per project and type: the list's ``count``            exact
projects             the projects list's ``count`` (or the configured      exact
                     ``project_ids``)
event_summaries      not countable: it *is* PostHog's count per day and event (verify ``events``)
groups               not countable: the groups list pages on a cursor and states no count
session_recordings   not countable: the list states ``has_next``, never a count
a list the key lacks not countable: skipped by the last run (its state says which scope is missing)
the scope of
==================== ===================================================== ==========================================

Whole-list counts compare what PostHog holds now with the last load: verify right after a run
(``cdp-sync run --verify``); a row created or deleted since then is a difference.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pipelines.verify import DELETIONS, Check, Context, Where

RESOURCES = ("events", "event_summaries", "persons", "projects", "cohorts", "feature_flags", "annotations",
             "insights", "event_definitions", "property_definitions", "groups", "experiments", "actions",
             "dashboards", "surveys", "session_recordings", "sessions")
TABLES: dict[str, str] = {}
LISTS = ("cohorts", "feature_flags", "annotations", "insights", "event_definitions", "experiments", "actions",
         "dashboards", "surveys")
NOT_COUNTABLE = {
    "event_summaries": "PostHog's own daily counts per event; verify events instead",
    "groups": "the groups list pages on a cursor and states no count",
    "session_recordings": "the recordings list states has_next, never a count",
}
UTC = dt.UTC


def _dt(us: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=us)


def plan(ctx: Context, api_key: str, base_url: str) -> list[Check]:
    from sources.posthog import counts
    from sources.posthog.client import PostHogClient

    checks: list[Check] = []
    api = PostHogClient(api_key, base_url, timeout=float(ctx.config("request_timeout", 60.0)))
    try:
        catalog = counts.projects(api)
        configured = ctx.config("project_ids", None)
        for resource in ctx.resources:
            skipped = (ctx.resource_state(resource).get("skipped") or {}).get("missing_scope")
            if resource in NOT_COUNTABLE:
                checks.append(Check(resource, "all", None, resource, Where(), note=NOT_COUNTABLE[resource]))
            elif skipped:
                checks.append(Check(resource, "all", None, note=f"not loaded: the key lacks the scope {skipped}"))
            elif resource == "events":
                checks += _events(ctx, api, catalog)
            elif resource == "sessions":
                checks += _sessions(ctx, api, catalog)
            elif resource == "projects":
                ids = [int(p) for p in configured] if configured else sorted(catalog)
                checks.append(Check("projects", "all", len([p for p in ids if p in catalog]), "projects",
                                    Where(), note=DELETIONS))
            else:
                for pid in _loaded_projects(ctx, resource, catalog, configured):
                    if resource == "persons":
                        n = counts.list_count(api, f"api/projects/{pid}/persons/", include_total=True)
                        checks.append(_list_check(resource, f"project {pid}", n, (("project_id", pid),)))
                    else:
                        for label, n, equals in counts.declared_list_counts(api, pid, resource):
                            checks.append(_list_check(resource, f"project {pid}{label}", n,
                                                      (("project_id", pid), *equals)))
    finally:
        api.close()
    return checks


def _list_check(resource: str, label: str, n: int | None, equals: tuple) -> Check:
    if n is None:
        return Check(resource, label, None, note="PostHog stated no count for this list")
    return Check(resource, label, n, resource, Where(equals=equals), note=DELETIONS)


def _loaded_projects(ctx: Context, resource: str, catalog: dict[int, Any], configured: Any) -> list[int]:
    ids = [int(p) for p in configured] if configured else sorted(catalog)
    return [p for p in ids if p in catalog]


def _events(ctx: Context, api: Any, catalog: dict[int, dict[str, Any]]) -> list[Check]:
    """Per project that the pipeline has read: each UTC day of the window and everything before
    it, the vendor counted up to the project's cursor (the end of the range the last run read)."""
    from sources.posthog import counts
    from sources.posthog.client import iso_to_us, parse_start

    lookback_us = int(ctx.config("events_lookback_seconds", 3600)) * 1_000_000
    start_date = ctx.config("start_date", None)
    floor_us = parse_start(start_date) if start_date else 0
    projects = (ctx.resource_state("events").get("projects") or {})
    checks: list[Check] = []
    first_day_us = counts.to_us(ctx.days[0][1])
    configured = ctx.config("project_ids", None)
    expected = {int(p) for p in configured} if configured else set(catalog)
    for pid in sorted(expected - {int(p) for p in projects if projects[p].get("cursor")}):
        checks.append(Check("events", f"project {pid}", None, "events", Where(equals=(("project_id", pid),)),
                            note="no scheduled run has read this project's events: no cursor bounds the count"))
    for pid_text in sorted(projects, key=int):
        pid = int(pid_text)
        cursor = projects[pid_text].get("cursor")
        if cursor is None:
            continue
        if pid not in catalog:
            checks.append(Check("events", f"project {pid}", None,
                                note="the key no longer reads this project"))
            continue
        cursor_us = iso_to_us(cursor)
        lookback_start = cursor_us - lookback_us
        per_day = counts.events_per_utc_day(api, pid, catalog[pid].get("timezone"), first_day_us,
                                            min(cursor_us, counts.to_us(ctx.days[-1][2])))
        before_end = min(first_day_us, cursor_us)
        # everything before the first day (from start_date, when one is configured)
        earlier = counts.events_between(api, pid, floor_us, before_end)
        checks.append(_slice(api, pid, f"before {ctx.days[0][0]} project {pid}", earlier, floor_us, before_end,
                             lookback_start, cursor_us))
        for label, start, end in ctx.days:
            a, b = counts.to_us(start), min(counts.to_us(end), cursor_us)
            n = per_day.get(label, 0) if a < b else 0
            checks.append(_slice(api, pid, f"{label} project {pid}", n, a, max(a, b), lookback_start, cursor_us))
    return checks


def _slice(api: Any, pid: int, label: str, vendor: int, a: int, b: int, lookback_start: int,
           cursor_us: int) -> Check:
    from sources.posthog import counts

    where = Where("timestamp", _dt(a) if a > 0 else None, _dt(b), (("project_id", pid),))
    tolerance = (0, 0)
    note = ""
    lo, hi = max(a, lookback_start), min(b, cursor_us)
    if lo < hi and vendor:
        # late events inside the lookback window are read by the next run
        inside = counts.events_between(api, pid, lo, hi)
        if inside:
            tolerance = (-inside, 0)
            note = (f"up to {inside:,} events within the lookback behind the cursor "
                    f"({counts.us_to_iso(cursor_us)[:19]}Z) load next run")
    return Check("events", label, vendor, "events", where, tolerance, note)


def _sessions(ctx: Context, api: Any, catalog: dict[int, dict[str, Any]]) -> list[Check]:
    """Per project that the pipeline has read: the sessions starting on each UTC day of the window
    and before it, the vendor counted up to the project's cursor (the end of the range the last
    run read). Sessions starting inside the lookback behind the cursor may still change: the
    next run re-reads them."""
    from sources.posthog import counts
    from sources.posthog.client import iso_to_us, parse_start
    from sources.posthog.sessions import DEFAULT_SESSIONS_LOOKBACK_SECONDS

    lookback_us = int(ctx.config("sessions_lookback_seconds", DEFAULT_SESSIONS_LOOKBACK_SECONDS)) * 1_000_000
    start_date = ctx.config("start_date", None)
    floor_us = parse_start(start_date) if start_date else 0
    projects = (ctx.resource_state("sessions").get("projects") or {})
    first_day_us = counts.to_us(ctx.days[0][1])
    configured = ctx.config("project_ids", None)
    expected = {int(p) for p in configured} if configured else set(catalog)
    checks: list[Check] = []
    for pid in sorted(expected - {int(p) for p in projects if projects[p].get("cursor")}):
        checks.append(Check("sessions", f"project {pid}", None, "sessions", Where(equals=(("project_id", pid),)),
                            note="no scheduled run has read this project's sessions: no cursor bounds the count"))
    for pid_text in sorted(projects, key=int):
        pid = int(pid_text)
        cursor = projects[pid_text].get("cursor")
        if cursor is None:
            continue
        if pid not in catalog:
            checks.append(Check("sessions", f"project {pid}", None, note="the key no longer reads this project"))
            continue
        cursor_us = iso_to_us(cursor)
        slices = [(f"before {ctx.days[0][0]} project {pid}", floor_us, min(first_day_us, cursor_us))]
        slices += [(f"{label} project {pid}", counts.to_us(start), min(counts.to_us(end), cursor_us))
                   for label, start, end in ctx.days]
        for label, a, b in slices:
            b = max(a, b)
            vendor = counts.sessions_between(api, pid, a, b)
            where = Where("start_timestamp", _dt(a) if a > 0 else None, _dt(b), (("project_id", pid),))
            lo = max(a, cursor_us - lookback_us)
            inside = counts.sessions_between(api, pid, lo, b) if lo < b else 0
            tolerance, note = (0, 0), ""
            if inside:
                tolerance = (-inside, inside)
                note = (f"up to {inside:,} sessions start within the lookback behind the cursor "
                        f"({counts.us_to_iso(cursor_us)[:19]}Z) and may still change")
            checks.append(Check("sessions", label, vendor, "sessions", where, tolerance, note))
    return checks
