"""Deterministic Synerise workspace data, from a seed, at any scale (10 … 1,000,000 profiles).

Nothing is generated row by row at start-up except the recent-activity stream, which is produced
already sorted by time (cumulative gaps) into compact ``array('q')`` columns. Every profile,
catalog item and historical event is derived on demand from ``(seed, kind, index)`` with a cheap
integer hash, so start-up at a million profiles stays at a few seconds. Mutated and added rows
live in overlays (``Workspace.profiles_overlay`` …); deletions in sets.

Time is kept in **milliseconds** since the epoch by :class:`Clock`, which starts at wall time (or
``start_ms``) and ticks with it; ``advance`` shifts it.

Ties are generated on purpose (contract §8.7): besides natural collisions in the stream, a few
"bulk import" milliseconds in the last six hours hold 120–400 events each.
"""

from __future__ import annotations

import bisect
import calendar
import hashlib
import heapq
import random
import threading
import time
import uuid as _uuid
from array import array
from collections.abc import Iterator
from typing import Any

MASK64 = 0xFFFFFFFFFFFFFFFF
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
CLIENT_ID_BASE = 5_000_001
ITEM_ID_BASE = 70_000_001

FIRST = ["Anna", "Piotr", "Maria", "Jan", "Zofia", "Adam", "Ewa", "Tomasz", "Olga", "Marek", "Ida", "Lena",
         "Igor", "Nina", "Pawel", "Ola", "Kuba", "Ala", "Bartek", "Julia"]
LAST = ["Nowak", "Kowalski", "Wisniewska", "Wojcik", "Kaminski", "Lewandowska", "Zielinski", "Szymanska",
        "Wozniak", "Dabrowski", "Kozlowska", "Jankowski", "Mazur", "Krawczyk", "Piotrowska"]
CITIES = [("Krakow", "Malopolskie", "PL"), ("Warszawa", "Mazowieckie", "PL"), ("Gdansk", "Pomorskie", "PL"),
          ("Berlin", "Berlin", "DE"), ("Praha", "Praha", "CZ"), ("Wien", "Wien", "AT"), ("Lyon", "Rhone", "FR")]
SEXES = ["FEMALE", "MALE", "NOT_SPECIFIED", "OTHER"]
ACTIONS = [
    ("page.visit", "Page visit", "Visited a page", "eye"),
    ("product.view", "Product view", "Viewed a product", "box"),
    ("product.addToCart", "Add to cart", "Added a product to the cart", "cart"),
    ("transaction.charge", "Transaction", "Paid for an order", "card"),
    ("client.login", "Login", "Logged in", "key"),
    ("form.submit", "Form", "Submitted a form", "form"),
    ("client.applicationStarted", "App start", "Started the mobile app", "phone"),
]
TAG_NAMES = ["vip", "newsletter", "churn-risk", "b2b", "mobile", "returning", "promo-hunter", "loyal",
             "new", "wholesale", "gift-buyer", "staff"]
COLORS = ["#e53935", "#8e24aa", "#3949ab", "#039be5", "#00897b", "#7cb342", "#fdd835", "#fb8c00"]
SYSTEMS = ["Windows", "macOS", "Android", "iOS", "Linux"]
BROWSERS = ["Chrome", "Firefox", "Safari", "Edge", "Opera"]
CATEGORIES = ["shoes", "shirts", "books", "garden", "toys", "kitchen", "sport"]
#: custom profile attributes: open-ended, account-defined (numbers sometimes sent as strings)
CUSTOM_ATTRS = ["loyaltyTier", "points", "lastOrderValue", "newsletterFrequency", "preferredStore",
                "signupSource", "favouriteCategories", "marketingScore"]


