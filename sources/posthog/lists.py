"""PostHog's REST lists, declared: one row per list (see :mod:`sources.common.rest_lists`).

Every path is below ``api/projects/{project_id}/``; every row gets ``project_id`` and merges on
the table's primary key. A new list is one more row here (and its columns in ``settings.py``).

=====================  ==========================  =========  ===========  ==========================
table                  path                        paginator  scope        options
=====================  ==========================  =========  ===========  ==========================
cohorts                cohorts/                    next       cohort       —
feature_flags          feature_flags/              next       feature_flag —
annotations            annotations/                next       annotation   —
insights               insights/                   next       insight      ``basic=true`` (no results)
event_definitions      event_definitions/          next       event_def…   —
property_definitions   property_definitions/       next       property_d…  one walk per ``type``
groups                 groups/                     cursor     group        one walk per group type
experiments            experiments/                next       experiment   metrics definitions included
actions                actions/                    next       action       —
dashboards             dashboards/                 next       dashboard    tiles from ``dashboards/{id}/``
surveys                surveys/                    next       survey       —
session_recordings     session_recordings/         has_next   session_r…   ``date_from``/``date_to`` windows
=====================  ==========================  =========  ===========  ==========================
"""

from __future__ import annotations

from typing import Any

from sources.common.rest_lists import Detail, FanOut, RestList, Window

from . import settings as S

#: fields of a dashboard tile that are computed (results, cache state), never loaded
COMPUTED_TILE_FIELDS = frozenset({
    "result", "is_cached", "last_refresh", "filters_hash", "refreshing", "refresh_attempt", "error",
    "cache_target_age", "next_allowed_client_refresh", "query_status",
})


def tile_references(tiles: Any) -> list[dict[str, Any]] | None:
    """A dashboard's tiles as references: the insight by its id (not the insight with its
    computed result, which the detail carries), text, layout and colour."""
    if tiles is None:
        return None
    out = []
    for tile in tiles:
        ref = {k: v for k, v in tile.items() if k not in COMPUTED_TILE_FIELDS}
        insight = ref.get("insight")
        if isinstance(insight, dict):
            ref["insight"] = insight.get("id")
        out.append(ref)
    return out


LISTS: tuple[RestList, ...] = (
    RestList("cohorts", "cohorts/", S.COHORTS, scope="cohort:read"),
    RestList("feature_flags", "feature_flags/", S.FEATURE_FLAGS, scope="feature_flag:read"),
    RestList("annotations", "annotations/", S.ANNOTATIONS, scope="annotation:read"),
    # ``basic``: definitions only, not the computed results the full listing carries
    RestList("insights", "insights/", S.INSIGHTS, scope="insight:read", params={"basic": "true"}),
    RestList("event_definitions", "event_definitions/", S.EVENT_DEFINITIONS, scope="event_definition:read"),
    RestList("property_definitions", "property_definitions/", S.PROPERTY_DEFINITIONS,
             scope="property_definition:read",
             fan_out=FanOut("type", values=S.PROPERTY_DEFINITION_TYPES, column="definition_type")),
    RestList("groups", "groups/", S.GROUPS, scope="group:read", paginator="cursor", key="group_key", page_size=None,
             countable=False,
             fan_out=FanOut("group_type_index", discover="groups_types/", copy={"group_type": "group_type"})),
    RestList("experiments", "experiments/", S.EXPERIMENTS, scope="experiment:read"),
    RestList("actions", "actions/", S.ACTIONS, scope="action:read"),
    RestList("dashboards", "dashboards/", S.DASHBOARDS, scope="dashboard:read",
             detail=Detail("{id}/", {"tiles": tile_references})),
    RestList("surveys", "surveys/", S.SURVEYS, scope="survey:read"),
    RestList("session_recordings", "session_recordings/", S.SESSION_RECORDINGS, scope="session_recording:read",
             paginator="has_next", countable=False,
             window=Window("start_time", hours=S.RECORDINGS_WINDOW_HOURS, lookback_hours=S.RECORDINGS_LOOKBACK_HOURS,
                           first_days=S.RECORDINGS_FIRST_DAYS)),
)

BY_NAME: dict[str, RestList] = {spec.name: spec for spec in LISTS}

__all__ = ["LISTS", "BY_NAME", "tile_references"]
