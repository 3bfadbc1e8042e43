"""Lytics' own counts, for ``cdp-sync verify``: the ``total`` of a scan's first page, asked with
``limit=1`` (one request, one row; the contract: ``total`` is the segment's member count, the same
on every page), never the rows themselves. Over :class:`~sources.lytics.client.LyticsClient`;
nothing here knows dlt."""

from __future__ import annotations

from typing import Any

from .client import LyticsClient, ScanSpec, envelope_problem, filter_ql


def _scan_problem(body: Any) -> str | None:
    problem = envelope_problem(body, "any")
    if problem is None and not isinstance(body.get("total"), int):
        return "a scan page without its total"
    return problem


def scan_total(api: LyticsClient, spec: ScanSpec) -> int:
    """The ``total`` Lytics states for a scan (a saved segment or a FilterQL query)."""
    _, body = api.http.send(spec.request(1, None, None), expect=_scan_problem)
    return int(body["total"])


def users_total(api: LyticsClient, segment: str | None = None) -> int:
    """Every user profile (or every member of the saved segment ``segment``)."""
    return scan_total(api, ScanSpec(segment=segment) if segment else ScanSpec(ql=filter_ql()))


def users_modified_since(api: LyticsClient, since: str, segment: str | None = None) -> int:
    """Profiles whose ``_modified`` is later than ``since`` (new or changed since then)."""
    return scan_total(api, ScanSpec(ql=filter_ql(since=since, include=segment)))


def content_total(api: LyticsClient) -> int:
    """Every document of the content table."""
    return scan_total(api, ScanSpec(ql=filter_ql(table="content")))
