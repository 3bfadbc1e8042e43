"""Personyze endpoints, keys, column types and default limits.

Column lists follow the contract (``api/personyze.md`` §6). Kinds: ``unix_s`` columns are Unix
seconds (sometimes sent as strings) and load as UTC timestamps; ``datetime`` columns are
``YYYY-MM-DD HH:MM:SS`` strings in the account's zone (default UTC; MySQL zero dates load as
null); numbers sent as strings load as numbers. Keys a table does not declare (users and catalogs
have open-ended, account-defined fields) go to the JSON column ``attributes``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sources.common.arrow import TableSpec

VENDOR = "personyze"
DEFAULT_BASE_URL = "https://app.personyze.com/rest"

#: one request returns at most this many rows, and ``offset + count`` may not pass it
MAX_ROWS = 1000
#: a "slow" query (a range condition, or a filter on a non-indexed column) may not read past this
SLOW_QUERY_ROWS = 50

DEFAULT_LOOKBACK_SECONDS = 300
DEFAULT_SUMMARY_DAYS = 3
DEFAULT_BACKFILL_WORKERS = 4
DEFAULT_BATCH_ROWS = 5000
USER_CURSOR_COLUMNS = ("data_last_modified", "last_session_time")


@dataclass(frozen=True)
class Keyset:
    """How a resource pages: by ``cursor`` (the column the API filters and sorts by), ties broken
    by ``key``; (cursor, key) is unique. ``key == cursor`` for a unique monotonic id."""

    object: str
    cursor: str
    key: str
    #: the id column whose range a concurrent backfill splits (None: walk from the start)
    split_on: str | None


USERS = TableSpec(
    "users",
    {
        "user_id": "int",
        # documented as a string (contract §6.1); CRM ids such as "CRM-000042" are common
        "internal_id": "text",
        "internal_text_id": "text",
        "fb_id": "text",
        "email": "text",
        "first_name": "text",
        "middle_name": "text",
        "last_name": "text",
        "sex": "text",
        "birthday": "datetime",
        "timezone": "text",
        "current_city": "text",
        "current_state": "text",
        "current_country": "text",
        "religion": "text",
        "political": "text",
        "interests": "text",
        "relationship_status": "text",
        "education_year": "int",
        "phone": "text",
        "company": "text",
        "last_session_time": "unix_s",
        "data_last_modified": "unix_s",
        "session_counter": "int",
        **{f"custom_t_{i}": "text" for i in range(1, 7)},
        **{f"custom_i_{i}": "int" for i in range(1, 5)},
        **{f"custom_f_{i}": "float" for i in range(1, 3)},
        **{f"custom_d_{i}": "datetime" for i in range(1, 3)},
    },
    primary_key=("user_id",),
)

EVENTS = TableSpec(
    "events",
    {"id": "int", "user_id": "int", "container_id": "int", "time": "unix_s", "value": "text"},
    primary_key=("id",),
)

SESSIONS_ARCHIVE = TableSpec(
    "sessions_archive",
    {
        "id": "int",
        "user_id": "int",
        "session_id": "text",
        "start_time": "unix_s",
        "end_time": "unix_s",
        "country": "text",
        "city": "text",
        "device": "text",
        "browser": "text",
        "os": "text",
        "referrer": "text",
        "landing_url": "text",
        "pages_count": "int",
    },
    primary_key=("id",),
)

SUMMARY_ACTIONS = TableSpec(
    "summary_actions",
    {
        "date": "datetime",
        "action_id": "int",
        "impressions": "int",
        "clicks": "int",
        "closes": "int",
        "conversions": "int",
    },
    primary_key=("date", "action_id"),
)

_CATALOG_COMMON = {
    "id": "int",
    "internal_id": "text",
    "title": "text",
    "guide_url": "text",
    "image_big_url": "text",
}
PRODUCTS = TableSpec(
    "products",
    {
        **_CATALOG_COMMON,
        "price": "float",
        "sale_price": "float",
        "is_in_stock": "bool",
        "sku": "text",
        "brand": "text",
        "manufacturer": "text",
        "size": "text",
        "color": "text",
        "inventory": "int",
        **{f"custom_{i}": "text" for i in range(1, 11)},
    },
    primary_key=("id",),
)
ARTICLES = TableSpec(
    "articles",
    {
        **_CATALOG_COMMON,
        "author": "text",
        "category": "text",
        "published": "datetime",
        **{f"custom_{i}": "text" for i in range(1, 11)},
    },
    primary_key=("id",),
)

PLACEHOLDERS = TableSpec(
    "placeholders",
    {"id": "int", "name": "text", "html_id": "text", "units_count_max": "int"},
    primary_key=("id",),
)
ACTIONS = TableSpec(
    "actions",
    {
        "id": "int",
        "name": "text",
        "content_type": "text",
        "content_param": "text",
        "content_begin": "text",
        "content_end": "text",
        "libs_app": "text",
        "placeholders": "json",
    },
    primary_key=("id",),
)
CONDITIONS = TableSpec("conditions", {"id": "int", "name": "text"}, primary_key=("id",))
USER_LISTS = TableSpec("user_lists", {"id": "int", "name": "text"}, primary_key=("id",))

#: small configuration tables: full snapshot, replace
SMALL_TABLES = (PLACEHOLDERS, ACTIONS, CONDITIONS, USER_LISTS)
#: catalogs: keyset walk on id (works past 1,000 rows), merge on id
CATALOGS = (PRODUCTS, ARTICLES)
