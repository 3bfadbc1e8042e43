"""What ``cdp-sync verify lytics`` counts, where, and the tolerances.

================= ================================================== =========================================
resource          vendor count                                        tolerance
================= ================================================== =========================================
users             ``total`` of a one-row scan of every user (or of   up to the profiles modified after the
                  the configured ``segment``)                        cursor (new since the last run) may be
                                                                     missing; nothing may be extra
content_documents ``total`` of a one-row scan of the content table   exact
================= ================================================== =========================================

Not countable: ``segments``, ``segment_collections``, ``schema_fields``, ``streams``, ``jobs`` (lists
that state no count: counting them means reading them again) and ``segment_sizes`` (Lytics' own
counts, a snapshot per run). Verify right after a run (``cdp-sync run --verify``): a profile deleted
at Lytics since the load stays in the table (a difference).
"""

from __future__ import annotations

from pipelines.verify import DELETIONS, Check, Context, Where

RESOURCES = ("users", "content_documents", "segments", "segment_collections", "segment_sizes", "schema_fields",
             "streams", "jobs")
TABLES: dict[str, str] = {}
NOT_COUNTABLE = {
    "segments": "the segment list states no count",
    "segment_collections": "the collection list states no count",
    "segment_sizes": "Lytics' own segment sizes, a snapshot per run",
    "schema_fields": "the schema states no count",
    "streams": "the stream list states no count",
    "jobs": "the job list states no count",
}


def plan(ctx: Context, api_key: str, base_url: str) -> list[Check]:
    from sources.lytics import counts
    from sources.lytics.client import LyticsClient

    checks: list[Check] = []
    api = LyticsClient(api_key, base_url, timeout=float(ctx.config("request_timeout", 60.0)))
    try:
        for resource in ctx.resources:
            if resource in NOT_COUNTABLE:
                checks.append(Check(resource, "all", None, resource, Where(), note=NOT_COUNTABLE[resource]))
            elif resource == "users":
                state = ctx.resource_state("users")
                segment = state.get("segment") or ctx.config("segment", None) or None
                total = counts.users_total(api, segment)
                cursor = state.get("cursor")
                tolerance, note = (0, 0), DELETIONS
                if cursor:
                    newer = counts.users_modified_since(api, str(cursor), segment)
                    if newer:
                        tolerance = (-newer, 0)
                        note = (f"up to {newer:,} profiles modified after the cursor ({cursor}) load next run; "
                                f"{DELETIONS}")
                label = f"segment {segment}" if segment else "all"
                checks.append(Check("users", label, total, "users", Where(), tolerance, note))
            elif resource == "content_documents":
                checks.append(Check(resource, "all", counts.content_total(api), resource, Where(), note=DELETIONS))
    finally:
        api.close()
    return checks
