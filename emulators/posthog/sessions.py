"""HogQL's ``sessions`` table: one row per ``$session_id`` of a project's events, aggregated from them.

What PostHog does (``posthog/hogql/database/schema/sessions_v2.py`` [C], the manual's "Sessions"
page [D]); the emulator computes the same aggregates from its own events:

========================== ===================================================================
column                     value
========================== ===================================================================
``session_id`` (``id``)    the events' ``$session_id`` (PostHog: the UUIDv7 text of the SDK's id)
``distinct_id``            ``distinct_id`` of the session's last event (``argMax``)
``$start_timestamp``       ``min(timestamp)`` of its events
``$end_timestamp``         ``max(timestamp)``
``max_inserted_at``        the newest ingestion time of its events (the emulator: ``created_at``):
                           it grows whenever the session changes, late events included
``$session_duration``      ``dateDiff('second', start, end)`` (whole seconds crossed)
``$entry_current_url``     ``$current_url`` of the first event that has one (``argMin``,
                           empty → ``null``); ``$end_current_url`` of the last (``argMax``);
                           ``$exit_current_url`` is an alias of the end URL
``$entry_pathname``        ``path()`` of the entry URL; ``$end_pathname`` (``$exit_pathname``) of the end URL
``$pageview_count``        distinct ``uuid`` of its ``$pageview`` events (``uniq``: a copy of an
                           event ClickHouse has not merged yet counts once); likewise
                           ``$autocapture_count`` and ``$screen_count``
``$is_bounce``             ``null`` without pageviews; else not (more than one pageview, or any
                           autocapture, or at least 10 s long)
``$entry_referring_domain`` the first event's ``$referring_domain``; ``$entry_utm_source``,
                           ``$entry_utm_medium``, ``$entry_utm_campaign`` its ``utm_*`` properties
``$channel_type``          from the entry UTM fields and referring domain (a subset of PostHog's
                           rules, see :func:`channel_type`; ``Direct`` without either)
========================== ===================================================================

A session ends after 30 minutes without an event or when it is 24 hours long (the SDK then starts
a new ``$session_id``) [D]. Generated events carry one id per person and UTC day, so a generated
session lasts less than 24 hours; the control plane's ``add_session`` and ``grow_session``
enforce both rules (an event the SDK would have put in a new session is refused). A session's row
changes while events for it arrive, including late ones: its end, counts and ``max_inserted_at``
grow, and an event earlier than its start moves ``$start_timestamp`` back.

The table is sorted on ``($start_timestamp, session_id)`` (text order of the id), and HogQL reads
it through the same index interface as events (``position``/``scan``/``count_between``), so a
keyset page costs O(log n + page) and ``count()`` of a start range is a subtraction. The
aggregates of the generated events are computed once per project (they never change) on the first
sessions query; every change to the events (``events.version``) rebuilds the sorted rows from
them plus the overlay's events. A query reads one snapshot from its first seek to its last row.
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from emulators.common.backend import MutationError

from . import hogql
from .data import US, Event, EventStore, Project, derive_seed, h2, iso_us, uuid_str, v7

#: PostHog's default bounce threshold (``DEFAULT_BOUNCE_RATE_DURATION_SECONDS``)
BOUNCE_SECONDS = 10
#: no event for this long ends a session [D]
INACTIVITY_US = 30 * 60 * US
#: the longest session [D]
MAX_SESSION_US = 24 * 3600 * US
#: generated events aggregated per step of the first build
_CHUNK = 8192

SEARCH_ENGINES = ("google", "bing", "duckduckgo", "yahoo", "yandex", "baidu", "ecosia")
SOCIAL = ("facebook", "instagram", "twitter", "x.com", "t.co", "linkedin", "reddit", "tiktok", "youtube", "pinterest")


def _path(url: str | None) -> str | None:
    if not url:
        return None
    return urllib.parse.urlsplit(url).path or "/"


def channel_type(source: str | None, medium: str | None, campaign: str | None, referring_domain: str | None) -> str:
    """A subset of PostHog's default channel rules (``channel_type.py``), enough to give the
    column realistic values: the source loads it as text and never interprets it."""
    src, med = (source or "").lower(), (medium or "").lower()
    domain = (referring_domain or "").lower()
    if not src and not med and not campaign and domain in ("", "$direct"):
        return "Direct"
    if med in ("cpc", "ppc", "paid", "paidsearch") or med.startswith("paid"):
        if any(e in src for e in SEARCH_ENGINES):
            return "Paid Search"
        if any(s in src for s in SOCIAL):
            return "Paid Social"
        return "Paid Unknown"
    if med == "email" or src == "email":
        return "Email"
    if med in ("affiliate", "referral"):
        return med.title()
    if any(e in (src or domain) for e in SEARCH_ENGINES):
        return "Organic Search"
    if any(s in (src or domain) for s in SOCIAL):
        return "Organic Social"
    if domain and domain != "$direct":
        return "Referral"
    return "Unknown"


@dataclass(slots=True)
class Session:
    """A row of the sessions table, as HogQL reads it (times in microseconds, UTC)."""

    key: tuple[int, str]  # ($start_timestamp, session_id): the sort key
    session_id: str
    distinct_id: str
    start: int
    end: int
    max_inserted_at: int
    entry_url: str | None
    end_url: str | None
    pageviews: int
    autocaptures: int
    screens: int
    referring_domain: str | None
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    person: tuple[int, int]

    @property
    def duration(self) -> int:
        return self.end // US - self.start // US

    @property
    def is_bounce(self) -> bool | None:
        if self.pageviews == 0:
            return None
        return not (self.pageviews > 1 or self.autocaptures > 0 or self.duration >= BOUNCE_SECONDS)

    @property
    def channel_type(self) -> str:
        return channel_type(self.utm_source, self.utm_medium, self.utm_campaign, self.referring_domain)

    def export(self, project_id: int, tz: dt.tzinfo) -> dict[str, Any]:
        """The row as the source's table holds it (``$`` dropped from the names)."""
        return {
            "project_id": project_id,
            "session_id": self.session_id,
            "distinct_id": self.distinct_id,
            "start_timestamp": iso_us(self.start, tz),
            "end_timestamp": iso_us(self.end, tz),
            "max_inserted_at": iso_us(self.max_inserted_at, tz),
            "session_duration": self.duration,
            "entry_current_url": self.entry_url,
            "end_current_url": self.end_url,
            "entry_pathname": _path(self.entry_url),
            "end_pathname": _path(self.end_url),
            "pageview_count": self.pageviews,
            "autocapture_count": self.autocaptures,
            "screen_count": self.screens,
            "is_bounce": self.is_bounce,
            "channel_type": self.channel_type,
            "entry_referring_domain": self.referring_domain,
            "entry_utm_source": self.utm_source,
            "entry_utm_medium": self.utm_medium,
            "entry_utm_campaign": self.utm_campaign,
        }


