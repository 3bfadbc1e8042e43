"""Deterministic Personyze data, from a seed, at any scale (10 … 1,000,000 users).

Large tables are generated column-wise: only the columns that queries scan or order on are
kept in compact arrays (``array('q')``); every other cell is derived on demand from
``(seed, table, row slot)`` with a per-row random stream, so startup at a million users stays
at a few seconds and a few hundred MB. Mutated and added rows live in the table's overlay
(see :mod:`emulators.personyze.engine`).

All times are Unix seconds (UTC) relative to the clock's start ("now"); date strings are
``YYYY-MM-DD HH:MM:SS`` in UTC.

Ties are generated on purpose (contract §8.1, §9.8):

- users: about 15 % of users sit in ``max(1, scale // 2000)`` "bulk import" seconds of
  ``data_last_modified`` (≈300 users per second at any scale ≥ 2,000; below 2,000 users a single
  second holds 40 % of them, placed mid-year so a 50-row page boundary falls inside the run);
  the rest spread over the past 365 days with natural collisions. ``last_session_time`` has ties
  too (20 % equal their ``data_last_modified``; bulk users are rounded to the hour);
- sessions_archive: about 15 % of sessions end in "batch close" seconds (≈300 per second).
"""

from __future__ import annotations

import hashlib
import random
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from .engine import NULL_INT, TableSpec

YEAR = 365 * 86400
DAY = 86400
MASK64 = 0xFFFFFFFFFFFFFFFF
ZERO_DATE = "0000-00-00 00:00:00"


# --------------------------------------------------------------------------- seeds and clock


