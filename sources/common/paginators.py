"""Generic paginators, named after what they follow, for :meth:`HttpClient.paginate`.

The vocabulary mirrors dlt's REST API toolkit (``dlt.sources.helpers.rest_client.paginators``),
so dlt users feel at home, but works on this project's :class:`~sources.common.http.Request`
and retrying client:

==============================  ==============================================================
``SinglePagePaginator``         one request, no pagination
``JSONLinkPaginator``           a next URL in the body (``{"next": "https://…"}``; PostHog,
                                Lytics ``_next`` when used as a link)
``HeaderLinkPaginator``         the ``Link: <…>; rel="next"`` header
``JSONResponseCursorPaginator`` an opaque token in the body sent back as a query parameter
                                (Synerise ``meta.cursors.next`` → ``pageToken``, Lytics
                                ``_next`` → ``start``)
``OffsetPaginator``             ``offset``/``limit`` parameters (Synerise catalogs, CRM)
``PageNumberPaginator``         a page number parameter (Synerise ``pageIndex``, Spring ``page``)
``KeysetPaginator``             the last row's (cursor, key) folded into the next request
                                (Personyze ``where`` keysets, HogQL tuple predicates)
==============================  ==============================================================

A paginator sees each page through ``update_state(response, body, data)`` (``body`` is the parsed
JSON, ``data`` the rows selected from it), says whether there is another page with
``has_next_page`` and changes the request for it in ``update_request``. Paginators that can
know the end from a short page (``page_size``) stop there instead of asking for an empty page,
unless told to ``confirm_end`` (an API that may clamp the limit without saying so).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from .errors import MalformedResponse
from .http import Request

PathSpec = str | Callable[[Any], Any]


def lookup(body: Any, path: PathSpec | None) -> Any:
    """``body`` at a dotted path (``"meta.cursors.next"``) or through a callable; ``None`` if absent."""
    if path is None:
        return None
    if callable(path):
        return path(body)
    node = body
    for part in path.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
        if node is None:
            return None
    return node


class BasePaginator:
    def __init__(self) -> None:
        self.has_next_page = True

    def init_request(self, request: Request) -> None:  # noqa: B027 - optional hook
        """Prepare the first request (set the first page's parameters)."""

    def update_state(self, response: httpx.Response, body: Any, data: list[Any]) -> None:
        raise NotImplementedError

    def update_request(self, request: Request) -> None:
        raise NotImplementedError


def _set_param(request: Request, name: str, value: Any) -> None:
    params = dict(request.params or {})
    params[name] = value
    request.params = params


class SinglePagePaginator(BasePaginator):
    def update_state(self, response: httpx.Response, body: Any, data: list[Any]) -> None:
        self.has_next_page = False

    def update_request(self, request: Request) -> None:  # pragma: no cover - never called
        pass


class JSONLinkPaginator(BasePaginator):
    """Follows an absolute (or base-relative) next URL found in the body at ``next_url_path``.

    The URL is followed verbatim (it already carries every parameter), so the request's own
    parameters are dropped after the first page."""

    def __init__(self, next_url_path: PathSpec = "next") -> None:
        super().__init__()
        self.next_url_path = next_url_path
        self._next: str | None = None

    def update_state(self, response: httpx.Response, body: Any, data: list[Any]) -> None:
        nxt = lookup(body, self.next_url_path)
        self._next = str(nxt) if nxt else None
        self.has_next_page = bool(self._next)

    def update_request(self, request: Request) -> None:
        assert self._next is not None
        request.url = self._next
        request.params = None


class HeaderLinkPaginator(BasePaginator):
    """Follows ``Link: <url>; rel="next"``."""

    def __init__(self, links_next_key: str = "next") -> None:
        super().__init__()
        self.links_next_key = links_next_key
        self._next: str | None = None

    def update_state(self, response: httpx.Response, body: Any, data: list[Any]) -> None:
        link = response.links.get(self.links_next_key, {}).get("url")
        self._next = link or None
        self.has_next_page = bool(link)

    def update_request(self, request: Request) -> None:
        assert self._next is not None
        request.url = self._next
        request.params = None


class JSONResponseCursorPaginator(BasePaginator):
    """An opaque token from the body (``cursor_path``) sent back as ``cursor_param``.

    Stops when the token is missing or empty (``""`` counts as the end, as Lytics' ``_next``
    is on the last page). ``in_body=True`` sends the token in the JSON body instead."""

    def __init__(self, cursor_path: PathSpec = "cursors.next", cursor_param: str = "cursor",
                 *, in_body: bool = False) -> None:
        super().__init__()
        self.cursor_path = cursor_path
        self.cursor_param = cursor_param
        self.in_body = in_body
        self.cursor: str | None = None

    def update_state(self, response: httpx.Response, body: Any, data: list[Any]) -> None:
        token = lookup(body, self.cursor_path)
        self.cursor = str(token) if token not in (None, "") else None
        self.has_next_page = self.cursor is not None

    def update_request(self, request: Request) -> None:
        if self.in_body:
            payload = dict(request.json or {})
            payload[self.cursor_param] = self.cursor
            request.json = payload
        else:
            _set_param(request, self.cursor_param, self.cursor)


class OffsetPaginator(BasePaginator):
    """``offset``/``limit`` parameters.

    With ``total_path`` (the API reports how many rows there are) the walk ends when ``offset``
    reaches that total, or on an empty page; a short page before it does not end it (an API
    may answer fewer rows than asked for, a clamped limit), and a walk that ended on an empty page
    short of the total leaves ``short_of_total`` set for the caller to judge. Without a total, a
    short page ends the walk, unless ``confirm_end``: then only an empty page does (one more
    request per walk, for APIs that may clamp the limit without saying so). ``maximum_offset``
    is a hard stop an API imposes (reaching it raises instead of silently truncating)."""

    def __init__(self, limit: int, *, offset: int = 0, offset_param: str = "offset", limit_param: str = "limit",
                 total_path: PathSpec | None = None, maximum_offset: int | None = None,
                 confirm_end: bool = False) -> None:
        super().__init__()
        if limit < 1:
            raise ValueError("limit must be positive")
        self.limit = limit
        self.offset = offset
        self.offset_param = offset_param
        self.limit_param = limit_param
        self.total_path = total_path
        self.maximum_offset = maximum_offset
        self.confirm_end = confirm_end
        self.total: int | None = None  # the last total the API reported
        self.short_of_total = False

    def init_request(self, request: Request) -> None:
        _set_param(request, self.offset_param, self.offset)
        _set_param(request, self.limit_param, self.limit)

    def update_state(self, response: httpx.Response, body: Any, data: list[Any]) -> None:
        self.offset += len(data)
        total = lookup(body, self.total_path)
        if total is not None:
            self.total = int(total)
        if not data:
            self.has_next_page = False
            self.short_of_total = self.total is not None and self.offset < self.total
        elif self.total is not None:
            self.has_next_page = self.offset < self.total
        elif len(data) < self.limit and not self.confirm_end:
            self.has_next_page = False
        if self.has_next_page and self.maximum_offset is not None and self.offset >= self.maximum_offset:
            raise MalformedResponse(
                f"more rows than offset paging can reach (offset {self.offset} >= {self.maximum_offset})",
                url=str(response.request.url),
            )

    def update_request(self, request: Request) -> None:
        _set_param(request, self.offset_param, self.offset)


class PageNumberPaginator(BasePaginator):
    """A page-number parameter starting at ``base_page``. Stops on an empty page, after
    ``total_path`` pages, or on a page shorter than ``page_size`` (unless ``confirm_end``: then
    only an empty page or the page count ends it)."""

    def __init__(self, *, page_param: str = "page", base_page: int = 0, page_size: int | None = None,
                 total_path: PathSpec | None = None, confirm_end: bool = False) -> None:
        super().__init__()
        self.page_param = page_param
        self.page = base_page
        self.base_page = base_page
        self.page_size = page_size
        self.total_path = total_path
        self.confirm_end = confirm_end

    def init_request(self, request: Request) -> None:
        _set_param(request, self.page_param, self.page)

    def update_state(self, response: httpx.Response, body: Any, data: list[Any]) -> None:
        total_pages = lookup(body, self.total_path)
        if not data or (self.page_size is not None and len(data) < self.page_size and not self.confirm_end):
            self.has_next_page = False
        elif total_pages is not None and self.page + 1 - self.base_page >= int(total_pages):
            self.has_next_page = False
        self.page += 1

    def update_request(self, request: Request) -> None:
        _set_param(request, self.page_param, self.page)


class KeysetPaginator(BasePaginator):
    """Keyset (seek) pagination: the last row's position is folded into the next request.

    ``key_of(row)`` returns the row's position (e.g. ``(cursor value, primary key)``, unique and
    strictly increasing in the requested order); ``apply(request, position)`` rewrites the request
    to read the page after ``position`` (``None``: the first page). A page shorter than
    ``page_size`` is the last, unless ``confirm_end`` (for an API that may clamp the limit
    without saying so): then only an empty page is, at the cost of one more request per walk."""

    def __init__(self, page_size: int, key_of: Callable[[Any], Any],
                 apply: Callable[[Request, Any], None], *, confirm_end: bool = False) -> None:
        super().__init__()
        self.confirm_end = confirm_end
        self.page_size = page_size
        self.key_of = key_of
        self.apply = apply
        self.position: Any = None

    def init_request(self, request: Request) -> None:
        self.apply(request, None)

    def update_state(self, response: httpx.Response, body: Any, data: list[Any]) -> None:
        if not data or (len(data) < self.page_size and not self.confirm_end):
            self.has_next_page = False
            return
        position = self.key_of(data[-1])
        if self.position is not None and not position > self.position:
            raise MalformedResponse(
                f"keyset did not advance (from {self.position!r} to {position!r}); the API ignored the position",
                url=str(response.request.url),
            )
        self.position = position

    def update_request(self, request: Request) -> None:
        self.apply(request, self.position)
