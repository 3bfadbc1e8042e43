"""Deterministic PostHog data, from a seed, at any scale (10 … 1,000,000 persons per project).

Nothing large is materialised. Events and persons are *closed-form* sequences: row ``i`` of a
project's event stream is computed from ``(seed, project, i)`` on demand, and the stream is
generated already sorted by the ClickHouse sort key ``(timestamp, uuid)``, so a seek is a binary
search over the index (``bisect`` with a key function) and a page costs O(log n + page). Start-up
is instant at a million persons, memory stays at a few MB (the rendered rows ``rows.py`` keeps are
bounded separately), and late or added rows live in a small sorted *overlay* merged into every scan.

Ordering and ties (contract §7.8):

* ``uuid`` values are UUIDv7-shaped; ClickHouse orders UUIDs by their **low 64 bits first, then
  the high 64 bits**, which is not the order of their text. Every comparison in this emulator uses
  :func:`uuid_key` (``(low, high)``), never the string.
* Most events have a distinct microsecond timestamp, but *tie runs* are generated on purpose:
  runs of events sharing one microsecond (a batch import, an SDK flushing a queue with one
  timestamp). Within a run the rows are sorted by :func:`uuid_key`, so the stream stays sorted by
  the full key. The first run holds up to 2,500 events; more runs of 300 follow every 25,000 events.
* Persons share ``created_at`` values the same way (a bulk import), ordered by ``id`` (a UUID).

Timestamps are integers of microseconds since the Unix epoch (UTC) everywhere inside the emulator;
they are rendered only at the API boundary.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import hashlib
import re
import threading
import uuid as _uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

MASK64 = 0xFFFFFFFFFFFFFFFF
US = 1_000_000
HOUR_US = 3600 * US
DAY_US = 86400 * US
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


# --------------------------------------------------------------------------- hashing


def derive_seed(seed: int, *names: object) -> int:
    text = ":".join([str(seed), *map(str, names)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def mix64(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-spread hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def h2(a: int, b: int) -> int:
    return mix64(a ^ mix64(b))


# --------------------------------------------------------------------------- UUIDs and time


def uuid_str(low: int, high: int) -> str:
    h = ((high << 64) | low).to_bytes(16, "big").hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")


def uuid_key(text: str) -> tuple[int, int]:
    """ClickHouse's UUID order: ``(low 64 bits, high 64 bits)``. Raises ``ValueError``."""
    text = str(text).strip()
    if not _UUID_TEXT.fullmatch(text):
        n = _uuid.UUID(text).int  # braces, urn: … or a ValueError
    else:
        n = int(text.replace("-", ""), 16)
    return (n & MASK64, n >> 64)


def v7(ms: int, r1: int, r2: int) -> tuple[int, int]:
    """A UUIDv7 as (low, high): 48-bit milliseconds, version 7, variant 0b10."""
    high = ((ms & 0xFFFFFFFFFFFF) << 16) | 0x7000 | (r1 & 0xFFF)
    low = 0x8000000000000000 | (r2 & 0x3FFFFFFFFFFFFFFF)
    return low, high


def v4(r1: int, r2: int) -> tuple[int, int]:
    high = (r1 & 0xFFFFFFFFFFFF0FFF) | 0x4000
    low = 0x8000000000000000 | (r2 & 0x3FFFFFFFFFFFFFFF)
    return low, high


def to_datetime(us: int, tz: dt.tzinfo = dt.UTC) -> dt.datetime:
    return (EPOCH + dt.timedelta(microseconds=us)).astimezone(tz)


@functools.lru_cache(maxsize=1 << 16)
def _quarter(q: int, tz: dt.tzinfo) -> tuple[str, int, str]:
    d = dt.datetime.fromtimestamp(q * 900, tz)
    off = d.strftime("%z")
    return d.strftime("%Y-%m-%dT%H:"), d.minute, f"{off[:3]}:{off[3:]}"


