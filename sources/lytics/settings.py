"""Lytics endpoints, keys, column kinds and default limits (contract: ``api/lytics.md``).

Kinds (``sources.lytics.tables``): ``iso`` columns are RFC 3339 strings (Lytics sends nanoseconds; they load as UTC timestamps
truncated to microseconds); ``unix_ms`` columns are epoch milliseconds (sometimes strings); numbers
sent as strings load as numbers. Keys a table does not declare go to the JSON column
``attributes`` (profiles are account-defined maps).
"""

from __future__ import annotations

from .tables import Table

VENDOR = "lytics"
DEFAULT_BASE_URL = "https://api.lytics.io"

#: the scan's documented maximum page size (``limit``; default 10 when not sent)
MAX_SCAN_LIMIT = 100
#: ``splits`` hash buckets a scan can be restricted to: 0..99
BUCKETS = 100

DEFAULT_LOOKBACK_SECONDS = 900
DEFAULT_SCAN_WORKERS = 4
DEFAULT_SCAN_SPLITS = 20
#: a scan longer than this many pages is split into bucket scans (when scan_workers > 1)
DEFAULT_SPLIT_MIN_PAGES = 5
DEFAULT_SCAN_RESTARTS = 3
DEFAULT_BATCH_ROWS = 5000
DEFAULT_USER_PRIMARY_KEY = "_uid"
#: at most this many scalar schema fields become typed ``users`` columns (the rest: attributes)
DEFAULT_MAX_USER_COLUMNS = 64
#: segment ids per ``/api/segment/sizes`` request (keeps URLs short)
SIZE_IDS_PER_REQUEST = 50

#: schema types (``GET /api/schema/user``) -> column kinds
SCHEMA_KINDS = {
    "string": "text",
    "int": "int",
    "number": "float",
    "bool": "bool",
    "date": "iso",
}

#: the ``users`` columns every account has: identity, system fields, segment membership
USER_CORE = {
    "_uid": "text",
    "_uids": "json",
    "email": "text",
    "user_id": "text",
    "_num_aliases": "int",
    "_created": "iso",
    "_modified": "iso",
    "segments": "json",
}
USER_KEY_CHOICES = ("_uid", "email", "user_id")

CONTENT_DOCUMENTS = Table(
    "content_documents",
    {
        "id": "text",
        "hashedurl": "text",
        "url": "text",
        "title": "text",
        "description": "text",
        "author": "text",
        "primary_image": "text",
        "sitename": "text",
        "stream": "text",
        "language": "text",
        "topics": "json",
        "topic_relevances": "json",
        "path": "json",
        "created": "iso",
        "updated": "iso",
        "fetched": "iso",
    },
    primary_key=("id",),
)

SEGMENTS = Table(
    "segments",
    {
        "id": "text",
        "aid": "int",
        "account_id": "text",
        "table": "text",
        "kind": "text",
        "name": "text",
        "slug_name": "text",
        "public_name": "text",
        "short_id": "text",
        "description": "text",
        "category": "text",
        "is_public": "bool",
        "author_id": "text",
        "created": "iso",
        "updated": "iso",
        "created_ms": "unix_ms",
        "modified_ms": "unix_ms",
        "tags": "json",
        "segment_ql": "text",
        "ast": "json",
        "invalid": "bool",
        "invalid_reason": "text",
        "deleted": "bool",
        "save_hist": "bool",
    },
    primary_key=("id",),
)

SEGMENT_COLLECTIONS = Table(
    "segment_collections",
    {
        "id": "text",
        "aid": "int",
        "account_id": "text",
        "name": "text",
        "slug_name": "text",
        "table": "text",
        "author_id": "text",
        "created": "iso",
        "updated": "iso",
        "internal": "bool",
        "collection": "json",
        "parent_segment": "text",
    },
    primary_key=("id",),
)

SEGMENT_SIZES = Table(
    "segment_sizes",
    {"id": "text", "extracted_at": "iso", "name": "text", "slug_name": "text", "size": "int"},
    primary_key=("id", "extracted_at"),
)

SCHEMA_FIELDS = Table(
    "schema_fields",
    {
        "table": "text",
        "as": "text",
        "type": "text",
        "is_by": "bool",
        "op": "text",
        "shortdesc": "text",
        "longdesc": "text",
        "froms": "json",
        "identities": "json",
    },
    primary_key=("table", "as"),
)

STREAMS = Table(
    "streams",
    {
        "stream": "text",
        "hidden": "bool",
        "ct": "int",
        "curct": "int",
        "last_msg_ts": "unix_ms",
        "last_update_ts": "unix_ms",
        "metrics": "json",
        "recent_events": "json",
        "fields": "json",
    },
    primary_key=("stream",),
)

JOBS = Table(
    "jobs",
    {
        "id": "text",
        "aid": "int",
        "account_id": "text",
        "user_id": "text",
        "workflow": "text",
        "workflow_id": "text",
        "tag": "text",
        "config": "json",
        "auth_ids": "json",
        "statuscode": "text",
        "hidden": "bool",
        "created": "iso",
        "updated": "iso",
        "created_ms": "unix_ms",
        "modified_ms": "unix_ms",
    },
    primary_key=("id",),
)
