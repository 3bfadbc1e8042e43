"""Synerise endpoints, regional hosts, keys, column types and default limits.

Column names are snake_case (what dlt would make of the API's camelCase anyway); the mapping from
the API's rows lives in ``__init__.py`` next to each resource. Timestamps arrive in four formats
(ms ints, float seconds, ISO 8601 with ``Z``, date-only) and all load as UTC timestamps
(``unix_ms`` columns are converted to milliseconds first). Open-ended data (custom profile
attributes, event params, catalog item values, analytics definitions) loads as JSON columns.
"""

from __future__ import annotations

from sources.common.arrow import TableSpec

VENDOR = "synerise"

#: Microsoft Azure EU (the default); a workspace lives in exactly one region
DEFAULT_BASE_URL = "https://api.synerise.com"
#: the other documented hosts: Azure USA and Google Cloud Platform
REGIONAL_BASE_URLS = {
    "azure-eu": "https://api.synerise.com",
    "azure-us": "https://api.azu.synerise.com",
    "gcp": "https://api.geb.synerise.com",
}

API_VERSION = "4.4"
LOGIN_PATH = "uauth/v2/auth/login/profile"
ANALYTICS = "analytics-backend/analytics/definitions-manager"
EXPORT_CREATE_PATH = "client-exporter/v2/export/clients"
EXPORT_TASK_PATH = "client-exporter/v2/export/clients/task/{task_id}"

#: workspace activities: a response holds at most this many events and has no continuation
ACTIVITIES_LIMIT = 1000
#: workspace activities older than this are never returned, whatever dateFrom says
ACTIVITIES_HORIZON_HOURS = 6
#: the earliest point the source asks for sits this far inside the horizon (clock skew, run time)
HORIZON_MARGIN_MS = 120_000
#: the export task returns at most this many rows per request
EXPORT_LIMIT = 10_000

DEFAULT_EVENTS_LOOKBACK_MINUTES = 10
DEFAULT_EVENTS_SAFETY_LAG_SECONDS = 60
DEFAULT_EVENTS_WINDOW_MINUTES = 60
DEFAULT_EVENTS_WORKERS = 4
DEFAULT_PROFILE_EVENTS_WORKERS = 8
DEFAULT_PROFILES_PAGE_SIZE = 500
DEFAULT_PROFILE_EVENTS_PAGE_SIZE = 500
DEFAULT_CATALOG_PAGE_SIZE = 500
DEFAULT_CRM_PAGE_SIZE = 100
DEFAULT_ANALYTICS_PAGE_SIZE = 100
DEFAULT_ASSET_TAGS_PAGE_SIZE = 100
#: rows per Arrow table handed to dlt: dlt works out the table's schema again for every Arrow
#: item it is given (its contract cache is not kept for Arrow), so fewer, larger tables cost less
#: (100,000 profiles + 49,000 events + 58,000 items: 42 tables took 0.39-0.43 s of dlt's extract,
#: 9 tables of 25,000 rows 0.26-0.28 s). Arrow pages are gathered without row copies (~15 MB of profiles a table);
#: `profile_events` gathers this many mapped rows before converting them
DEFAULT_BATCH_ROWS = 20_000
DEFAULT_TOKEN_REFRESH_MARGIN_S = 300
#: lifetime assumed for a token without ``exp``
DEFAULT_TOKEN_LIFETIME_S = 55 * 60

#: export-task field names (lowercase, as the export wants them) -> profile columns
EXPORT_FIELDS = {
    "email": "email", "phone": "phone", "customid": "custom_id", "uuid": "uuid", "firstname": "first_name",
    "lastname": "last_name", "company": "company", "address": "address", "city": "city", "province": "province",
    "zipcode": "zip_code", "countrycode": "country_code", "birthdate": "birth_date", "sex": "sex",
    "anonymous": "anonymous", "lastactivitydate": "last_activity_date",
}
DEFAULT_EXPORT_FIELDS = ("email", "phone", "customId", "uuid", "firstname", "lastname", "city", "countryCode",
                         "birthdate", "sex", "anonymous", "lastActivityDate")

PROFILES = TableSpec(
    "profiles",
    {
        "client_id": "int",
        "email": "text",
        "phone": "text",
        "custom_id": "text",
        "uuid": "text",
        "first_name": "text",
        "last_name": "text",
        "display_name": "text",
        "company": "text",
        "address": "text",
        "city": "text",
        "province": "text",
        "zip_code": "text",
        "country_code": "text",
        "birth_date": "unix_ms",
        "sex": "text",
        "avatar_url": "text",
        "anonymous": "bool",
        "agreements": "json",
        "tags": "json",
        "previous_clients": "json",
        "last_activity_date": "unix_ms",
    },
    primary_key=("client_id",),
    # the custom `attributes` object is the open-ended part; the source appends it as JSON
    extras_column=None,
)
#: the hard-delete marker column of ``profiles`` (True on rows that remove a merged-away profile)
MERGED_AWAY = "merged_away"

