"""The Synerise HTTP conversation: workspace login and JWT reuse, the headers every service
wants, and one method per endpoint with its own pagination style. Knows nothing about dlt.

Auth (contract §2.2): ``POST /uauth/v2/auth/login/profile {"apiKey"}`` returns a JWT. The token
is reused until shortly before its ``exp`` (read from the unverified payload; the lifetime is
measured from ``ctd``, so a skewed local clock does not matter), then renewed by logging in
again. A request answered 401 logs in again and is sent once more, on the same page — at most one
re-login per failed request; a second 401 fails with :class:`AuthError`. All of it is an
``httpx.Auth`` flow, so retries, pagination and thread-safety of the shared client are untouched.
"""

from __future__ import annotations

import base64
import datetime as _dt
import logging
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

import httpx
import orjson

from sources.common.errors import AuthError, ConfigurationError, MalformedResponse
from sources.common.http import HttpClient, Request, RetryPolicy, describe_body
from sources.common.paginators import (
    BasePaginator,
    JSONResponseCursorPaginator,
    PageNumberPaginator,
    lookup,
)
from sources.common.redact import register_secret

from . import settings as S

logger = logging.getLogger("cdp_sync.synerise")


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (only ``exp``/``ctd``/``bpi`` are read)."""
    try:
        payload = token.split(".")[1]
        data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


class Unreadable(ValueError):
    """A timestamp in a form the contract does not document (the caller keeps it as text)."""


def iso_to_ms(value: Any) -> int | None:
    """ISO 8601 (``2019-03-19T14:05:39Z``, with or without fraction/offset) or a bare date
    (``2019-08-24``, read as UTC midnight) to epoch milliseconds; :class:`Unreadable` for
    anything else (never a failed run: the row mappers keep such a value as text)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    text = str(value).strip()
    try:
        dt = _dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise Unreadable(text) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_dt.UTC)
    return int(dt.timestamp() * 1000)


