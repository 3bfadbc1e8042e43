"""Control-plane operations (``POST /_emulator/mutate``) and canonical exports
(``GET /_emulator/tables/{table}``) of the Synerise emulator. See README.md for the list."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from emulators.common.backend import MutationError

from .data import CATEGORIES, TAG_NAMES, iso_ms, iso_ms_frac

if TYPE_CHECKING:
    from .backend import SyneriseBackend

MAX_COUNT = 100_000


def _count(op: dict[str, Any], default: int | None = None) -> int:
    value = op.get("count", default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNT:
        raise MutationError(f"count must be an integer between 0 and {MAX_COUNT}")
    return value


def _pick(rng: random.Random, pool: Any, count: int) -> list[int]:
    if count > len(pool):
        raise MutationError(f"asked for {count} profiles, only {len(pool)} exist")
    return sorted(rng.sample(range(len(pool)), count))


def _modify(b: SyneriseBackend, cid: int, rng: random.Random, last_activity_ms: int) -> None:
    ws = b.ws
    p = dict(ws.profile(cid))
    attrs = dict(p.get("attributes") or {})
    attrs["points"] = str(int(attrs.get("points") or 0) + 1 + rng.randrange(100))
    attrs["loyaltyTier"] = rng.choice(["bronze", "silver", "gold", "platinum"])
    if rng.random() < 0.5:
        attrs[f"campaign_{rng.randrange(5)}"] = rng.choice(["open", "click", "convert"])
    p["attributes"] = attrs
    p["city"] = rng.choice(["Poznan", "Lodz", "Wroclaw", p.get("city")])
    p["tags"] = sorted(set(p.get("tags") or []) | {rng.choice(TAG_NAMES)})
    p["lastActivityDate"] = iso_ms(last_activity_ms)
    ws.profiles_overlay[cid] = p
    ws.revs[cid] = ws.revs.get(cid, 0) + 1


def modify_profile(b: SyneriseBackend, cid: int, *, strictly_latest: bool = False) -> None:
    """Modify one profile now (hostile mode, during a walk). ``strictly_latest``: its
    ``lastActivityDate`` becomes later than every other profile's (a second past the latest when
    the clock has not moved a second since), so it is the newest version and sorts last."""
    ws = b.ws
    with ws.lock:
        ws._mutations += 1
        now = ws.clock.now_ms()
        at = now // 1000 * 1000
        if strictly_latest:
            latest = max((ws._sort_key(c, "lastActivityDate") or 0 for c in ws.profiles_overlay), default=0)
            at = max(at, latest + 1000)
        _modify(b, cid, random.Random(ws._h(556, ws._mutations)), at)
        ws.bump()


def apply(b: SyneriseBackend, op: dict[str, Any]) -> dict[str, Any]:
    ws = b.ws
    name = op.get("op")
    ws._mutations += 1
    rng = random.Random(ws._h(555, ws._mutations))
    now = ws.clock.now_ms()
    if name == "advance_clock":
        seconds = op.get("seconds")
        if not isinstance(seconds, (int, float)) or seconds < 0:
            raise MutationError("seconds must be a non-negative number")
        ws.clock.advance(seconds)
        return {"now_ms": ws.clock.now_ms()}
    if name == "expire_tokens":
        b._revoked_before_ms = now + 1
        return {"revoked_before_ms": b._revoked_before_ms}
    if name == "add_profiles":
        n = _count(op, 10)
        ids = []
        for _ in range(n):
            cid = ws.new_client_id()
            p = dict(ws._make_profile(cid))
            p["lastActivityDate"] = iso_ms(now)
            ws.profiles_overlay[cid] = p
            ws.added_ids.append(cid)
            ids.append(cid)
        ws.bump()
        return {"client_ids": ids}
    if name == "modify_profiles":
        ids = op.get("client_ids")
        if ids is None:
            live = ws.live_ids()
            ids = [live[i] for i in _pick(rng, live, _count(op, 10))]
        for cid in ids:
            if not ws.exists(cid):
                raise MutationError(f"no profile {cid}")
            _modify(b, cid, rng, now)
        ws.bump()
        return {"client_ids": list(ids)}
    if name == "merge_profiles":
        n = _count(op, 2)
        live = ws.live_ids()
        picked = [live[i] for i in _pick(rng, live, 2 * n)]
        rng.shuffle(picked)
        pairs = []
        for k in range(n):
            target, source = picked[2 * k], picked[2 * k + 1]
            p = dict(ws.profile(target))
            p["previousClients"] = sorted({*p.get("previousClients", []), source,
                                           *ws.profile(source).get("previousClients", [])})
            p["lastActivityDate"] = iso_ms(now)
            ws.profiles_overlay[target] = p
            ws.revs[target] = ws.revs.get(target, 0) + 1
            ws.deleted.add(source)
            pairs.append({"into": target, "merged": source})
        ws.bump()
        return {"merges": pairs}
    if name in ("delete_profiles", "delete_profiles_by_id"):
        live = ws.live_ids()
        if name == "delete_profiles_by_id":
            ids = [int(c) for c in op.get("client_ids") or []]
            if not all(ws.exists(c) for c in ids):
                raise MutationError("every client_id must be a live profile")
        else:
            ids = [live[i] for i in _pick(rng, live, _count(op, 1))]
        ws.deleted.update(ids)
        ws.bump()
        return {"client_ids": ids}
    if name == "add_events":
        n = _count(op, 10)
        ago = int(op.get("ago_ms", 0))
        spread = int(op.get("spread_ms", 0))
        if ago < 0 or spread < 0:
            raise MutationError("ago_ms and spread_ms must not be negative")
        targets = op.get("client_ids")
        live = ws.live_ids()
        if targets is not None and not all(ws.exists(int(c)) for c in targets):
            raise MutationError("every client_id must be a live profile")
        events = []
        for k in range(n):
            t = now - ago - (spread * k // max(1, n - 1) if spread and n > 1 else 0)
            cid = int(targets[k % len(targets)]) if targets else live[rng.randrange(len(live))]
            events.append(ws.add_event(cid, t, op.get("action")))
        ws.bump()
        times = [e["time"] for e in events]
        return {"uuids": [e["eventUUID"] for e in events], "from_ms": min(times, default=None),
                "to_ms": max(times, default=None)}
    if name in ("add_items", "modify_items", "delete_items"):
        catalog_id = op.get("catalog_id", ws.catalogs[0]["id"])
        if ws.catalog(catalog_id) is None:
            raise MutationError(f"no catalog {catalog_id}")
        n = _count(op, 5)
        touched = []
        if name == "add_items":
            start = ws.catalog_sizes[catalog_id] + 1000 * (1 + len(ws.items_added[catalog_id]))
            for k in range(n):
                index = start + k
                value = {"title": f"New item {index}", "price": f"{rng.uniform(1, 99):.2f}",
                         "category": rng.choice(CATEGORIES), "inStock": True, "stock": rng.randint(1, 50)}
                ws.items_overlay[(catalog_id, index)] = ws._render_item(catalog_id, index, value, now)
                ws.items_added[catalog_id].append(index)
                touched.append(index)
        else:
            indexes = ws.item_indexes(catalog_id)
            for i in _pick(rng, indexes, n):
                index = indexes[i]
                touched.append(index)
                if name == "delete_items":
                    ws.items_deleted.add((catalog_id, index))
                    continue
                import orjson

                item = dict(ws.item(catalog_id, index))
                value = orjson.loads(item["value"])
                value["price"] = f"{rng.uniform(1, 500):.2f}"
                value["stock"] = rng.randint(0, 400)
                value["updatedNote"] = f"rev {ws._mutations}"
                item["value"] = orjson.dumps(value).decode()
                ws.items_overlay[(catalog_id, index)] = item
        ws.bump()
        keys = [f"{ws.catalog(catalog_id)['name'][:3]}-{i:07d}" for i in touched]
        return {"catalog_id": catalog_id, "item_keys": keys}
    if name == "churn_segmentation":
        seg = op.get("uuid", ws.segmentations[1]["uuid"])
        if ws.segmentation(seg) is None:
            raise MutationError(f"no segmentation {seg}")
        members = ws.members(seg)
        if "remove_ids" in op or "add_ids" in op:
            removed = [int(c) for c in op.get("remove_ids", [])]
            added = [int(c) for c in op.get("add_ids", [])]
            if not all(ws.exists(c) for c in removed + added):
                raise MutationError("every id must be a live profile")
        else:
            removed = [members[i] for i in _pick(rng, members, int(op.get("remove", 1)))]
            outside = sorted(set(ws.live_ids()) - set(members))
            added = [outside[i] for i in _pick(rng, outside, int(op.get("add", 1)))]
        ws.seg_removed[seg].update(removed)
        ws.seg_removed[seg].difference_update(added)
        ws.seg_added[seg].update(added)
        ws.bump()
        return {"uuid": seg, "added": added, "removed": removed}
    ws._mutations -= 1
    raise MutationError(
        f"unknown synerise operation {name!r}; known: advance_clock, expire_tokens, add_profiles, modify_profiles, "
        "merge_profiles, delete_profiles, delete_profiles_by_id, add_events, add_items, modify_items, delete_items, churn_segmentation"
    )


def export_table(b: SyneriseBackend, table: str) -> list[dict[str, Any]]:
    ws = b.ws
    with ws.lock:
        if table == "profiles":
            return [ws.profile(c) for c in ws.live_ids()]
        if table == "events":
            rows = [ws.render_event(e) for e in ws.all_events()]
            rows.sort(key=lambda r: r["eventUUID"])
            return rows
        if table == "catalogs":
            return sorted(ws.catalogs, key=lambda c: c["id"])
        if table == "catalog_items":
            out = []
            for c in sorted(ws.catalogs, key=lambda c: c["id"]):
                out += [ws.item(c["id"], i) for i in ws.item_indexes(c["id"])]
            return sorted(out, key=lambda r: (r["bag"]["id"], r["itemKey"]))
        if table == "tags":
            return list(ws.tags)
        if table == "asset_tags":
            return sorted(ws.asset_tags, key=lambda t: t["hash"])
        if table == "segmentations":
            return [{"uuid": s["uuid"], "name": s["name"]} for s in ws.segmentations]
        if table == "segmentation_members":
            out = []
            for s in ws.segmentations:
                out += [{"segmentation_uuid": s["uuid"], **ws.crm_profile(c)} for c in ws.members(s["uuid"])]
            return out
        if table == "expressions":
            return sorted(ws.expressions, key=lambda x: x["id"])
        if table == "aggregates":
            return sorted((b._public_aggregate(a) for a in ws.aggregates), key=lambda a: a["aggregate"]["uuid"])
        if table == "expression_summaries":
            return sorted(b._expression_projections(None, b"", {}), key=lambda x: x["hashId"])  # type: ignore[arg-type]
        if table == "aggregate_summaries":
            return sorted(b._aggregate_projections(None, b"", {}), key=lambda x: x["uuid"])  # type: ignore[arg-type]
        if table == "analytics_values":
            live = ws.live_ids()
            if len(live) > 5000:
                raise KeyError(table)
            out = []
            for c in live:
                out += [{"client_id": c, "analytic_uuid": x["id"], "kind": "expression",
                         "result": ws.analytic_result(x["id"], c)} for x in ws.expressions]
                out += [{"client_id": c, "analytic_uuid": a["aggregate"]["uuid"], "kind": "aggregate",
                         "result": ws.analytic_result(a["aggregate"]["uuid"], c)} for a in ws.aggregates]
            return out
        if table == "hostile_log":
            return list(b.hostile_log)
        if table == "account":
            return [{"workspace_id": ws.workspace_id, "workspace_uuid": b.workspace_uuid, "username": b.username,
                     "password": b.password, "now_ms": ws.clock.now_ms(), "now": iso_ms_frac(ws.clock.now_ms())}]
    raise KeyError(table)
