"""The Personyze HTTP conversation: auth, the path grammar, keyset walks and their limits.

Requests look like ``GET /rest/<object>/where/<cond>/order_by/<cols>/limit/<offset>,<count>``
(``api/personyze.md`` §2). This module knows nothing about dlt.

Limits respected here (§5):

* every request sends ``limit``; ``count`` never exceeds 1,000 and ``offset + count`` never passes
  1,000 — offsets are always 0, paging is by keyset (``where`` on the sort columns);
* a range condition makes a query "slow", and a slow query may not read past 50 rows: walks on
  large tables use pages of 50; other walks try 1,000 and, on the bare 400 the API answers, retry
  the same position with 50 and keep using 50 for that object;
* large tables need a ``where`` or an ``order_by`` on an indexed column: every walk orders by an
  indexed column.

End of data (§3: a read answers a JSON array of objects, ``[]`` when nothing matches): a walk
ends only on an **empty array**. A page shorter than asked is not the end (a server may answer
fewer rows than it holds); any 200 that is not an array of objects carrying the walk's columns —
an empty body, ``null``, ``{}``, an HTML page, truncated JSON — is a retryable error (the shared
retry policy), and a :class:`~sources.common.errors.MalformedResponse` naming the request and an
excerpt of the body once retries are spent, so a walk never ends early and commits its cursor.

Encoding (§2.4): the server decodes the path once, splits it on ``/ | & , <operator>``, and (as the
vendor's own SDK shows) may decode each value once more. A value is therefore sent
percent-encoded once, and values the two decoding models would read differently — those
containing ``/ & | , % +`` or starting with an operator character — are refused unless
``double_encode`` is set. Cursors only ever send integers and ``YYYY-MM-DD HH:MM:SS`` dates.
"""

from __future__ import annotations

import datetime as _dt
import re
import threading
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from sources.common.errors import ConfigurationError, MalformedResponse, RequestRejected
from sources.common.http import HttpClient, Request, RetryPolicy
from sources.common.paginators import KeysetPaginator

from .settings import MAX_ROWS, SLOW_QUERY_ROWS, VENDOR

Condition = tuple[str, str, Any]  # (column, operator, value or sequence of values for ":"/"!:")

OPERATORS = ("=", "!=", ">", ">=", "<", "<=", ":", "!:")
# operators as they go on the wire: characters an HTTP stack would escape anyway are escaped here,
# so the path sent is exactly the path built
_WIRE_OPS = {op: op.replace(">", "%3E").replace("<", "%3C") for op in OPERATORS}
_OR = "%7C"
_AND = "&"
_COLUMN = re.compile(r"[A-Za-z0-9_]+")
_RESERVED_IN_VALUE = frozenset("/&|,%+")
_OPERATOR_CHARS = frozenset("=<>!:")
_KEY = re.compile(r"[0-9A-Fa-f]{40}")