def iso_us(us: int, tz: dt.tzinfo = dt.UTC) -> str:
    """ISO 8601 with microseconds and an offset: ``2026-11-20T08:15:30.123456-05:00``.

    Every zone offset in use is a multiple of 15 minutes, so within one UTC quarter-hour the
    local date, hour and offset are constant: they are cached per quarter."""
    sec, micro = divmod(us, US)
    q, rem = divmod(sec, 900)
    prefix, minute, off = _quarter(q, tz)
    m, s = divmod(rem, 60)
    return f"{prefix}{minute + m:02d}:{s:02d}.{micro:06d}{off}"


def iso_us_many(values: list[int], tz: dt.tzinfo = dt.UTC) -> list[str]:
    """``[iso_us(v, tz) for v in values]``, for rows in time order (consecutive rows mostly share
    their quarter-hour, looked up once)."""
    out: list[str] = []
    append = out.append
    last = None
    prefix, minute, off = "", 0, ""
    for us in values:
        sec, micro = divmod(us, US)
        q, rem = divmod(sec, 900)
        if q != last:
            prefix, minute, off = _quarter(q, tz)
            last = q
        m, s = divmod(rem, 60)
        append(f"{prefix}{minute + m:02d}:{s:02d}.{micro:06d}{off}")
    return out


def drf_datetime(us: int) -> str:
    """How Django REST framework renders a UTC ``DateTimeField``: ``2026-11-20T08:15:30.123456Z``."""
    return to_datetime(us).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_datetime(value: dt.datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86400 + delta.seconds) * US + delta.microseconds


# --------------------------------------------------------------------------- vocabulary

EVENT_NAMES: tuple[tuple[str, int], ...] = (
    ("$pageview", 430),
    ("$autocapture", 200),
    ("$pageleave", 110),
    ("feature_used", 60),
    ("added_to_cart", 40),
    ("purchase", 25),
    ("$identify", 20),
    ("signed_up", 15),
    ("$rageclick", 5),
    ("$exception", 5),
    ("invited_teammate", 4),
)
_EVENT_CUM = [0]
for _name, _w in EVENT_NAMES:
    _EVENT_CUM.append(_EVENT_CUM[-1] + _w)
_EVENT_TOTAL = _EVENT_CUM[-1]

BROWSERS = ("Chrome", "Safari", "Firefox", "Edge", "Samsung Internet")
OSES = ("Windows", "Mac OS X", "iOS", "Android", "Linux")
PATHS = ("/", "/pricing", "/docs", "/blog/launch", "/signup", "/login", "/cart", "/checkout", "/product/42")
COUNTRIES = ("US", "DE", "GB", "FR", "IN", "BR", "PL", "JP")
PLANS = ("free", "pro", "team", "enterprise")
FIRST = ("ada", "grace", "alan", "edsger", "barbara", "donald", "margaret", "ken", "linus", "radia")
LAST = ("lovelace", "hopper", "turing", "dijkstra", "liskov", "knuth", "hamilton", "thompson", "torvalds")


def pick_event(r: int) -> str:
    x = r % _EVENT_TOTAL
    return EVENT_NAMES[bisect.bisect_right(_EVENT_CUM, x) - 1][0]


# --------------------------------------------------------------------------- rows


@dataclass(slots=True)
class Event:
    """One event, typed the way HogQL sees it (microsecond timestamps; UUIDs as (low, high))."""

    ts: int
    low: int
    high: int
    event: str
    distinct_id: str
    person: tuple[int, int]
    properties: dict[str, Any]
    elements_chain: str
    created_at: int
    session_id: str

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.ts, self.low, self.high)

    @property
    def uuid(self) -> str:
        return uuid_str(self.low, self.high)

    @property
    def person_id(self) -> str:
        return uuid_str(self.person[0], self.person[1])


@dataclass(slots=True)
class Person:
    index: int
    created_at: int  # microseconds, millisecond precision
    low: int
    high: int
    distinct_ids: list[str]
    properties: dict[str, Any]
    is_identified: bool
    last_seen_at: int

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.created_at, self.low, self.high)

    @property
    def uuid(self) -> str:
        return uuid_str(self.low, self.high)


# --------------------------------------------------------------------------- tie runs


