"""Compare what a pipeline loaded with what the Synerise emulator holds, table by table.

Expected rows are derived from the emulator's canonical export with conversions written here,
independently of the source's own mapping: ISO 8601 / date-only strings and ms integers become
epoch milliseconds, the JSON-encoded catalog ``value`` is decoded, custom profile attributes are
the JSON ``attributes`` column, the per-event copy of the profile's name is not loaded."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from typing import Any

import duckdb

UTC = dt.UTC


def ms(value: Any) -> int | None:
    """Any timestamp form the API uses -> epoch milliseconds."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value)
    if len(text) == 10:  # a bare date: UTC midnight
        d = dt.date.fromisoformat(text)
        return int(dt.datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _j(v: Any) -> Any:
    return None if v is None else json.loads(json.dumps(v, sort_keys=True))


def expected_profile(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "client_id": p["clientId"], "email": p["email"], "phone": p["phone"], "custom_id": p["customId"],
        "uuid": p["uuid"], "first_name": p["firstName"], "last_name": p["lastName"],
        "display_name": p["displayName"], "company": p["company"], "address": p["address"], "city": p["city"],
        "province": p["province"], "zip_code": p["zipCode"], "country_code": p["countryCode"],
        "birth_date": ms(p["birthDate"]), "sex": p["sex"], "avatar_url": p["avatarUrl"],
        "anonymous": p["anonymous"], "agreements": _j(p["agreements"]), "tags": _j(p["tags"]),
        "previous_clients": _j(p["previousClients"]), "last_activity_date": ms(p["lastActivityDate"]),
        "attributes": _j(p["attributes"]) or None,
    }


def expected_event(e: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_uuid": e["eventUUID"], "time": e["time"], "action_name": e["action"]["name"],
        "action_label": e["action"]["label"], "action_description": e["action"]["description"],
        "description": e["description"], "label": e["label"], "icon": e["icon"], "unique": e["unique"],
        "client_id": e["client"]["id"], "client_uuid": e["client"]["uuid"],
        "user_agent_system": e["userAgent"]["system"], "user_agent_browser": e["userAgent"]["browser"],
        "modified_by": e["modifiedBy"],
    }


def expected_catalog(b: dict[str, Any]) -> dict[str, Any]:
    return {"id": b["id"], "name": b["name"], "business_profile_id": b["businessProfileId"], "author": b["author"],
            "last_modified": ms(b["lastModified"]), "creation_date": ms(b["creationDate"])}


def expected_item(i: dict[str, Any]) -> dict[str, Any]:
    return {"catalog_id": i["bag"]["id"], "item_key": i["itemKey"], "id": i["id"], "value": json.loads(i["value"]),
            "creation_date": ms(i["creationDate"])}


def expected_member(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "segmentation_uuid": m["segmentation_uuid"], "id": m["id"], "uuid": m["uuid"], "email": m["email"],
        "first_name": m["firstname"], "last_name": m["lastName"], "custom_identify": m["custom_identify"],
        "birthdate": ms(m["birthdate"]), "sex": m["sex"], "last_activity_date": ms(m["last_activity_date"]),
        "created": ms(m["created"]), "updated": ms(m["updated"]), "tags": _j(m["tags"]),
    }


def expected_expression(x: dict[str, Any]) -> dict[str, Any]:
    p = x["payload"]
    return {"id": x["id"], "name": p["analysis"]["name"], "type": p["analysis"]["type"],
            "action_name": p["analysis"]["action"]["name"], "expression": _j(p["analysis"]["expression"]),
            "created_at": ms(p["createdBy"]["atTime"]), "modified_at": ms(p["modifiedBy"]["atTime"]),
            "is_dynamic_analytic": p["isDynamicAnalytic"], "analytic_version": p["analyticVersion"]}


def expected_aggregate(a: dict[str, Any]) -> dict[str, Any]:
    g = a["aggregate"]
    return {"uuid": g["uuid"], "id": g["id"], "name": a["name"], "title": g["name"], "type": g["type"],
            "unique": g["unique"], "attribute": _j(g["attribute"]), "created_at": ms(a["createdBy"]["atTime"]),
            "modified_at": ms(a["modifiedBy"]["atTime"]), "deleted": a["deleted"]}


def expected_expression_summary(x: dict[str, Any]) -> dict[str, Any]:
    return {"hash_id": x["hashId"], "name": x["name"], "created_at": ms(x["createdAt"]),
            "is_dynamic_analytic": x["isDynamicAnalytic"]}


def expected_aggregate_summary(x: dict[str, Any]) -> dict[str, Any]:
    return {"uuid": x["uuid"], "hash_id": x["hashId"], "name": x["name"], "created_at": ms(x["createdAt"])}


def expected_value(v: dict[str, Any]) -> dict[str, Any]:
    return {"client_id": v["client_id"], "analytic_uuid": v["analytic_uuid"], "kind": v["kind"], "result": v["result"],
            "result_number": round(float(v["result"]), 6)}


#: table -> (primary key columns, expected-row builder)
TABLES: dict[str, tuple[tuple[str, ...], Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "profiles": (("client_id",), expected_profile),
    "events": (("event_uuid",), expected_event),
    "profile_events": (("event_uuid",), expected_event),
    "catalogs": (("id",), expected_catalog),
    "catalog_items": (("catalog_id", "item_key"), expected_item),
    "segmentation_members": (("segmentation_uuid", "id"), expected_member),
    "expressions": (("id",), expected_expression),
    "aggregates": (("uuid",), expected_aggregate),
    "expression_summaries": (("hash_id",), expected_expression_summary),
    "aggregate_summaries": (("uuid",), expected_aggregate_summary),
    "analytics_values": (("client_id", "analytic_uuid"), expected_value),
    "tags": (("id",), lambda t: {"id": t["id"], "name": t["name"], "color": t["color"]}),
    "asset_tags": (("hash",), lambda t: {"hash": t["hash"], "value": t["value"], "priority": t["priority"],
                                         "created_at": ms(t["createdAt"]), "directory_name": t["directory"]["name"],
                                         "directory_type": t["directory"]["type"]["name"]}),
}


def _loaded_value(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return int(round(v.timestamp() * 1000))
    if isinstance(v, float):
        return round(v, 6)
    return v


def loaded_rows(con: duckdb.DuckDBPyConnection, dataset: str, table: str, columns: Iterable[str],
                json_columns: Iterable[str] = ()) -> list[dict[str, Any]]:
    cols = list(columns)
    jsons = set(json_columns)
    quoted = ", ".join(f'"{c}"' for c in cols)
    out = []
    for r in con.execute(f'select {quoted} from "{dataset}"."{table}"').fetchall():
        row = {}
        for c, v in zip(cols, r, strict=True):
            row[c] = (json.loads(v) if isinstance(v, str) else v) if c in jsons and v is not None else _loaded_value(v)
        out.append(row)
    return out


def assert_table_equals(con: duckdb.DuckDBPyConnection, dataset: str, table: str,
                        export: list[dict[str, Any]]) -> None:
    """Every expected row is loaded exactly once with the expected values, and nothing else."""
    pk, build = TABLES[table]
    expected = [build(r) for r in export]
    columns = list(expected[0]) if expected else list(pk)
    json_columns = [c for c in columns if expected and any(isinstance(e[c], (dict, list)) for e in expected)]
    if table == "profiles":
        json_columns.append("attributes")
    loaded = loaded_rows(con, dataset, table, columns, json_columns)
    keys = [tuple(r[c] for c in pk) for r in loaded]
    dupes = {k for k in keys if keys.count(k) > 1} if len(keys) != len(set(keys)) else set()
    assert not dupes, f"{table}: duplicate keys loaded: {sorted(dupes)[:5]}"
    want = {tuple(e[c] for c in pk): e for e in expected}
    got = {tuple(r[c] for c in pk): r for r in loaded}
    missing = sorted(set(want) - set(got), key=repr)
    extra = sorted(set(got) - set(want), key=repr)
    assert not missing and not extra, f"{table}: {len(missing)} missing {missing[:3]}, {len(extra)} extra {extra[:3]}"
    for k, e in want.items():
        if e != got[k]:
            diff = {c: (e[c], got[k][c]) for c in e if e[c] != got[k][c]}
            raise AssertionError(f"{table} {k}: expected != loaded: {diff}")
