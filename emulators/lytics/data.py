"""Deterministic Lytics account data, from a seed, at any scale (10 … 1,000,000 users).

Users are generated **column-wise and lazily**: only ``_created`` and ``_modified`` (epoch
nanoseconds, the columns scans filter and index on) are kept in compact ``array('q')`` columns;
every other field of a profile is derived on demand from ``mix64(salt + slot)``, so start-up at a
million users takes a couple of seconds. Changed and new profiles keep their changed fields in an
overlay (``slot -> {field: value}``).

Ties are generated on purpose (``api/lytics.md`` §12: scan consistency unknown): about 15 % of users
were "bulk imported" and share one of ``max(1, scale // 2000)`` ``_modified`` instants; every
control-plane modification gives all the profiles it touches one shared instant.

Timestamps render as Go's ``RFC3339Nano`` does (UTC, trailing fraction zeros trimmed, so
``…:07Z`` and ``…:07.5Z`` both occur): string order is not time order, a client must parse.
"""

from __future__ import annotations

import hashlib
import threading
import time
from array import array
from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass, field
from typing import Any

import orjson

from .filterql import compile_expr, includes_of, uses_now

MASK64 = 0xFFFFFFFFFFFFFFFF
NS = 1_000_000_000
DAY_NS = 86400 * NS
YEAR_NS = 365 * DAY_NS
#: generated history ends here (deterministic); the live clock moves on from the wall clock
DEFAULT_EPOCH = "2026-01-01T00:00:00Z"
#: rendered rows kept (serialised) for the scans; about 0.6 KB each (0.7 GB at the largest scale):
#: every profile of the largest account fits, so a full scan at a million users does not render
#: three quarters of them again on every read (each render is Python work the real API does not do)
ROW_CACHE_MAX = 1_000_000
#: how deep ``INCLUDE`` is followed before a membership answers false (a loop guard)
MAX_INCLUDE_DEPTH = 8
_SEGMENTS_KEY = "\x00segments"

FIRST = ["ada", "ben", "chloe", "dev", "eva", "femi", "gus", "hana", "ivan", "jun", "kira", "leo", "mia", "noor"]
LAST = ["adams", "brown", "chen", "diaz", "evans", "fischer", "garcia", "hall", "ito", "jones", "khan", "lopez"]
PLACES = [
    ("US", "Portland"), ("US", "Austin"), ("DE", "Berlin"), ("DE", "Hamburg"), ("GB", "Leeds"), ("FR", "Lyon"),
    ("PL", "Krakow"), ("JP", "Osaka"), ("BR", "Recife"), ("IN", "Pune"), ("CA", "Halifax"), ("AU", "Perth"),
]
DOMAINS = ["example.com", "mail.example.org", "corp.example.net"]
CHANNELS = ["web", "email", "mobile", "sms"]
TOPICS = ["yogurt", "running", "travel", "finance", "cooking", "music", "gardening", "chess", "cycling"]
SITES = ["www.acme-foods.example", "blog.acme-foods.example"]
_TITLE = {w: w.title() for w in FIRST + LAST}
#: ``channels`` for each 4-bit pattern (bit i: CHANNELS[i]; none set: web)
_CHANNEL_SETS = [[c for i, c in enumerate(CHANNELS) if (bits >> i) & 1] or ["web"] for bits in range(16)]