_EVENT_COLUMNS = {
    "event_uuid": "text",
    "time": "unix_ms",
    "action_name": "text",
    "action_label": "text",
    "action_description": "text",
    "description": "text",
    "label": "text",
    "icon": "text",
    "unique": "int",
    "client_id": "int",
    "client_uuid": "text",
    "user_agent_system": "text",
    "user_agent_browser": "text",
    "modified_by": "text",
}
EVENTS = TableSpec("events", _EVENT_COLUMNS, primary_key=("event_uuid",))
PROFILE_EVENTS = TableSpec("profile_events", _EVENT_COLUMNS, primary_key=("event_uuid",))

CATALOGS = TableSpec(
    "catalogs",
    {"id": "int", "name": "text", "business_profile_id": "int", "author": "text", "last_modified": "unix_ms",
     "creation_date": "unix_ms"},
    primary_key=("id",),
)
CATALOG_ITEMS = TableSpec(
    "catalog_items",
    {"catalog_id": "int", "item_key": "text", "id": "int", "value": "json", "creation_date": "unix_ms"},
    primary_key=("catalog_id", "item_key"),
)
TAGS = TableSpec("tags", {"id": "int", "name": "text", "color": "text"}, primary_key=("id",))
ASSET_TAGS = TableSpec(
    "asset_tags",
    {"hash": "text", "value": "text", "description": "text", "color": "text", "icon": "text", "priority": "int",
     "author_id": "int", "created_at": "unix_ms", "directory_hash": "text", "directory_name": "text",
     "directory_type": "text"},
    primary_key=("hash",),
)

SEGMENTATION_MEMBERS = TableSpec(
    "segmentation_members",
    {
        "segmentation_uuid": "text",
        "id": "int",
        "uuid": "text",
        "anonymous_type": "text",
        "email": "text",
        "first_name": "text",
        "last_name": "text",
        "custom_identify": "text",
        "company": "text",
        "phone": "text",
        "address": "text",
        "birthdate": "unix_ms",
        "city": "text",
        "zip_code": "text",
        "province": "text",
        "country_id": "int",
        "country_code": "text",
        "avatar_url": "text",
        "sex": "text",
        "last_activity_date": "unix_ms",
        "created": "unix_ms",
        "updated": "unix_ms",
        "deleted_at": "unix_ms",
        "tags": "json",
    },
    primary_key=("segmentation_uuid", "id"),
)

EXPRESSIONS = TableSpec(
    "expressions",
    {
        "id": "text",
        "name": "text",
        "description": "text",
        "type": "text",
        "action_name": "text",
        "action_id": "int",
        "expression": "json",
        "variables": "json",
        "created_at": "unix_ms",
        "created_by": "int",
        "modified_at": "unix_ms",
        "modified_by": "int",
        "is_dynamic_analytic": "bool",
        "is_predefined_analytic": "bool",
        "is_visible_for_client_profile": "bool",
        "analytic_version": "text",
    },
    primary_key=("id",),
)
AGGREGATES = TableSpec(
    "aggregates",
    {
        "uuid": "text",
        "id": "text",
        "name": "text",
        "title": "text",
        "description": "text",
        "type": "text",
        "action_name": "text",
        "action_id": "int",
        "attribute": "json",
        "size": "int",
        "unique": "bool",
        "date_filter": "json",
        "expressions": "json",
        "variables": "json",
        "created_at": "unix_ms",
        "created_by": "int",
        "modified_at": "unix_ms",
        "modified_by": "int",
        "deleted": "bool",
        "is_dynamic_analytic": "bool",
        "is_predefined_analytic": "bool",
        "is_visible_for_client_profile": "bool",
        "analytic_version": "text",
    },
    primary_key=("uuid",),
)
EXPRESSION_SUMMARIES = TableSpec(
    "expression_summaries",
    {"hash_id": "text", "name": "text", "created_at": "unix_ms", "is_dynamic_analytic": "bool", "variables": "json"},
    primary_key=("hash_id",),
)
AGGREGATE_SUMMARIES = TableSpec(
    "aggregate_summaries",
    {"uuid": "text", "hash_id": "int", "name": "text", "created_at": "unix_ms", "is_dynamic_analytic": "bool",
     "variables": "json"},
    primary_key=("uuid",),
)
ANALYTICS_VALUES = TableSpec(
    "analytics_values",
    {"client_id": "int", "analytic_uuid": "text", "kind": "text", "result": "text", "result_number": "float",
     "calculated_at": "unix_ms"},
    primary_key=("client_id", "analytic_uuid"),
)