def derive_seed(seed: int, *names: object) -> int:
    text = ":".join([str(seed), *map(str, names)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def mix64(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-spread hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


class Bits:
    """The subset of ``random.Random`` the generators use, built only on the C ``random()`` of a
    Mersenne Twister seeded from one 64-bit hash (a few times faster than ``choice``/``randint``)."""

    __slots__ = ("_r",)

    def __init__(self, h: int) -> None:
        self._r = random.Random(h).random

    def random(self) -> float:
        return self._r()

    def randrange(self, a: int, b: int | None = None) -> int:
        lo, hi = (0, a) if b is None else (a, b)
        return lo + int(self._r() * (hi - lo))

    def randint(self, a: int, b: int) -> int:
        return a + int(self._r() * (b - a + 1))

    def choice(self, seq: Any) -> Any:
        return seq[int(self._r() * len(seq))]

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self._r()

    def sample(self, seq: Any, k: int) -> list[Any]:
        pool = list(seq)
        return [pool.pop(int(self._r() * len(pool))) for _ in range(k)]


def uuid_from(a: int, b: int) -> str:
    a &= MASK64
    b &= MASK64
    hi = mix64(a ^ mix64(b))
    lo = mix64(b ^ mix64(a ^ 0x5DEECE66D))
    return str(_uuid.UUID(int=(hi << 64) | lo, version=4))


def iso_ms(ms: int) -> str:
    """ISO 8601 UTC with a ``Z`` and second precision (``2019-03-19T14:05:39Z``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


def iso_ms_frac(ms: int) -> str:
    """ISO 8601 UTC with milliseconds (catalog and analytics timestamps)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def day(ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ms // 1000))


class Clock:
    """The server clock in ms: starts at ``start_ms`` (default: wall time) and ticks with wall time."""

    def __init__(self, start_ms: int | None = None) -> None:
        self.start_ms = int(time.time() * 1000) if start_ms is None else int(start_ms)
        self._t0 = time.monotonic()
        self._offset = 0

    def now_ms(self) -> int:
        return self.start_ms + int((time.monotonic() - self._t0) * 1000) + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += int(seconds * 1000)


class Workspace:
    """All data of one emulated workspace. Thread-safe through ``lock`` (held by every reader of
    mutable state and by every mutation)."""

    def __init__(self, seed: int, scale: int, start_ms: int | None = None) -> None:
        if not 1 <= scale <= 1_000_000:
            raise ValueError("scale must be between 1 and 1,000,000")
        self.seed = seed
        self.scale = scale
        self.clock = Clock(start_ms)
        self.lock = threading.RLock()
        self.version = 0  # bumped by every mutation; caches key on it
        self._cache: dict[Any, Any] = {}
        self._salt = derive_seed(seed, "salt")
        self.workspace_id = 1000 + derive_seed(seed, "bp") % 9000
        # profiles: generated index i has clientId CLIENT_ID_BASE + 3 i
        self.n_generated = scale
        self.profiles_overlay: dict[int, dict[str, Any]] = {}
        self.revs: dict[int, int] = {}  # modifications per profile (analytics results move with them)
        self._pcache: dict[int, dict[str, Any]] = {}
        self.deleted: set[int] = set()
        self.added_ids: list[int] = []
        self.next_client_id = CLIENT_ID_BASE + 3 * scale + 7
        self._mutations = 0
        # tags, catalogs, segmentations, analytics: small tables, generated now
        self.tags = [{"id": 300 + i, "name": n, "color": COLORS[i % len(COLORS)]} for i, n in enumerate(TAG_NAMES)]
        self._make_asset_tags()
        self._make_catalogs()
        self._make_segmentations()
        self._make_analytics()
        self._make_events()

    # ------------------------------------------------------------------ helpers

    def _h(self, *parts: int) -> int:
        x = self._salt
        for p in parts:
            x = mix64(x ^ (p & MASK64))
        return x

    def rng(self, *names: object) -> random.Random:
        return random.Random(derive_seed(self.seed, *names))

    def bump(self) -> None:
        self.version += 1
        self._cache.clear()

    def cached(self, key: Any, build: Any) -> Any:
        hit = self._cache.get(key)
        if hit is None:
            hit = build()
            self._cache[key] = hit
        return hit

    # ------------------------------------------------------------------ profiles

    def is_generated(self, client_id: int) -> bool:
        off = client_id - CLIENT_ID_BASE
        return off >= 0 and off % 3 == 0 and off // 3 < self.n_generated

    def exists(self, client_id: int) -> bool:
        if client_id in self.deleted:
            return False
        return client_id in self.profiles_overlay or self.is_generated(client_id)

    def live_ids(self) -> array:
        """Every live clientId, ascending (the default order of ``/v4/clients``)."""

        def build() -> array:
            out = array("q")
            deleted = self.deleted
            for i in range(self.n_generated):
                cid = CLIENT_ID_BASE + 3 * i
                if cid not in deleted:
                    out.append(cid)
            out.extend(c for c in self.added_ids if c not in deleted)
            return out

        return self.cached("live", build)

    def profile(self, client_id: int) -> dict[str, Any]:
        """The v4 profile (``ProfileV4``) of a live or generated clientId."""
        hit = self.profiles_overlay.get(client_id)
        if hit is not None:
            return hit
        return self._generated_profile(client_id)

    def _generated_profile(self, client_id: int) -> dict[str, Any]:
        """A generated profile (cached: it never changes; changed profiles live in the overlay,
        and every mutation copies before it edits)."""
        hit = self._pcache.get(client_id)
        if hit is None:
            if len(self._pcache) >= 200_000:
                self._pcache.clear()
            hit = self._pcache[client_id] = self._make_profile(client_id)
        return hit

    def _make_profile(self, client_id: int) -> dict[str, Any]:
        i = (client_id - CLIENT_ID_BASE) // 3
        h = self._h(1, i)
        r = Bits(h)
        anonymous = self._anonymous(client_id)
        first, last = r.choice(FIRST), r.choice(LAST)
        city, province, country = r.choice(CITIES)
        attrs: dict[str, Any] = {}
        for name in CUSTOM_ATTRS:
            if r.random() < 0.55:
                attrs[name] = self._attr_value(name, r)
        tags = sorted(r.sample(TAG_NAMES, r.randint(0, 3)))
        last_activity = self._last_activity(client_id)
        return {
            "clientId": client_id,
            "email": None if anonymous else f"{first}.{last}.{i}@example.com".lower(),
            "phone": None if anonymous or r.random() < 0.3 else f"+48{r.randrange(500000000, 899999999)}",
            "customId": None if anonymous else f"cust-{i:07d}",
            "uuid": uuid_from(self._salt ^ 11, i),
            "firstName": None if anonymous else first,
            "lastName": None if anonymous else last,
            "displayName": None if anonymous else f"{first} {last}",
            "company": None if r.random() < 0.8 else f"{last} sp. z o.o.",
            "address": None if anonymous else f"ul. Dluga {r.randint(1, 200)}",
            "city": None if anonymous else city,
            "province": None if anonymous else province,
            "zipCode": None if anonymous else f"{r.randint(10, 99)}-{r.randint(100, 999)}",
            "countryCode": None if anonymous else country,
            "birthDate": None if anonymous or r.random() < 0.4 else
            f"{r.randint(1950, 2006)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
            "sex": r.choice(SEXES),
            "avatarUrl": None if r.random() < 0.7 else f"https://cdn.example.com/a/{i}.png",
            "anonymous": anonymous,
            "agreements": {k: r.random() < 0.5 for k in ("email", "sms", "push", "webPush", "bluetooth", "rfid", "wifi")},
            "attributes": attrs,
            "tags": tags,
            "previousClients": [],
            "lastActivityDate": iso_ms(last_activity),
        }

    @staticmethod
    def _attr_value(name: str, r: Any) -> Any:
        if name == "loyaltyTier":
            return r.choice(["bronze", "silver", "gold", "platinum"])
        if name == "points":
            return str(r.randint(0, 20000))  # a number sent as a string
        if name == "lastOrderValue":
            return round(r.uniform(5, 900), 2)
        if name == "newsletterFrequency":
            return r.choice(["daily", "weekly", "monthly"])
        if name == "preferredStore":
            return r.randint(1, 60)
        if name == "signupSource":
            return r.choice(["web", "app", "pos", "import"])
        if name == "favouriteCategories":
            return sorted(r.sample(CATEGORIES, r.randint(1, 3)))
        return {"value": r.randint(0, 100), "model": "v2"}

    def new_client_id(self) -> int:
        cid = self.next_client_id
        self.next_client_id += 3
        return cid

    def _anonymous(self, client_id: int) -> bool:
        """Whether a generated profile is anonymous (10 %): a hash, so segment rules and filters
        can test it without generating the profile."""
        return self._h(2, client_id) % 10 == 0

    def _last_activity(self, client_id: int) -> int:
        return self.clock.start_ms - self._h(3, client_id) % (180 * DAY_MS)

    def _sort_key(self, client_id: int, field: str) -> Any:
        """A profile's value of a sort field; ``lastActivityDate`` and ``anonymous`` of unchanged
        profiles come from hashes (cheap at a million profiles), others from the profile."""
        if field == "lastActivityDate":  # compared as epoch ms (same order as the ISO text)
            if client_id not in self.profiles_overlay and self.is_generated(client_id):
                return self._last_activity(client_id)
            text = self.profile(client_id).get(field)
            return None if text is None else calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")) * 1000
        if client_id not in self.profiles_overlay and self.is_generated(client_id):
            if field == "anonymous":
                return self._anonymous(client_id)
        return self.profile(client_id).get(field)

    def sorted_ids(self, sort_by: str, descending: bool) -> list[int]:
        """Live ids ordered by a profile field (nulls last), ties by clientId; cached per version."""

        def build() -> list[int]:
            ids = self.live_ids()
            keyed = []
            for cid in ids:
                v = self._sort_key(cid, sort_by)
                keyed.append((v is None, (v or "") if isinstance(v, str) or v is None else v, cid))
            keyed.sort(reverse=False)
            out = [k[2] for k in keyed]
            if descending:
                # nulls stay last; non-null values descend, ties keep ascending clientId
                non_null = [k for k in keyed if not k[0]]
                nulls = [k[2] for k in keyed if k[0]]
                non_null.sort(key=lambda k: (k[1], -k[2]), reverse=True)
                out = [k[2] for k in non_null] + nulls
            return out

        return self.cached(("sorted", sort_by, descending), build)

    def filtered_ids(self, filters: tuple[tuple[str, Any], ...]) -> list[int]:
        """Live ids matching every ``(field, value)`` exactly; one scan per distinct filter, cached."""

        def build() -> list[int]:
            out = []
            for cid in self.live_ids():
                p = self.profile(cid)
                if all(p.get(f) == v for f, v in filters):
                    out.append(cid)
            return out

        return self.cached(("filter", filters), build)

    def find_profile(self, kind: str, value: str) -> int | None:
        """clientId by identifier (``id``/``uuid``/``email``/``custom_identify``/``customId``)."""
        if kind == "id":
            try:
                cid = int(value)
            except ValueError:
                return None
            return cid if self.exists(cid) else None
        field = {"uuid": "uuid", "email": "email", "custom_identify": "customId", "customId": "customId",
                 "phone": "phone"}.get(kind)
        if field is None:
            return None

        def build() -> dict[str, int]:
            idx: dict[str, int] = {}
            for cid in self.live_ids():
                v = self.profile(cid).get(field)
                if v is not None:
                    idx.setdefault(str(v), cid)
            return idx

        return self.cached(("ident", field), build).get(value)

    # ------------------------------------------------------------------ CRM shape

    def crm_profile(self, client_id: int) -> dict[str, Any]:
        p = self.profile(client_id)
        i = client_id % 1_000_003
        created = self.clock.start_ms - (self._h(21, i) % (700 * DAY_MS)) - 180 * DAY_MS
        last = p.get("lastActivityDate")
        return {
            "id": client_id,
            "uuid": p.get("uuid"),
            "anonymous_type": "UUID" if p.get("anonymous") else None,
            "email": p.get("email"),
            "firstname": p.get("firstName"),
            "lastName": p.get("lastName"),
            "custom_identify": p.get("customId"),
            "company": p.get("company"),
            "phone": p.get("phone"),
            "address": p.get("address"),
            "birthdate": p.get("birthDate"),
            "city": p.get("city"),
            "zipCode": p.get("zipCode"),
            "province": p.get("province"),
            "country_id": None,
            "countryCode": p.get("countryCode"),
            "avatarUrl": p.get("avatarUrl"),
            "sex": {"FEMALE": "FEMALE", "MALE": "MALE"}.get(p.get("sex") or "", "UNDEFINED"),
            "last_activity_date": last[:10] if last else None,
            "created": day(created),
            "updated": last[:10] if last else day(created),
            "deletedAt": None,
            "tags": list(p.get("tags") or []),
        }

    # ------------------------------------------------------------------ asset tags (tags-collector)

    def _make_asset_tags(self) -> None:
        r = self.rng("asset-tags")
        base = self.clock.start_ms
        types = [{"createdAt": iso_ms_frac(base - (500 + k) * DAY_MS), "hash": uuid_from(self._salt ^ 131, k),
                  "name": name} for k, name in enumerate(["promotion", "voucher"])]
        self.tag_directories = [
            {"createdAt": iso_ms_frac(base - (400 + k) * DAY_MS), "hash": uuid_from(self._salt ^ 132, k),
             "name": name, "params": {}, "type": types[k % len(types)]}
            for k, name in enumerate(["Summer", "Black Friday", "Loyalty"])
        ]
        self.asset_tags = []
        for k in range(27):
            directory = self.tag_directories[k % len(self.tag_directories)]
            self.asset_tags.append({
                "authorId": 12, "color": COLORS[k % len(COLORS)],
                "createdAt": iso_ms_frac(base - r.randrange(1, 300) * DAY_MS),
                "description": f"Asset tag {k}", "directory": {k2: v for k2, v in directory.items() if k2 != "params"},
                "hash": uuid_from(self._salt ^ 133, k), "icon": r.choice(["star", "gift", "percent"]),
                "priority": r.randint(0, 10), "value": f"{directory['name'].lower().replace(' ', '-')}-{k}",
            })

    # ------------------------------------------------------------------ catalogs

    def _make_catalogs(self) -> None:
        r = self.rng("catalogs")
        n = max(3, min(10, 3 + self.scale // 20000))
        per = max(5, self.scale // 4)
        self.catalogs: list[dict[str, Any]] = []
        self.catalog_sizes: dict[int, int] = {}
        base = self.clock.start_ms
        for k in range(n):
            cid = 40 + k * 7
            created = base - r.randrange(400, 900) * DAY_MS
            self.catalogs.append({
                "id": cid,
                "name": ["products", "stores", "promotions", "articles", "brands", "colors", "sizes", "warehouses",
                         "recipes", "coupons"][k],
                "businessProfileId": self.workspace_id,
                "author": r.choice(["anna@example.com", "piotr@example.com", "api"]),
                "lastModified": iso_ms_frac(base - r.randrange(1, 300) * DAY_MS - r.randrange(DAY_MS)),
                "creationDate": iso_ms_frac(created),
            })
            self.catalog_sizes[cid] = per if k == 0 else max(3, per // (k + 2))
        self.items_overlay: dict[tuple[int, int], dict[str, Any]] = {}  # (catalog, index) -> item
        self.items_added: dict[int, list[int]] = {c["id"]: [] for c in self.catalogs}
        self.items_deleted: set[tuple[int, int]] = set()

    def catalog(self, catalog_id: int) -> dict[str, Any] | None:
        for c in self.catalogs:
            if c["id"] == catalog_id:
                return c
        return None

    def item_indexes(self, catalog_id: int) -> list[int]:
        """Item indexes of a catalog in storage order (generated, then added), deletions removed."""

        def build() -> list[int]:
            n = self.catalog_sizes[catalog_id]
            out = [i for i in range(n) if (catalog_id, i) not in self.items_deleted]
            out += [i for i in self.items_added[catalog_id] if (catalog_id, i) not in self.items_deleted]
            return out

        return self.cached(("items", catalog_id), build)

    def item(self, catalog_id: int, index: int) -> dict[str, Any]:
        """A catalog item as ``GET /catalogs/bags/{id}/items`` renders it: ``value`` is a string."""
        hit = self.items_overlay.get((catalog_id, index))
        if hit is not None:
            return hit
        h = self._h(31, catalog_id, index)
        r = Bits(h)
        value = {
            "title": f"{r.choice(CATEGORIES).title()} item {index}",
            "price": f"{r.uniform(1, 500):.2f}",  # numbers as strings inside value, as users upload them
            "category": r.choice(CATEGORIES),
            "inStock": r.random() < 0.8,
            "stock": r.randint(0, 400),
        }
        if r.random() < 0.3:
            value["colors"] = sorted(r.sample(["red", "green", "blue", "black"], 2))
        created = self.clock.start_ms - r.randrange(2, 300) * DAY_MS
        return self._render_item(catalog_id, index, value, created)

    def _render_item(self, catalog_id: int, index: int, value: dict[str, Any], created_ms: int) -> dict[str, Any]:
        import orjson

        return {
            "bag": self.catalog(catalog_id),
            "itemKey": f"{self.catalog(catalog_id)['name'][:3]}-{index:07d}",
            "id": ITEM_ID_BASE + catalog_id * 1_000_000 + index,
            "value": orjson.dumps(value).decode(),
            "creationDate": iso_ms_frac(created_ms),
        }

    # ------------------------------------------------------------------ segmentations

    def _make_segmentations(self) -> None:
        self.segmentations = [
            {"uuid": uuid_from(self._salt ^ 41, k), "name": name, "rule": k}
            for k, name in enumerate(["All profiles", "Recognized buyers", "Newsletter readers"])
        ]
        self.seg_added: dict[str, set[int]] = {s["uuid"]: set() for s in self.segmentations}
        self.seg_removed: dict[str, set[int]] = {s["uuid"]: set() for s in self.segmentations}

    def segmentation(self, seg_uuid: str) -> dict[str, Any] | None:
        for s in self.segmentations:
            if s["uuid"] == seg_uuid:
                return s
        return None

    def members(self, seg_uuid: str) -> list[int]:
        """Current (live) members of a segmentation, ascending clientId."""
        seg = self.segmentation(seg_uuid)
        assert seg is not None

        def build() -> list[int]:
            rule = seg["rule"]
            added, removed = self.seg_added[seg_uuid], self.seg_removed[seg_uuid]
            out = []
            for cid in self.live_ids():
                if rule == 0:
                    member = True
                elif rule == 1:
                    member = not self._sort_key(cid, "anonymous") and mix64(cid ^ self._salt) % 3 == 0
                else:
                    member = mix64(cid ^ self._salt ^ 5) % 5 == 0
                if (member or cid in added) and cid not in removed:
                    out.append(cid)
            return out

        return self.cached(("members", seg_uuid), build)

    # ------------------------------------------------------------------ analytics

    def _make_analytics(self) -> None:
        r = self.rng("analytics")
        base = self.clock.start_ms
        self.expressions = []
        for k in range(25):
            created = base - r.randrange(30, 500) * DAY_MS
            modified = created + r.randrange(0, 29) * DAY_MS
            name = f"{r.choice(['Avg', 'Sum', 'Ratio', 'Score'])} {r.choice(CATEGORIES)} {k}"
            self.expressions.append({
                "id": uuid_from(self._salt ^ 51, k),
                "payload": {
                    "analysis": {
                        "description": f"Expression {k}",
                        "name": name,
                        "type": r.choice(["CLIENT", "EVENT"]),
                        "expression": {"type": "FUNCTION", "value": "+", "args": [k, k + 1]},
                        "action": {"name": ACTIONS[k % len(ACTIONS)][0], "id": 900 + k % len(ACTIONS)},
                        "actionId": 900 + k % len(ACTIONS),
                    },
                    "createdBy": {"atTime": iso_ms_frac(created), "id": 12},
                    "isDynamicAnalytic": k % 4 == 0,
                    "isPredefinedAnalytic": k % 7 == 0,
                    "isVisibleForClientProfile": k % 2 == 0,
                    "modifiedBy": {"atTime": iso_ms_frac(modified), "id": 12},
                    "variables": [],
                    "analyticVersion": uuid_from(self._salt ^ 52, k),
                },
            })
        self.aggregates = []
        for k in range(23):
            created = base - r.randrange(30, 500) * DAY_MS
            modified = created + r.randrange(0, 29) * DAY_MS
            agg_uuid = uuid_from(self._salt ^ 61, k)
            self.aggregates.append({
                "createdBy": {"atTime": iso_ms_frac(created), "id": 12},
                "modifiedBy": {"atTime": iso_ms_frac(modified), "id": 14},
                "aggregate": {
                    "name": f"agg_{k}",
                    "description": f"Aggregate {k}",
                    "id": uuid_from(self._salt ^ 62, k),
                    "uuid": agg_uuid,
                    "actionId": 900 + k % len(ACTIONS),
                    "action": {"name": ACTIONS[k % len(ACTIONS)][0], "id": 900 + k % len(ACTIONS)},
                    "attribute": {"type": "PARAM", "param": "value"},
                    "type": ["AVG", "SUM", "COUNT", "MAX", "MIN"][k % 5],
                    "size": 1,
                    "unique": k % 3 == 0,
                    "dateFilter": {"type": "RELATIVE", "from": None, "to": None},
                    "expressions": [],
                    "oldId": None,
                },
                "name": f"Aggregate {k}",
                "description": f"Aggregate {k}",
                "deleted": False,
                "isVisibleForClientProfile": k % 2 == 1,
                "variables": [],
                "isDynamicAnalytic": k % 5 == 0,
                "isPredefinedAnalytic": False,
                "analyticVersion": uuid_from(self._salt ^ 63, k),
                "_created_ms": created,
            })

    def expression(self, exp_uuid: str) -> dict[str, Any] | None:
        return next((e for e in self.expressions if e["id"] == exp_uuid), None)

    def aggregate(self, agg_uuid: str) -> dict[str, Any] | None:
        return next((a for a in self.aggregates if a["aggregate"]["uuid"] == agg_uuid), None)

    def analytic_result(self, analytic_uuid: str, client_id: int, rev: int | None = None) -> str:
        """A profile's value of an expression or aggregate: a number as a string (as documented).
        It changes whenever the profile is modified (``rev``)."""
        rev = self._mutations_of(client_id) if rev is None else rev
        h = self._h(71, int(analytic_uuid.replace("-", "")[:15], 16), client_id, rev)
        if h % 11 == 0:
            return "0"
        return f"{(h % 1_000_000) / 100:.2f}"

    def _mutations_of(self, client_id: int) -> int:
        return self.revs.get(client_id, 0)

    # ------------------------------------------------------------------ events

    def _make_events(self) -> None:
        """The recent-activity stream: sorted by time at construction.

        ``max(20, scale)`` events over the 24 hours before start (Poisson arrivals, so natural
        ties), merged with ``max(2, scale // 1000)`` bulk-import milliseconds inside the last 6
        hours holding 120–400 events each. Older history is per profile (:meth:`history`)."""
        r = self.rng("events")
        start = self.clock.start_ms
        n = max(20, self.scale)
        span = DAY_MS - 60_000
        gap = span / n
        t = float(start - DAY_MS)

        def stream() -> Iterator[tuple[int, int]]:
            nonlocal t
            for _ in range(n):
                t += r.expovariate(1.0 / gap)
                yield (min(int(t), start - 1), r.randrange(self.n_generated))

        rb = self.rng("bursts")
        bursts = []
        for _ in range(max(2, self.scale // 1000)):
            at = start - rb.randrange(10 * 60_000, 5 * HOUR_MS)
            size = rb.randint(120, 400)
            bursts += [(at, rb.randrange(self.n_generated)) for _ in range(size)]
        bursts.sort()
        self.ev_time = array("q")
        self.ev_client = array("q")
        for tm, c in heapq.merge(stream(), bursts):
            self.ev_time.append(tm)
            self.ev_client.append(CLIENT_ID_BASE + 3 * c)
        # added events (mutations): sorted keys (time, seq) + rows
        self.added_keys: list[tuple[int, int]] = []
        self.added_rows: dict[int, dict[str, Any]] = {}
        self.added_by_client: dict[int, list[int]] = {}
        self._added_seq = 0
        self._by_client: dict[int, list[int]] | None = None

    def _slot_event(self, slot: int) -> dict[str, Any]:
        return self._event(self.ev_client[slot], self.ev_time[slot], self._h(81, slot), slot)

    def _event(self, client_id: int, t: int, h: int, ident: int) -> dict[str, Any]:
        name, label, desc, icon = ACTIONS[h % len(ACTIONS)]
        key = (h >> 8) ^ ident
        return {
            "action": {"name": name, "label": label, "description": desc},
            "description": desc,
            "eventUUID": uuid_from(h, key),
            "unique": (h >> 20) % 2_000_000_000,
            "icon": icon,
            "time": t,
            "label": label,
            "client": {"id": client_id},
            "userAgent": {"system": SYSTEMS[(h >> 4) % len(SYSTEMS)], "browser": BROWSERS[(h >> 12) % len(BROWSERS)]},
            "modifiedBy": None,
            "_h": h,
        }

    def render_event(self, ev: dict[str, Any], raw: bool = False) -> dict[str, Any]:
        out = {k: v for k, v in ev.items() if not k.startswith("_")}
        cid = ev["client"]["id"]
        p = self.profile(cid) if self.exists(cid) or self.is_generated(cid) else {}
        out["client"] = {
            "uuid": p.get("uuid"),
            "id": cid,
            "firstname": p.get("firstName"),
            "lastname": p.get("lastName"),
            "email": p.get("email"),
            "avatarUrl": p.get("avatarUrl"),
        }
        if raw:
            h = ev["_h"]
            out["params"] = {
                "eventCreateTime": ev["time"] / 1000.0,  # float seconds, as documented
                "ip": f"10.{(h >> 3) % 250}.{(h >> 11) % 250}.{(h >> 19) % 250}",
                "url": f"https://shop.example.com/p/{(h >> 7) % 5000}",
            }
        return out

    def history(self, client_id: int) -> list[dict[str, Any]]:
        """A generated profile's events older than the recent stream (0–5 over 180 days)."""
        if not self.is_generated(client_id):
            return []
        i = (client_id - CLIENT_ID_BASE) // 3
        h = self._h(91, i)
        k = h % 6
        out = []
        for j in range(k):
            hj = self._h(92, i, j)
            t = self.clock.start_ms - DAY_MS - 1 - hj % (180 * DAY_MS)
            out.append(self._event(client_id, t, hj, (1 << 60) | (i << 4) | j))
        return out

    def recent_slots_of(self, client_id: int) -> list[int]:
        """Slots of the recent stream that belong to a profile (index built on first use; the
        stream never changes, so it survives mutations)."""
        if self._by_client is None:
            idx: dict[int, list[int]] = {}
            for slot, c in enumerate(self.ev_client):
                idx.setdefault(c, []).append(slot)
            self._by_client = idx
        return self._by_client.get(client_id, [])

    def profile_events(self, client_id: int) -> list[dict[str, Any]]:
        """Every event of one profile (history + recent stream + added), ascending (time, eventUUID)."""
        out = self.history(client_id)
        out += [self._slot_event(s) for s in self.recent_slots_of(client_id)]
        out += [self.added_rows[seq] for seq in self.added_by_client.get(client_id, ())]
        out.sort(key=lambda e: (e["time"], e["eventUUID"]))
        return out

    def window(self, lo: int, hi: int, limit: int) -> tuple[int, list[dict[str, Any]]]:
        """Events with ``lo <= time <= hi``: (how many there are, the newest ``limit`` of them,
        newest first; ties inside one millisecond in a fixed but arbitrary order)."""
        a = bisect.bisect_left(self.ev_time, lo)
        b = bisect.bisect_right(self.ev_time, hi)
        ka = bisect.bisect_left(self.added_keys, (lo, -1))
        kb = bisect.bisect_right(self.added_keys, (hi, 1 << 62))
        total = (b - a) + (kb - ka)
        picked: list[dict[str, Any]] = []
        # the newest `limit` from each source, then the newest `limit` of both
        picked += [self._slot_event(s) for s in range(max(a, b - limit), b)]
        picked += [self.added_rows[seq] for _, seq in self.added_keys[max(ka, kb - limit):kb]]
        picked.sort(key=lambda e: (-e["time"], e["_h"] & 0xFFFF, e["eventUUID"]))
        return total, picked[:limit]

    def add_event(self, client_id: int, t: int, action: str | None = None) -> dict[str, Any]:
        self._added_seq += 1
        seq = self._added_seq
        h = self._h(101, seq, self._mutations)
        ev = self._event(client_id, t, h, (2 << 60) | seq)
        if action:
            for a in ACTIONS:
                if a[0] == action:
                    ev["action"] = {"name": a[0], "label": a[1], "description": a[2]}
        bisect.insort(self.added_keys, (t, seq))
        self.added_rows[seq] = ev
        self.added_by_client.setdefault(client_id, []).append(seq)
        return ev

    def all_events(self) -> Iterator[dict[str, Any]]:
        """Every event of the workspace (history of live and merged-away profiles, stream, added)."""
        for i in range(self.n_generated):
            yield from self.history(CLIENT_ID_BASE + 3 * i)
        for slot in range(len(self.ev_time)):
            yield self._slot_event(slot)
        yield from self.added_rows.values()