class _Acc:
    """The running aggregates of one session."""

    __slots__ = ("first", "first_key", "last", "last_key", "url_first", "url_first_key", "url_last",
                 "url_last_key", "pv", "ac", "sc", "inserted")

    def __init__(self, e: Event, key: tuple[int, int, int]) -> None:
        self.first = self.last = e
        self.first_key = self.last_key = key
        self.url_first = self.url_last = None
        self.url_first_key = self.url_last_key = None
        self.pv: set[tuple[int, int]] = set()
        self.ac: set[tuple[int, int]] = set()
        self.sc: set[tuple[int, int]] = set()
        self.inserted = e.created_at

    def copy(self) -> _Acc:
        c = _Acc.__new__(_Acc)
        for name in _Acc.__slots__:
            setattr(c, name, getattr(self, name))
        c.pv, c.ac, c.sc = set(self.pv), set(self.ac), set(self.sc)
        return c

    def add(self, e: Event, key: tuple[int, int, int]) -> None:
        if key < self.first_key:
            self.first, self.first_key = e, key
        if key > self.last_key:
            self.last, self.last_key = e, key
        if e.created_at > self.inserted:
            self.inserted = e.created_at

    def count(self, e: Event, key: tuple[int, int, int]) -> None:
        name = e.event
        if name == "$pageview":
            self.pv.add((e.low, e.high))
        elif name == "$autocapture":
            self.ac.add((e.low, e.high))
        elif name == "$screen":
            self.sc.add((e.low, e.high))
        url = e.properties.get("$current_url")
        if url:
            if self.url_first_key is None or key < self.url_first_key:
                self.url_first, self.url_first_key = url, key
            if self.url_last_key is None or key > self.url_last_key:
                self.url_last, self.url_last_key = url, key

    def row(self, sid: str) -> Session:
        first, last = self.first, self.last
        props = first.properties

        def text(name: str) -> str | None:
            v = props.get(name)
            return str(v) if v not in (None, "") else None

        start = self.first_key[0]
        return Session((start, sid), sid, last.distinct_id, start, self.last_key[0], self.inserted,
                       self.url_first, self.url_last, len(self.pv), len(self.ac), len(self.sc),
                       text("$referring_domain"), text("utm_source"), text("utm_medium"), text("utm_campaign"),
                       last.person)


