"""How cdp-sync opens DuckDB: an explicit file and a memory cap.

DuckDB keeps every block it writes cached up to its memory limit, 80% of RAM by default, so a
large backfill grows the loading process by hundreds of MB. cdp-sync caps it (``[cdp_sync]
duckdb_memory_limit`` in ``.dlt/config.toml``, default 128MB; ``none`` lifts the cap): DuckDB then
spills to disk, and merges and de-duplication still work (checked on 500,000 users).

The cap cannot live under ``[destination.duckdb.credentials]`` in ``config.toml``: dlt treats
that section as secret and refuses it there, which would break every ``destination="duckdb"``
pipeline run from the project directory.
"""

from __future__ import annotations

from typing import Any

DEFAULT_DUCKDB_MEMORY_LIMIT = "128MB"


def duckdb_memory_limit() -> str | None:
    import dlt

    value = dlt.config.get("cdp_sync.duckdb_memory_limit")
    value = DEFAULT_DUCKDB_MEMORY_LIMIT if value is None else str(value).strip()
    return None if value.lower() in ("", "none", "off") else value


def duckdb_destination(path: str) -> Any:
    """The dlt DuckDB destination for the file ``path``, with cdp-sync's memory cap."""
    import dlt
    from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

    limit = duckdb_memory_limit()
    if limit is None:
        return dlt.destinations.duckdb(credentials=path)
    return dlt.destinations.duckdb(credentials=DuckDbCredentials(path, global_config={"memory_limit": limit}))


#: destinations that take parquet directly (the fastest path for the sources' Arrow pages)
PARQUET_DESTINATIONS = frozenset({"duckdb", "motherduck", "filesystem", "bigquery", "snowflake", "databricks", "athena"})
#: destinations loaded with INSERT statements: dlt's csv COPY into PostgreSQL stores '' as NULL
INSERT_VALUES_DESTINATIONS = frozenset({"postgres"})


def loader_file_format(destination_name: str) -> str | None:
    """The file format cdp-sync asks dlt for: parquet where the destination takes it,
    ``insert_values`` for PostgreSQL (so empty strings stay empty strings), else dlt's choice."""
    if destination_name in PARQUET_DESTINATIONS:
        return "parquet"
    if destination_name in INSERT_VALUES_DESTINATIONS:
        return "insert_values"
    return None
