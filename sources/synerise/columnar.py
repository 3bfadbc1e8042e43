"""Synerise pages to Arrow tables column by column: one typed Arrow conversion per page instead
of a Python dict per row and a converter call per value.

Each table's rows are read by one ``pa.array(rows, type=struct)`` conversion (C++), with nested
fields (``action.name``, ``client.id``, ``bag.id``) taken from its struct children. The result
is exactly what the row mappers of ``__init__.py`` and the shared ``TolerantConverter`` give, or
nothing: :func:`events_table`, :func:`profiles_table` and :func:`items_table` return ``None``
whenever a page holds anything the fast path does not read the same way (a key the contract
does not list, a number sent as text, a float in an integer column, a timestamp in another
form, a value that is not JSON), and the caller then maps that page row by row as before. So
every value that does not fit its column still lands in ``<column>__v_text`` with its warning.

Timestamps the contract sends as ISO 8601 (``2019-03-19T14:05:39Z``, with milliseconds or
microseconds, ``Z`` or an offset) or as a bare date (``2019-08-24``, UTC midnight) are matched by
a regular expression over the whole column, then parsed by Arrow and truncated to milliseconds,
as ``iso_to_ms`` does; a zero instant is null, as for every ``unix_ms`` column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from sources.common.arrow import TIMESTAMP, TableSpec

from . import settings as S

_SORT = orjson.OPT_SORT_KEYS
_ISO = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3}|\.\d{6})?(Z|[+-]\d{2}:\d{2})$"
_DATE = r"^\d{4}-\d{2}-\d{2}$"
_FAILED = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError, ValueError)


class _Refused(Exception):
    """The page holds something the fast path does not read as the row mappers do."""


def _struct(fields: dict[str, Any]) -> pa.StructType:
    return pa.struct([(k, _struct(v) if isinstance(v, dict) else v) for k, v in fields.items()])


def _floats(fields: dict[str, Any]) -> dict[str, Any]:
    """The integer fields of ``fields`` (nested), typed float64: a second, narrow conversion that
    shows a fractional number Arrow's int64 conversion would have truncated silently."""
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if isinstance(v, dict):
            inner = _floats(v)
            if inner:
                out[k] = inner
        elif v == pa.int64():
            out[k] = pa.float64()
    return out


def _field(arr: pa.StructArray, path: tuple[str, ...]) -> pa.Array:
    """A nested child of a struct array; null wherever a parent on the path is null."""
    for name in path:
        arr = pc.struct_field(arr, name)
    return arr


def _check_ints(rows: Sequence[dict[str, Any]], converted: pa.StructArray, fields: dict[str, Any]) -> None:
    floats = _floats(fields)
    if not floats:
        return
    as_float = pa.array(rows, type=_struct(floats))

    def walk(spec: dict[str, Any], path: tuple[str, ...]) -> None:
        for k, v in spec.items():
            if isinstance(v, dict):
                walk(v, (*path, k))
                continue
            ints = _field(converted, (*path, k))
            fl = _field(as_float, (*path, k))
            same = pc.equal(ints.cast(pa.float64()), fl)
            if ints.null_count != fl.null_count or pc.all(same).as_py() not in (True, None):
                raise _Refused(k)

    walk(floats, ())


def _unix_ms(values: pa.Array) -> pa.Array:
    """Epoch milliseconds (int64) as the ``unix_ms`` column kind loads them: 0 is null."""
    values = values.cast(pa.int64())
    micros = pc.multiply_checked(values, 1000)  # an instant beyond int64 microseconds: refused, as per value
    return pc.if_else(pc.equal(values, 0), pa.scalar(None, pa.int64()), micros).cast(TIMESTAMP)


def _iso_to_ms(values: pa.Array) -> pa.Array:
    """ISO 8601 / date-only text as ``iso_to_ms`` reads it: epoch milliseconds (int64)."""
    values = values.cast(pa.string())
    if values.null_count == len(values):
        return pa.nulls(len(values), pa.int64())
    if pc.all(pc.match_substring_regex(values, _ISO)).as_py() is not False:
        micros = values.cast(TIMESTAMP).cast(pa.int64())
    elif pc.all(pc.match_substring_regex(values, _DATE)).as_py() is not False:
        micros = pc.strptime(values, format="%Y-%m-%d", unit="us", error_is_null=False).cast(pa.int64())
    else:
        raise _Refused("timestamp form")
    # iso_to_ms truncates toward zero to whole milliseconds (int(seconds * 1000))
    return pc.divide(micros, 1000)


