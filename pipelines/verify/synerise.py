"""What ``cdp-sync verify synerise`` counts, where, and the tolerances.

==================== ====================================================== ==========
resource             vendor count                                           tolerance
==================== ====================================================== ==========
profiles             ``all`` of ``GET /crm/v1/list?limit=1`` (every         exact
                     profile; not countable when the key may not read it)
catalogs             ``metaData.totalCount`` of the catalog list            exact
catalog_items        per catalog: ``metaData.totalCount`` of its items      exact
asset_tags           ``pagination.total``                                   exact
expressions,         ``pagination.totalElements`` of the definitions        exact
aggregates
segmentation_members per configured segmentation: ``matching``              exact
==================== ====================================================== ==========

Not countable: ``events`` (the activities API states no count, and keeps only 6 hours: the
warehouse holds more than Synerise can count), ``profile_events`` (per profile, no count),
``tags`` and the analytics ``*_summaries`` (bare lists), ``analytics_values`` (computed values).
Snapshot counts compare what Synerise holds now with the last load: verify right after a run.
"""

from __future__ import annotations

from pipelines.verify import DELETIONS, Check, Context, Where

RESOURCES = ("profiles", "events", "profile_events", "catalogs", "catalog_items", "tags", "asset_tags",
             "segmentation_members", "expressions", "aggregates", "expression_summaries", "aggregate_summaries",
             "analytics_values")
TABLES: dict[str, str] = {}
NOT_COUNTABLE = {
    "events": "the activities API states no count and keeps 6 hours",
    "profile_events": "per-profile histories state no count",
    "tags": "the tag list states no count",
    "expression_summaries": "the projections list states no count",
    "aggregate_summaries": "the projections list states no count",
    "analytics_values": "computed values, one per profile and analytic",
}


def plan(ctx: Context, api_key: str, base_url: str) -> list[Check]:
    from sources.synerise import counts
    from sources.synerise.client import SyneriseClient

    checks: list[Check] = []
    api = SyneriseClient(api_key, base_url, timeout=float(ctx.config("request_timeout", 30.0)))
    try:
        for resource in ctx.resources:
            if resource in NOT_COUNTABLE:
                checks.append(Check(resource, "all", None, resource, Where(), note=NOT_COUNTABLE[resource]))
            elif resource == "profiles":
                n = counts.profiles_total(api)
                note = DELETIONS if n is not None else "the key may not read the CRM list (CRM_LIST_CLIENT_READ)"
                checks.append(Check(resource, "all", n, resource, Where(), note=note))
            elif resource == "catalogs":
                checks.append(Check(resource, "all", counts.catalogs(api)[0], resource, Where(), note=DELETIONS))
            elif resource == "catalog_items":
                _, ids = counts.catalogs(api)
                for cid in ids:
                    checks.append(Check(resource, f"catalog {cid}", counts.catalog_items_total(api, cid), resource,
                                        Where(equals=(("catalog_id", cid),)), note=DELETIONS))
            elif resource == "asset_tags":
                checks.append(Check(resource, "all", counts.asset_tags_total(api), resource, Where(), note=DELETIONS))
            elif resource in ("expressions", "aggregates"):
                checks.append(Check(resource, "all", counts.analytics_total(api, resource), resource, Where(), note=DELETIONS))
            elif resource == "segmentation_members":
                for uuid in ctx.config("segmentation_uuids", None) or []:
                    checks.append(Check(resource, f"segmentation {uuid}", counts.segmentation_total(api, str(uuid)),
                                        resource, Where(equals=(("segmentation_uuid", str(uuid)),))))
    finally:
        api.close()
    return checks