def render_value(value: Any) -> str:
    """The text form of a value in a ``where`` condition."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(_dt.UTC)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, _dt.date):
        return value.strftime("%Y-%m-%d 00:00:00")
    if isinstance(value, str):
        return value
    raise TypeError(f"cannot put a {type(value).__name__} into a Personyze where condition")


def encode_value(value: Any, *, double_encode: bool = False) -> str:
    """Percent-encode one ``where`` value for the path.

    Raises ``ValueError`` for a value whose meaning would depend on how many times the server
    decodes it, unless ``double_encode`` (the vendor SDK's model: decode path, split, decode each
    value again)."""
    text = render_value(value)
    if double_encode:
        return quote(quote(text, safe=""), safe="")
    bad = sorted(set(text) & _RESERVED_IN_VALUE)
    if bad or text[:1] in _OPERATOR_CHARS:
        what = f"contains {' '.join(bad)}" if bad else f"starts with {text[:1]!r}"
        raise ValueError(
            f"Personyze where value {text!r} {what}, which the path grammar reserves; "
            "enable double_encode to send it escaped twice"
        )
    return quote(text, safe="")


def _column(name: str) -> str:
    if not _COLUMN.fullmatch(name):
        raise ValueError(f"invalid Personyze column name {name!r}")
    return name


def render_condition(cond: Condition, *, double_encode: bool = False) -> str:
    column, op, value = cond
    if op not in _WIRE_OPS:
        raise ValueError(f"unknown Personyze operator {op!r} (expected one of {' '.join(OPERATORS)})")
    if op in (":", "!:"):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
            raise ValueError(f"operator {op!r} takes a non-empty list of values")
        rendered = ",".join(encode_value(v, double_encode=double_encode) for v in value)
    else:
        rendered = encode_value(value, double_encode=double_encode)
    return f"{_column(column)}{_WIRE_OPS[op]}{rendered}"


def render_where(branches: Sequence[Sequence[Condition]], *, double_encode: bool = False) -> str:
    """OR of AND-groups: ``[[a, b], [c]]`` is ``a&b|c`` (AND binds tighter than OR)."""
    if not branches or any(not b for b in branches):
        raise ValueError("a where clause needs at least one condition in every OR branch")
    return _OR.join(
        _AND.join(render_condition(c, double_encode=double_encode) for c in branch) for branch in branches
    )


def build_path(
    obj: str,
    *,
    id: int | None = None,
    where: Sequence[Sequence[Condition]] | None = None,
    columns: Sequence[str] | None = None,
    column: str | None = None,
    order_by: Sequence[str] | None = None,
    descending: bool = False,
    offset: int = 0,
    count: int | None = MAX_ROWS,
    double_encode: bool = False,
) -> str:
    """A request path relative to the base URL, e.g. ``users/where/...``/``limit/0,50``.

    ``limit`` is always sent (the default without it is undocumented) and ``offset + count``
    is checked against the 1,000-row cap before anything is sent."""
    parts = [_column(obj)]
    if id is not None:
        parts.append(str(int(id)))
    if where:
        parts += ["where", render_where(where, double_encode=double_encode)]
    if columns:
        parts += ["columns", ",".join(_column(c) for c in columns)]
    if column:
        parts += ["column", _column(column)]
    if order_by:
        parts += ["order_by_desc" if descending else "order_by", ",".join(_column(c) for c in order_by)]
    if id is None and count is not None:
        if count < 1 or offset < 0 or offset + count > MAX_ROWS:
            raise ValueError(f"Personyze reads at most {MAX_ROWS} rows (offset {offset} + count {count})")
        parts += ["limit", f"{offset},{count}"]
    return "/".join(parts)


_SECONDS = re.compile(r"(\d+(?:\.\d+)?)\s*(?:s\b|sec|second)", re.I)


def _retry_hint(response: httpx.Response) -> float | None:
    """Personyze's 503 says to "stand by number of seconds and retry" (§4); its slow-query
    frequency limit (§5.2, status undocumented) may answer 429 the same way. Use a number of
    seconds in the plain-text body when there is one ([I]: the body format is undocumented);
    the shared client waits it out within its throttling budget."""
    if response.status_code in (429, 503):
        m = _SECONDS.search(response.text[:500])
        if m:
            return float(m.group(1))
    return None


def _describe(body: Any) -> str:
    """What a body is, in the contract's words (never a Python type name)."""
    if body is None:
        return "an empty body"
    if isinstance(body, dict):
        return "a JSON object" if body else "an empty JSON object"
    if isinstance(body, list):
        return "a JSON array of values, not of row objects"
    if isinstance(body, str):
        return "a JSON string"
    if isinstance(body, bool):
        return "a JSON boolean"
    return "a JSON number"


def expect_rows(body: Any) -> str | None:
    """``None`` for the documented read answer (an array of row objects, ``[]`` for none), else
    what is wrong with it."""
    if isinstance(body, list) and (not body or (isinstance(body[0], dict) and isinstance(body[-1], dict))):
        return None
    return f"{_describe(body)} where an array of rows was expected"


def expect_object(body: Any) -> str | None:
    return None if isinstance(body, dict) else f"{_describe(body)} where a JSON object was expected"


def _is_slow_query_refusal(exc: RequestRejected) -> bool:
    """The API answers a slow query that reads past 50 rows with a bare 400 (no text)."""
    return exc.status == 400 and not (exc.body_excerpt or "").strip()


