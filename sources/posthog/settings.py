"""PostHog hosts, limits, default windows and the typed columns of every table.

Kinds (``sources/common/arrow.py``): ``iso`` columns are ISO 8601 timestamps with an offset
(HogQL renders them in the project's time zone, the REST API in UTC with ``Z``) and load as UTC
timestamps; numbers sent as strings load as numbers; ``json`` columns hold PostHog's open-ended
attributes (event and person ``properties``, filters, queries) as one JSON value each. Keys a
REST record has beyond the declared columns go to the JSON column ``attributes``.
"""

from __future__ import annotations

from sources.common.arrow import TableSpec

VENDOR = "posthog"
#: US Cloud; EU Cloud is https://eu.posthog.com; self-hosted: the instance's own HTTPS address
DEFAULT_BASE_URL = "https://us.posthog.com"
EU_BASE_URL = "https://eu.posthog.com"

#: HogQL: rows per query at most (``MAX_SELECT_RETURNED_ROWS``; a larger LIMIT is clamped)
MAX_QUERY_ROWS = 50_000
#: queries PostHog runs at once per project; more are queued or refused
MAX_QUERY_CONCURRENCY = 3
#: the longest events window: PostHog's 10 s query budget, and peers' experience with long windows
MAX_WINDOW_HOURS = 24

DEFAULT_EVENTS_PAGE_SIZE = 10_000
DEFAULT_LOOKBACK_SECONDS = 3600
DEFAULT_SUMMARY_DAYS = 3
DEFAULT_PERSONS_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
DEFAULT_BATCH_ROWS = 10_000
#: fingerprints of lookback-window events kept in state per project (beyond: none, re-merge)
DEFAULT_MAX_FINGERPRINTS = 100_000

#: the object lists loaded as tables: (table, path below /api/projects/{id}/, extra parameters)
OBJECT_ENDPOINTS: dict[str, tuple[str, dict[str, str]]] = {
    "cohorts": ("cohorts/", {}),
    "feature_flags": ("feature_flags/", {}),
    "annotations": ("annotations/", {}),
    # ``basic``: definitions only, not the computed results the full listing carries
    "insights": ("insights/", {"basic": "true"}),
    "event_definitions": ("event_definitions/", {}),
}
PROPERTY_DEFINITION_TYPES = ("event", "person", "session", "group")
#: never loaded: the project's ingestion token (public, but a credential of sorts)
DROPPED_PROJECT_FIELDS = frozenset({"api_token", "secret_api_token", "secret_api_token_backup"})

EVENT_COLUMNS = ("uuid", "event", "distinct_id", "timestamp", "created_at", "person_id", "session_id",
                 "elements_chain", "properties")

EVENTS = TableSpec(
    "events",
    {
        "uuid": "text",
        "project_id": "int",
        "event": "text",
        "distinct_id": "text",
        "timestamp": "iso",
        "created_at": "iso",
        "person_id": "text",
        "session_id": "text",
        "elements_chain": "text",
        "properties": "json",
    },
    primary_key=("uuid",),
    extras_column=None,
)

EVENT_SUMMARIES = TableSpec(
    "event_summaries",
    {"project_id": "int", "day": "date", "event": "text", "events": "int", "persons": "int"},
    primary_key=("project_id", "day", "event"),
    extras_column=None,
)

PERSONS = TableSpec(
    "persons",
    {
        "uuid": "text",
        "project_id": "int",
        "id": "text",
        "name": "text",
        "created_at": "iso",
        "last_seen_at": "iso",
        "is_identified": "bool",
        "distinct_ids": "json",
        "properties": "json",
    },
    primary_key=("uuid",),
)

PROJECTS = TableSpec(
    "projects",
    {
        "id": "int",
        "uuid": "text",
        "organization": "text",
        "name": "text",
        "timezone": "text",
        "is_demo": "bool",
        "created_at": "iso",
    },
    primary_key=("id",),
)

COHORTS = TableSpec(
    "cohorts",
    {
        "id": "int",
        "project_id": "int",
        "name": "text",
        "description": "text",
        "deleted": "bool",
        "is_static": "bool",
        "is_calculating": "bool",
        "count": "int",
        "created_at": "iso",
        "last_calculation": "iso",
        "filters": "json",
        "groups": "json",
    },
    primary_key=("id",),
)

FEATURE_FLAGS = TableSpec(
    "feature_flags",
    {
        "id": "int",
        "project_id": "int",
        "key": "text",
        "name": "text",
        "active": "bool",
        "deleted": "bool",
        "rollout_percentage": "int",
        "filters": "json",
        "created_at": "iso",
        "updated_at": "iso",
    },
    primary_key=("id",),
)

ANNOTATIONS = TableSpec(
    "annotations",
    {
        "id": "int",
        "project_id": "int",
        "content": "text",
        "date_marker": "iso",
        "scope": "text",
        "creation_type": "text",
        "deleted": "bool",
        "created_at": "iso",
        "updated_at": "iso",
    },
    primary_key=("id",),
)

INSIGHTS = TableSpec(
    "insights",
    {
        "id": "int",
        "project_id": "int",
        "short_id": "text",
        "name": "text",
        "derived_name": "text",
        "description": "text",
        "query": "json",
        "filters": "json",
        "saved": "bool",
        "deleted": "bool",
        "favorited": "bool",
        "tags": "json",
        "created_at": "iso",
        "updated_at": "iso",
        "last_modified_at": "iso",
        "last_refresh": "iso",
    },
    primary_key=("id",),
)

EVENT_DEFINITIONS = TableSpec(
    "event_definitions",
    {
        "id": "text",
        "project_id": "int",
        "name": "text",
        "description": "text",
        "volume_30_day": "int",
        "query_usage_30_day": "int",
        "verified": "bool",
        "tags": "json",
        "created_at": "iso",
        "last_seen_at": "iso",
        "last_updated_at": "iso",
    },
    primary_key=("id",),
)

PROPERTY_DEFINITIONS = TableSpec(
    "property_definitions",
    {
        "id": "text",
        "project_id": "int",
        "definition_type": "text",
        "name": "text",
        "property_type": "text",
        "is_numerical": "bool",
        "group_type_index": "int",
        "tags": "json",
    },
    primary_key=("id",),
)

GROUPS = TableSpec(
    "groups",
    {
        "project_id": "int",
        "group_type_index": "int",
        "group_key": "text",
        "group_type": "text",
        "group_properties": "json",
        "created_at": "iso",
    },
    primary_key=("project_id", "group_type_index", "group_key"),
)

#: REST object tables, merged on their ids, and the scope each one needs
OBJECT_TABLES: dict[str, tuple[TableSpec, str]] = {
    "cohorts": (COHORTS, "cohort:read"),
    "feature_flags": (FEATURE_FLAGS, "feature_flag:read"),
    "annotations": (ANNOTATIONS, "annotation:read"),
    "insights": (INSIGHTS, "insight:read"),
    "event_definitions": (EVENT_DEFINITIONS, "event_definition:read"),
    "property_definitions": (PROPERTY_DEFINITIONS, "property_definition:read"),
    "groups": (GROUPS, "group:read"),
}