def derive(seed: int, *names: object) -> int:
    text = ":".join([str(seed), *map(str, names)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def mix64(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-spread hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def rfc3339(ns: int) -> str:
    """Epoch nanoseconds as Go's ``time.RFC3339Nano`` in UTC (fraction zeros trimmed)."""
    secs, frac = divmod(ns, NS)
    days, rem = divmod(secs, 86400)
    day = _DAYS.get(days)
    if day is None:
        day = time.strftime("%Y-%m-%dT", time.gmtime(days * 86400))
        if len(_DAYS) < 100_000:
            _DAYS[days] = day
    if frac:
        return day + _HMS[rem] + "." + f"{frac:09d}".rstrip("0") + "Z"
    return day + _HMS[rem] + "Z"


#: day number -> ``YYYY-MM-DDT`` (filled as days are met), second of the day -> ``HH:MM:SS``
_DAYS: dict[int, str] = {}
_HMS = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]


def rfc3339_s(ns: int) -> str:
    """Second precision (segment/collection/work ``created``/``updated``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // NS))


def parse_epoch(text: str) -> int:
    from .filterql import parse_instant

    ns = parse_instant(text, 0)
    if ns is None:
        raise ValueError(f"not an RFC 3339 instant: {text!r}")
    return ns


class Clock:
    """The server clock in epoch ns: the wall clock plus any ``advance_clock`` shift, never
    earlier than the generated history, and strictly increasing between calls to :meth:`tick`."""

    def __init__(self, floor_ns: int) -> None:
        self.floor_ns = floor_ns
        self.offset_ns = 0
        self._last = 0

    def now(self) -> int:
        return max(time.time_ns() + self.offset_ns, self.floor_ns + NS, self._last)

    def tick(self) -> int:
        """A fresh instant for one change (all rows of one change share it)."""
        t = max(self.now(), self._last + 1000)
        self._last = t
        return t


# --------------------------------------------------------------------------- segments


@dataclass
class SegmentDef:
    slug: str
    name: str
    ql: str
    table: str = "user"
    kind: str = "segment"
    is_public: bool = True
    tags: tuple[str, ...] = ()
    description: str = ""


USER_SEGMENTS = [
    SegmentDef("all_users", "All Users", "FILTER * FROM user", kind="segment", tags=("default",)),
    SegmentDef("high_intensity", "High intensity", "FILTER AND(score_intensity > 60, EXISTS email) FROM user",
               tags=("scores",)),
    SegmentDef("affinity_for_yogurt", "Affinity for yogurt", 'FILTER country IN ("US", "CA", "DE") FROM user',
               kind="aspect", tags=("content",)),
    SegmentDef("subscribers", "Subscribers", "FILTER is_subscriber = true FROM user", tags=("email",)),
    SegmentDef("anonymous", "Anonymous profiles", "FILTER AND(NOT EXISTS email, NOT EXISTS user_id) FROM user",
               is_public=False),
    SegmentDef("multi_alias", "Known on several devices", "FILTER _num_aliases >= 2 FROM user"),
    SegmentDef("recently_changed", "Changed in the last 30 days", 'FILTER _modified >= "now-30d" FROM user',
               kind="aspect", is_public=False),
    SegmentDef("intense_subscribers", "Intense subscribers",
               "FILTER AND(INCLUDE high_intensity, INCLUDE subscribers) FROM user", kind="list"),
]
CONTENT_SEGMENTS = [
    SegmentDef("all_content", "All content", "FILTER * FROM content", table="content"),
    SegmentDef("blog_posts", "Blog posts", 'FILTER path = "blog" FROM content', table="content"),
    SegmentDef("yogurt_content", "Yogurt content", 'FILTER topics = "yogurt" FROM content', table="content"),
]


@dataclass
class Segment:
    id: str
    d: SegmentDef
    created_ns: int
    updated_ns: int
    author_id: str
    short_id: str
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- the account


class Account:
    """Everything one emulated Lytics account holds. Not thread-safe by itself: the backend
    serialises changes with its lock."""

    BY_FIELDS = ("_uid", "email", "user_id")

    def __init__(self, seed: int, scale: int, epoch: str = DEFAULT_EPOCH) -> None:
        if not 1 <= scale <= 1_000_000:
            raise ValueError("scale must be between 1 and 1,000,000 users")
        self.seed = seed
        self.scale = scale
        self.epoch_ns = parse_epoch(epoch)
        self.clock = Clock(self.epoch_ns)
        self.salt = derive(seed, "users")
        self.uid_mul = derive(seed, "uidmul") | 1
        self.uid_inv = pow(self.uid_mul, -1, 1 << 64)
        self.uid_add = derive(seed, "uidadd")
        self.aid = 1000 + derive(seed, "aid") % 9000
        self.account_id = f"{derive(seed, 'account'):016x}"
        self.version = 0  # bumps on every change (cached sizes are keyed on it)
        self.user_schema = list(self.USER_SCHEMA)  # fields can be added (add_field)
        self._build_users(scale)
        self._build_content(max(10, scale // 10))
        self._build_segments()
        self._build_streams()
        self._build_works(min(60, 5 + scale // 2000))

    # -- users -----------------------------------------------------------------------------

    def _build_users(self, n: int) -> None:
        start = self.epoch_ns - YEAR_NS
        bulk_instants = [start + (derive(self.seed, "bulk", i) % (YEAR_NS // NS)) * NS for i in range(max(1, n // 2000))]
        created = array("q", bytes(8 * n))
        modified = array("q", bytes(8 * n))
        salt = self.salt
        span_s = YEAR_NS // NS
        for i in range(n):
            h = mix64(salt + i)
            c = start + (h % span_s) * NS // 2
            if (h >> 52) % 100 < 15:  # bulk import: tied _modified
                m = max(c, bulk_instants[(h >> 40) % len(bulk_instants)])
            else:
                m = c + ((h >> 20) % (span_s // 2)) * NS + (h >> 44) % NS  # nanosecond fractions
            created[i] = c
            modified[i] = min(m, self.epoch_ns - NS)
        self.created = created
        self.modified = modified
        # the _modified index: (ns, slot) sorted, built once; later changes go to `recent`
        order = sorted(range(n), key=modified.__getitem__)
        self.idx_ns = array("q", (modified[i] for i in order))
        self.idx_slot = array("q", order)
        self.recent: list[tuple[int, int]] = []  # (ns, slot) appended in time order
        self.overlay: dict[int, dict[str, Any]] = {}
        self.identity: dict[tuple[str, str], int] = {}  # overridden / new identity values -> slot
        self._buckets: list[array] | None = None

    @property
    def n_users(self) -> int:
        return len(self.modified)

    def uid_of(self, slot: int) -> str:
        return f"{(slot * self.uid_mul + self.uid_add) & MASK64:016x}"

    def slot_of_uid(self, uid: str) -> int | None:
        try:
            v = int(uid, 16)
        except ValueError:
            return None
        if len(uid) != 16:
            return None
        slot = ((v - self.uid_add) * self.uid_inv) & MASK64
        return slot if slot < self.n_users else None

    def bucket(self, slot: int) -> int:
        """The scan ``splits`` hash bucket (0–99) of a user."""
        return (mix64(self.salt ^ 0x5BD1E995 ^ slot) >> 7) % 100

    def bucket_slots(self, buckets: set[int]) -> array:
        if self._buckets is None:
            lists = [array("q") for _ in range(100)]
            for s in range(self.n_users):
                lists[self.bucket(s)].append(s)
            self._buckets = lists
        merged = sorted(s for b in buckets for s in self._buckets[b])
        return array("q", merged)

    def _base_user(self, slot: int) -> dict[str, Any]:
        h = mix64(self.salt + slot)
        h2 = mix64(h ^ 0xA5A5A5A5)
        aliases = 1 + (h >> 8) % 3
        uid = self.uid_of(slot)
        first, last = FIRST[(h >> 20) % len(FIRST)], LAST[(h >> 28) % len(LAST)]
        country, city = PLACES[(h >> 36) % len(PLACES)]
        row: dict[str, Any] = {
            "_uid": uid,
            "_uids": [uid] + [f"c{mix64(h2 + k):016x}" for k in range(1, aliases)],
            "_num_aliases": aliases,
        }
        if (h >> 12) % 10:
            row["email"] = f"{first}.{last}{slot}@{DOMAINS[(h >> 14) % len(DOMAINS)]}"
        if (h >> 16) % 10 < 7:
            row["user_id"] = str(100000 + slot)
        row["first_name"] = _TITLE[first]
        row["last_name"] = _TITLE[last]
        row["city"] = city
        row["country"] = country
        row["score_intensity"] = str((h >> 40) % 101)  # numbers as strings, as the API sends them
        row["score_momentum"] = int((h >> 48) % 101)
        row["visitct"] = str(1 + h2 % 500)
        row["ltv"] = f"{(h2 >> 10) % 100000 / 100:.2f}"
        row["is_subscriber"] = ((h2 >> 30) & 3) == 0
        row["channels"] = list(_CHANNEL_SETS[(h2 >> 32) & 15])
        hourly = {}  # as {str((h2 >> (40 + 5k)) % 24): 1 + (h2 >> (10 + 3k)) % 7 for k in 0, 1, 2}
        hourly[str((h2 >> 40) % 24)] = 1 + (h2 >> 10) % 7
        hourly[str((h2 >> 45) % 24)] = 1 + (h2 >> 13) % 7
        hourly[str((h2 >> 50) % 24)] = 1 + (h2 >> 16) % 7
        row["hourly"] = hourly
        c, m = self.created[slot], self.modified[slot]
        row["last_visit_ts"] = rfc3339(c + (m - c) // 2 - (m - c) // 2 % NS)
        return row

    def user(self, slot: int, with_segments: bool = True) -> dict[str, Any]:
        """The profile as a scan renders it (before projection)."""
        row = self._base_user(slot)
        extra = self.overlay.get(slot)
        if extra:
            row.update(extra)
        row["_created"] = rfc3339(self.created[slot])
        row["_modified"] = rfc3339(self.modified[slot])
        if with_segments:
            row["segments"] = self._public_segments(slot, row, self.clock.now(), {})
        return row

    def user_json(self, slot: int) -> bytes:
        """``user(slot)`` serialised, from a cache of rendered rows when the data has not changed.

        An entry is tagged with :attr:`version` as it was *before* the row was read, and is used
        only while the version is still that one: every change to the data (``add_user``,
        ``update_user`` through the control plane and ``/collect``, a mid-scan modification)
        bumps the version, so a row rendered before or during a change is never served after it.
        Rows are cached only while no public segment's membership moves with the clock
        (:attr:`row_cache_enabled`); the cache holds at most :data:`ROW_CACHE_MAX` rows."""
        version = self.version
        hit = self._row_cache.get(slot)
        if hit is not None and hit[0] == version:
            return hit[1]
        data = orjson.dumps(self.user(slot))
        if self.row_cache_enabled:
            with self._row_cache_lock:
                if len(self._row_cache) >= ROW_CACHE_MAX:
                    del self._row_cache[next(iter(self._row_cache))]
                self._row_cache[slot] = (version, data)
        return data

    def warm_row_cache(self) -> int:
        """Render every profile the cache can hold (the first :data:`ROW_CACHE_MAX` slots), so
        that no timed scan pays for a first render; answer how many are cached now."""
        if not self.row_cache_enabled:
            return 0
        for slot in range(min(self.n_users, ROW_CACHE_MAX)):
            self.user_json(slot)
        return len(self._row_cache)

    def _row_getter(self, slot: int, row: dict[str, Any], now: int, memo: dict[str, Any]) -> Any:
        """``get(field)`` over a rendered row (without ``segments``) for segment evaluation;
        ``segments`` is the row's public segment list, worked out on first use."""
        def get(name: str) -> Any:
            if name == "segments":
                if _SEGMENTS_KEY not in memo:
                    memo[_SEGMENTS_KEY] = self._public_segments(slot, row, now, memo)
                return memo[_SEGMENTS_KEY]
            return row.get(name)

        return get

    def _public_segments(self, slot: int, row: dict[str, Any], now: int, memo: dict[str, Any]) -> list[str]:
        get = self._row_getter(slot, row, now, memo)
        return [s.d.slug for s in self._public_user_segments if self._member(s, slot, get, now, memo, 0)]

    def _member(self, seg: Segment, slot: int, get: Any, now: int, memo: dict[str, Any], depth: int) -> bool:
        """Is user ``slot`` in ``seg``? Answers are memoised per row in ``memo`` (an ``INCLUDE``d
        segment is evaluated once per row): exact because segment definitions are fixed and their
        ``INCLUDE`` chains are acyclic and shallow (checked in ``_build_segments``), so the depth
        guard never cuts an evaluation short."""
        if depth > MAX_INCLUDE_DEPTH:
            return False
        hit = memo.get(seg.id)
        if hit is not None:
            return hit

        def include(slug: str) -> bool:
            inc = self.segment(slug, "user")
            return inc is not None and self._member(inc, slot, get, now, memo, depth + 1)

        answer = self.compiled[seg.id](get, include, now)
        memo[seg.id] = answer
        return answer

    def user_value(self, slot: int, name: str, cache: dict[str, Any]) -> Any:
        if name == "_modified":
            return rfc3339(self.modified[slot])
        if name == "_created":
            return rfc3339(self.created[slot])
        if "row" not in cache:
            cache["row"] = self.user(slot, with_segments=False)
        row = cache["row"]
        if name == "segments":
            if "segments" not in cache:
                cache["segments"] = self._public_segments(slot, row, self.clock.now(), {})
            return cache["segments"]
        return row.get(name)

    def find_user(self, name: str, value: str) -> int | None:
        """The slot of the profile whose identity ``name`` is ``value`` (``_uids`` matches any)."""
        hit = self.identity.get((name if name != "_uids" else "_uid", value))
        if hit is not None:
            return hit
        slot: int | None = None
        if name in ("_uid", "_uids"):
            slot = self.slot_of_uid(value)
        elif name == "email" and "@" in value:
            local = value.split("@", 1)[0]
            tail = local[len(local.rstrip("0123456789")):]
            slot = int(tail) if tail else None
        elif name == "user_id" and value.isdigit():
            slot = int(value) - 100000
        if slot is None or not 0 <= slot < self.n_users:
            return None
        current = self.user(slot, with_segments=False)
        have = current.get("_uids" if name == "_uids" else name)
        if have == value or (isinstance(have, list) and value in have):
            return slot
        return None

    def set_modified(self, slot: int, ns: int) -> None:
        """``slot`` now has ``_modified`` ``ns``; ``recent`` stays in time order (a late arrival,
        whose ``_modified`` is in the past, is inserted where it belongs)."""
        self.modified[slot] = ns
        if self.recent and ns < self.recent[-1][0]:
            insort(self.recent, (ns, slot))
        else:
            self.recent.append((ns, slot))

    def modified_between(self, low: int | None, low_inc: bool, high: int | None, high_inc: bool) -> list[int]:
        """Slots whose current ``_modified`` lies in the range, in slot order (index + recent)."""
        def lo_pos(arr_ns: Any) -> int:
            if low is None:
                return 0
            return bisect_left(arr_ns, low) if low_inc else bisect_right(arr_ns, low)

        def hi_pos(arr_ns: Any) -> int:
            if high is None:
                return len(arr_ns)
            return bisect_right(arr_ns, high) if high_inc else bisect_left(arr_ns, high)

        mod = self.modified
        out = [s for s, ns in zip(self.idx_slot[lo_pos(self.idx_ns):hi_pos(self.idx_ns)],
                                  self.idx_ns[lo_pos(self.idx_ns):hi_pos(self.idx_ns)], strict=True)
               if mod[s] == ns]
        recent_ns = [ns for ns, _ in self.recent]
        # a slot's latest change is the only one whose ns still equals modified[slot]; the base
        # index entry of a changed slot is stale for the same reason
        seen = {s for ns, s in self.recent[lo_pos(recent_ns):hi_pos(recent_ns)] if mod[s] == ns}
        out.extend(seen - set(out))
        out.sort()
        return out

    def add_user(self, fields: dict[str, Any], now: int) -> int:
        slot = self.n_users
        self.created.append(now)
        self.modified.append(now)
        self.recent.append((now, slot))
        if self._buckets is not None:
            self._buckets[self.bucket(slot)].append(slot)
        self.overlay[slot] = dict(fields)
        for name in ("email", "user_id"):
            if name not in fields:
                self.overlay[slot][name] = None
        self._index_identity(slot, fields)
        return slot

    def _index_identity(self, slot: int, fields: dict[str, Any]) -> None:
        for name in self.BY_FIELDS:
            v = fields.get(name)
            if isinstance(v, str) and v:
                self.identity[(name, v)] = slot

    def update_user(self, slot: int, fields: dict[str, Any], now: int) -> None:
        over = self.overlay.setdefault(slot, {})
        over.update(fields)
        self._index_identity(slot, fields)
        self.set_modified(slot, now)

    def add_schema_field(self, name: str, typ: str, position: int) -> None:
        """A new user field in ``/api/schema/user`` at ``position`` (the account's schema order)."""
        if any(c == name for c, _, _ in self.user_schema):
            raise ValueError(f"field {name!r} exists")
        self.user_schema.insert(max(0, min(position, len(self.user_schema))), (name, typ, False))

    # -- segments ----------------------------------------------------------------------------

    def _build_segments(self) -> None:
        from .filterql import parse

        self.segments: list[Segment] = []
        for i, d in enumerate(USER_SEGMENTS + CONTENT_SEGMENTS):
            sid = f"{derive(self.seed, 'segment', d.slug):016x}{derive(self.seed, 'segment2', d.slug):016x}"
            created = self.epoch_ns - YEAR_NS + derive(self.seed, "segc", i) % (YEAR_NS // 2)
            self.segments.append(
                Segment(sid, d, created, created + derive(self.seed, "segu", i) % (YEAR_NS // 3),
                        f"{derive(self.seed, 'author', i % 3):08x}", f"{derive(self.seed, 'short', i):06x}"[:6])
            )
        self.parsed = {s.id: parse(s.d.ql) for s in self.segments}
        self._by_ident = {**{s.d.slug: s for s in self.segments}, **{s.id: s for s in self.segments}}
        self._plan_segments()
        self._sizes: tuple[int, dict[str, int]] | None = None

    def _plan_segments(self) -> None:
        """Compile every definition once, check their ``INCLUDE`` chains, and decide whether
        rendered rows may be cached: not when a public user segment (or one it includes) uses
        date math, whose answer moves with the clock (``advance_clock``, or just time passing)."""
        self.compiled = {s.id: compile_expr(self.parsed[s.id].expr) for s in self.segments}
        self._public_user_segments = [s for s in self.segments if s.d.table == "user" and s.d.is_public]

        def reach(seg: Segment, path: tuple[str, ...]) -> tuple[int, bool]:
            """(height of the INCLUDE chain below seg, does anything on it use the clock)"""
            if seg.id in path:
                raise ValueError(f"segment {seg.d.slug!r} includes itself")
            height, clock = 0, uses_now(self.parsed[seg.id].expr)
            for slug in includes_of(self.parsed[seg.id].expr):
                inc = self.segment(slug, seg.d.table)
                if inc is not None:
                    h, c = reach(inc, (*path, seg.id))
                    height, clock = max(height, h + 1), clock or c
            return height, clock

        plan = {s.id: reach(s, ()) for s in self.segments}
        if max(h for h, _ in plan.values()) > MAX_INCLUDE_DEPTH - 2:
            raise ValueError("segment INCLUDE chains are too deep for the emulator's depth guard")
        self.row_cache_enabled = not any(plan[s.id][1] for s in self._public_user_segments)
        self._row_cache: dict[int, tuple[int, bytes]] = {}
        self._row_cache_lock = threading.Lock()

    def segment(self, ident: str, table: str | None = None) -> Segment | None:
        hit = self._by_ident.get(ident)
        if hit is not None and (table is None or hit.d.table == table):
            return hit
        for s in self.segments:
            if (s.id == ident or s.d.slug == ident) and (table is None or s.d.table == table):
                return s
        return None

    def in_segment(self, seg: Segment, slot: int, row: dict[str, Any] | None = None, depth: int = 0) -> bool:
        now = self.clock.now()
        if seg.d.table == "content":
            if depth > MAX_INCLUDE_DEPTH:
                return False
            doc = self.doc(slot)
            return self.compiled[seg.id](doc.get, lambda s: self._include_doc(s, slot, depth), now)
        if row is None:
            row = self.user(slot, with_segments=False)
        memo: dict[str, Any] = {}
        return self._member(seg, slot, self._row_getter(slot, row, now, memo), now, memo, depth)

    def _include(self, slug: str, slot: int, row: dict[str, Any] | None, depth: int) -> bool:
        seg = self.segment(slug, "user")
        return seg is not None and self.in_segment(seg, slot, row, depth + 1)

    def _include_doc(self, slug: str, idx: int, depth: int) -> bool:
        seg = self.segment(slug, "content")
        return seg is not None and self.in_segment(seg, idx, None, depth + 1)

    def sizes(self) -> dict[str, int]:
        """Members per segment, computed once per data version (a full pass)."""
        if self._sizes is None or self._sizes[0] != self.version:
            version = self.version
            counts = {s.id: 0 for s in self.segments}
            user_segs = [s for s in self.segments if s.d.table == "user"]
            now = self.clock.now()
            for slot in range(self.n_users):
                row = self.user(slot, with_segments=False)
                memo: dict[str, Any] = {}
                get = self._row_getter(slot, row, now, memo)
                for s in user_segs:
                    if self._member(s, slot, get, now, memo, 0):
                        counts[s.id] += 1
            for idx in range(self.n_docs):
                for s in self.segments:
                    if s.d.table == "content" and self.in_segment(s, idx):
                        counts[s.id] += 1
            self._sizes = (version, counts)
        return self._sizes[1]

    def segment_record(self, s: Segment) -> dict[str, Any]:
        d = s.d
        rec: dict[str, Any] = {
            "id": s.id,
            "aid": self.aid,
            "account_id": self.account_id,
            "name": d.name,
            "slug_name": d.slug,
            "public_name": d.name if d.is_public else "",
            "short_id": s.short_id,
            "description": d.description or f"{d.name} ({d.table})",
            "category": "",
            "kind": d.kind,
            "table": d.table,
            "is_public": d.is_public,
            "author_id": s.author_id,
            "created": rfc3339_s(s.created_ns),
            "updated": rfc3339_s(s.updated_ns),
            "created_ms": s.created_ns // 1_000_000,
            "modified_ms": s.updated_ns // 1_000_000,
            "tags": list(d.tags),
            "segment_ql": d.ql,
            "ast": {"op": "filter", "text": d.ql},
            "invalid": False,
            "invalid_reason": "",
            "deleted": False,
            "save_hist": d.is_public,
        }
        rec.update(s.extra)
        return rec

    def collections(self) -> list[dict[str, Any]]:
        user = [s for s in self.segments if s.d.table == "user"]
        content = [s for s in self.segments if s.d.table == "content"]
        specs = [("marketing", "Marketing", "user", user[1:5]), ("lifecycle", "Lifecycle", "user", user[4:]),
                 ("content_hubs", "Content hubs", "content", content)]
        out = []
        for i, (slug, name, table, members) in enumerate(specs):
            created = self.epoch_ns - YEAR_NS // 2 + derive(self.seed, "coll", i) % (YEAR_NS // 4)
            out.append({
                "aid": self.aid,
                "account_id": self.account_id,
                "id": f"{derive(self.seed, 'collection', slug):016x}{derive(self.seed, 'c2', slug):08x}",
                "name": name,
                "slug_name": slug,
                "table": table,
                "author_id": f"{derive(self.seed, 'author', 0):08x}",
                "created": rfc3339_s(created),
                "updated": rfc3339_s(created + DAY_NS * (i + 1)),
                "internal": i == 1,
                "collection": [{"id": s.id, "order": k} for k, s in enumerate(members)],
                "parent_segment": members[0].id if members else "",
            })
        return out

    # -- content -------------------------------------------------------------------------------

    def _build_content(self, n: int) -> None:
        self.n_docs = n
        self.doc_overlay: dict[int, dict[str, Any]] = {}

    def doc(self, idx: int) -> dict[str, Any]:
        h = mix64(self.salt ^ 0xC0FFEE ^ (idx * 2654435761))
        site = SITES[h % len(SITES)]
        section = "blog" if site.startswith("blog") else "recipes"
        url = f"{site}/{section}/{idx}-{TOPICS[(h >> 8) % len(TOPICS)]}"
        hashed = ((h >> 1) & 0x7FFFFFFFFFFFFFFF) * (-1 if h & 1 else 1)
        topics = sorted({TOPICS[(h >> (8 + 4 * k)) % len(TOPICS)] for k in range(1 + (h >> 50) % 3)})
        created = self.epoch_ns - YEAR_NS + (h >> 20) % (YEAR_NS // NS) * NS
        updated = created + (h >> 30) % (90 * 86400) * NS + (h >> 40) % NS
        doc: dict[str, Any] = {
            "id": str(hashed),
            "hashedurl": str(hashed),
            "url": url,
            "title": f"{topics[0].title()} notes #{idx}",
            "description": f"All about {', '.join(topics)}",
            "author": f"{FIRST[(h >> 44) % len(FIRST)].title()} {LAST[(h >> 48) % len(LAST)].title()}",
            "primary_image": f"https://{site}/img/{idx}.jpg",
            "sitename": site,
            "stream": "default",
            "language": "en" if (h >> 52) % 5 else "de",
            "topics": topics,
            "topic_relevances": {t: round(0.3 + ((h >> (12 + k)) % 70) / 100, 2) for k, t in enumerate(topics)},
            "path": [section, str(idx)],
            "created": rfc3339(created),
            "updated": rfc3339(min(updated, self.epoch_ns - NS)),
            "fetched": rfc3339(min(updated + 3600 * NS, self.epoch_ns - NS)),
        }
        extra = self.doc_overlay.get(idx)
        if extra:
            doc.update(extra)
        return doc

    # -- streams, jobs, schema ---------------------------------------------------------------------

    def _build_streams(self) -> None:
        self.streams: dict[str, dict[str, Any]] = {}
        for i, name in enumerate(("default", "web_events", "email_events", "crm_import")):
            ct = 1000 + derive(self.seed, "stream", name) % (10 * self.scale + 1)
            last = self.epoch_ns - derive(self.seed, "streamt", i) % (30 * DAY_NS)
            self.streams[name] = {"ct": ct, "last_ns": last, "fields": ["_e", "_uid", "email", "url"][: 2 + i % 3]}

    def stream_record(self, name: str) -> dict[str, Any]:
        st = self.streams[name]
        last_ms = st["last_ns"] // 1_000_000
        return {
            "stream": name,
            "hidden": name == "crm_import",
            "ct": st["ct"],
            "curct": st["ct"] % 997,
            "last_msg_ts": str(last_ms),
            "last_update_ts": str(last_ms + 1500),
            "metrics": [{"ct": st["ct"] // 7, "ts": str(last_ms - k * 86_400_000)} for k in range(3)],
            "recent_events": [{"_e": "pv", "url": "www.acme-foods.example/"}],
            "fields": [
                {"name": f, "type": "string", "is_array": False, "card": 10 + k, "hidden": False,
                 "first_seen": rfc3339_s(self.epoch_ns - YEAR_NS), "last_seen": rfc3339_s(st["last_ns"]),
                 "column": [{"table": "user", "as": f}]}
                for k, f in enumerate(st["fields"])
            ],
        }

    def _build_works(self, n: int) -> None:
        self.works: list[dict[str, Any]] = []
        flows = ["segment_export", "bulk_csv_import", "google_ads_audience", "salesforce_sync"]
        for i in range(n):
            created = self.epoch_ns - YEAR_NS + derive(self.seed, "work", i) % (YEAR_NS // 2)
            updated = created + derive(self.seed, "worku", i) % (YEAR_NS // 3)
            self.works.append({
                "id": f"{derive(self.seed, 'workid', i):016x}",
                "aid": self.aid,
                "account_id": self.account_id,
                "user_id": f"{derive(self.seed, 'author', i % 3):08x}",
                "workflow": flows[i % len(flows)],
                "workflow_id": f"{derive(self.seed, 'flow', i % len(flows)):012x}",
                "tag": f"job-{i}",
                "config": {"segment": USER_SEGMENTS[i % len(USER_SEGMENTS)].slug, "schedule": "daily"},
                "auth_ids": [f"{derive(self.seed, 'auth', i):010x}"],
                "statuscode": ["sleeping", "running", "completed", "failed"][i % 4],
                "hidden": False,
                "created": rfc3339_s(created),
                "updated": rfc3339_s(updated),
                "created_ms": created // 1_000_000,
                "modified_ms": updated // 1_000_000,
            })

    USER_SCHEMA = [
        ("_uid", "string", True), ("_uids", "[]string", True), ("email", "string", True),
        ("user_id", "string", True), ("_num_aliases", "int", False), ("first_name", "string", False),
        ("last_name", "string", False), ("city", "string", False), ("country", "string", False),
        ("score_intensity", "int", False), ("score_momentum", "int", False), ("visitct", "int", False),
        ("ltv", "number", False), ("is_subscriber", "bool", False), ("channels", "[]string", False),
        ("hourly", "map[string]int", False), ("last_visit_ts", "date", False), ("_created", "date", False),
        ("_modified", "date", False), ("segments", "[]string", False),
    ]
    CONTENT_SCHEMA = [
        ("id", "string", True), ("hashedurl", "string", False), ("url", "string", True), ("title", "string", False),
        ("description", "string", False), ("author", "string", False), ("primary_image", "string", False),
        ("sitename", "string", False), ("stream", "string", False), ("language", "string", False),
        ("topics", "[]string", False), ("topic_relevances", "map[string]number", False), ("path", "[]string", False),
        ("created", "date", False), ("updated", "date", False), ("fetched", "date", False),
    ]

    def schema(self, table: str) -> dict[str, Any]:
        cols = self.user_schema if table == "user" else self.CONTENT_SCHEMA
        by = [c for c, _, is_by in cols if is_by]
        return {
            "name": table,
            "by_fields": by,
            "columns": [
                {"as": c, "is_by": is_by, "type": t, "op": "latest" if not t.startswith("[") else "set",
                 "shortdesc": c.strip("_").replace("_", " ").title(), "longdesc": f"The {c} field",
                 "froms": ["default"], "identities": [c] if is_by else []}
                for c, t, is_by in cols
            ],
        }

    def account_record(self, api_key: str, data_key: str) -> dict[str, Any]:
        return {
            "id": self.account_id, "aid": self.aid, "name": f"Acme Foods {self.seed}", "domain": "acme-foods.example",
            "email": "ops@acme-foods.example", "fid": str(self.aid), "timezone": "UTC", "pubusers": True,
            "parent_id": 0, "created": rfc3339_s(self.epoch_ns - 2 * YEAR_NS), "updated": rfc3339_s(self.epoch_ns),
            "apikey": api_key, "dataapikey": data_key,
        }