class PersonyzeClient:
    """One account's REST API over one ``httpx.Client`` (thread-safe; shared by resources)."""

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        timeout: float = 30.0,
        max_connections: int = 8,
        retry: RetryPolicy | None = None,
        page_size: int = MAX_ROWS,
        slow_page_size: int = SLOW_QUERY_ROWS,
        double_encode: bool = False,
    ):
        key = (api_key or "").strip()
        if not _KEY.fullmatch(key):
            raise ConfigurationError(
                "personyze API key must be 40 hexadecimal characters "
                "(Personyze: Settings > Integrations > API); set SOURCES__PERSONYZE__API_KEY",
                vendor=VENDOR,
            )
        if not 1 <= slow_page_size <= page_size <= MAX_ROWS:
            raise ConfigurationError(
                f"personyze page sizes must satisfy 1 <= slow_page_size <= page_size <= {MAX_ROWS}",
                vendor=VENDOR,
            )
        self.page_size = page_size
        self.slow_page_size = slow_page_size
        self.double_encode = double_encode
        self._slow_objects: set[str] = set()
        self._lock = threading.Lock()
        self.http = HttpClient(
            VENDOR,
            base_url.rstrip("/") + "/",
            auth=("api", key),
            secrets=[key],
            timeout=timeout,
            max_connections=max_connections,
            retry=retry or RetryPolicy(),
            retry_after_hint=_retry_hint,
        )

    # -- plain reads -------------------------------------------------------------------------

    def check(self) -> Any:
        """The credential probe: ``GET /rest/account`` reads nothing and answers 401 for a key
        that is wrong, revoked or sent over plain HTTP. Its 200 body is undocumented (§1), so
        any JSON value is accepted (an empty or non-JSON 200 is retried by the shared client)."""
        return self.http.get_json("account")

    def rows(self, obj: str, **path: Any) -> list[dict[str, Any]]:
        """One request; ``path`` as for :func:`build_path`. Always a list of objects: anything
        else is retried, then a :class:`MalformedResponse` naming the request and the body."""
        url = build_path(obj, double_encode=self.double_encode, **path)
        return self.http.get_json(url, expect=expect_rows)

    def edge(self, obj: str, column: str, *, last: bool) -> dict[str, Any] | None:
        """The row with the smallest (or largest) ``column``: an indexed ``order_by`` without
        ``where`` is a fast query."""
        rows = self.rows(obj, order_by=[column], descending=last, count=1)
        return rows[0] if rows else None

    def newest(self, obj: str, column: str, count: int = MAX_ROWS) -> list[dict[str, Any]]:
        """The ``count`` rows with the largest ``column`` (fast: no ``where``), ties in any order."""
        return self.rows(obj, order_by=[column], descending=True, count=count)

    # -- keyset walks ------------------------------------------------------------------------

    def page_size_for(self, obj: str, slow: bool) -> int:
        with self._lock:
            return self.slow_page_size if slow or obj in self._slow_objects else self.page_size

    def walk(
        self,
        obj: str,
        cursor: str,
        key: str,
        *,
        parse: Any = int,
        start: Any = None,
        after: tuple[Any, Any] | None = None,
        extra: Sequence[Condition] = (),
        slow: bool = True,
    ) -> Iterator[list[dict[str, Any]]]:
        """Walk ``obj`` ascending on (``cursor``, ``key``) — unique together — one page at a time.

        ``start`` is an inclusive lower bound on ``cursor`` for the first page, ``after`` an
        exclusive (cursor, key) position; ``extra`` conditions are ANDed into every request
        (an id range of a split backfill, the end of a window). ``parse`` turns the cursor's wire
        value into a comparable value. ``slow``: the table is large, so every range query is
        slow and pages hold 50 rows; otherwise pages start at 1,000 and drop to 50 on the API's
        bare 400. Stops after an empty page (never after a merely short one); a page boundary
        inside a run of equal cursor values neither drops nor repeats a row because (cursor, key)
        is unique and strictly increasing."""
        order = [cursor] if cursor == key else [cursor, key]
        position = after
        first_start = start

        def key_of(row: dict[str, Any]) -> tuple[Any, Any]:
            try:
                c = parse(row[cursor])
                k = c if cursor == key else int(row[key])
            except (KeyError, TypeError, ValueError):
                raise MalformedResponse(
                    f"{VENDOR} {obj} row without a usable {cursor}/{key}: {str(row)[:200]}",
                    vendor=VENDOR,
                ) from None
            return (c, k)

        def usable(row: Any) -> bool:
            if not isinstance(row, dict):
                return False
            try:
                key_of(row)
            except MalformedResponse:
                return False
            return True

        def rows_of(body: Any) -> list[dict[str, Any]] | None:
            # the page's rows, or None (retryable) for anything but an array of rows whose
            # first and last carry the walk's columns (the last one positions the next page)
            if not isinstance(body, list):
                return None
            if body and not (usable(body[0]) and usable(body[-1])):
                return None
            return body

        while True:
            size = self.page_size_for(obj, slow)

            def apply(
                request: Request,
                last: tuple[Any, Any] | None,
                size: int = size,
                resume: tuple[Any, Any] | None = position,
                start: Any = first_start,
            ) -> None:
                # the first page resumes where an earlier attempt (with a larger page) stopped
                where = self._keyset_where(cursor, key, last or resume, start if last is None else None, extra)
                request.url = build_path(
                    obj, where=where, order_by=order, count=size, double_encode=self.double_encode
                )

            try:
                for page in self.http.paginate(Request(), KeysetPaginator(size, key_of, apply, confirm_end=True), rows_of):
                    if page:
                        position = key_of(page[-1])
                        first_start = None
                    yield page
                return
            except RequestRejected as exc:
                if size <= self.slow_page_size or not _is_slow_query_refusal(exc):
                    raise
                with self._lock:
                    self._slow_objects.add(obj)

    @staticmethod
    def _keyset_where(
        cursor: str, key: str, position: tuple[Any, Any] | None, start: Any, extra: Sequence[Condition]
    ) -> list[list[Condition]] | None:
        extra = list(extra)
        if position is not None:
            v, k = position
            if cursor == key:
                return [[(cursor, ">", v), *extra]]
            # AND binds tighter than OR: cursor > V | cursor = V & key > K
            return [[(cursor, ">", v), *extra], [(cursor, "=", v), (key, ">", k), *extra]]
        if start is not None:
            return [[(cursor, ">=", start), *extra]]
        return [extra] if extra else None

    def close(self) -> None:
        self.http.close()
