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
#: event pages waiting for the extract per reading thread (beside the one each thread holds while
#: it waits): the pages read ahead are what the events read holds, so the bound is per thread and
#: small (at four per thread, pages of 10,000 rows kept ~50 MB waiting and the C library's heap
#: of each reading thread grew with them; one per thread keeps every query slot busy all the same)
EVENT_PAGES_QUEUED_PER_WORKER = 1
#: fingerprints of lookback-window events kept in state per project (beyond: none, re-merge)
DEFAULT_MAX_FINGERPRINTS = 100_000

#: the types ``property_definitions`` is read for (one walk each; column ``definition_type``)
PROPERTY_DEFINITION_TYPES = ("event", "person", "session", "group")
#: ``session_recordings``: windows of at most this many hours, re-reading this far behind the
#: cursor (a recording changes until its session ends, at most 24 h after it starts), and how far
#: back a first run reads (PostHog keeps recordings 30 days on its free plan, up to 90 on others)
RECORDINGS_WINDOW_HOURS = 24
RECORDINGS_LOOKBACK_HOURS = 24
RECORDINGS_FIRST_DAYS = 30
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

EXPERIMENTS = TableSpec(
    "experiments",
    {
        "id": "int",
        "project_id": "int",
        "name": "text",
        "description": "text",
        "type": "text",
        "feature_flag_key": "text",
        "feature_flag": "json",
        "start_date": "iso",
        "end_date": "iso",
        "parameters": "json",
        "metrics": "json",
        "metrics_secondary": "json",
        "saved_metrics": "json",
        "secondary_metrics": "json",
        "filters": "json",
        "stats_config": "json",
        "archived": "bool",
        "deleted": "bool",
        "conclusion": "text",
        "created_at": "iso",
        "updated_at": "iso",
    },
    primary_key=("id",),
)

ACTIONS = TableSpec(
    "actions",
    {
        "id": "int",
        "project_id": "int",
        "name": "text",
        "description": "text",
        "steps": "json",
        "tags": "json",
        "post_to_slack": "bool",
        "deleted": "bool",
        "is_calculating": "bool",
        "created_at": "iso",
        "last_calculated_at": "iso",
        "pinned_at": "iso",
    },
    primary_key=("id",),
)

DASHBOARDS = TableSpec(
    "dashboards",
    {
        "id": "int",
        "project_id": "int",
        "name": "text",
        "description": "text",
        "pinned": "bool",
        "deleted": "bool",
        "is_shared": "bool",
        "creation_mode": "text",
        "restriction_level": "int",
        "tags": "json",
        # tile references (insight ids, text, layout), not the insights' computed results
        "tiles": "json",
        "created_at": "iso",
        "last_accessed_at": "iso",
    },
    primary_key=("id",),
)

SURVEYS = TableSpec(
    "surveys",
    {
        "id": "text",
        "project_id": "int",
        "name": "text",
        "description": "text",
        "type": "text",
        "questions": "json",
        "conditions": "json",
        "appearance": "json",
        "linked_flag": "json",
        "targeting_flag": "json",
        "start_date": "iso",
        "end_date": "iso",
        "archived": "bool",
        "responses_limit": "int",
        "created_at": "iso",
        "updated_at": "iso",
    },
    primary_key=("id",),
)

SESSION_RECORDINGS = TableSpec(
    "session_recordings",
    {
        "id": "text",
        "project_id": "int",
        "distinct_id": "text",
        "start_time": "iso",
        "end_time": "iso",
        "recording_duration": "int",
        "active_seconds": "int",
        "inactive_seconds": "int",
        "click_count": "int",
        "keypress_count": "int",
        "mouse_activity_count": "int",
        "console_log_count": "int",
        "console_warn_count": "int",
        "console_error_count": "int",
        "start_url": "text",
        "person": "json",
        "viewed": "bool",
        "ongoing": "bool",
        "snapshot_source": "text",
    },
    primary_key=("id",),
)
