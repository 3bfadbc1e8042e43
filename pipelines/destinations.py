"""How cdp-sync opens DuckDB: an explicit file, a memory cap and a thread count.

DuckDB keeps every block it writes cached up to its memory limit, 80% of RAM by default, so a
large backfill grows the loading process by hundreds of MB. cdp-sync caps it (``[cdp_sync]
duckdb_memory_limit`` in ``.dlt/config.toml``, default 48MB; ``none`` lifts the cap): DuckDB then
spills to disk. An insert of a million rows holds about the cap plus 20-35 MB whatever the cap
(48MB: 67-83 MB for each vendor's largest table; 128MB: 120-164 MB) and takes 3-15 % longer than
under 128MB; with one DuckDB thread, a merge de-duplicating 500,000 Lytics profiles still fits.
One step cannot spill, the window function with which dlt's merge de-duplicates its staging
table; ``run_within_cap`` finishes a load that fails on it without the cap.

DuckDB runs on every core by default. cdp-sync leaves one to the Python process (``[cdp_sync]
duckdb_threads``, default: the cores this process may use, less one, at least one; ``auto`` is
DuckDB's own default): on two cores one DuckDB thread appended a million Lytics profiles in
3.0 s against 4.0-4.3 s with two, merged them in 5.2-5.6 s against 6.1-6.9 s, and held
40-60 MB less (benchmarks/README.md). A backfill's other windows keep extracting while one loads.

The settings cannot live under ``[destination.duckdb.credentials]`` in ``config.toml``: dlt treats
that section as secret and refuses it there, which would break every ``destination="duckdb"``
pipeline run from the project directory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

DEFAULT_DUCKDB_MEMORY_LIMIT = "48MB"
#: one load job at a time on DuckDB. dlt otherwise copies several files at once (a Synerise load:
#: profiles, catalog items and events), each insert holding its own uncommitted rows, so the
#: load's memory grew with the number of tables on top of the cap; DuckDB already spreads one
#: insert over its threads, and it has one writer
DUCKDB_LOAD_ORDER = "sequential"


def check_destination_name(name: str) -> None:
    """A destination dlt knows (one of its own, or a named destination whose type is
    configured), or one :class:`ConfigurationError` line naming the known ones (exit 2), instead
    of dlt's page-long ``UnknownDestinationModule``."""
    import dlt.destinations
    from dlt.common.destination import Destination
    from dlt.common.destination.exceptions import UnknownDestinationModule

    from sources.common.errors import ConfigurationError

    try:
        Destination.from_reference(name)
    except UnknownDestinationModule:
        known = ", ".join(sorted(n for n in dlt.destinations.__all__ if n != "destination"))
        raise ConfigurationError(
            f"unknown destination {name!r}; known: {known} (or a named destination with "
            f"DESTINATION__{name.upper()}__DESTINATION_TYPE set)"
        ) from None


def duckdb_memory_limit() -> str | None:
    import dlt

    value = dlt.config.get("cdp_sync.duckdb_memory_limit")
    value = DEFAULT_DUCKDB_MEMORY_LIMIT if value is None else str(value).strip()
    return None if value.lower() in ("", "none", "off") else value


def duckdb_threads() -> int | None:
    """``[cdp_sync] duckdb_threads``: a positive number, or ``auto`` (``None``: DuckDB's default,
    every core); unset, the cores this process may use less one (at least one)."""
    import os

    import dlt

    from sources.common.errors import ConfigurationError

    value = dlt.config.get("cdp_sync.duckdb_threads")
    if value is None:  # the cores this process may run on (Linux); elsewhere every core
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, cores - 1)
    text = str(value).strip().lower()
    if text in ("auto", "none", ""):
        return None
    if not text.isdigit() or int(text) < 1:
        raise ConfigurationError(f"[cdp_sync] duckdb_threads must be a positive number or \"auto\", not {value!r}")
    return int(text)


def _duckdb(path: str, limit: str | None) -> Any:
    import dlt
    from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

    settings: dict[str, Any] = {}
    if limit is not None:
        settings["memory_limit"] = limit
    threads = duckdb_threads()
    if threads is not None:
        settings["threads"] = threads
    credentials = DuckDbCredentials(path, global_config=settings) if settings else path
    return dlt.destinations.duckdb(credentials=credentials, loader_parallelism_strategy=DUCKDB_LOAD_ORDER)


def duckdb_destination(path: str) -> Any:
    """The dlt DuckDB destination for the file ``path``, with cdp-sync's memory cap and threads."""
    limit = duckdb_memory_limit()
    destination = _duckdb(path, limit)
    if limit is not None:
        destination.cdp_sync_memory_cap = (path, limit)  # read by run_within_cap
    return destination