def _accumulate(accs: dict[str, _Acc], events: list[Event]) -> None:
    for e in events:
        key = (e.ts, e.low, e.high)
        acc = accs.get(e.session_id)
        if acc is None:
            acc = accs[e.session_id] = _Acc(e, key)
        else:
            acc.add(e, key)
        acc.count(e, key)


@dataclass
class Snapshot:
    version: int
    rows: list[Session]
    keys: list[tuple[int, str]]
    by_id: dict[str, Session]


class SessionStore:
    """A project's sessions, sorted by ``($start_timestamp, session_id)``, with the index
    interface of :class:`~emulators.posthog.data.EventStore`. A position carries the snapshot it
    was taken in, so one query reads one version of the table however the events change."""

    def __init__(self, events: EventStore) -> None:
        self.events = events
        self.lock = threading.Lock()
        self._base: dict[str, _Acc] | None = None
        self._base_rows: list[Session] | None = None
        self._snapshot: Snapshot | None = None

    def _base_accs(self) -> dict[str, _Acc]:
        if self._base is None:
            accs: dict[str, _Acc] = {}
            ev = self.events
            for lo in range(0, ev.n, _CHUNK):
                _accumulate(accs, ev.base_events(lo, lo + _CHUNK))
            self._base = accs
            self._base_rows = [acc.row(sid) for sid, acc in accs.items()]
        return self._base

    def snapshot(self) -> Snapshot:
        ev = self.events
        with self.lock:
            snap = self._snapshot
            if snap is not None and snap.version == ev.version:
                return snap
            base = self._base_accs()
            with ev.lock:
                version = ev.version
                overlay = list(ev.overlay.values())
            touched: dict[str, _Acc] = {}
            for e in overlay:
                sid = e.session_id
                acc = touched.get(sid)
                if acc is None:
                    prior = base.get(sid)
                    if prior is not None:
                        acc = touched[sid] = prior.copy()
                key = (e.ts, e.low, e.high)
                if acc is None:
                    acc = touched[sid] = _Acc(e, key)
                else:
                    acc.add(e, key)
                acc.count(e, key)
            assert self._base_rows is not None
            rows = [r for r in self._base_rows if r.session_id not in touched] if touched else list(self._base_rows)
            rows += [acc.row(sid) for sid, acc in touched.items()]
            rows.sort(key=lambda r: r.key)
            snap = Snapshot(version, rows, [r.key for r in rows], {r.session_id: r for r in rows})
            self._snapshot = snap
            return snap

    # -- the index interface (``hogql.Table.store``) -----------------------------------------------

    def position(self, key: tuple, *, after: bool = False) -> tuple[Snapshot, int]:
        snap = self.snapshot()
        seek = bisect.bisect_right if after else bisect.bisect_left
        return snap, seek(snap.keys, key)

    def begin(self) -> tuple[Snapshot, int]:
        return self.snapshot(), 0

    def end(self) -> tuple[Snapshot, int]:
        snap = self.snapshot()
        return snap, len(snap.rows)

    def count_between(self, lower: tuple | None, upper: tuple | None) -> int:
        snap = self.snapshot()
        a = bisect.bisect_left(snap.keys, lower) if lower is not None else 0
        b = bisect.bisect_left(snap.keys, upper) if upper is not None else len(snap.keys)
        return max(0, b - a)

    def scan(self, start: tuple[Snapshot, int], reverse: bool = False) -> Iterator[Session]:
        snap, i = start
        rows = snap.rows
        if reverse:
            for j in range(i - 1, -1, -1):
                yield rows[j]
        else:
            for j in range(i, len(rows)):
                yield rows[j]

    def __len__(self) -> int:
        return len(self.snapshot().rows)


