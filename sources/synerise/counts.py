"""Synerise's own counts, for ``cdp-sync verify``: the number each list states on a one-row page
(``all`` of the CRM list, ``metaData.totalCount`` of catalogs and their items,
``pagination.total`` of asset tags, ``pagination.totalElements`` of analytics definitions,
``matching`` of a segmentation), never the rows themselves. Over
:class:`~sources.synerise.client.SyneriseClient`; nothing here knows dlt."""

from __future__ import annotations

from typing import Any

from sources.common.errors import AuthError
from sources.common.http import describe_body
from sources.common.paginators import lookup

from . import settings as S
from .client import SyneriseClient


def _stated(api: SyneriseClient, path: str, params: dict[str, Any], at: str) -> int:
    def problem(body: Any) -> str | None:
        value = lookup(body, at)
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{describe_body(body)} without the number {at}"
        return None

    return int(lookup(api.http.get_json(path, params=params, expect=problem), at))


def profiles_total(api: SyneriseClient) -> int | None:
    """Every profile of the workspace (``None``: the key may not read the CRM list)."""
    return api.profile_count()


def catalogs(api: SyneriseClient) -> tuple[int, list[int]]:
    """(``metaData.totalCount`` of the catalogs, the ids on its first page of up to 500)."""
    body = api.http.get_json("catalogs/bags", params={"orderBy": "id", "offset": 0, "limit": 500},
                             expect=lambda b: None if isinstance(lookup(b, "metaData.totalCount"), int)
                             else f"{describe_body(b)} without the number metaData.totalCount")
    ids = [int(b["id"]) for b in (body.get("data") or []) if isinstance(b, dict) and "id" in b]
    return int(body["metaData"]["totalCount"]), ids


def catalog_items_total(api: SyneriseClient, catalog_id: int) -> int:
    return _stated(api, f"catalogs/bags/{int(catalog_id)}/items", {"offset": 0, "limit": 1}, "metaData.totalCount")


def asset_tags_total(api: SyneriseClient) -> int:
    return _stated(api, "tags-collector/tags", {"page": 0, "size": 1}, "pagination.total")


def analytics_total(api: SyneriseClient, kind: str) -> int:
    """``expressions`` or ``aggregates`` definitions."""
    return _stated(api, f"{S.ANALYTICS}/{kind}", {"page": 0, "size": 1}, "pagination.totalElements")


def segmentation_total(api: SyneriseClient, segmentation_uuid: str) -> int:
    return _stated(api, f"crm/v1/segmentations/{segmentation_uuid}/clients", {"offset": 0, "limit": 1}, "matching")


__all__ = ["AuthError", "profiles_total", "catalogs", "catalog_items_total", "asset_tags_total", "analytics_total",
           "segmentation_total"]