def _iso_ms(values: pa.Array) -> pa.Array:
    """ISO 8601 / date-only text as a ``unix_ms`` column (``iso_to_ms``, then 0 is null)."""
    return _unix_ms(_iso_to_ms(values))


def iso_versions(raws: list[Any]) -> pa.Array | None:
    """Modification fields sent as ISO 8601 text (or null) as epoch milliseconds, column-wise:
    what ``iso_to_ms`` gives for each; ``None`` when any is in another form."""
    try:
        return _iso_to_ms(pa.array(raws, type=pa.string()))
    except (_Refused, *_FAILED):
        return None


def _json_column(values: list[Any]) -> pa.Array:
    """Values as JSON text with sorted keys (``None`` stays null), as a ``json`` column holds them."""
    dumps = orjson.dumps
    return pa.array([None if v is None else dumps(v, option=_SORT) for v in values], type=pa.binary()).cast(pa.string())


def _keys_known(rows: Sequence[dict[str, Any]], known: frozenset[str]) -> bool:
    """Whether every row is an object whose keys the fast path reads (one set union in C)."""
    try:
        return all(type(r) is dict for r in rows) and set().union(*rows) <= known
    except TypeError:
        return False


def _assemble(spec: TableSpec, columns: dict[str, pa.Array], extras: pa.Array | None = None) -> pa.Table:
    arrays = [columns[name] for name in spec.columns]
    names = list(spec.columns)
    if spec.extras_column:
        arrays.append(extras if extras is not None else pa.nulls(len(arrays[0]) if arrays else 0, pa.string()))
        names.append(spec.extras_column)
    return pa.Table.from_arrays(arrays, schema=spec.schema)


# ------------------------------------------------------------------------------ events

_EVENT_FIELDS: dict[str, Any] = {
    "eventUUID": pa.string(), "time": pa.int64(),
    "action": {"name": pa.string(), "label": pa.string(), "description": pa.string()},
    "description": pa.string(), "label": pa.string(), "icon": pa.string(), "unique": pa.int64(),
    "client": {"id": pa.int64(), "uuid": pa.string()},
    "userAgent": {"system": pa.string(), "browser": pa.string()},
    "modifiedBy": pa.string(),
}
_EVENT_TYPE = _struct(_EVENT_FIELDS)
_EVENT_KEYS = frozenset(_EVENT_FIELDS)
_EVENT_PATHS = {
    "event_uuid": ("eventUUID",), "time": ("time",), "action_name": ("action", "name"),
    "action_label": ("action", "label"), "action_description": ("action", "description"),
    "description": ("description",), "label": ("label",), "icon": ("icon",), "unique": ("unique",),
    "client_id": ("client", "id"), "client_uuid": ("client", "uuid"), "user_agent_system": ("userAgent", "system"),
    "user_agent_browser": ("userAgent", "browser"), "modified_by": ("modifiedBy",),
}


def events_table(spec: TableSpec, rows: Sequence[dict[str, Any]]) -> pa.Table | None:
    """Activities (``/activities-api/activities`` or per-profile pages) as ``spec``'s table, or
    ``None`` when a row needs the row mapper (see the module doc)."""
    if not rows or not _keys_known(rows, _EVENT_KEYS):
        return None
    try:
        raw = pa.array(rows, type=_EVENT_TYPE)
        _check_ints(rows, raw, _EVENT_FIELDS)
        columns = {col: _field(raw, path) for col, path in _EVENT_PATHS.items()}
        if columns["event_uuid"].null_count:
            return None  # a missing key: the row mapper's error names it
        columns["time"] = _unix_ms(columns["time"])
        return _assemble(spec, columns)
    except (_Refused, *_FAILED):
        return None


# ------------------------------------------------------------------------------ profiles