def _columns() -> dict[str, hogql.Column]:
    C, TS = hogql.Column, hogql.TS
    cols: list[hogql.Column] = [
        C("session_id", "String", lambda s: s.session_id, lambda s, tz: s.session_id),
        C("id", "String", lambda s: s.session_id, lambda s, tz: s.session_id),
        C("distinct_id", "String", lambda s: s.distinct_id, lambda s, tz: s.distinct_id),
        C("$start_timestamp", "DateTime64(6, 'UTC')", lambda s: TS(s.start), lambda s, tz: iso_us(s.start, tz)),
        C("$end_timestamp", "DateTime64(6, 'UTC')", lambda s: TS(s.end), lambda s, tz: iso_us(s.end, tz)),
        C("max_inserted_at", "DateTime64(6, 'UTC')", lambda s: TS(s.max_inserted_at),
          lambda s, tz: iso_us(s.max_inserted_at, tz)),
        C("$session_duration", "Int64", lambda s: s.duration, lambda s, tz: s.duration),
        C("duration", "Int64", lambda s: s.duration, lambda s, tz: s.duration),
        C("$entry_current_url", "Nullable(String)", lambda s: s.entry_url, lambda s, tz: s.entry_url),
        C("$end_current_url", "Nullable(String)", lambda s: s.end_url, lambda s, tz: s.end_url),
        C("$exit_current_url", "Nullable(String)", lambda s: s.end_url, lambda s, tz: s.end_url),
        C("$entry_pathname", "Nullable(String)", lambda s: _path(s.entry_url), lambda s, tz: _path(s.entry_url)),
        C("$end_pathname", "Nullable(String)", lambda s: _path(s.end_url), lambda s, tz: _path(s.end_url)),
        C("$exit_pathname", "Nullable(String)", lambda s: _path(s.end_url), lambda s, tz: _path(s.end_url)),
        C("$pageview_count", "UInt64", lambda s: s.pageviews, lambda s, tz: s.pageviews),
        C("$autocapture_count", "UInt64", lambda s: s.autocaptures, lambda s, tz: s.autocaptures),
        C("$screen_count", "UInt64", lambda s: s.screens, lambda s, tz: s.screens),
        C("$is_bounce", "Nullable(Bool)", lambda s: s.is_bounce, lambda s, tz: s.is_bounce),
        C("$channel_type", "String", lambda s: s.channel_type, lambda s, tz: s.channel_type),
        C("$entry_referring_domain", "Nullable(String)", lambda s: s.referring_domain,
          lambda s, tz: s.referring_domain),
        C("$entry_utm_source", "Nullable(String)", lambda s: s.utm_source, lambda s, tz: s.utm_source),
        C("$entry_utm_medium", "Nullable(String)", lambda s: s.utm_medium, lambda s, tz: s.utm_medium),
        C("$entry_utm_campaign", "Nullable(String)", lambda s: s.utm_campaign, lambda s, tz: s.utm_campaign),
    ]
    return {c.name: c for c in cols}


def _tie(value: Any) -> tuple | None:
    return None if value is None else (str(value),)


def table(events: EventStore) -> hogql.Table:
    """The project's ``sessions`` table for the HogQL executor."""
    return hogql.Table("sessions", _columns(), "$start_timestamp", "session_id", SessionStore(events), None,
                       tie_key=_tie, key_floor=("",))


def export(store: SessionStore, project: Project, tz: dt.tzinfo) -> list[dict[str, Any]]:
    return [s.export(project.id, tz) for s in store.snapshot().rows]


# -- the control plane: sessions that grow (and end) between runs -----------------------------------