def _out_of_memory(exc: BaseException) -> bool:
    """Whether DuckDB running out of its memory cap is behind ``exc`` (dlt wraps it in a load
    job failure inside a pipeline step failure; the chain and the messages keep it)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if type(e).__name__ == "OutOfMemoryException" or "Out of Memory Error" in str(e):
            return True
        todo += [e.__cause__, e.__context__, getattr(e, "exception", None), getattr(e, "client_exception", None)]
    return False


def run_within_cap(pipeline: Any, step: Callable[[], Any], *, warn: Callable[[str], None] | None = None) -> Any:
    """``step()`` (the pipeline's ``run`` or ``load``); when its load fails because DuckDB needed
    more than cdp-sync's memory cap, the pending package is loaded once more with the cap lifted.

    The cap keeps ordinary loads small, but dlt's merge de-duplicates the staging table with a
    window function over whole rows, and DuckDB cannot spill that: a large enough merge (800,000
    PostHog events with their properties need about 1 GB) fails under any fixed cap. A failed load
    job changes nothing (each job runs in a transaction) and dlt keeps the package, so loading it
    again uncapped finishes the same data, neither lost nor doubled; the warning says so and how to
    raise the cap instead.

    It is also where a first load into an empty DuckDB table becomes an append, and where one that
    was interrupted is finished as a merge (:mod:`pipelines.direct_load`)."""
    from pipelines.direct_load import append_first_loads, finish_interrupted_direct_loads, store_own_schemas
    from pipelines.runtime import release_freed_memory

    finish_interrupted_direct_loads(pipeline)
    distrust_unique_rows(pipeline)
    # dlt's ``run`` calls ``self.load`` once its packages are normalized: that is where the memory
    # the extract freed is handed back (pipelines/runtime.py) and a first load into an empty DuckDB
    # table is switched to an append (pipelines/direct_load.py)
    load = pipeline.load

    def prepared_load(*args: Any, **kwargs: Any) -> Any:
        release_freed_memory()
        switched = append_first_loads(pipeline)
        info = load(*args, **kwargs)
        if switched:
            store_own_schemas(pipeline)
        return info

    if step == load:
        step = prepared_load
    pipeline.load = prepared_load
    try:
        return _run_capped(pipeline, step, warn)
    finally:
        pipeline.__dict__.pop("load", None)


def _run_capped(pipeline: Any, step: Callable[[], Any], warn: Callable[[str], None] | None) -> Any:
    import logging

    from pipelines.direct_load import finish_interrupted_direct_loads

    capped = getattr(pipeline.destination, "cdp_sync_memory_cap", None)
    if capped is None:
        return step()
    quiet = _QuietOutOfMemory()
    dlt_logger = logging.getLogger("dlt")
    dlt_logger.addFilter(quiet)
    try:
        return step()
    except Exception as exc:
        if not _out_of_memory(exc) or not pipeline.has_pending_data:
            raise
        path, limit = capped
        (warn or _log_warning)(
            f"DuckDB needed more than its memory cap ({limit}) for this load; finishing it without the cap "
            "(set [cdp_sync] duckdb_memory_limit higher, or \"none\", to skip the failed attempt)"
        )
        finish_interrupted_direct_loads(pipeline)
        distrust_unique_rows(pipeline)
        return pipeline.load(destination=_duckdb(path, None))
    finally:
        dlt_logger.removeFilter(quiet)


def distrust_unique_rows(pipeline: Any) -> int:
    """Let the merge de-duplicate staging in every package already normalized, whatever its run
    declared (``sources.common.hints.merge_run_hints``); returns how many tables that changed.

    A run whose rows are unique by construction tells dlt to skip de-duplicating the staging
    table. That holds for the run, not for a package finished later: a process killed after
    DuckDB committed a file's copy into staging but before dlt recorded the job copies the file a
    second time when the package is finished, and a merge that trusted the rows to be unique would
    keep both copies. Packages still pending when a load starts (an interrupted run's, or one
    retried without the memory cap) therefore merge with de-duplication, the copy kept chosen by
    the ``dedup_sort`` hint: exact, at the memory cost of that one load."""
    from sources.common.hints import DEDUPLICATED

    load_ids = pipeline.list_normalized_load_packages()  # none (and no folder) on a first run
    if not load_ids:
        return 0
    packages = pipeline._get_load_storage().normalized_packages
    changed = 0
    for load_id in load_ids:
        schema = packages.load_schema(load_id)
        tables = [t for t in schema.tables.values() if t.get(DEDUPLICATED)]
        for table in tables:
            table[DEDUPLICATED] = False
            wd = table.get("write_disposition")
            if isinstance(wd, dict) and wd.get("deduplicated"):
                wd["deduplicated"] = False
        if tables:
            packages.save_schema(load_id, schema)
            changed += len(tables)
    return changed


class _QuietOutOfMemory:
    """Keeps dlt from logging a traceback for each of its retries of a job that ran out of
    DuckDB's memory: the one warning of ``run_within_cap`` says what happened (and if the load
    still fails, its error does)."""

    def filter(self, record: Any) -> bool:
        if record.exc_info and record.exc_info[1] is not None and _out_of_memory(record.exc_info[1]):
            return False
        return "Out of Memory Error" not in record.getMessage()


def _log_warning(message: str) -> None:
    import logging

    logging.getLogger("cdp_sync").warning(message)


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
