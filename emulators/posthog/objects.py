"""PostHog's small project objects, generated from the seed and rendered as the API renders them.

Cohorts, feature flags, annotations, insights, event and property definitions, experiments,
actions, dashboards and surveys are DRF ``LimitOffsetPagination`` lists (style A, contract §1.5);
groups use DRF ``CursorPagination`` (style D, ordering ``-created_at``, 100 per page); session
recordings are style E (``{"results", "has_next", "version": 4}``, see :func:`recordings_page`).
They are small (hundreds to a few thousand per project at the largest scale), so each project
keeps them as lists of dicts in API form, newest first where PostHog orders them so. Ids are
global across projects (Django auto-increment); surveys and recordings have UUID ids.

Choices where the contract is silent (the stricter one, see the README):

* ``dashboards/`` lists the basic serializer (no tiles, as PostHog's list action does);
  ``dashboards/{id}/`` adds ``tiles``, each carrying its whole insight **with its computed
  result**: a client wanting tile references must strip them.
* ``experiments/`` carry their metric definitions (``metrics``, ``metrics_secondary``) and a
  reference to their feature flag.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import re
from typing import Any

import orjson

from .data import (
    DAY_US,
    EVENT_NAMES,
    HOUR_US,
    PATHS,
    PLANS,
    US,
    derive_seed,
    drf_datetime,
    h2,
    uuid_str,
    v4,
    v7,
)

#: object tables and the scope each one needs
OBJECT_SCOPES: dict[str, str] = {
    "cohorts": "cohort:read",
    "feature_flags": "feature_flag:read",
    "annotations": "annotation:read",
    "insights": "insight:read",
    "event_definitions": "event_definition:read",
    "property_definitions": "property_definition:read",
    "experiments": "experiment:read",
    "actions": "action:read",
    "dashboards": "dashboard:read",
    "surveys": "survey:read",
}
#: the lists the control plane adds to and changes (``add_objects``, ``modify_objects``, ``delete_objects``)
MUTABLE_TABLES = ("cohorts", "feature_flags", "annotations", "insights", "experiments", "actions", "dashboards",
                  "surveys")
RECORDINGS_SCOPE = "session_recording:read"
#: the lists hostile ``list_shift`` deletes from unless ``hostile_shift_tables`` names others: the
#: lists of issue 14 (the older lists keep the bad days their model-based invariants were written for)
SHIFTING_BY_DEFAULT = ("experiments", "actions", "dashboards", "surveys", "session_recordings")

EVENT_PROPERTIES = (
    ("$current_url", "String"),
    ("$pathname", "String"),
    ("$browser", "String"),
    ("$os", "String"),
    ("$lib", "String"),
    ("$lib_version", "String"),
    ("price", "Numeric"),
    ("currency", "String"),
    ("feature", "String"),
)
PERSON_PROPERTIES = (
    ("email", "String"),
    ("name", "String"),
    ("plan", "String"),
    ("seats", "Numeric"),
    ("$initial_browser", "String"),
    ("$initial_os", "String"),
    ("$geoip_country_code", "String"),
)
SESSION_PROPERTIES = (("$session_duration", "Numeric"), ("$entry_current_url", "String"))
GROUP_PROPERTIES = (("name", "String"), ("industry", "String"), ("employees", "Numeric"))
PROPERTY_TYPES = {"event": 1, "person": 2, "group": 3, "session": 4}


def _user(seed: int, n: int) -> dict[str, Any]:
    r = h2(seed, n)
    return {
        "id": 1 + r % 40,
        "uuid": uuid_str(*v4(r, h2(r, 1))),
        "distinct_id": f"user-{r % 40}",
        "first_name": ("Ada", "Grace", "Alan", "Edsger")[r % 4],
        "email": f"analyst{r % 40}@example.com",
        "is_email_verified": True,
    }


class Ids:
    """Global auto-increment sequences, one per model."""

    def __init__(self) -> None:
        self._seq = {name: itertools.count(start) for name, start in (
            ("cohorts", 101), ("feature_flags", 2001), ("annotations", 5001), ("insights", 9001),
            ("experiments", 301), ("actions", 701), ("dashboards", 1201), ("surveys", 1), ("dashboard_tiles", 40001),
        )}

    def next(self, table: str) -> int:
        return next(self._seq[table])


def generate(seed: int, project_id: int, scale: int, t0: int, t1: int, ids: Ids) -> dict[str, list[dict[str, Any]]]:
    s = derive_seed(seed, "objects", project_id)
    out: dict[str, list[dict[str, Any]]] = {}
    span = max(1, t1 - t0)

    def when(i: int, n: int) -> int:
        return t0 + (span * (i + 1)) // (n + 2) + (h2(s, i) % HOUR_US)

    n = 3 + scale // 200
    out["cohorts"] = [cohort(s, ids.next("cohorts"), i, when(i, n)) for i in range(n)]
    n = 5 + scale // 100
    out["feature_flags"] = [feature_flag(s, ids.next("feature_flags"), i, when(i, n)) for i in range(n)]
    n = 4 + scale // 50
    out["annotations"] = [annotation(s, ids.next("annotations"), i, when(i, n)) for i in range(n)]
    n = min(2000, 3 + scale // 100)
    out["insights"] = [insight(s, ids.next("insights"), i, when(i, n)) for i in range(n)]
    out["event_definitions"] = [
        event_definition(s, name, i, t0, t1) for i, (name, _) in enumerate(EVENT_NAMES)
    ]
    props = []
    for kind, names in (("event", EVENT_PROPERTIES), ("person", PERSON_PROPERTIES), ("session", SESSION_PROPERTIES),
                        ("group", GROUP_PROPERTIES)):
        props += [property_definition(s, kind, name, ptype, i) for i, (name, ptype) in enumerate(names)]
    out["property_definitions"] = props
    n = 2 + scale // 150
    out["experiments"] = [experiment(s, ids.next("experiments"), i, when(i, n)) for i in range(n)]
    n = 4 + scale // 60
    out["actions"] = [action(s, ids.next("actions"), i, when(i, n)) for i in range(n)]
    n = 2 + scale // 120
    insight_ids = [x["id"] for x in out["insights"]]
    out["dashboards"] = [dashboard(s, ids.next("dashboards"), i, when(i, n), insight_ids=insight_ids, ids=ids)
                         for i in range(n)]
    n = 2 + scale // 200
    out["surveys"] = [survey(s, ids.next("surveys"), i, when(i, n)) for i in range(n)]
    # newest first, as the list endpoints order them
    for table in ("cohorts", "feature_flags", "annotations", "insights", "experiments", "actions", "dashboards",
                  "surveys"):
        out[table].reverse()
    out["event_definitions"].sort(key=lambda d: d["name"])
    out["property_definitions"].sort(key=lambda d: (d["type"], d["name"]))
    return out


def cohort(s: int, oid: int, i: int, created: int, version: int = 0) -> dict[str, Any]:
    r = h2(s ^ 0xC0, i)
    plan = PLANS[r % len(PLANS)]
    return {
        "id": oid,
        "name": f"{plan.title()} users #{i}" + (f" (v{version})" if version else ""),
        "description": "" if r & 1 else f"People on the {plan} plan",
        "groups": [{"properties": [{"key": "plan", "value": plan, "type": "person", "operator": "exact"}]}],
        "filters": {"properties": {"type": "OR", "values": [{"type": "AND", "values": [
            {"key": "plan", "value": plan, "type": "person", "operator": "exact"}]}]}},
        "deleted": False,
        "is_calculating": False,
        "created_by": _user(s, i),
        "created_at": drf_datetime(created),
        "last_calculation": drf_datetime(created + (r % 48) * HOUR_US + version * US),
        "version": 1 + version,
        "pending_version": None,
        "count": int(r % 5000),
        "is_static": bool(r % 7 == 0),
        "errors_calculating": 0,
        "experiment_set": [],
    }


def feature_flag(s: int, oid: int, i: int, created: int, version: int = 0) -> dict[str, Any]:
    r = h2(s ^ 0xFF, i)
    return {
        "id": oid,
        "name": f"Rollout of feature {i}",
        "key": f"feature-{i}-{r & 0xFFFF:04x}",
        "filters": {"groups": [{"properties": [], "rollout_percentage": int(r % 101)}], "multivariate": None,
                    "payloads": {}},
        "deleted": False,
        "active": bool(r % 4) != bool(version % 2),
        "created_by": _user(s, i + 7),
        "created_at": drf_datetime(created),
        "updated_at": drf_datetime(created + (r % 72) * HOUR_US + version * US),
        "is_simple_flag": True,
        "rollout_percentage": int(r % 101),
        "ensure_experience_continuity": bool(r & 2),
        "tags": [],
        "version": 1 + version,
    }


def annotation(s: int, oid: int, i: int, created: int, version: int = 0) -> dict[str, Any]:
    r = h2(s ^ 0xA0, i)
    return {
        "id": oid,
        "content": f"Release {i // 10}.{i % 10}" + (f" (edited {version})" if version else ""),
        "date_marker": drf_datetime(created - created % DAY_US),
        "creation_type": "USR",
        "dashboard_item": None,
        "dashboard_id": None,
        "insight_short_id": None,
        "created_by": _user(s, i + 13),
        "created_at": drf_datetime(created),
        "updated_at": drf_datetime(created + version * US),
        "deleted": False,
        "scope": ("project", "organization", "dashboard_item")[r % 3],
    }


def insight(s: int, oid: int, i: int, created: int, version: int = 0) -> dict[str, Any]:
    r = h2(s ^ 0x15, i)
    event = EVENT_NAMES[r % len(EVENT_NAMES)][0]
    return {
        "id": oid,
        "short_id": f"{r & 0xFFFFFFFF:08x}"[:8],
        "name": f"Weekly {event}" if r & 1 else None,
        "derived_name": f"{event} count",
        "query": {"kind": "InsightVizNode", "source": {"kind": "TrendsQuery", "series": [
            {"kind": "EventsNode", "event": event, "math": "total"}], "interval": "day"}},
        "filters": {},
        "description": None,
        "tags": [],
        "favorited": bool(r & 4),
        "saved": True,
        "deleted": False,
        "created_at": drf_datetime(created),
        "created_by": _user(s, i + 21),
        "updated_at": drf_datetime(created + (r % 24) * HOUR_US + version * US),
        "last_modified_at": drf_datetime(created + (r % 24) * HOUR_US + version * US),
        "last_refresh": drf_datetime(created + (r % 24) * HOUR_US),
        "dashboards": [],
    }


def insight_result(item: dict[str, Any]) -> list[dict[str, Any]]:
    """The computed result the full (non-``basic``) list carries: days of counts."""
    r = h2(item["id"], 99)
    return [{"label": item["derived_name"], "count": int(r % 1000),
             "data": [int((r >> k) % 50) for k in range(30)], "days": [f"day-{k}" for k in range(30)]}]


def event_definition(s: int, name: str, i: int, t0: int, t1: int) -> dict[str, Any]:
    r = h2(s ^ 0xED, i)
    return {
        "id": uuid_str(*v4(r, h2(r, 2))),
        "name": name,
        "owner": None,
        "description": None,
        "tags": [],
        "volume_30_day": None,
        "query_usage_30_day": None,
        "created_at": drf_datetime(t0 + (r % DAY_US)),
        "last_seen_at": drf_datetime(t1 - (r % HOUR_US)),
        "last_updated_at": drf_datetime(t0 + (r % DAY_US)),
        "verified": False,
        "is_action": False,
        "post_to_slack": False,
    }


def property_definition(s: int, kind: str, name: str, ptype: str, i: int) -> dict[str, Any]:
    r = h2(s ^ 0x9D ^ PROPERTY_TYPES[kind], i)
    return {
        "id": uuid_str(*v4(r, h2(r, 3))),
        "name": name,
        "is_numerical": ptype == "Numeric",
        "property_type": ptype,
        "type": PROPERTY_TYPES[kind],
        "group_type_index": 0 if kind == "group" else None,
        "tags": [],
        "is_seen_on_filtered_events": None,
        "description": None,
        "verified": False,
    }


def experiment(s: int, oid: int, i: int, created: int, version: int = 0) -> dict[str, Any]:
    r = h2(s ^ 0xE7, i)
    event = EVENT_NAMES[r % len(EVENT_NAMES)][0]
    goal = ("purchase", "signed_up", "added_to_cart")[r % 3]
    started = created + (r % 48) * HOUR_US
    ended = started + (3 + r % 20) * DAY_US if r % 3 == 0 else None
    return {
        "id": oid,
        "name": f"Experiment {i}: {event} layout" + (f" (v{version})" if version else ""),
        "description": "" if r & 1 else f"Does the new layout lift {goal}?",
        "start_date": drf_datetime(started),
        "end_date": drf_datetime(ended) if ended is not None else None,
        "feature_flag_key": f"experiment-{i}-{r & 0xFFFF:04x}",
        "feature_flag": {"id": 8000 + oid, "key": f"experiment-{i}-{r & 0xFFFF:04x}", "name": f"Experiment {i}",
                         "active": ended is None, "deleted": False, "filters": {"multivariate": {"variants": [
                             {"key": "control", "rollout_percentage": 50},
                             {"key": "test", "rollout_percentage": 50}]}}},
        "holdout": None,
        "exposure_cohort": None,
        "parameters": {"feature_flag_variants": [{"key": "control", "rollout_percentage": 50},
                                                 {"key": "test", "rollout_percentage": 50}],
                       "minimum_detectable_effect": 1 + r % 10},
        "secondary_metrics": [],
        "saved_metrics": [],
        "saved_metrics_ids": [],
        "filters": {},
        "metrics": [
            {"kind": "ExperimentMetric", "metric_type": "funnel", "uuid": uuid_str(*v4(r, h2(r, 4))),
             "name": f"{event} to {goal}",
             "series": [{"kind": "EventsNode", "event": event}, {"kind": "EventsNode", "event": goal}]},
        ],
        "metrics_secondary": [
            {"kind": "ExperimentMetric", "metric_type": "mean", "uuid": uuid_str(*v4(r, h2(r, 5))),
             "source": {"kind": "EventsNode", "event": "purchase", "math": "sum", "math_property": "price"}},
        ] if r & 2 else [],
        "stats_config": {"method": "bayesian"},
        "archived": False,
        "deleted": False,
        "type": ("product", "web")[r % 2],
        "conclusion": ("won", "lost", "inconclusive")[r % 3] if ended is not None else None,
        "conclusion_comment": None,
        "created_by": _user(s, i + 31),
        "created_at": drf_datetime(created),
        "updated_at": drf_datetime(created + (r % 72) * HOUR_US + version * US),
    }


def action(s: int, oid: int, i: int, created: int, version: int = 0) -> dict[str, Any]:
    r = h2(s ^ 0xAC, i)
    event = EVENT_NAMES[r % len(EVENT_NAMES)][0]
    path = ("/pricing", "/signup", "/checkout", "/docs")[r % 4]
    return {
        "id": oid,
        "name": f"Clicked {path} #{i}" + (f" (v{version})" if version else ""),
        "description": "",
        "tags": [],
        "post_to_slack": False,
        "slack_message_format": "",
        "steps": [
            {"event": event, "properties": [], "selector": None, "tag_name": None, "text": None,
             "text_matching": None, "href": None, "href_matching": None, "url": path, "url_matching": "contains"},
        ] + ([{"event": "$autocapture", "properties": [], "selector": "button.btn-primary", "tag_name": "button",
               "text": "Buy", "text_matching": "exact", "href": None, "href_matching": None, "url": None,
               "url_matching": None}] if r & 1 else []),
        "created_at": drf_datetime(created),
        "created_by": _user(s, i + 41),
        "deleted": False,
        "is_calculating": False,
        "last_calculated_at": drf_datetime(created + (r % 24) * HOUR_US + version * US),
        "team_id": None,
        "is_action": True,
        "bytecode_error": None,
        "pinned_at": None,
    }


def dashboard(s: int, oid: int, i: int, created: int, version: int = 0, *,
              insight_ids: list[int] | None = None, ids: Ids | None = None) -> dict[str, Any]:
    """A dashboard as the emulator keeps it: the list's fields plus ``tiles`` as references
    (``insight`` is the insight's id). The list drops ``tiles``; the detail expands them."""
    r = h2(s ^ 0xDB, i)
    tiles = []
    for k, insight_id in enumerate((insight_ids or [])[r % 3:][: 1 + r % 4]):
        tiles.append({
            "id": ids.next("dashboard_tiles") if ids is not None else 90_000 + oid * 10 + k,
            "insight": insight_id,
            "text": None,
            "color": ("blue", None)[k % 2],
            "layouts": {"sm": {"h": 5, "w": 6, "x": (k % 2) * 6, "y": (k // 2) * 5}},
        })
    return {
        "id": oid,
        "name": f"Dashboard {i}" + (f" (v{version})" if version else ""),
        "description": "" if r & 1 else "Weekly numbers",
        "pinned": bool(r & 2),
        "created_at": drf_datetime(created),
        "created_by": _user(s, i + 51),
        "last_accessed_at": drf_datetime(created + (r % 96) * HOUR_US + version * US),
        "is_shared": False,
        "deleted": False,
        "creation_mode": ("default", "template")[r % 2],
        "tags": [],
        "restriction_level": 21,
        "effective_restriction_level": 21,
        "user_access_level": "editor",
        "tiles": tiles,
    }


def dashboard_list_item(item: dict[str, Any]) -> dict[str, Any]:
    """The list's basic serializer: no tiles."""
    return {k: v for k, v in item.items() if k != "tiles"}


def dashboard_detail(item: dict[str, Any], insights: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The detail: each tile carries its whole insight, computed result included."""
    tiles = []
    for t in item["tiles"]:
        insight = insights.get(t["insight"])
        full = {**insight, "result": insight_result(insight), "is_sample": False} if insight is not None else None
        tiles.append({**t, "insight": full, "is_cached": True, "last_refresh": full and full.get("last_refresh")})
    return {**item, "tiles": tiles}


def survey(s: int, oid: Any, i: int, created: int, version: int = 0) -> dict[str, Any]:
    r = h2(s ^ 0x5A, i)
    sid = oid if isinstance(oid, str) else uuid_str(*v4(h2(s ^ 0x5B, int(oid)), h2(r, 6)))
    return {
        "id": sid,
        "name": f"Survey {i}: how did we do?" + (f" (v{version})" if version else ""),
        "description": "",
        "type": ("popover", "api", "widget")[r % 3],
        "questions": [
            {"type": "rating", "question": "How likely are you to recommend us?", "scale": 10, "display": "number",
             "id": uuid_str(*v4(r, h2(r, 7)))},
            {"type": "open", "question": "Why?", "id": uuid_str(*v4(r, h2(r, 8)))},
        ],
        "appearance": {"backgroundColor": "#eeeded", "position": "right"},
        "conditions": {"url": "/pricing"} if r & 1 else None,
        "linked_flag": None,
        "targeting_flag": None,
        "start_date": drf_datetime(created + HOUR_US),
        "end_date": drf_datetime(created + 14 * DAY_US) if r % 3 == 0 else None,
        "archived": False,
        "responses_limit": None,
        "iteration_count": None,
        "created_at": drf_datetime(created),
        "created_by": _user(s, i + 61),
        "updated_at": drf_datetime(created + version * US) if version else None,
    }


# -- session recordings (style E) ----------------------------------------------------------------


def recording(s: int, n: int, start: int, now: int, *, ongoing: bool = False, grow: int = 0) -> dict[str, Any]:
    """Recording metadata (not the snapshots). ``grow`` lengthens a recording still in progress."""
    r = h2(s ^ 0x5E, n)
    duration = 5 + r % 1800 + grow * 60
    end = min(now, start + duration * US) if ongoing else start + duration * US
    active = min(duration, 1 + (r >> 12) % max(1, duration))
    clicks = (r >> 20) % 60 + grow * 3
    anon = f"anon-rec-{r & 0xFFFFFF:06x}"
    return {
        "id": uuid_str(*v7(start // 1000, r >> 8, h2(r, 9))),
        "distinct_id": anon,
        "viewed": bool(r & 1),
        "viewers": [],
        "recording_duration": duration,
        "active_seconds": active,
        "inactive_seconds": duration - active,
        "start_time": drf_datetime(start),
        "end_time": drf_datetime(end),
        "click_count": clicks,
        "keypress_count": (r >> 28) % 200,
        "mouse_activity_count": (r >> 36) % 900 + grow * 10,
        "console_log_count": (r >> 44) % 20,
        "console_warn_count": (r >> 48) % 5,
        "console_error_count": (r >> 52) % 4,
        "start_url": "https://shop.example.com" + PATHS[(r >> 5) % len(PATHS)],
        "person": {"id": 1 + (r >> 3) % 100_000, "uuid": uuid_str(*v4(h2(r, 10), h2(r, 11))),
                   "name": anon, "distinct_ids": [anon], "properties": {"$os": ("Mac OS X", "iOS")[r % 2]},
                   "created_at": drf_datetime(start - DAY_US)},
        "storage": "object_storage",
        "snapshot_source": ("web", "mobile")[(r >> 7) % 2],
        "ongoing": ongoing,
        "activity_score": round(((r >> 16) % 1000) / 10, 1),
    }


def recordings(seed: int, project_id: int, scale: int, now: int) -> list[dict[str, Any]]:
    """A project's recordings over the last 20 days, newest first (``start_time DESC, id DESC``).
    Some share one ``start_time`` (ties across page boundaries); the newest few are in progress."""
    s = derive_seed(seed, "recordings", project_id)
    n = max(12, scale // 8)
    span = 20 * DAY_US
    out = []
    for k in range(n):
        start = now - span + (span * k) // n + h2(s, k) % HOUR_US
        if k % 17 in (5, 6, 7, 8):  # a burst: recordings starting at one instant
            start = now - span + (span * (k - k % 17 + 5)) // n
        start -= start % 1000
        out.append(recording(s, k, start, now, ongoing=start > now - 2 * HOUR_US))
    return sort_recordings(out)


def sort_recordings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda x: (x["start_time"], x["id"]), reverse=True)


def recordings_page(rows: list[dict[str, Any]], params: Any, now: int, *, cursor: bool) -> dict[str, Any]:
    """``GET …/session_recordings/``: ``date_from`` (default ``-3d``) ≤ ``start_time`` ≤
    ``date_to`` (default now), both at second precision; ``limit`` (default 50) and ``offset``,
    or ``after`` (a ``next_cursor``); ``{"results", "has_next", "version": 4}`` plus, with
    ``cursor``, ``next_cursor`` — the base64 JSON of the last row's ordering value and session id,
    ``null`` without a next page."""
    window = recordings_window(rows, params, now)
    limit = _positive(params.get("limit"), 50) or 50
    offset = _positive(params.get("offset"), 0)
    after = params.get("after")
    if after and cursor:
        try:
            position = orjson.loads(base64.b64decode(after.encode()))
            key = (str(position["order_value"]), str(position["session_id"]))
        except (ValueError, KeyError, TypeError):
            raise ValueError("after is not a cursor this list returned") from None
        window = [x for x in window if (x["start_time"], x["id"]) < key]
        offset = 0
    chunk = window[offset: offset + limit + 1]
    has_next = len(chunk) > limit
    page = chunk[:limit]
    body: dict[str, Any] = {"results": page, "has_next": has_next, "version": 4}
    if cursor:
        body["next_cursor"] = base64.b64encode(orjson.dumps(
            {"order_value": page[-1]["start_time"], "session_id": page[-1]["id"]})).decode() \
            if has_next and page else None
    return body


def recordings_window(rows: list[dict[str, Any]], params: Any, now: int) -> list[dict[str, Any]]:
    """The recordings a request's ``date_from``/``date_to`` select (newest first)."""
    date_from = _recording_time(params.get("date_from"), now, now - 3 * DAY_US, "date_from")
    date_to = _recording_time(params.get("date_to"), now, now, "date_to")
    low, high = drf_datetime(date_from - date_from % US), drf_datetime(date_to - date_to % US + US - 1)
    return [x for x in rows if low <= x["start_time"] <= high]


def _positive(raw: Any, default: int) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        return default
    return value if value >= 0 else default


def _recording_time(raw: Any, now: int, default: int, name: str) -> int:
    """An ISO timestamp or PostHog's relative ``-Nd``/``-Nh``; malformed: ``ValueError``."""
    if raw is None or raw == "":
        return default
    m = re.fullmatch(r"-(\d+)([dhm])", str(raw))
    if m:
        unit = {"d": DAY_US, "h": HOUR_US, "m": 60 * US}[m.group(2)]
        return now - int(m.group(1)) * unit
    try:
        value = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} is not a valid date") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86400 + delta.seconds) * US + delta.microseconds


GROUP_TYPES = (("company", 0), ("project", 1))


def groups(seed: int, project_id: int, scale: int, t0: int, t1: int) -> tuple[list[dict[str, Any]], dict[int, list]]:
    """Group types and, per type index, groups newest first (``-created_at``, ties included)."""
    s = derive_seed(seed, "groups", project_id)
    types = [{"group_type": name, "group_type_index": idx, "name_singular": None, "name_plural": None,
              "detail_dashboard": None, "default_columns": None, "created_at": None}
             for name, idx in GROUP_TYPES]
    out: dict[int, list[dict[str, Any]]] = {}
    for name, idx in GROUP_TYPES:
        n = max(3, scale // (50 if idx == 0 else 100))
        step = max(1, (t1 - t0) // (n + 1))
        rows = []
        for i in range(n):
            r = h2(s ^ idx, i)
            created = t0 + i * step
            if i % 10 in (3, 4, 5):  # bulk-created groups share one created_at
                created = t0 + (i - i % 10 + 3) * step
            rows.append({
                "group_type_index": idx,
                "group_key": f"{name}-{i:06d}",
                "group_properties": {"name": f"{name.title()} {i}", "industry": ("saas", "retail", "fintech")[r % 3],
                                     "employees": int(r % 5000)},
                "created_at": drf_datetime(created - created % 1000),
            })
        rows.sort(key=lambda g: (g["created_at"], g["group_key"]), reverse=True)
        out[idx] = rows
    return types, out
