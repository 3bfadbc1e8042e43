"""A tiny generic API served by the real emulator harness, for testing the shared HTTP core and
paginators over real HTTPS (no vendor quirks: just the pagination styles and a bearer key)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulators.common.app import json_response, text_response
from emulators.common.backend import MutationError

API_KEY = "test-key-0123456789abcdef"


class PagingBackend:
    vendor = "paging"
    api_key = API_KEY
    base_path = "/api"

    def __init__(self, n: int = 95) -> None:
        self.items = [{"id": i, "name": f"item {i}"} for i in range(1, n + 1)]
        self.max_limit: int | None = None  # configure(max_limit=N): clamp page sizes without saying so

    def _limit(self, asked: int) -> int:
        return asked if self.max_limit is None else min(asked, self.max_limit)

    def _auth(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return text_response("bad token", 401)
        return None

    def routes(self) -> list[Route]:
        def guarded(fn: Any) -> Any:
            def endpoint(request: Request) -> Response:
                return self._auth(request) or fn(request)

            return endpoint

        return [
            Route("/api/echo", guarded(lambda r: json_response({"ok": True, "query": dict(r.query_params)}))),
            Route("/api/offset", guarded(self._offset)),
            Route("/api/pages", guarded(self._pages)),
            Route("/api/cursor", guarded(self._cursor)),
            Route("/api/link", guarded(self._link)),
            Route("/api/header-link", guarded(self._header_link)),
            Route("/api/keyset", guarded(self._keyset)),
            Route("/api/status/{code:int}", guarded(lambda r: text_response("status", r.path_params["code"]))),
            Route("/api/text", guarded(lambda r: text_response("not json at all", 200))),
        ]

    def _offset(self, r: Request) -> Response:
        off, lim = int(r.query_params.get("offset", 0)), self._limit(int(r.query_params.get("limit", 10)))
        return json_response({"data": self.items[off : off + lim], "total": len(self.items)})

    def _pages(self, r: Request) -> Response:
        page, size = int(r.query_params.get("page", 1)), int(r.query_params.get("size", 10))
        served = self._limit(size)
        if page < 1:
            return text_response("page must be >= 1", 400)
        return json_response(self.items[(page - 1) * size : (page - 1) * size + served])

    def _cursor(self, r: Request) -> Response:
        start = int(r.query_params.get("token", "0") or 0)
        chunk = self.items[start : start + 10]
        nxt = str(start + 10) if start + 10 < len(self.items) else ""
        return json_response({"data": chunk, "meta": {"cursors": {"next": nxt}}})

    def _link(self, r: Request) -> Response:
        start = int(r.query_params.get("start", 0))
        chunk = self.items[start : start + 10]
        nxt = str(r.url.replace_query_params(start=start + 10)) if start + 10 < len(self.items) else None
        return json_response({"results": chunk, "next": nxt})

    def _header_link(self, r: Request) -> Response:
        start = int(r.query_params.get("start", 0))
        response = json_response(self.items[start : start + 10])
        if start + 10 < len(self.items):
            response.headers["link"] = f'<{r.url.replace_query_params(start=start + 10)}>; rel="next"'
        return response

    def _keyset(self, r: Request) -> Response:
        after, lim = int(r.query_params.get("after", 0)), self._limit(int(r.query_params.get("limit", 10)))
        return json_response([i for i in self.items if i["id"] > after][:lim])

    def state(self) -> dict[str, int]:
        return {"items": len(self.items)}

    def mutate(self, operation: dict[str, Any]) -> dict[str, Any]:
        if operation.get("op") == "add_items":
            first = len(self.items) + 1
            self.items += [{"id": i, "name": f"item {i}"} for i in range(first, first + int(operation["count"]))]
            return {"ids": [first, len(self.items)]}
        raise MutationError(f"unknown op {operation.get('op')!r}")

    def export(self, table: str) -> list[dict[str, Any]]:
        if table != "items":
            raise KeyError(table)
        return list(self.items)

    def configure(self, options: dict[str, Any]) -> dict[str, Any]:
        # hostile mode has no vendor-specific bad days here: the harness's wire-level ones only
        unknown = set(options) - {"hostile", "hostile_seed", "max_limit"}
        if unknown:
            raise MutationError(f"unknown options {sorted(unknown)}")
        if "max_limit" in options:
            self.max_limit = options["max_limit"]
        return {"max_limit": self.max_limit}