def tie_runs(n: int) -> list[tuple[int, int]]:
    """(start, size) of the runs of rows sharing one timestamp, disjoint and sorted."""
    if n < 40:
        return []
    sizes = [min(2500, n // 8)] + [min(300, n // 20)] * (n // 25_000)
    count = len(sizes)
    runs = []
    for j, size in enumerate(sizes):
        start = (j + 1) * n // (count + 1)
        # the big run sits a little after a third of the stream, not on a day boundary
        runs.append((start, size))
    out: list[tuple[int, int]] = []
    for start, size in sorted(runs):
        if out and start < out[-1][0] + out[-1][1] + 1:
            start = out[-1][0] + out[-1][1] + 1
        if size >= 2 and start + size <= n:
            out.append((start, size))
    return out


class TieLayout:
    """Where rows sit in time when tie runs share one timestamp: a run takes the time slot of
    one row, so the rows after it continue at the next slot (no gap in the stream)."""

    def __init__(self, n: int) -> None:
        self.runs = tie_runs(n)
        self.starts = [s for s, _ in self.runs]
        cum = [0]
        for _, size in self.runs:
            cum.append(cum[-1] + size - 1)
        self.cum = cum  # cum[j]: slots saved by runs before run j
        self.slots = n - cum[-1]

    def run_of(self, i: int) -> int:
        j = bisect.bisect_right(self.starts, i) - 1
        if j >= 0 and i < self.runs[j][0] + self.runs[j][1]:
            return j
        return -1

    def slot(self, i: int) -> int:
        """The time slot of row ``i`` (rows of one run share their first row's slot)."""
        j = bisect.bisect_right(self.starts, i) - 1
        if j < 0:
            return i
        start, size = self.runs[j]
        if i < start + size:
            return start - self.cum[j]
        return i - self.cum[j + 1]


# --------------------------------------------------------------------------- persons


class PersonStore:
    """A project's persons: ``n`` generated (closed form) plus added ones, minus deleted ones.

    Index order is ascending ``(created_at, id)``; the persons list walks it backwards (newest
    first). Added persons get newer ``created_at`` values than every existing one, so appending
    keeps the order."""

    def __init__(self, seed: int, project_id: int, n: int, t0: int, t1: int) -> None:
        self.seed = derive_seed(seed, "persons", project_id)
        self.project_id = project_id
        self.n = n
        self.t0 = t0
        self.layout = TieLayout(n)
        self.runs = self.layout.runs
        self.step = max(2000, (t1 - t0) // max(1, self.layout.slots) // 1000 * 1000)
        self.added: list[Person] = []
        self.modified: dict[int, dict[str, Any]] = {}
        self.deleted: list[int] = []  # sorted indices
        self._deleted_set: set[int] = set()
        self._by_distinct: dict[str, int] = {}
        self.lock = threading.RLock()

    # -- generation ----------------------------------------------------------------------

    def _base_created(self, i: int) -> int:
        """``created_at`` of person ``i`` (``i`` is the first of its run, if it is in one)."""
        e = self.layout.slot(i)
        r = mix64(self.seed ^ e)
        return self.t0 + e * self.step + (r % (self.step // 1000)) * 1000

    def _id_of(self, i: int) -> tuple[int, int]:
        r = mix64(self.seed ^ 0xABC ^ i)
        return v4(r, mix64(r))

    @functools.lru_cache(maxsize=16)  # noqa: B019 - bounded; one store per project
    def _run_ids(self, j: int) -> list[tuple[int, int]]:
        start, size = self.runs[j]
        return sorted(self._id_of(start + m) for m in range(size))

    def _base_key(self, i: int) -> tuple[int, int, int]:
        j = self.layout.run_of(i)
        if j >= 0:
            start = self.runs[j][0]
            low, high = self._run_ids(j)[i - start]
            return (self._base_created(start), low, high)
        low, high = self._id_of(i)
        return (self._base_created(i), low, high)

    @functools.lru_cache(maxsize=1 << 16)  # noqa: B019 - bounded; one store per project
    def person_ref(self, i: int) -> tuple[tuple[int, int], str, str | None]:
        """(UUID as (low, high), anonymous distinct id, email if identified) of generated person ``i``."""
        j = self.layout.run_of(i)
        person = self._run_ids(j)[i - self.runs[j][0]] if j >= 0 else self._id_of(i)
        return person, self.anon_id(i), self.email(i) if self.identified(i) else None

    def anon_id(self, i: int) -> str:
        return f"anon-{i:x}-{mix64(self.seed ^ 0xA0A0 ^ i) & 0xFFFFFF:06x}"

    def email(self, i: int) -> str:
        r = mix64(self.seed ^ 0x5151 ^ i)
        return f"{FIRST[r % len(FIRST)]}.{LAST[(r >> 8) % len(LAST)]}.{i}@example.com"

    def identified(self, i: int) -> bool:
        return mix64(self.seed ^ 0x1D1D ^ i) % 3 != 0

    def person(self, i: int) -> Person:
        if i >= self.n:
            p = self.added[i - self.n]
            props = self.modified.get(i)
            if props is not None:
                return Person(p.index, p.created_at, p.low, p.high, p.distinct_ids, props, p.is_identified,
                              p.last_seen_at)
            return p
        created, low, high = self._base_key(i)
        r = mix64(self.seed ^ 0x7777 ^ i)
        ident = self.identified(i)
        distinct = [self.anon_id(i)]
        props: dict[str, Any] = {
            "$initial_browser": BROWSERS[r % len(BROWSERS)],
            "$initial_os": OSES[(r >> 4) % len(OSES)],
            "$geoip_country_code": COUNTRIES[(r >> 8) % len(COUNTRIES)],
        }
        if ident:
            email = self.email(i)
            distinct = [email, distinct[0]]
            props.update({
                "email": email,
                "name": email.split("@")[0].replace(".", " ").title(),
                "plan": PLANS[(r >> 12) % len(PLANS)],
                "seats": 1 + (r >> 16) % 50,
            })
        override = self.modified.get(i)
        if override is not None:
            props = override
        return Person(i, created, low, high, distinct, props, ident, created + (r % (30 * 86400)) * US)

    # -- mutations -----------------------------------------------------------------------

    def add(self, count: int, now_us: int) -> list[Person]:
        with self.lock:
            last = self.key(self.total - 1)[0] if self.total else now_us
            out = []
            for _ in range(count):
                i = self.total
                created = max(now_us - now_us % 1000, last + 1000)
                last = created
                r = h2(self.seed ^ 0xADD, i)
                low, high = v4(r, h2(r, 1))
                email = f"new.person.{i}@example.com"
                p = Person(i, created, low, high, [email, f"anon-{i:x}-new"],
                           {"email": email, "plan": "free", "signup_source": "emulator"}, True, created)
                self.added.append(p)
                self._by_distinct[email] = i
                self._by_distinct[f"anon-{i:x}-new"] = i
                out.append(p)
            return out

    def modify(self, indices: list[int], version: int) -> list[Person]:
        with self.lock:
            out = []
            for i in indices:
                p = self.person(i)
                props = dict(p.properties)
                props["plan"] = PLANS[(version + i) % len(PLANS)]
                props["updated_by_emulator"] = version
                self.modified[i] = props
                out.append(self.person(i))
            return out

    def delete(self, indices: list[int]) -> None:
        with self.lock:
            for i in indices:
                if i not in self._deleted_set and 0 <= i < self.total:
                    self._deleted_set.add(i)
                    bisect.insort(self.deleted, i)

    # -- reads ---------------------------------------------------------------------------

    @property
    def total(self) -> int:
        return self.n + len(self.added)

    @property
    def alive(self) -> int:
        return self.total - len(self.deleted)

    def key(self, i: int) -> tuple[int, int, int]:
        if i >= self.n:
            return self.added[i - self.n].key
        return self._base_key(i)

    def is_deleted(self, i: int) -> bool:
        return i in self._deleted_set

    def newest_first(self, offset: int) -> Iterator[int]:
        """Indices of alive persons from the ``offset``-th newest down to the oldest."""
        with self.lock:
            alive = self.alive
            if offset >= alive:
                return
            rank = alive - offset  # 1-based rank from the oldest
            lo, hi = 0, self.total - 1
            deleted = self.deleted
            while lo < hi:  # smallest j with (j + 1 - deleted <= j) >= rank
                mid = (lo + hi) // 2
                if mid + 1 - bisect.bisect_right(deleted, mid) >= rank:
                    hi = mid
                else:
                    lo = mid + 1
            j = lo
        while j >= 0:
            if j not in self._deleted_set:
                yield j
            j -= 1

    def find_distinct(self, distinct_id: str) -> int | None:
        """The index of the person with this distinct id (generated ids encode their index)."""
        if distinct_id in self._by_distinct:
            i = self._by_distinct[distinct_id]
            return None if self.is_deleted(i) else i
        i: int | None = None
        if distinct_id.startswith("anon-"):
            part = distinct_id.split("-")
            try:
                i = int(part[1], 16)
            except (IndexError, ValueError):
                return None
            if i >= self.n or self.anon_id(i) != distinct_id:
                return None
        elif distinct_id.endswith("@example.com"):
            try:
                i = int(distinct_id.split("@")[0].rsplit(".", 1)[1])
            except (IndexError, ValueError):
                return None
            if i >= self.n or not self.identified(i) or self.email(i) != distinct_id:
                return None
        if i is None or self.is_deleted(i):
            return None
        return i

    # -- the sort-key index (HogQL ``FROM persons``): positions are indices ---------------

    def begin(self) -> int:
        return 0

    def end(self) -> int:
        return self.total

    def position(self, key: tuple, *, after: bool = False) -> int:
        seek = bisect.bisect_right if after else bisect.bisect_left
        with self.lock:
            base = seek(_Keys(self._base_key, self.n), key)
            if base < self.n:
                return base
            return self.n + seek([p.key for p in self.added], key)

    def count_between(self, lower: tuple | None, upper: tuple | None) -> int:
        a = self.position(lower) if lower is not None else 0
        b = self.position(upper) if upper is not None else self.total
        if b <= a:
            return 0
        with self.lock:
            dead = bisect.bisect_left(self.deleted, b) - bisect.bisect_left(self.deleted, a)
        return b - a - dead

    def scan(self, start: int, reverse: bool = False) -> Iterator[Person]:
        i = start - 1 if reverse else start
        step = -1 if reverse else 1
        while 0 <= i < self.total:
            if i not in self._deleted_set:
                yield self.person(i)
            i += step


class _Keys:
    """A lazy sequence of keys for ``bisect``."""

    __slots__ = ("fn", "n")

    def __init__(self, fn: Any, n: int) -> None:
        self.fn = fn
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        return self.fn(i)


# --------------------------------------------------------------------------- events


class EventStore:
    """A project's events: ``n`` generated in key order plus an overlay of added (late) events.

    ``scan(lower, upper)`` merges both in ``(timestamp, uuid)`` order (or backwards)."""

    def __init__(self, seed: int, project_id: int, n: int, t0: int, t1: int, persons: PersonStore) -> None:
        self.seed = derive_seed(seed, "events", project_id)
        self.project_id = project_id
        self.n = n
        self.t0 = t0
        self.t1 = t1
        self.layout = TieLayout(n)
        self.runs = self.layout.runs
        self.step = max(2, (t1 - t0) // max(1, self.layout.slots))
        self.persons = persons
        self.n_persons = max(1, persons.n)
        # the keys a binary search probes: nearby seeks (the pages of one walk) share most probes
        self.keys = _Keys(functools.lru_cache(maxsize=4096)(self._base_key), n)
        self.overlay_keys: list[tuple[int, int, int]] = []
        self.overlay: dict[tuple[int, int, int], Event] = {}
        self.version = 0
        self.lock = threading.RLock()

    def _base_ts(self, i: int) -> int:
        e = self.layout.slot(i)
        return self.t0 + e * self.step + mix64(self.seed ^ e) % self.step

    @functools.lru_cache(maxsize=64)  # noqa: B019 - bounded; one store per project
    def _run_ids(self, j: int) -> list[tuple[int, int]]:
        start, size = self.runs[j]
        ms = self._base_ts(start) // 1000
        ids = []
        for m in range(size):
            r1 = mix64(self.seed ^ (start + m))
            ids.append(v7(ms, r1 >> 52, mix64(r1)))
        return sorted(ids)

    def _base_key(self, i: int) -> tuple[int, int, int]:
        layout = self.layout
        if layout.runs:
            j = layout.run_of(i)
            if j >= 0:
                start = self.runs[j][0]
                low, high = self._run_ids(j)[i - start]
                return (self._base_ts(start), low, high)
            e = layout.slot(i)
        else:
            e = i
        re = mix64(self.seed ^ e)
        ts = self.t0 + e * self.step + re % self.step
        r1 = mix64(self.seed ^ 0x5EED ^ i)
        low, high = v7(ts // 1000, r1 >> 52, mix64(r1))
        return (ts, low, high)

    def base_event(self, i: int, key: tuple[int, int, int] | None = None) -> Event:
        ts, low, high = key if key is not None else self._base_key(i)
        r = mix64(self.seed ^ 0x33 ^ i)
        k = r % self.n_persons
        person, anon, email = self.persons.person_ref(k)
        distinct = email if email is not None and (r >> 20) & 1 else anon
        name = pick_event(r >> 24)
        path = PATHS[(r >> 8) % len(PATHS)]
        props: dict[str, Any] = {
            "$current_url": "https://shop.example.com" + path,
            "$pathname": path,
            "$browser": BROWSERS[(r >> 12) % len(BROWSERS)],
            "$os": OSES[(r >> 16) % len(OSES)],
            "$lib": "web",
            "$lib_version": "1.200.0",
        }
        chain = ""
        if name == "purchase":
            props["price"] = round(((r >> 32) % 20000) / 100, 2)
            props["currency"] = "USD"
        elif name == "$autocapture":
            chain = f'button.btn.btn-primary:nth-child="{(r >> 40) % 5 + 1}"text="Add to cart"'
        elif name == "feature_used":
            props["feature"] = ("export", "dashboards", "sql", "replay")[(r >> 36) % 4]
        session = f"0190{(self.seed ^ (k * 40503) ^ (ts // DAY_US)) & 0xFFFFFFFFFFFF:012x}"
        return Event(ts, low, high, name, distinct, person, props, chain, ts + (r % 4000) * 1000, session)

    def base_events(self, lo: int, hi: int) -> list[Event]:
        """Generated events ``lo … hi - 1``: the same rows as ``base_event(i)`` one by one, made in
        one pass (the tie-run layout is walked once, the hashes and the vocabulary are inlined),
        which is what a page of thousands of rows costs."""
        hi = min(hi, self.n)
        if lo >= hi:
            return []
        seed, t0, step, n_persons = self.seed, self.t0, self.step, self.n_persons
        runs, cum = self.runs, self.layout.cum
        person_ref = self.persons.person_ref
        mix = mix64
        cum_total, names = _EVENT_TOTAL, _EVENT_CUM
        n_paths, n_browsers, n_oses = len(PATHS), len(BROWSERS), len(OSES)
        n_runs = len(runs)
        j = bisect.bisect_right(self.layout.starts, lo) - 1  # the last run starting at or before lo
        out: list[Event] = []
        append = out.append
        for i in range(lo, hi):
            while j + 1 < n_runs and runs[j + 1][0] <= i:
                j += 1
            if j >= 0 and i < runs[j][0] + runs[j][1]:
                start = runs[j][0]
                ts = self._base_ts(start)
                low, high = self._run_ids(j)[i - start]
            else:
                e = i - cum[j + 1] if j >= 0 else i
                ts = t0 + e * step + mix(seed ^ e) % step
                r1 = mix(seed ^ 0x5EED ^ i)
                low = 0x8000000000000000 | (mix(r1) & 0x3FFFFFFFFFFFFFFF)
                high = (((ts // 1000) & 0xFFFFFFFFFFFF) << 16) | 0x7000 | ((r1 >> 52) & 0xFFF)
            r = mix(seed ^ 0x33 ^ i)
            k = r % n_persons
            person, anon, email = person_ref(k)
            distinct = email if email is not None and (r >> 20) & 1 else anon
            name = EVENT_NAMES[bisect.bisect_right(names, (r >> 24) % cum_total) - 1][0]
            path = PATHS[(r >> 8) % n_paths]
            props: dict[str, Any] = {
                "$current_url": "https://shop.example.com" + path,
                "$pathname": path,
                "$browser": BROWSERS[(r >> 12) % n_browsers],
                "$os": OSES[(r >> 16) % n_oses],
                "$lib": "web",
                "$lib_version": "1.200.0",
            }
            chain = ""
            if name == "purchase":
                props["price"] = round(((r >> 32) % 20000) / 100, 2)
                props["currency"] = "USD"
            elif name == "$autocapture":
                chain = f'button.btn.btn-primary:nth-child="{(r >> 40) % 5 + 1}"text="Add to cart"'
            elif name == "feature_used":
                props["feature"] = ("export", "dashboards", "sql", "replay")[(r >> 36) % 4]
            session = f"0190{(seed ^ (k * 40503) ^ (ts // DAY_US)) & 0xFFFFFFFFFFFF:012x}"
            append(Event(ts, low, high, name, distinct, person, props, chain, ts + (r % 4000) * 1000, session))
        return out

    # -- mutations -----------------------------------------------------------------------

    def add(self, events: list[Event]) -> None:
        with self.lock:
            for e in events:
                key = e.key
                if key in self.overlay:
                    continue
                bisect.insort(self.overlay_keys, key)
                self.overlay[key] = e
            self.version += 1

    # -- reads ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.n + len(self.overlay_keys)

    def position(self, key: tuple, *, after: bool = False) -> tuple[int, int]:
        """(base index, overlay index) of the first row at (or after, exclusive) ``key``."""
        seek = bisect.bisect_right if after else bisect.bisect_left
        with self.lock:
            return seek(self.keys, key), seek(self.overlay_keys, key)

    def begin(self) -> tuple[int, int]:
        return (0, 0)

    def end(self) -> tuple[int, int]:
        with self.lock:
            return (self.n, len(self.overlay_keys))

    def count_between(self, lower: tuple | None, upper: tuple | None) -> int:
        """Rows with ``lower <= key < upper`` (prefix tuples allowed)."""
        b0, o0 = self.position(lower) if lower is not None else (0, 0)
        if upper is None:
            b1, o1 = self.n, len(self.overlay_keys)
        else:
            b1, o1 = self.position(upper)
        return max(0, b1 - b0) + max(0, o1 - o0)

    def scan(self, start: tuple[int, int], reverse: bool = False) -> Iterator[Event]:
        """Rows from position ``start`` (as from :meth:`position`) onwards (or backwards from just
        before it), merged in key order."""
        b, o = start
        with self.lock:
            overlay_keys = list(self.overlay_keys)
            overlay = self.overlay
        if not reverse:
            while True:
                bk = self._base_key(b) if b < self.n else None
                ok = overlay_keys[o] if o < len(overlay_keys) else None
                if bk is None and ok is None:
                    return
                if ok is None or (bk is not None and bk < ok):
                    yield self.base_event(b, bk)
                    b += 1
                else:
                    yield overlay[ok]
                    o += 1
        else:
            b -= 1
            o -= 1
            while True:
                bk = self._base_key(b) if b >= 0 else None
                ok = overlay_keys[o] if o >= 0 else None
                if bk is None and ok is None:
                    return
                if ok is None or (bk is not None and bk > ok):
                    yield self.base_event(b, bk)
                    b -= 1
                else:
                    yield overlay[ok]
                    o -= 1


# --------------------------------------------------------------------------- projects


@dataclass
class Project:
    id: int
    uuid: str
    name: str
    timezone: str
    api_token: str
    created_at: int
    persons: PersonStore
    events: EventStore
    objects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    group_types: list[dict[str, Any]] = field(default_factory=list)
