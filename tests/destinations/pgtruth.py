"""Reading a PostgreSQL dataset the way the vendors' truth modules read DuckDB.

``tests/<vendor>/truth.py`` compare a loaded table with the emulator's export through a DuckDB
connection's ``execute(sql).fetchall()``. ``PgConnection`` offers that surface over psycopg2, so
the same independent comparisons run against PostgreSQL. psycopg2 decodes ``jsonb`` into Python
objects; they are handed on as JSON text, as DuckDB hands its JSON columns (whether a JSON
column holds objects rather than JSON-encoded strings is checked separately, with
``jsonb_typeof``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg2


class _Result:
    def __init__(self, rows: list[tuple]) -> None:
        self._rows = rows

    def fetchall(self) -> list[tuple]:
        return self._rows

    def fetchone(self) -> tuple | None:
        return self._rows[0] if self._rows else None


def _as_duckdb(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, (dict, list)) else v


class PgConnection:
    def __init__(self, dsn: str) -> None:
        self._con = psycopg2.connect(dsn)
        self._con.autocommit = True

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> _Result:
        """``sql`` with psycopg2's ``%s`` placeholders (the truth modules pass none)."""
        with self._con.cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.description else []
        return _Result([tuple(_as_duckdb(v) for v in r) for r in rows])

    def column_types(self, schema: str, table: str) -> dict[str, str]:
        return dict(self.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = %s and table_name = %s", [schema, table]).fetchall())

    def duplicate_keys(self, schema: str, table: str, key: Sequence[str]) -> list[tuple]:
        cols = ", ".join(f'"{c}"' for c in key)
        return self.execute(
            f'select {cols}, count(*) from "{schema}"."{table}" group by {cols} having count(*) > 1 limit 5'
        ).fetchall()

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> PgConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