_PROFILE_FIELDS: dict[str, Any] = {
    "clientId": pa.int64(), "email": pa.string(), "phone": pa.string(), "customId": pa.string(),
    "uuid": pa.string(), "firstName": pa.string(), "lastName": pa.string(), "displayName": pa.string(),
    "company": pa.string(), "address": pa.string(), "city": pa.string(), "province": pa.string(),
    "zipCode": pa.string(), "countryCode": pa.string(), "birthDate": pa.string(), "sex": pa.string(),
    "avatarUrl": pa.string(), "anonymous": pa.bool_(), "lastActivityDate": pa.string(),
}
_PROFILE_TYPE = _struct(_PROFILE_FIELDS)
_PROFILE_JSON = {"agreements": "agreements", "tags": "tags", "previousClients": "previous_clients"}
_PROFILE_KEYS = frozenset(_PROFILE_FIELDS) | frozenset(_PROFILE_JSON) | {"attributes"}
_PROFILE_COLUMNS = {
    "clientId": "client_id", "email": "email", "phone": "phone", "customId": "custom_id", "uuid": "uuid",
    "firstName": "first_name", "lastName": "last_name", "displayName": "display_name", "company": "company",
    "address": "address", "city": "city", "province": "province", "zipCode": "zip_code",
    "countryCode": "country_code", "sex": "sex", "avatarUrl": "avatar_url", "anonymous": "anonymous",
}


def profiles_table(rows: Sequence[dict[str, Any]]) -> pa.Table | None:
    """``/v4/clients`` profiles as the ``profiles`` table (declared columns, then the custom
    ``attributes`` as JSON), or ``None`` when a row needs the row mapper."""
    if not rows or not _keys_known(rows, _PROFILE_KEYS):
        return None
    try:
        attributes = [r.get("attributes") for r in rows]
        if any(a is not None and type(a) is not dict for a in attributes):
            return None
        raw = pa.array(rows, type=_PROFILE_TYPE)
        _check_ints(rows, raw, _PROFILE_FIELDS)
        columns = {col: _field(raw, (key,)) for key, col in _PROFILE_COLUMNS.items()}
        if columns["client_id"].null_count:
            return None
        columns["birth_date"] = _iso_ms(_field(raw, ("birthDate",)))
        columns["last_activity_date"] = _iso_ms(_field(raw, ("lastActivityDate",)))
        for key, col in _PROFILE_JSON.items():
            columns[col] = _json_column([r.get(key) for r in rows])
        table = _assemble(S.PROFILES, columns)
        dumps = orjson.dumps
        extras = pa.array([dumps(a, option=_SORT) if a else None for a in attributes], type=pa.binary())
        return table.append_column("attributes", extras.cast(pa.string()))
    except (_Refused, *_FAILED):
        return None


# ------------------------------------------------------------------------------ catalog items

_ITEM_FIELDS: dict[str, Any] = {
    "bag": {"id": pa.int64()}, "itemKey": pa.string(), "id": pa.int64(), "value": pa.string(),
    "creationDate": pa.string(),
}
_ITEM_TYPE = _struct(_ITEM_FIELDS)
_ITEM_KEYS = frozenset(_ITEM_FIELDS)


def items_table(rows: Sequence[dict[str, Any]]) -> pa.Table | None:
    """Catalog items as the ``catalog_items`` table, or ``None`` when a row needs the row
    mapper. ``value`` arrives as JSON-encoded text: text that is valid JSON is loaded as sent
    (a ``json`` column holds it as it is), so each value is parsed once to check it and never
    written again."""
    if not rows or not _keys_known(rows, _ITEM_KEYS):
        return None
    try:
        values = [r.get("value") for r in rows]
        loads = orjson.loads
        for v in values:
            if type(v) is not str:
                return None
            loads(v)
        raw = pa.array(rows, type=_ITEM_TYPE)
        _check_ints(rows, raw, _ITEM_FIELDS)
        columns = {
            "catalog_id": _field(raw, ("bag", "id")),
            "item_key": _field(raw, ("itemKey",)),
            "id": _field(raw, ("id",)),
            "value": _field(raw, ("value",)),
            "creation_date": _iso_ms(_field(raw, ("creationDate",))),
        }
        if columns["catalog_id"].null_count or columns["item_key"].null_count:
            return None
        return _assemble(S.CATALOG_ITEMS, columns)
    except (orjson.JSONDecodeError, _Refused, *_FAILED):
        return None
