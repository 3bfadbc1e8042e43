"""REST lists declared, not written: one row per list, one function turning a row into a resource.

In the spirit of dlt's ``rest_api`` resource config (``name``, ``endpoint.path``,
``endpoint.params``, ``paginator``, ``data_selector``, ``primary_key``, ``write_disposition``), a
vendor declares each of its simple lists as a :class:`RestList` and hands the table to
:func:`list_resource`. What a row can say:

================  ================================================================================
``name``          the table and resource name
``path``          below the parent's prefix (PostHog: ``api/projects/{id}/``), e.g. ``cohorts/``
``table``         the :class:`~sources.common.arrow.TableSpec`: typed columns, primary key, extras
``scope``         the permission a key needs (a key without it: the resource is skipped, one warning)
``paginator``     ``"next"``: a ``next`` link (offset lists with ``count``; the client's walk
                  re-reads the page boundary and checks ``count``); ``"cursor"``: an opaque
                  ``next`` cursor link; ``"none"``: one response; ``"has_next"``: a ``has_next``
                  flag over ``limit``/``offset``, or ``next_cursor`` sent back as ``after`` when
                  the server gives one (:func:`walk_has_next`)
``data_selector`` where the rows are in a page (``results``)
``key``           a row's identity inside one walk (de-duplication, shift detection)
``params``        fixed query parameters (``{"basic": "true"}``)
``page_size``     the page-size parameter (``limit``), ``None`` for lists with a fixed page
``fan_out``       one walk per value of a parameter: fixed values, or values listed by another
                  endpoint (:class:`FanOut`), recorded in a column of each row
``detail``        one more request per row for fields the list leaves out (:class:`Detail`)
``window``        a time-windowed list (:class:`Window`): windows from a per-parent cursor minus a
                  lookback to now, ``date_from``/``date_to`` parameters, merge on the key
``countable``     the list states its ``count`` (``cdp-sync verify`` can count it)
================  ================================================================================

Every row is merged on the table's primary key; each row gets the parent's columns (PostHog:
``project_id``). Nothing here knows a vendor: the client (``walk`` and ``get``), the parents and
what a missing scope looks like come from the caller. Rows flow as Arrow tables, a page at a time.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import dlt
import pyarrow as pa
from dlt.sources import DltResource

from .arrow import TableSpec
from .cursor import LookbackCursor
from .errors import MalformedResponse
from .window import windows

logger = logging.getLogger("cdp_sync.rest_lists")

PAGINATORS = ("next", "cursor", "none", "has_next")
US = 1_000_000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: pages of one ``has_next`` walk at most, and how often it may step back before giving up
MAX_PAGES = 1_000_000
MAX_SHIFTS = 50


@dataclass(frozen=True)
class FanOut:
    """One walk per value of the request parameter ``param``.

    ``values``: fixed values; or ``discover``: a path (below the parent) answering a plain list,
    each item's ``value_field`` being one value. ``column`` records the value in each row (named
    through ``labels`` when given); ``copy`` copies fields of the discovered item into each row
    (``{"group_type": "group_type"}``: row column ← item field)."""

    param: str
    values: tuple[Any, ...] = ()
    discover: str | None = None
    value_field: str | None = None
    column: str | None = None
    labels: Mapping[Any, Any] | None = None
    copy: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Detail:
    """One request per row (``path`` below the list's path, formatted with the row:
    ``"{id}/"``); each of ``fields`` (row column ← shape(detail's field)) is set from it."""

    path: str
    fields: Mapping[str, Callable[[Any], Any]]


@dataclass(frozen=True)
class Window:
    """A list filtered by time: ``[start, end)`` windows of at most ``hours`` from the parent's
    cursor minus ``lookback_hours`` (first run: ``first_days`` back) to now, sent as
    ``param_from``/``param_to`` padded by ``pad_seconds`` on both sides (the server's bounds'
    inclusivity and precision are not documented: rows outside the window are dropped here, so a
    row on a boundary belongs to exactly one window). ``cursor_field`` is the row's time."""

    cursor_field: str
    param_from: str = "date_from"
    param_to: str = "date_to"
    hours: int = 24
    lookback_hours: int = 24
    first_days: int = 30
    pad_seconds: int = 1


@dataclass(frozen=True)
class RestList:
    """One REST list, declared (see the module doc for each field)."""

    name: str
    path: str
    table: TableSpec
    scope: str | None = None
    paginator: str = "next"
    data_selector: str = "results"
    key: str = "id"
    params: Mapping[str, Any] = field(default_factory=dict)
    page_size: str | None = "limit"
    fan_out: FanOut | None = None
    detail: Detail | None = None
    window: Window | None = None
    countable: bool = True

    def __post_init__(self) -> None:
        if self.paginator not in PAGINATORS:
            raise ValueError(f"{self.name}: paginator {self.paginator!r} is not one of {PAGINATORS}")
        if self.window is not None and self.paginator != "has_next":
            raise ValueError(f"{self.name}: a windowed list pages with has_next")
        if self.table.name != self.name:
            raise ValueError(f"{self.name}: its table spec is named {self.table.name!r}")

    @property
    def primary_key(self) -> tuple[str, ...]:
        return self.table.primary_key


class ListClient(Protocol):
    """What the machinery needs of a vendor client."""

    def walk(self, path: str, params: dict[str, Any] | None = None, *, key: str = "id") -> Iterator[list[dict]]: ...

    def get(self, path: str, params: dict[str, Any] | None = None,
            expect: Callable[[Any], str | None] | None = None) -> Any: ...


@dataclass(frozen=True)
class Parent:
    """Where lists live (PostHog: one project): the path prefix and the columns every row gets."""

    prefix: str
    columns: Mapping[str, Any]
    key: str  # in resource state (the project id)


@dataclass
class Vendor:
    """What :func:`list_resource` needs of a vendor: its name, a client for the run
    (``use()``: a context manager), the parents (``parents(client)`` → parents, and a hook
    recording anything about them in state), ``missing_scope(exc)`` → the scope a refused
    request lacked (``None`` when the error is anything else), and ``progress(name)`` → a progress
    log (``update(read, kept)``, ``done(note)``)."""

    name: str
    use: Callable[[], Any]
    parents: Callable[[Any], tuple[list[Parent], Callable[[dict[str, Any]], None]]]
    missing_scope: Callable[[BaseException], str | None]
    progress: Callable[[str], Any]
    #: where a windowed list keeps its cursors in resource state, one entry per parent
    parents_state_key: str = "parents"


# -- walks -------------------------------------------------------------------------------------


def list_pages(spec: RestList, client: ListClient, parent: Parent, page_size: int,
               window: tuple[int, int] | None = None) -> Iterator[list[dict[str, Any]]]:
    """Every row of one list under one parent, a page at a time, each with the parent's columns
    (and the fan-out's), fetched as the row declares."""
    base = {**spec.params}
    if spec.page_size:
        base[spec.page_size] = int(page_size)
    for params, extra in _fan_out(spec, client, parent):
        path = parent.prefix + spec.path
        query = {**base, **params}
        if spec.paginator == "none":
            body = client.get(path, query, expect=_page_problem(spec))
            pages: Iterator[list[dict]] = iter([_select(body, spec.data_selector)])
        elif spec.paginator == "has_next":
            pages = walk_has_next(client, path, query, spec, window=window)
        else:  # next (offset lists with count: the client checks it) and cursor links
            pages = client.walk(path, query, key=spec.key)
        for page in pages:
            rows = [{**r, **parent.columns, **extra} for r in page]
            if spec.detail is not None:
                rows = [_with_detail(spec, client, path, r) for r in rows]
            if rows:
                yield rows


def _fan_out(spec: RestList, client: ListClient, parent: Parent) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    f = spec.fan_out
    if f is None:
        return [({}, {})]
    out = []
    if f.discover is not None:
        items = client.get(parent.prefix + f.discover, expect=_plain_list_problem)
        for item in items:
            value = item.get(f.value_field or f.param)
            extra = {col: item.get(src) for col, src in f.copy.items()}
            if f.column:
                extra[f.column] = f.labels.get(value, value) if f.labels else value
            out.append(({f.param: value}, extra))
        return out
    for value in f.values:
        extra = {f.column: f.labels.get(value, value) if f.labels else value} if f.column else {}
        out.append(({f.param: value}, extra))
    return out


def _with_detail(spec: RestList, client: ListClient, path: str, row: dict[str, Any]) -> dict[str, Any]:
    assert spec.detail is not None
    body = client.get(path + spec.detail.path.format(**row), expect=_object_problem)
    out = dict(row)
    for column, shape in spec.detail.fields.items():
        out[column] = shape(body.get(column))
    return out


def walk_has_next(client: ListClient, path: str, params: dict[str, Any], spec: RestList, *,
                  window: tuple[int, int] | None = None) -> Iterator[list[dict[str, Any]]]:
    """A ``has_next`` list (``{"results", "has_next"}``), each row once, ending only when
    ``has_next`` is false.

    * A page carrying ``next_cursor`` (a keyset position the server keeps) is followed by sending
      it back as ``after``: no offset, nothing shifts.
    * Otherwise ``offset``: the list moves under the walk (rows deleted on an earlier page move an
      unread row in front of the next page), so each page after the first is asked from one row
      before the end of the previous one and must start on a row already read (by ``key``); one
      that does not means the list shifted, and the walk steps back a page and reads again.
      Rows added in front only push read rows into the page (dropped here).

    ``window`` (microseconds ``[start, end)``): sent as the row's ``param_from``/``param_to``,
    padded; rows outside it are dropped."""
    limit = int(params.get("limit") or 0)
    if not spec.window and window is not None:
        raise ValueError("a window needs a windowed list")
    query = dict(params)
    if window is not None:
        w = spec.window
        assert w is not None
        query[w.param_from] = us_to_text(window[0] - w.pad_seconds * US)
        query[w.param_to] = us_to_text(window[1] + w.pad_seconds * US)
    if limit and limit < 2:
        raise ValueError(f"{spec.name}: a has_next walk needs pages of 2 rows or more (one row of overlap)")
    seen: set[Any] = set()
    offset = 0
    steps = shifts = 0
    cursor: str | None = None
    while True:
        steps += 1
        if steps > MAX_PAGES:
            raise MalformedResponse(f"{spec.name}: {path} did not end after {MAX_PAGES} pages", url=path)
        ask = dict(query)
        if cursor is not None:
            ask["after"] = cursor
        elif offset:
            ask["offset"] = offset
        body = client.get(path, ask, expect=_has_next_problem)
        rows = body["results"] if spec.data_selector == "results" else _select(body, spec.data_selector)
        keys = [r.get(spec.key) for r in rows]
        if cursor is None and offset and seen and not (keys and keys[0] in seen):
            # the page does not start on a row already read: rows before it were deleted or
            # merged, and an unread row moved in front of the page; step back
            shifts += 1
            if shifts > MAX_SHIFTS:
                raise MalformedResponse(f"{spec.name}: {path} kept shifting under the walk ({shifts} times); rerun",
                                        url=path)
            if shifts == 1:
                logger.warning("%s shifted while it was read (rows deleted on an earlier page); stepping back to "
                               "re-read the page boundary", spec.name)
            offset = max(0, offset - (limit or max(1, len(rows))))
            continue
        fresh = []
        for r, k in zip(rows, keys, strict=True):
            if k is not None and k in seen:
                continue
            seen.add(k)
            if window is not None and not _inside(r, spec, window):
                continue
            fresh.append(r)
        if fresh:
            yield fresh
        if body.get("has_next") is not True:
            return
        if not rows:
            raise MalformedResponse(f"{spec.name}: {path} answered an empty page with has_next true", url=path)
        nxt = body.get("next_cursor")
        if isinstance(nxt, str) and nxt:
            if nxt == cursor:
                raise MalformedResponse(f"{spec.name}: {path} repeated its next_cursor", url=path)
            cursor = nxt
        elif cursor is not None:
            raise MalformedResponse(f"{spec.name}: {path} stopped sending next_cursor with has_next true", url=path)
        else:
            # one row of overlap: the next page must start on the last row of this one
            offset = offset + len(rows) - 1


def _inside(row: dict[str, Any], spec: RestList, window: tuple[int, int]) -> bool:
    assert spec.window is not None
    value = row.get(spec.window.cursor_field)
    if value is None:
        raise MalformedResponse(f"{spec.name}: a row without {spec.window.cursor_field}")
    return window[0] <= text_to_us(str(value)) < window[1]


# -- time ----------------------------------------------------------------------------------------


def us_to_text(us: int) -> str:
    """Microseconds since the epoch as fixed-width ISO 8601 UTC (sorts as text)."""
    d = EPOCH + dt.timedelta(microseconds=us)
    return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def text_to_us(text: str) -> int:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - EPOCH
    return (delta.days * 86400 + delta.seconds) * US + delta.microseconds


# -- page checks ----------------------------------------------------------------------------------


def _describe(body: Any) -> str:
    if isinstance(body, dict):
        return f"an object with keys {sorted(body)[:8]}"
    return f"a {type(body).__name__}"


def _has_next_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return f"{_describe(body)} where a page of a list was expected"
    if not isinstance(body.get("results"), list):
        return f"{_describe(body)} and no list of results"
    if not isinstance(body.get("has_next"), bool):
        return f"{_describe(body)} and no has_next flag"
    return None


def _plain_list_problem(body: Any) -> str | None:
    if not isinstance(body, list) or not all(isinstance(x, dict) for x in body):
        return f"{_describe(body)} where a list of objects was expected"
    return None


def _object_problem(body: Any) -> str | None:
    return None if isinstance(body, dict) else f"{_describe(body)} where an object was expected"


def _page_problem(spec: RestList) -> Callable[[Any], str | None]:
    def problem(body: Any) -> str | None:
        rows = _select(body, spec.data_selector) if isinstance(body, dict) else body
        if not isinstance(rows, list):
            return f"{_describe(body)} and no list at {spec.data_selector!r}"
        return None
    return problem


def _select(body: Any, selector: str | None) -> list[dict[str, Any]]:
    if not selector or isinstance(body, list):
        return body
    node = body
    for part in selector.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, list) else []


# -- resources -------------------------------------------------------------------------------------


def only_selected(name: str) -> bool:
    """Whether ``name`` is the only resource of the source being extracted (a run asked for it
    alone: a missing scope then fails the run rather than loading nothing)."""
    try:
        source = dlt.current.source()
    except Exception:  # noqa: BLE001 - outside an extract (a direct call): not selected alone
        return False
    return list(source.selected_resources) == [name]


def list_resource(spec: RestList, vendor: Vendor, *, page_size: int, now_us: Callable[[], int] | None = None,
                  first_start_us: int | None = None) -> DltResource:
    """The dlt resource of one declared list: merge on the table's primary key, typed columns,
    parallel with the other resources. A key without the list's scope skips the resource with
    one warning naming the scope (and fails the run when the resource was asked for alone)."""
    def load() -> Iterator[pa.Table]:
        state = dlt.current.resource_state()
        progress = vendor.progress(spec.name)
        yielded = False
        with vendor.use() as client:
            parents, note = vendor.parents(client)
            try:
                if spec.window is None:
                    pages: Iterator[pa.Table] = (
                        spec.table.to_arrow(_counted(page, progress))
                        for parent in parents for page in list_pages(spec, client, parent, page_size))
                else:
                    pages = _windowed(spec, client, parents, state.setdefault(vendor.parents_state_key, {}),
                                      progress, page_size, now_us or _now_us, first_start_us)
                for table in pages:
                    yielded = True
                    yield table
            except Exception as exc:
                scope = vendor.missing_scope(exc)
                # a refusal after rows were read is not a missing scope of the whole list: fail
                if scope is None or yielded or only_selected(spec.name):
                    raise
                logger.warning("%s: this key lacks the scope %r: %s skipped (the other resources load); "
                               "add the scope to the key to load it", vendor.name, scope, spec.name)
                state["skipped"] = {"missing_scope": scope}
                progress.done(f"skipped: the key lacks {scope}")
                return
            state.pop("skipped", None)
            note(state)
        progress.done("full list" if spec.window is None else "windows")

    load.__name__ = spec.name
    return dlt.resource(load, name=spec.name, primary_key=list(spec.primary_key), write_disposition="merge",
                        columns=spec.table.dlt_columns(), parallelized=True)()


def _counted(page: list[dict[str, Any]], progress: Any) -> list[dict[str, Any]]:
    progress.update(len(page), len(page))
    return page


def _now_us() -> int:
    import time

    return int(time.time() * US)


def _windowed(spec: RestList, client: ListClient, parents: Sequence[Parent], per_parent: dict[str, Any],
              progress: Any, page_size: int, now_us: Callable[[], int],
              first_start_us: int | None) -> Iterator[pa.Table]:
    """Per parent: windows from its cursor minus the lookback (first run: ``first_days`` back,
    or ``first_start_us``) to now; rows merged on the key, each once per run, unchanged re-reads
    inside the lookback dropped; cursors committed after the last page."""
    w = spec.window
    assert w is not None
    now = now_us()
    lookback = w.lookback_hours * 3600 * US
    commits = []
    for parent in parents:
        cur = LookbackCursor(per_parent.setdefault(parent.key, {}), lambda v: us_to_text(text_to_us(v) - lookback))
        if cur.value is None:
            start = first_start_us if first_start_us is not None else now - w.first_days * 86400 * US
            mode = "first run"
        else:
            start = text_to_us(cur.lower_bound())
            mode = "incremental"
        planned = windows(start, now, w.hours * 3600 * US)
        # every row re-read is compared with its fingerprint (the stored cursor's window, or
        # from now on a first run): an unchanged row is not loaded again
        cur.set_floor(cur.value or us_to_text(now))
        seen: set[Any] = set()
        for a, b in planned:
            for page in list_pages(spec, client, parent, page_size, window=(a, b)):
                page = [r for r in page if r.get(spec.key) not in seen]
                seen.update(r.get(spec.key) for r in page)
                keep = [r for r in page if cur.admit(str(r.get(spec.key)),
                                                     us_to_text(text_to_us(str(r[w.cursor_field]))), r)]
                progress.update(len(page), len(keep))
                if keep:
                    yield spec.table.to_arrow(keep)
        commits.append((cur, now, mode, len(planned)))
    for cur, end, mode, n in commits:
        cur.commit(us_to_text(end), mode=mode, windows=n)


__all__ = ["RestList", "FanOut", "Detail", "Window", "Parent", "Vendor", "list_pages", "list_resource",
           "walk_has_next", "only_selected", "PAGINATORS"]
