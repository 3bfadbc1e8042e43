"""PostHog's small project objects, generated from the seed and rendered as the API renders them.

Cohorts, feature flags, annotations, insights, event and property definitions are DRF
``LimitOffsetPagination`` lists (style A, contract §1.5); groups use DRF ``CursorPagination``
(style D, ordering ``-created_at``, 100 per page). They are small (hundreds to a few thousand per
project at the largest scale), so each project keeps them as lists of dicts in API form, newest
first where PostHog orders them so. Ids are global across projects (Django auto-increment).
"""

from __future__ import annotations

import itertools
from typing import Any

from .data import DAY_US, EVENT_NAMES, HOUR_US, PLANS, US, derive_seed, drf_datetime, h2, uuid_str, v4

#: object tables and the scope each one needs
OBJECT_SCOPES: dict[str, str] = {
    "cohorts": "cohort:read",
    "feature_flags": "feature_flag:read",
    "annotations": "annotation:read",
    "insights": "insight:read",
    "event_definitions": "event_definition:read",
    "property_definitions": "property_definition:read",
}

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
    # newest first, as the list endpoints order them
    for table in ("cohorts", "feature_flags", "annotations", "insights"):
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
