"""Every generic paginator walks the whole collection exactly once, stopping without waste."""

from __future__ import annotations

from typing import Any

import pytest

from sources.common.errors import MalformedResponse
from sources.common.http import HttpClient, Request
from sources.common.paginators import (
    HeaderLinkPaginator,
    JSONLinkPaginator,
    JSONResponseCursorPaginator,
    KeysetPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    SinglePagePaginator,
    lookup,
)

from .paging_backend import API_KEY

N = 95


def walk(server: Any, request: Request, paginator: Any, selector: Any = None) -> list[int]:
    with HttpClient("paging", server.base_url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        return [row["id"] for page in http.paginate(request, paginator, selector) for row in page]


def api_requests(ctl: Any) -> int:
    return sum(1 for e in ctl.requests() if e["path"].startswith("/api/"))


@pytest.mark.parametrize(
    ("request_", "paginator", "selector", "requests"),
    [
        (Request(url="offset"), OffsetPaginator(limit=10, total_path="total"), lambda b: b["data"], 10),
        (Request(url="offset"), OffsetPaginator(limit=20), lambda b: b["data"], 5),
        (Request(url="pages", params={"size": 10}), PageNumberPaginator(base_page=1, page_size=10), None, 10),
        (Request(url="cursor"), JSONResponseCursorPaginator("meta.cursors.next", "token"), lambda b: b["data"], 10),
        (Request(url="link"), JSONLinkPaginator("next"), lambda b: b["results"], 10),
        (Request(url="header-link"), HeaderLinkPaginator(), None, 10),
    ],
    ids=["offset-total", "offset-short-page", "page-number", "token-in-body", "next-link", "link-header"],
)
def test_paginator_reads_everything_once(paging, paging_ctl, request_, paginator, selector, requests):
    ids = walk(paging, request_, paginator, selector)
    assert ids == list(range(1, N + 1))
    assert api_requests(paging_ctl) == requests


def test_keyset_paginator_folds_the_last_row_into_the_next_request(paging, paging_ctl):
    def apply(request: Request, position: Any) -> None:
        request.url = "keyset"
        request.params = {"limit": 10, **({"after": position} if position is not None else {})}

    ids = walk(paging, Request(), KeysetPaginator(10, lambda row: row["id"], apply))
    assert ids == list(range(1, N + 1))
    queries = [e["query"] for e in paging_ctl.requests()]
    assert queries[0] == "limit=10" and queries[1] == "limit=10&after=10" and len(queries) == 10


def test_keyset_that_does_not_advance_is_refused(paging):
    def apply(request: Request, position: Any) -> None:
        request.url, request.params = "keyset", {"limit": 10}  # ignores the position

    with pytest.raises(MalformedResponse) as err:
        walk(paging, Request(), KeysetPaginator(10, lambda row: row["id"], apply))
    assert "did not advance" in str(err.value)


def test_single_page(paging, paging_ctl):
    assert walk(paging, Request(url="pages", params={"page": 2, "size": 5}), SinglePagePaginator()) == [6, 7, 8, 9, 10]
    assert api_requests(paging_ctl) == 1


def test_offset_paginator_refuses_to_truncate_at_a_maximum_offset(paging):
    with pytest.raises(MalformedResponse) as err:
        walk(paging, Request(url="offset"), OffsetPaginator(limit=10, maximum_offset=50), lambda b: b["data"])
    assert "offset paging can reach" in str(err.value)


def test_lookup():
    body = {"meta": {"cursors": {"next": "abc"}}, "rows": [{"a": 1}]}
    assert lookup(body, "meta.cursors.next") == "abc"
    assert lookup(body, "meta.missing.next") is None
    assert lookup(body, "rows.0.a") == 1
    assert lookup(body, lambda b: len(b["rows"])) == 1


# -- an API that answers fewer rows than asked for (a clamped limit) -------------------------------


def test_a_clamped_limit_with_a_total_reads_everything(paging, paging_ctl):
    paging_ctl.configure(max_limit=7)
    paginator = OffsetPaginator(limit=10, total_path="total")
    assert walk(paging, Request(url="offset"), paginator, lambda b: b["data"]) == list(range(1, N + 1))
    assert not paginator.short_of_total and paginator.total == N


def test_a_clamped_limit_without_a_total_ends_early_unless_the_end_is_confirmed(paging, paging_ctl):
    paging_ctl.configure(max_limit=7)
    # the short-page rule alone takes the first clamped page for the last one
    assert walk(paging, Request(url="offset"), OffsetPaginator(limit=10), lambda b: b["data"]) == list(range(1, 8))
    assert walk(paging, Request(url="offset"), OffsetPaginator(limit=10, confirm_end=True),
                lambda b: b["data"]) == list(range(1, N + 1))
    assert walk(paging, Request(url="pages", params={"size": 10}),
                PageNumberPaginator(base_page=1, page_size=10, confirm_end=True)) == [
        i for p in range(10) for i in range(p * 10 + 1, min(p * 10 + 8, N + 1))]  # 7 of every 10: what was served

    def apply(request: Request, position: Any) -> None:
        request.url = "keyset"
        request.params = {"limit": 10, **({"after": position} if position is not None else {})}

    assert walk(paging, Request(), KeysetPaginator(10, lambda row: row["id"], apply)) == list(range(1, 8))
    paging_ctl.clear_requests()
    assert walk(paging, Request(), KeysetPaginator(10, lambda row: row["id"], apply, confirm_end=True)) == list(
        range(1, N + 1))
    assert api_requests(paging_ctl) == 15  # 14 clamped pages and one empty page confirming the end


def test_an_offset_walk_that_ends_short_of_its_total_says_so(paging, paging_ctl):
    paging_ctl.add_faults([{"path": "^/api/offset.*offset=50", "actions": [{"status": 200, "json": {"data": [],
                                                                                                   "total": N}}]}])
    paginator = OffsetPaginator(limit=10, total_path="total")
    assert walk(paging, Request(url="offset"), paginator, lambda b: b["data"]) == list(range(1, 51))
    assert paginator.short_of_total and paginator.total == N