def session_events(backend: Any, project: Project, store: SessionStore, op: dict[str, Any],
                   mutation: int, *, grow: bool) -> dict[str, Any]:
    """``add_session`` (``grow=False``): a new session of ``count`` events; ``grow_session``: more
    events in the existing ``session_id``. The last new event is at ``at`` (ISO) or
    ``late_seconds`` before now (default: now), the ones before it ``spacing_seconds`` (60) apart;
    ``event`` (``$pageview``), ``url`` and the entry fields ``referring_domain``, ``utm_source``,
    ``utm_medium``, ``utm_campaign`` go into their properties. The new events must keep the
    session one the SDK would have kept: no gap over 30 minutes next to them, 24 hours at most
    from first to last (else a ``MutationError``: the SDK would have started a new session)."""
    try:
        n = int(op.get("count", 1))
        spacing = int(float(op.get("spacing_seconds", 60)) * US)
    except (TypeError, ValueError):
        raise MutationError("count and spacing_seconds must be numbers") from None
    if not 1 <= n <= 10_000:
        raise MutationError("count must be between 1 and 10,000")
    if spacing < 0 or (n > 1 and spacing > INACTIVITY_US):
        raise MutationError("spacing_seconds must be between 0 and 1800 (30 minutes without an event end a session)")
    now = backend.now()
    if op.get("at"):
        try:
            anchor = int(hogql.parse_ts(str(op["at"]), dt.UTC))
        except hogql.HogQLError as e:
            raise MutationError(str(e)) from None
    else:
        anchor = now - int(float(op.get("late_seconds", 0)) * US)
    times = [anchor - (n - 1 - m) * spacing for m in range(n)]
    persons = project.persons
    base = derive_seed(backend.seed, "session-events", project.id, mutation)
    existing: Session | None = None
    if grow:
        sid = str(op.get("session_id") or "")
        existing = store.snapshot().by_id.get(sid)
        if existing is None:
            raise MutationError(f"no session {sid!r} in project {project.id}")
        start, end = existing.start, existing.end
        # the events of the session the new ones join: a gap over 30 minutes would have ended it
        if times[0] > end and times[0] - end > INACTIVITY_US:
            raise MutationError("the SDK would have started a new session: over 30 minutes after the session's end "
                                f"({iso_us(end)})")
        if times[-1] < start and start - times[-1] > INACTIVITY_US:
            raise MutationError("the SDK would have started a new session: over 30 minutes before the session's "
                                f"start ({iso_us(start)})")
        if max(end, times[-1]) - min(start, times[0]) > MAX_SESSION_US:
            raise MutationError("the SDK would have started a new session: it would last over 24 hours")
        person = existing.person
        distinct = existing.distinct_id
    else:
        if (times[-1] - times[0]) > MAX_SESSION_US:
            raise MutationError("the SDK would have started a new session: it would last over 24 hours")
        r = h2(base, 0x5E55)
        sid = uuid_str(*v7(times[0] // 1000, r, h2(r, 1)))
        k = r % max(1, persons.n)
        pk = persons.key(k)
        person = (pk[1], pk[2])
        distinct = persons.anon_id(k)
    props_base: dict[str, Any] = {"$lib": "web"}
    if op.get("url") is not None:
        props_base["$current_url"] = str(op["url"])
    for name in ("utm_source", "utm_medium", "utm_campaign"):
        if op.get(name) is not None:
            props_base[name] = str(op[name])
    if op.get("referring_domain") is not None:
        props_base["$referring_domain"] = str(op["referring_domain"])
    name = str(op.get("event", "$pageview"))
    added: list[Event] = []
    for m, ts in enumerate(times):
        r = h2(base, m)
        low, high = v7(ts // 1000, r, h2(r, 1))
        props = dict(props_base)
        props.setdefault("$current_url", f"https://shop.example.com/session/{m}")
        added.append(Event(ts, low, high, name, distinct, person, props, "", now, sid))
    project.events.add(added)
    row = store.snapshot().by_id[sid]
    return {"project_id": project.id, "session_id": sid, "uuids": [e.uuid for e in added],
            "timestamps": [iso_us(t) for t in times], "session": row.export(project.id, dt.UTC)}


__all__ = ["BOUNCE_SECONDS", "INACTIVITY_US", "MAX_SESSION_US", "Session", "SessionStore", "channel_type", "export",
           "session_events", "table"]