def derive_seed(seed: int, *names: object) -> int:
    """A 64-bit seed derived from ``seed`` and names (stable across processes)."""
    text = ":".join([str(seed), *map(str, names)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def rng(seed: int, *names: object) -> random.Random:
    return random.Random(derive_seed(seed, *names))


def mix64(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-spread hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


class Clock:
    """The emulator's server clock: starts at ``start`` and, when ``ticking``, moves with wall
    time; ``advance`` and ``set`` shift it (the shift persists while it keeps ticking)."""

    def __init__(self, start: int | None = None, ticking: bool = True) -> None:
        self._start = int(time.time()) if start is None else int(start)
        self._t0 = time.monotonic()
        self._offset = 0.0
        self.ticking = ticking

    @property
    def start(self) -> int:
        return self._start

    def now(self) -> float:
        elapsed = time.monotonic() - self._t0 if self.ticking else 0.0
        return self._start + elapsed + self._offset

    def now_s(self) -> int:
        return int(self.now())

    def advance(self, seconds: float) -> None:
        self._offset += seconds

    def set(self, ts: float) -> None:
        self._offset += ts - self.now()


def fmt_date(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def fmt_day(ts: int) -> str:
    return time.strftime("%Y-%m-%d 00:00:00", time.gmtime(ts))


# --------------------------------------------------------------------------- schema

_USER_COLUMNS: dict[str, str] = {
    "user_id": "int",
    # documented as a string [D S5]: mostly digits, some CRM-style text ids
    "internal_id": "text",
    "internal_text_id": "text",
    "fb_id": "text",
    "email": "text",
    "first_name": "text",
    "last_name": "text",
    "sex": "text",
    "birthday": "date",
    "timezone": "text",
    "current_city": "text",
    "current_country": "text",
    "last_session_time": "int",
    "data_last_modified": "int",
    "session_counter": "int",
    "custom_t_1": "text",
    "custom_t_2": "text",
    "custom_t_3": "text",
    "custom_i_1": "int",
    "custom_i_2": "int",
    "custom_f_1": "float",
    "custom_d_1": "date",
}

SPECS: dict[str, TableSpec] = {
    "users": TableSpec(
        "users",
        _USER_COLUMNS,
        pk="user_id",
        indexes=[
            ("user_id",),
            ("internal_id",),
            ("fb_id",),
            ("email",),
            ("last_session_time",),
            ("data_last_modified",),
        ],
        unique=("email",),
        dynamic=True,
    ),
    "events": TableSpec(
        "events",
        {"id": "int", "user_id": "int", "container_id": "int", "time": "int", "value": "text"},
        pk="id",
        indexes=[("id",), ("time",), ("container_id",)],
        readonly=True,
    ),
    "sessions_archive": TableSpec(
        "sessions_archive",
        {
            "id": "int",
            "user_id": "int",
            "session_id": "text",
            "start_time": "int",
            "end_time": "int",
            "country": "text",
            "city": "text",
            "device": "text",
            "browser": "text",
            "os": "text",
            "referrer": "text",
            "landing_url": "text",
            "pages_count": "int",
        },
        pk="id",
        indexes=[("id",), ("user_id", "start_time"), ("end_time",)],
        readonly=True,
    ),
    "summary_actions": TableSpec(
        "summary_actions",
        {
            "date": "date",
            "action_id": "int",
            "impressions": "int",
            "clicks": "int",
            "closes": "int",
            "conversions": "int",
        },
        pk=None,
        indexes=[("date", "action_id")],
        readonly=True,
        order_key=("date", "action_id"),
    ),
    "products": TableSpec(
        "products",
        {
            "id": "int",
            "internal_id": "text",
            "title": "text",
            "price": "float",
            "sale_price": "float",
            "is_in_stock": "text",
            "guide_url": "text",
            "image_big_url": "text",
            "sku": "text",
            "brand": "text",
            "manufacturer": "text",
            "size": "text",
            "color": "text",
            "inventory": "int",
            "custom_1": "text",
            "custom_2": "text",
            "custom_3": "text",
        },
        pk="id",
        indexes=[("id",), ("internal_id",)],
        unique=("internal_id",),
        dynamic=True,
        upsert_key="internal_id",
    ),
    "articles": TableSpec(
        "articles",
        {
            "id": "int",
            "internal_id": "text",
            "title": "text",
            "guide_url": "text",
            "image_big_url": "text",
            "author": "text",
            "category": "text",
            "published": "date",
            "custom_1": "text",
            "custom_2": "text",
        },
        pk="id",
        indexes=[("id",), ("internal_id",)],
        unique=("internal_id",),
        dynamic=True,
        upsert_key="internal_id",
    ),
    "placeholders": TableSpec(
        "placeholders",
        {"id": "int", "name": "text", "html_id": "text", "units_count_max": "int"},
        pk="id",
        indexes=[("id",)],
    ),
    "actions": TableSpec(
        "actions",
        {
            "id": "int",
            "name": "text",
            "content_type": "text",
            "content_param": "text",
            "content_begin": "text",
            "content_end": "text",
            "libs_app": "text",
            "placeholders": "json",
        },
        pk="id",
        indexes=[("id",)],
        readonly=True,
    ),
    "conditions": TableSpec(
        "conditions", {"id": "int", "name": "text"}, pk="id", indexes=[("id",)], readonly=True
    ),
    "user_lists": TableSpec("user_lists", {"id": "int", "name": "text"}, pk="id", indexes=[("id",)]),
    # membership of users in user_lists; the read-side columns are not documented [I]
    "user_list_users": TableSpec(
        "user_list_users",
        {"user_list_id": "int", "user_id": "int"},
        pk=None,
        indexes=[("user_list_id", "user_id")],
        order_key=("user_list_id", "user_id"),
    ),
}

#: account-defined user keys that generation puts on a fraction of rows (open-ended columns)
USER_EXTRA_COLUMNS = ("loyalty_tier", "favourite_colour", "newsletter_opt_in", "ltv_estimate")

# --------------------------------------------------------------------------- vocabularies

FIRST_NAMES = (
    "Anna Ben Carla Dmitri Elena Felix Greta Hugo Ines Jonas Kira Liam Mia Noah Olga Pavel Quinn "
    "Rosa Sven Tara Umar Vera Wim Xenia Yusuf Zoe Adam Bianca Chen Dana Emil Fatima Goran Hana "
    "Igor Julia Karim Lena Marco Nina Oscar Petra Raj Sara Tomas Ulla Victor Wanda Yara Zeno"
).split()
LAST_NAMES = (
    "Smith Muller Garcia Rossi Novak Kowalski Jensen Silva Dubois Nagy Popescu Ivanov Tanaka Kim "
    "Nguyen Cohen OBrien Schmidt Martin Bernard Lopez Costa Horvat Berg Lindqvist Virtanen Murphy "
    "Weber Fischer Wagner Becker Hoffmann Koch Richter Klein Wolf Schroeder Neumann Braun Zimmer "
    "Hartmann Krause Lange Werner Schmitt Meier Lehmann Keller Huber Kaiser"
).split()
DOMAINS = ("example.com", "example.org", "mail.example.net", "corp.example", "shop.example.co.uk")
PLACES = (
    ("Berlin", "Germany", "Europe/Berlin"),
    ("Munich", "Germany", "Europe/Berlin"),
    ("London", "United Kingdom", "Europe/London"),
    ("Paris", "France", "Europe/Paris"),
    ("Madrid", "Spain", "Europe/Madrid"),
    ("Warsaw", "Poland", "Europe/Warsaw"),
    ("Prague", "Czech Republic", "Europe/Prague"),
    ("New York", "United States", "America/New_York"),
    ("Chicago", "United States", "America/Chicago"),
    ("San Francisco", "United States", "America/Los_Angeles"),
    ("Toronto", "Canada", "America/Toronto"),
    ("Sao Paulo", "Brazil", "America/Sao_Paulo"),
    ("Tel Aviv", "Israel", "Asia/Jerusalem"),
    ("Tokyo", "Japan", "Asia/Tokyo"),
    ("Sydney", "Australia", "Australia/Sydney"),
    ("Zurich", "Switzerland", "Europe/Zurich"),
    ("Dublin", "Ireland", "Europe/Dublin"),
    ("Kraków", "Poland", "Europe/Warsaw"),
    ("Malmö", "Sweden", "Europe/Stockholm"),
    ("Reykjavík", "Iceland", "Atlantic/Reykjavik"),
)
WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar "
    "papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()
DEVICES = ("desktop", "mobile", "tablet")
BROWSERS = ("Chrome", "Safari", "Firefox", "Edge", "Samsung Internet", "Opera")
OSES = ("Windows", "macOS", "iOS", "Android", "Linux", "ChromeOS")
REFERRERS = (
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://www.facebook.com/",
    "https://t.co/",
    "https://news.example.com/article?id=7&ref=a%2Fb",
    "",
)
PATHS = ("/", "/sale", "/products/shoes", "/blog/how-to", "/cart", "/checkout?step=2", "/search?q=red+shoes")
BRANDS = ("Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay")
COLOURS = ("red", "green", "blue", "black", "white", "yellow", "purple", "orange")
SIZES = ("XS", "S", "M", "L", "XL", "XXL", "42", "44")
TIERS = ("bronze", "silver", "gold", "platinum")
CATEGORIES = ("news", "guides", "reviews", "release notes", "opinion", "how-to")
EVENT_VALUES = ("page_view", "add_to_cart", "purchase", "signup", "click:cta", "video 50%", "search:red shoes")


def _new_internal_id(rr: random.Random) -> str | None:
    x = rr.random()
    if x < 0.04:
        return f"CRM-{rr.randrange(1_000_000):06d}"
    return str(1_000_000 + rr.randrange(9_000_000)) if x < 0.4 else None


def _pick(seq: tuple | list, h: int) -> Any:
    return seq[h % len(seq)]


def _words(rr: random.Random, k: int) -> str:
    return " ".join(rr.choice(WORDS) for _ in range(k))


# --------------------------------------------------------------------------- table data


@dataclass
class TableData:
    """What the engine needs to serve a table: ``n_base`` generated rows (eager arrays + derived
    columns + full-row generator) and/or stored rows appended after them."""

    n_base: int = 0
    eager: dict[str, array] = field(default_factory=dict)
    derive: dict[str, Callable[[int], Any]] = field(default_factory=dict)
    gen: Callable[[int], dict[str, Any]] | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)


class PersonyzeData:
    """Generates every table for ``(seed, scale)`` relative to ``now``."""

    def __init__(self, seed: int, scale: int, now: int) -> None:
        if scale < 1:
            raise ValueError("scale must be >= 1")
        self.seed = seed
        self.scale = scale
        self.now = now
        self.n_users = scale
        self.n_events = 3 * scale
        self.n_sessions = 2 * scale
        self.n_products = min(50_000, max(20, scale // 2))
        self.n_articles = min(20_000, max(10, scale // 10))
        self.user_ids: array = array("q")

    # ---- helpers
    def _randwords(self, name: str, n: int) -> array:
        out = array("I")
        out.frombytes(rng(self.seed, name).randbytes(4 * n))
        return out

    def salt(self, *names: object) -> int:
        return derive_seed(self.seed, *names)

    # ---- users
    def users(self) -> TableData:
        n, now = self.n_users, self.now
        gap_bytes = rng(self.seed, "users", "gaps").randbytes(n)
        uids = array("q", accumulate((1 + (b < 26) for b in gap_bytes), initial=100_000))
        uids.pop(0)
        self.user_ids = uids
        bulk_frac = 0.15 if n >= 2000 else 0.40
        n_bulk = max(1, n // 2000)
        brng = rng(self.seed, "users", "bulk")
        # bulk seconds spread evenly over the year (the single one sits mid-year)
        bulk = [now - int(YEAR * (k + 0.5) / n_bulk) - brng.randrange(3600) for k in range(n_bulk)]
        thr = int(bulk_frac * 10000)
        r1 = self._randwords("users.dlm1", n)
        r2 = self._randwords("users.dlm2", n)
        r3 = self._randwords("users.lst", n)
        dlm = array(
            "q",
            [
                bulk[(a // 10000) % n_bulk] if a % 10000 < thr else now - 60 - b % YEAR
                for a, b in zip(r1, r2, strict=True)
            ],
        )
        lst = array(
            "q",
            [
                (NULL_INT if c % 10 == 0 else (d - c % YEAR) // 3600 * 3600)
                if a % 10000 < thr
                else (d if c % 5 == 0 else d - c % (3 * DAY))
                for a, c, d in zip(r1, r3, dlm, strict=True)
            ],
        )
        s_name = self.salt("users", "name")
        s_iid = self.salt("users", "internal_id")
        s_fb = self.salt("users", "fb_id")
        s_row = self.salt("users", "row")

        def email(r: int) -> str:
            h = mix64(s_name ^ r)
            first = FIRST_NAMES[h % len(FIRST_NAMES)]
            last = LAST_NAMES[(h >> 16) % len(LAST_NAMES)]
            return f"{first}.{last}.{uids[r]}@{DOMAINS[(h >> 32) % len(DOMAINS)]}".lower()

        def internal_id(r: int) -> str | None:
            h = mix64(s_iid ^ r)
            if h % 100 < 4:
                return f"CRM-{(h >> 8) % 1_000_000:06d}"
            return str(1_000_000 + (h >> 8) % 9_000_000) if h % 100 < 40 else None

        def fb_id(r: int) -> str | None:
            h = mix64(s_fb ^ r)
            return str(100_000_000_000_000 + (h >> 8) % 900_000_000_000_000) if h % 100 < 25 else None

        def gen(r: int) -> dict[str, Any]:
            h = mix64(s_name ^ r)
            rr = random.Random(mix64(s_row ^ r))
            lst_v = lst[r]
            row = {
                "user_id": uids[r],
                "internal_id": internal_id(r),
                "internal_text_id": None,
                "fb_id": fb_id(r),
                "email": email(r),
                "first_name": FIRST_NAMES[h % len(FIRST_NAMES)],
                "last_name": LAST_NAMES[(h >> 16) % len(LAST_NAMES)],
            }
            self._user_profile(rr, row, None if lst_v == NULL_INT else lst_v, dlm[r])
            return row

        return TableData(
            n_base=n,
            eager={"user_id": uids, "data_last_modified": dlm, "last_session_time": lst},
            derive={"email": email, "internal_id": internal_id, "fb_id": fb_id},
            gen=gen,
        )

    @staticmethod
    def _user_profile(rr: random.Random, row: dict[str, Any], lst: int | None, dlm: int) -> None:
        """Fill the non-key user columns from a per-row stream (shared by generation and
        ``add_users``)."""
        x = rr.random()
        row["internal_text_id"] = f"crm-{rr.getrandbits(40):010x}" if x < 0.3 else None
        row["sex"] = rr.choice(("m", "f", "m", "f", None))
        b = rr.random()
        if b < 0.70:
            row["birthday"] = fmt_day(-631_152_000 + rr.randrange(58 * 365) * DAY)
        elif b < 0.85:
            row["birthday"] = ZERO_DATE
        else:
            row["birthday"] = None
        city, country, tz = rr.choice(PLACES)
        row["timezone"] = tz
        row["current_city"] = city
        row["current_country"] = country
        row["last_session_time"] = lst
        row["data_last_modified"] = dlm
        row["session_counter"] = rr.randrange(1, 400) if lst is not None else 0
        row["custom_t_1"] = _words(rr, 2) if rr.random() < 0.5 else None
        row["custom_t_2"] = rr.choice(("a&b", "x|y", "comma, inside", "50%", "slash/ed", "plain")) if rr.random() < 0.3 else None
        row["custom_t_3"] = _words(rr, 1) if rr.random() < 0.2 else None
        row["custom_i_1"] = rr.randrange(-1000, 100_000) if rr.random() < 0.5 else None
        row["custom_i_2"] = rr.randrange(0, 10) if rr.random() < 0.3 else None
        row["custom_f_1"] = round(rr.uniform(0, 5000), 2) if rr.random() < 0.4 else None
        d = rr.random()
        if d < 0.4:
            row["custom_d_1"] = fmt_date(dlm - rr.randrange(2 * YEAR))
        elif d < 0.5:
            row["custom_d_1"] = ZERO_DATE
        else:
            row["custom_d_1"] = None
        # open-ended account-defined keys, present on a fraction of rows only
        if rr.random() < 0.30:
            row["loyalty_tier"] = rr.choice(TIERS)
        if rr.random() < 0.20:
            row["favourite_colour"] = rr.choice(COLOURS)
        if rr.random() < 0.40:
            row["newsletter_opt_in"] = rr.randrange(2)
        if rr.random() < 0.25:
            row["ltv_estimate"] = round(rr.uniform(0, 20000), 2)

    def new_user(self, rr: random.Random, user_id: int, now: int) -> dict[str, Any]:
        """A realistic user for ``add_users`` (a visitor whose session just ended)."""
        first, last = rr.choice(FIRST_NAMES), rr.choice(LAST_NAMES)
        row: dict[str, Any] = {
            "user_id": user_id,
            "internal_id": _new_internal_id(rr),
            "internal_text_id": None,
            "fb_id": None,
            "email": f"{first}.{last}.{user_id}@{rr.choice(DOMAINS)}".lower(),
            "first_name": first,
            "last_name": last,
        }
        self._user_profile(rr, row, now, now)
        return row

    # ---- events
    def events(self) -> TableData:
        n, now = self.n_events, self.now
        ids = array("q", range(1_000_001, 1_000_001 + n))
        t0 = now - YEAR
        jit = self._randwords("events.time", n)
        times = array("q", [min(now - 1, t0 + (i * YEAR) // n + j % 241 - 120) for i, j in enumerate(jit)])
        # 40 containers with a skewed popularity
        weights = [1.0 / (k + 1) for k in range(40)]
        total = sum(weights)
        lookup: list[int] = []
        for k, w in enumerate(weights):
            lookup.extend([101 + k] * max(1, round(1000 * w / total)))
        lookup = lookup[:1000]
        cont = array("q", [lookup[x % len(lookup)] for x in self._randwords("events.container", n)])
        uids, nu = self.user_ids, self.n_users
        s_u = self.salt("events", "user")
        s_row = self.salt("events", "row")

        def user_id(r: int) -> int:
            return uids[mix64(s_u ^ r) % nu]

        def gen(r: int) -> dict[str, Any]:
            h = mix64(s_row ^ r)
            v = h % 10
            if v < 3:
                value = None
            elif v < 5:
                value = f"SKU-{100_001 + (h >> 8) % 50_000}"
            else:
                value = EVENT_VALUES[(h >> 16) % len(EVENT_VALUES)]
            return {
                "id": ids[r],
                "user_id": user_id(r),
                "container_id": cont[r],
                "time": times[r],
                "value": value,
            }

        return TableData(
            n_base=n,
            eager={"id": ids, "time": times, "container_id": cont},
            derive={"user_id": user_id},
            gen=gen,
        )

    def new_event(self, rr: random.Random, event_id: int, t: int, user_ids: list[int]) -> dict[str, Any]:
        return {
            "id": event_id,
            "user_id": rr.choice(user_ids) if user_ids else None,
            "container_id": 101 + min(39, int(rr.expovariate(0.25))),
            "time": t,
            "value": rr.choice((*EVENT_VALUES, None)),
        }

    # ---- sessions_archive
    def sessions(self) -> TableData:
        n, now = self.n_sessions, self.now
        ids = array("q", range(500_001, 500_001 + n))
        n_bulk = max(1, n // 2000)
        spacing = YEAR // n_bulk
        t0 = now - YEAR
        ra = self._randwords("sessions.end", n)
        rb = self._randwords("sessions.dur", n)
        ru = self._randwords("sessions.user", n)
        end = array(
            "q",
            [
                min(
                    now - 1,
                    (t0 + (i * YEAR) // n) // spacing * spacing + spacing // 2
                    if a % 100 < 15
                    else t0 + (i * YEAR) // n + a % 300,
                )
                for i, a in enumerate(ra)
            ],
        )
        start = array("q", [e - 30 - b % 5400 for e, b in zip(end, rb, strict=True)])
        uids, nu = self.user_ids, self.n_users
        user = array("q", [uids[x % nu] for x in ru])
        s_row = self.salt("sessions", "row")

        def gen(r: int) -> dict[str, Any]:
            rr = random.Random(mix64(s_row ^ r))
            city, country, _tz = rr.choice(PLACES)
            return {
                "id": ids[r],
                "user_id": user[r],
                "session_id": f"{rr.getrandbits(64):016x}",
                "start_time": start[r],
                "end_time": end[r],
                "country": country,
                "city": city,
                "device": rr.choice(DEVICES),
                "browser": rr.choice(BROWSERS),
                "os": rr.choice(OSES),
                "referrer": rr.choice(REFERRERS),
                "landing_url": "https://shop.example.com" + rr.choice(PATHS),
                "pages_count": rr.randrange(1, 40),
            }

        return TableData(
            n_base=n,
            eager={"id": ids, "user_id": user, "start_time": start, "end_time": end},
            gen=gen,
        )

    def new_session(self, rr: random.Random, sid: int, end: int, user_ids: list[int]) -> dict[str, Any]:
        city, country, _tz = rr.choice(PLACES)
        return {
            "id": sid,
            "user_id": rr.choice(user_ids) if user_ids else 0,
            "session_id": f"{rr.getrandbits(64):016x}",
            "start_time": end - 30 - rr.randrange(5400),
            "end_time": end,
            "country": country,
            "city": city,
            "device": rr.choice(DEVICES),
            "browser": rr.choice(BROWSERS),
            "os": rr.choice(OSES),
            "referrer": rr.choice(REFERRERS),
            "landing_url": "https://shop.example.com" + rr.choice(PATHS),
            "pages_count": rr.randrange(1, 40),
        }

    # ---- summary_actions
    def summary_row(self, rr: random.Random, day_ts: int, action_id: int) -> dict[str, Any]:
        imp = rr.randrange(0, 5000)
        clicks = rr.randrange(0, imp // 10 + 1)
        return {
            "date": fmt_day(day_ts),
            "action_id": action_id,
            "impressions": imp,
            "clicks": clicks,
            "closes": rr.randrange(0, imp // 20 + 1),
            "conversions": rr.randrange(0, clicks // 5 + 1),
        }

    def summary_actions(self, action_ids: list[int]) -> TableData:
        rr = rng(self.seed, "summary_actions")
        today = self.now // DAY * DAY
        rows = [
            self.summary_row(rr, today - d * DAY, a) for d in range(89, -1, -1) for a in action_ids
        ]
        return TableData(rows=rows)

    # ---- products / articles
    def products(self) -> TableData:
        n = self.n_products
        ids = array("q", range(1, n + 1))
        s_row = self.salt("products", "row")

        def internal_id(r: int) -> str:
            return f"SKU-{100_000 + ids[r]}"

        def gen(r: int) -> dict[str, Any]:
            rr = random.Random(mix64(s_row ^ r))
            return self._product(rr, ids[r], internal_id(r))

        return TableData(n_base=n, eager={"id": ids}, derive={"internal_id": internal_id}, gen=gen)

    @staticmethod
    def _product(rr: random.Random, pid: int, sku: str) -> dict[str, Any]:
        price = round(rr.uniform(2, 900), 2)
        brand = rr.choice(BRANDS)
        return {
            "id": pid,
            "internal_id": sku,
            "title": f"{brand} {_words(rr, 2)}".title(),
            "price": price,
            "sale_price": round(price * rr.uniform(0.5, 0.95), 2) if rr.random() < 0.3 else None,
            "is_in_stock": "yes" if rr.random() < 0.8 else "no",
            "guide_url": f"https://shop.example.com/p/{pid}",
            "image_big_url": f"https://cdn.example.com/img/{pid}.jpg",
            "sku": sku,
            "brand": brand,
            "manufacturer": rr.choice(BRANDS) + " Ltd",
            "size": rr.choice(SIZES),
            "color": rr.choice(COLOURS),
            "inventory": rr.randrange(0, 500),
            "custom_1": _words(rr, 1) if rr.random() < 0.5 else None,
            "custom_2": _words(rr, 2) if rr.random() < 0.2 else None,
            "custom_3": None,
        }

    def new_product(self, rr: random.Random, pid: int) -> dict[str, Any]:
        return self._product(rr, pid, f"SKU-{100_000 + pid}")

    def articles(self) -> TableData:
        n, now = self.n_articles, self.now
        ids = array("q", range(1, n + 1))
        s_row = self.salt("articles", "row")

        def internal_id(r: int) -> str:
            return f"ART-{ids[r]:06d}"

        def gen(r: int) -> dict[str, Any]:
            rr = random.Random(mix64(s_row ^ r))
            aid = ids[r]
            return {
                "id": aid,
                "internal_id": internal_id(r),
                "title": _words(rr, 4).capitalize(),
                "guide_url": f"https://blog.example.com/a/{aid}",
                "image_big_url": f"https://cdn.example.com/a/{aid}.jpg" if rr.random() < 0.7 else None,
                "author": f"{rr.choice(FIRST_NAMES)} {rr.choice(LAST_NAMES)}",
                "category": rr.choice(CATEGORIES),
                "published": fmt_date(now - rr.randrange(3 * YEAR)),
                "custom_1": _words(rr, 1) if rr.random() < 0.3 else None,
                "custom_2": None,
            }

        return TableData(n_base=n, eager={"id": ids}, derive={"internal_id": internal_id}, gen=gen)

    # ---- small tables
    def placeholders(self) -> TableData:
        rr = rng(self.seed, "placeholders")
        names = ("Header banner", "Sidebar", "Footer", "Hero", "Product grid", "Cart upsell",
                 "Checkout", "Popup", "Blog inline", "Search results", "Account menu", "404 page")
        rows = [
            {
                "id": 11 + i,
                "name": name,
                "html_id": ("#" if i % 2 else ".") + name.lower().replace(" ", "-"),
                "units_count_max": rr.randrange(1, 6),
            }
            for i, name in enumerate(names)
        ]
        return TableData(rows=rows)

    def actions(self) -> TableData:
        rr = rng(self.seed, "actions")
        rows = []
        for i in range(30):
            rows.append(
                {
                    "id": 1001 + i,
                    "name": f"Action {i + 1}: {_words(rr, 2)}",
                    "content_type": rr.choice(("html", "javascript", "recommendation", "popup")),
                    "content_param": _words(rr, 1),
                    "content_begin": "<div class=\"pz\">" if rr.random() < 0.5 else None,
                    "content_end": "</div>" if rr.random() < 0.5 else None,
                    "libs_app": rr.choice(("", "jquery", "slick")),
                    "placeholders": sorted(rr.sample(range(11, 23), rr.randrange(0, 4))),
                }
            )
        return TableData(rows=rows)

    def conditions(self) -> TableData:
        rr = rng(self.seed, "conditions")
        return TableData(rows=[{"id": 201 + i, "name": f"Condition {_words(rr, 2)}"} for i in range(25)])

    def user_lists(self) -> TableData:
        names = ("VIP", "Newsletter", "Cart abandoners", "VIP", "Winback", "Test list", "Loyal", "Leads")
        return TableData(rows=[{"id": 7 + i, "name": n} for i, n in enumerate(names)])

    def user_list_users(self) -> TableData:
        """A few members per list (ids 7..14), drawn from the generated users."""
        rr = rng(self.seed, "user_list_users")
        uids = self.user_ids
        rows = []
        for lid in range(7, 15):
            k = min(len(uids), rr.randrange(0, 6))
            for r in sorted(rr.sample(range(len(uids)), k)):
                rows.append({"user_list_id": lid, "user_id": uids[r]})
        return TableData(rows=rows)