class WorkspaceAuth(httpx.Auth):
    """Bearer JWT from the workspace login, renewed before ``exp`` and once after a 401."""

    requires_response_body = True

    def __init__(self, api_key: str, login_url: str, *, refresh_margin_s: float = S.DEFAULT_TOKEN_REFRESH_MARGIN_S,
                 clock: Any = time.monotonic) -> None:
        self._api_key = api_key
        self._login_url = login_url
        self._margin = refresh_margin_s
        self._clock = clock
        self._lock = threading.Lock()
        self._login_lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        self.logins = 0
        self.relogins_after_401 = 0
        self.workspace_id: Any = None
        self.lifetime_s: float | None = None

    def _login_request(self) -> httpx.Request:
        return httpx.Request(
            "POST", self._login_url, content=orjson.dumps({"apiKey": self._api_key}),
            headers={"Content-Type": "application/json", "Accept": "application/json", "Api-Version": S.API_VERSION,
                     "User-Agent": "cdp-sync"},
        )

    def _valid_token(self) -> str | None:
        with self._lock:
            if self._token is not None and self._clock() < self._renew_at:
                return self._token
            return None

    def _accept(self, response: httpx.Response, started: float) -> str | None:
        if response.status_code != 200:
            return None
        try:
            token = orjson.loads(response.content).get("token")
        except (orjson.JSONDecodeError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            return None
        register_secret(token)
        claims = jwt_claims(token)
        exp, ctd = claims.get("exp"), claims.get("ctd")
        if isinstance(exp, (int, float)) and isinstance(ctd, (int, float)):
            lifetime = float(exp) - float(ctd) / 1000.0
        elif isinstance(exp, (int, float)):
            lifetime = float(exp) - time.time()
        else:
            lifetime = float(S.DEFAULT_TOKEN_LIFETIME_S)
        # renew `margin` before expiry, but never spend more than a tenth of a short lifetime on it
        margin = min(self._margin, max(0.0, lifetime) * 0.1)
        with self._lock:
            self._token = token
            self._renew_at = started + lifetime - margin
            self.logins += 1
            self.workspace_id = claims.get("bpi")
            self.lifetime_s = lifetime
        return token

    def _invalidate(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = None

    def _login(self) -> Generator[httpx.Request, httpx.Response, str | None]:
        """Log in, one thread at a time: threads that need a token while another logs in wait and
        reuse its token (no stampede of logins when parallel resources start or a token expires).
        The lock spans the login request only; the waiting threads hold no connection."""
        with self._login_lock:
            token = self._valid_token()
            if token is not None:
                return token
            started = self._clock()
            response = yield self._login_request()
            return self._accept(response, started)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._valid_token()
        if token is None:
            token = yield from self._login()
            if token is None:  # the login answer (401 bad key, 5xx …) goes to the caller as is
                return
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        # the token expired or was revoked between two requests: log in again, once
        self._invalidate(token)
        with self._lock:
            self.relogins_after_401 += 1
        token = self._valid_token()  # another thread may have renewed it already
        if token is None:
            token = yield from self._login()
            if token is None:
                return
        logger.info("synerise: token refused (401); logged in again and resent %s %s", request.method,
                    request.url.path)
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


def _check_key(api_key: str | None) -> str:
    key = (api_key or "").strip()
    if len(key) < 8 or any(c.isspace() for c in key):
        raise ConfigurationError(
            "synerise api_key must be a workspace API key (Settings > API Keys, a UUID); "
            "set SOURCES__SYNERISE__API_KEY",
            vendor=S.VENDOR,
        )
    return key


class SyneriseClient:
    """One workspace over one ``httpx.Client`` (thread-safe; shared by the resources of a run)."""

    def __init__(self, api_key: str, base_url: str = S.DEFAULT_BASE_URL, *, timeout: float = 30.0,
                 max_connections: int = 8, retry: RetryPolicy | None = None,
                 refresh_margin_s: float = S.DEFAULT_TOKEN_REFRESH_MARGIN_S) -> None:
        key = _check_key(api_key)
        register_secret(key)
        root = (base_url or "").rstrip("/") + "/"
        self.auth = WorkspaceAuth(key, root + S.LOGIN_PATH, refresh_margin_s=refresh_margin_s)
        self.http = HttpClient(
            S.VENDOR,
            root,
            auth=self.auth,
            headers={"Api-Version": S.API_VERSION, "Content-Type": "application/json", "Accept": "application/json"},
            secrets=[key],
            timeout=timeout,
            max_connections=max_connections,
            retry=retry or RetryPolicy(),
        )

    # -- auth and time -------------------------------------------------------------------------

    def login(self) -> dict[str, Any]:
        """Log in now (the credential probe): one request; a refused key raises AuthError."""
        body = self.http.get_json("v4/server/time", expect=_server_time_problem)
        return {"workspace_id": self.auth.workspace_id, "lifetime_s": self.auth.lifetime_s,
                "server_time": body.get("serverTime")}

    def server_time_ms(self) -> int:
        """``GET /v4/server/time``: the server's clock (second precision), so windows never
        depend on the local clock."""
        body = self.http.get_json("v4/server/time", expect=_server_time_problem)
        return int(iso_to_ms(body["serverTime"]) or 0)

    # -- profiles -------------------------------------------------------------------------------

    def profile_pages(self, page_size: int) -> Iterator[list[dict[str, Any]]]:
        """``GET /v4/clients``: 1-based ``pageIndex``, a bare array, no total. Only an empty
        array ends the walk (contract §8.4, "an empty array past the end"): a short page is not
        the end, as a server that clamps ``pageSize`` below the request answers short pages."""
        request = Request("GET", "v4/clients", params={"pageSize": page_size})
        yield from self.http.paginate(request, PageNumberPaginator(page_param="pageIndex", base_page=1))

    def profile_count(self) -> int | None:
        """The workspace's profile total (``all`` of ``GET /crm/v1/list?limit=1``), or ``None``
        when the key may not read the CRM list (403)."""
        try:
            body = self.http.get_json("crm/v1/list", params={"limit": 1, "offset": 0},
                                      expect=_number_problem("all"))
        except AuthError as exc:
            if exc.status == 403:
                return None
            raise
        return int(body["all"])

    def create_export(self, segmentation_uuid: str, fields: list[str], expressions: list[str],
                      aggregates: list[str]) -> dict[str, Any]:
        body = {
            "name": "cdp-sync profiles",
            "fields": fields,
            "agreementFilter": "NONE",
            "segmentationHash": segmentation_uuid,
            "expressions": expressions,
            "aggregates": aggregates,
            "excludedIds": [],
        }
        return self.http.post_json(S.EXPORT_CREATE_PATH, json=body, expect=_number_problem("taskId"))

    def export_pages(self, task_id: int, page_size: int) -> Iterator[list[dict[str, Any]]]:
        """The rows of an export task: offset/limit (``limit <= 10000``), a bare array, no total;
        only an empty page ends the walk (a short one may be a clamped limit)."""
        request = Request("GET", S.EXPORT_TASK_PATH.format(task_id=int(task_id)))
        yield from self.http.paginate(request, TotalOffsetPaginator(min(page_size, S.EXPORT_LIMIT)))

    # -- events ---------------------------------------------------------------------------------

    def activities(self, date_from: int, date_to: int, limit: int = S.ACTIVITIES_LIMIT) -> list[dict[str, Any]]:
        """``GET /activities-api/activities`` for ``date_from <= time <= date_to`` (ms): at most
        ``limit`` events and no continuation — the caller splits full windows."""
        return self.http.get_json(
            "activities-api/activities", params={"dateFrom": date_from, "dateTo": date_to, "limit": limit},
            expect=_list_problem,
        )

    def profile_event_pages(self, client_id: int, *, date_from: int | None, date_to: int | None,
                            page_size: int) -> Iterator[list[dict[str, Any]]]:
        """``POST /activities-api/events/by/id``, oldest first, following ``meta.cursors.after``
        as ``pageToken`` until a page has none."""
        extra: dict[str, Any] = {"limit": str(page_size), "sortBy": "time:asc"}
        if date_from is not None:
            extra["dateFrom"] = str(date_from)
        if date_to is not None:
            extra["dateTo"] = str(date_to)
        request = Request("POST", "activities-api/events/by/id",
                          json={"identifierValue": str(client_id), "additionalData": extra})
        paginator = _StrictCursor("meta.cursors.after", "pageToken")
        yield from self.http.paginate(request, paginator, data_selector=_rows_at("data"),
                                      expect=_envelope_problem("meta"))

    # -- catalogs and tags -----------------------------------------------------------------------

    def catalog_pages(self, page_size: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """``GET /catalogs/bags``: offset/limit; yields (``metaData.totalCount``, rows)."""
        request = Request("GET", "catalogs/bags", params={"orderBy": "id"})
        yield from self._counted(request, TotalOffsetPaginator(page_size, total_path="metaData.totalCount"),
                                 "data", "metaData.totalCount")

    def item_pages(self, catalog_id: int, page_size: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """``GET /catalogs/bags/{id}/items``: offset/limit; yields (``metaData.totalCount``, rows)."""
        request = Request("GET", f"catalogs/bags/{int(catalog_id)}/items")
        yield from self._counted(request, TotalOffsetPaginator(page_size, total_path="metaData.totalCount"),
                                 "data", "metaData.totalCount")

    def tags(self) -> list[dict[str, Any]]:
        return self.http.get_json("v4/clients/tags", expect=_list_problem)

    def asset_tag_pages(self, page_size: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """``GET /tags-collector/tags``: 0-based ``page``/``size``, stops at ``pagination.pages``;
        yields (``pagination.total``, rows)."""
        request = Request("GET", "tags-collector/tags", params={"size": page_size})
        paginator = PageNumberPaginator(page_param="page", base_page=0, total_path="pagination.pages")
        yield from self._counted(request, paginator, "data", "pagination.total", "pagination.pages")

    # -- CRM segmentations ------------------------------------------------------------------------

    def segmentation_pages(self, segmentation_uuid: str, page_size: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """``GET /crm/v1/segmentations/{uuid}/clients``: offset/limit; yields (matching, rows)."""
        request = Request("GET", f"crm/v1/segmentations/{segmentation_uuid}/clients")
        yield from self._counted(request, TotalOffsetPaginator(page_size, total_path="matching"),
                                 "customers", "matching")

    # -- analytics ---------------------------------------------------------------------------------

    def analytics_pages(self, kind: str, page_size: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Expressions or aggregates definitions: Spring ``page``/``size`` (0-based), stops at
        ``pagination.totalPages``; yields (``pagination.totalElements``, rows)."""
        request = Request("GET", f"{S.ANALYTICS}/{kind}", params={"size": page_size})
        paginator = PageNumberPaginator(page_param="page", base_page=0, total_path="pagination.totalPages")
        yield from self._counted(request, paginator, "content", "pagination.totalElements",
                                 "pagination.totalPages")

    def analytics_projections(self, kind: str) -> list[dict[str, Any]]:
        return self.http.get_json(f"{S.ANALYTICS}/{kind}/projections", expect=_list_problem)

    def expression_value(self, expression_uuid: str, client_id: int) -> dict[str, Any]:
        return self.http.get_json(f"{S.ANALYTICS}/expressions/{expression_uuid}/client/{int(client_id)}/calculate",
                                  expect=_envelope_problem("result"))

    def aggregate_value(self, aggregate_uuid: str, client_id: int) -> dict[str, Any]:
        # a read done with POST and no body (A10)
        return self.http.post_json(f"{S.ANALYTICS}/aggregates/{aggregate_uuid}/client/{int(client_id)}/calculate",
                                   expect=_envelope_problem("result"))

    def _counted(self, request: Request, paginator: BasePaginator, rows_at: str,
                 *totals_at: str) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Pages of an envelope that states the list's size: (the first of ``totals_at``, rows).
        Every page must carry the rows and each stated number (else it is retried: not data)."""
        counts: list[int] = []

        def problem(body: Any) -> str | None:
            for path in totals_at:
                value = lookup(body, path)
                if not isinstance(value, int) or isinstance(value, bool):
                    return f"{describe_body(body)} without the number {path}"
            return None

        def select(body: Any) -> Any:
            rows = _rows_at(rows_at)(body)
            if isinstance(rows, list):
                counts.append(int(lookup(body, totals_at[0])))
            return rows

        for page in self.http.paginate(request, paginator, data_selector=select, expect=problem):
            yield counts[-1], page

    def close(self) -> None:
        self.http.close()


def _rows_at(key: str) -> Any:
    """The rows under ``key`` of an object body, or ``None`` (not data: retried) when the body
    has no such list."""

    def select(body: Any) -> Any:
        return body.get(key) if isinstance(body, dict) else None

    return select


def _list_problem(body: Any) -> str | None:
    return None if isinstance(body, list) else f"{describe_body(body)} where a list was expected"


def _server_time_problem(body: Any) -> str | None:
    if not isinstance(body, dict) or not isinstance(body.get("serverTime"), str):
        return f"{describe_body(body)} without serverTime"
    try:
        iso_to_ms(body["serverTime"])
    except Unreadable:
        return "an unreadable serverTime"
    return None


def _number_problem(key: str) -> Any:
    def problem(body: Any) -> str | None:
        value = body.get(key) if isinstance(body, dict) else None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"{describe_body(body)} without the number {key}"
        return None

    return problem


def _envelope_problem(key: str) -> Any:
    def problem(body: Any) -> str | None:
        if not isinstance(body, dict) or key not in body:
            return f"{describe_body(body)} without {key}"
        return None

    return problem


class TotalOffsetPaginator(BasePaginator):
    """``offset``/``limit`` where only the documented signals end a walk: an empty page, or the
    offset reaching the list's stated total (``total_path``). A short page is not the end (a
    server may clamp ``limit`` below the request): the next offset is asked for."""

    def __init__(self, limit: int, *, total_path: str | None = None) -> None:
        super().__init__()
        self.limit = limit
        self.offset = 0
        self.total_path = total_path

    def init_request(self, request: Request) -> None:
        request.params = {**(request.params or {}), "offset": self.offset, "limit": self.limit}

    def update_state(self, response: httpx.Response, body: Any, data: list[Any]) -> None:
        self.offset += len(data)
        total = lookup(body, self.total_path) if self.total_path else None
        if not data or (isinstance(total, int) and self.offset >= total):
            self.has_next_page = False

    def update_request(self, request: Request) -> None:
        request.params = {**(request.params or {}), "offset": self.offset}


class _StrictCursor(JSONResponseCursorPaginator):
    """``pageToken`` cursor that refuses to loop: a token seen before is a broken server."""

    def __init__(self, cursor_path: str, cursor_param: str) -> None:
        super().__init__(cursor_path, cursor_param)
        self._seen: set[str] = set()

    def update_state(self, response: httpx.Response, body: Any, data: list[Any]) -> None:
        super().update_state(response, body, data)
        if not data:
            self.has_next_page = False
        if self.cursor is not None:
            if self.cursor in self._seen:
                raise MalformedResponse("synerise repeated a pageToken; refusing to loop", vendor=S.VENDOR,
                                        url=str(response.request.url))
            self._seen.add(self.cursor)
