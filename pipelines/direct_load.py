"""A first load into an empty DuckDB table appends instead of merging.

dlt's merge copies every file of a merge table into a staging table, then deletes the rows of
the final table whose keys are in staging and inserts staging into it. When the final table is
absent or empty and the run's rows are unique on the key by construction (the
``x-stage-data-deduplicated`` hint of :mod:`sources.common.hints`), that merge cannot change
anything: appending the files straight into the final table gives the same rows, without the
staging copy, its checkpoint and the merge (a first load of 100,000 Lytics profiles: about a
third of the load's CPU). :func:`append_first_loads` decides this per table of each package about
to be loaded, just before dlt's load step, by switching the table to ``append`` in that package's
schema and marking it (``x-cdp-direct-first-load``). Not for a table whose rows do not all land as
rows: one with a ``hard_delete`` column (a marked row deletes its key) or another merge strategy.

**An interrupted direct load.** DuckDB commits each file's copy in its own transaction, and dlt
records the job as done only afterwards, so a process killed in between copies that file again
when the package is finished: appended twice, its rows would be doubled. A package that
stopped part way is therefore finished as a merge (:func:`finish_interrupted_direct_loads`, run
before any pending package is loaded): the marked table goes back to ``merge`` with
de-duplication, and its staging table, which dlt never created for an append (and does not
initialise again for a package already partly loaded), is created empty. The files still to
copy go to staging, and the merge replaces any of their rows already appended: nothing is lost
or doubled. A package that never started loading goes back to an ordinary merge.

Only DuckDB, and only where the check and the load happen in one process one after the other:
that process is DuckDB's one writer, and cdp-sync's loads into one DuckDB file run one at a
time (``pipelines.backfill`` holds a process-wide lock around its loads). The decision is
written in the package's copy of the schema, which dlt stores in the destination when the load
begins; the pipeline's own schema keeps ``merge`` and is stored after the load
(:func:`store_own_schemas`), so a pipeline restored from the destination merges, and a marker that
comes back with a restored schema anyway is undone (:func:`_repair_leaked`).
"""

from __future__ import annotations

import logging
from typing import Any

DIRECT = "x-cdp-direct-first-load"

logger = logging.getLogger("cdp_sync")


class _DirectDedupSortFilter(logging.Filter):
    """dlt warns that a ``dedup_sort`` hint is ignored on an ``append`` table; on a table this
    module switched to ``append`` that is the intent (the table was empty, the run's keys unique),
    so only those tables' warnings are dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "dedup_sort" not in message or '"append"' not in message:
            return True
        return not any(f'table "{t}"' in message for t in self.tables)


_filter = _DirectDedupSortFilter()


def _is_duckdb(pipeline: Any) -> bool:
    destination = getattr(pipeline, "destination", None)
    return destination is not None and getattr(destination, "destination_type", None) == "dlt.destinations.duckdb"


def _packages(pipeline: Any) -> tuple[Any, list[str]]:
    load_ids = pipeline.list_normalized_load_packages()
    if not load_ids:
        return None, []
    return pipeline._get_load_storage().normalized_packages, list(load_ids)


def _merge_roots(schema: Any) -> list[dict[str, Any]]:
    """The package's root tables merged by dlt's plain ``delete-insert`` whose rows all become
    rows: not nested tables (merged through their root), not a table with a ``hard_delete``
    column (its marked rows delete a key instead of landing: a Synerise profile merged away),
    not another merge strategy."""
    parents = {t.get("parent") for t in schema.tables.values() if t.get("parent")}
    return [
        t for name, t in schema.tables.items()
        if not name.startswith("_dlt") and not t.get("parent") and name not in parents
        and _disposition(t) == "merge" and t.get("x-merge-strategy") in (None, "delete-insert")
        and not any(c.get("hard_delete") for c in t.get("columns", {}).values())
    ]


def _disposition(table: dict[str, Any]) -> str | None:
    wd = table.get("write_disposition")
    return wd.get("disposition") if isinstance(wd, dict) else wd


def _started(packages: Any, load_id: str) -> bool:
    """Whether any job of the package has started (or a schema change reached the destination):
    such a package may already have written to the destination."""
    info = packages.get_load_package_info(load_id)
    if packages.is_package_partially_loaded(info):
        return True
    return bool(info.jobs["started_jobs"] or info.jobs["completed_jobs"] or info.jobs["failed_jobs"])


def _absent_or_empty(client: Any, table: str) -> bool:
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    try:
        return not client.execute_sql(f"SELECT 1 FROM {client.make_qualified_table_name(table)} LIMIT 1")
    except DatabaseUndefinedRelation:
        return True


def _quiet_dedup_sort_warning(table: str) -> None:
    _filter.tables.add(table)
    dlt_logger = logging.getLogger("dlt")
    if _filter not in dlt_logger.filters:
        dlt_logger.addFilter(_filter)


def _repair_leaked(pipeline: Any, schema: Any) -> list[str]:
    """Tables of a package not yet started that carry the marker: it came with a schema restored
    from the destination (the newest stored schema was a direct load's package schema, whose
    table says ``append``). They go back to a de-duplicating merge, in the package and in the
    pipeline's own schema, which the next runs extract with."""
    from sources.common.hints import DEDUPLICATED

    leaked = [t for t in schema.tables.values() if DIRECT in t]
    for table in leaked:
        table.pop(DIRECT, None)
        if _disposition(table) == "append":
            table["write_disposition"] = "merge"
            table[DEDUPLICATED] = False
    if leaked and schema.name in pipeline.schemas:
        live = pipeline.schemas[schema.name]
        for table in leaked:
            own = live.tables.get(table["name"])
            if own is not None and DIRECT in own:
                own.pop(DIRECT, None)
                if _disposition(own) == "append":
                    own["write_disposition"] = "merge"
        pipeline.schemas.save_schema(live)
    return [t["name"] for t in leaked]


def append_first_loads(pipeline: Any) -> list[str]:
    """In each package not yet started, switch to ``append`` every root merge table whose rows
    are unique in its run and whose DuckDB table is absent or empty (or is dropped or truncated
    by a refresh before the package's first job); returns the tables switched."""
    from sources.common.hints import DEDUPLICATED

    if not _is_duckdb(pipeline):
        return []
    packages, load_ids = _packages(pipeline)
    switched: list[str] = []
    for load_id in load_ids:
        if _started(packages, load_id):
            continue
        schema = packages.load_schema(load_id)
        repaired = _repair_leaked(pipeline, schema)
        candidates = [t for t in _merge_roots(schema) if t.get(DEDUPLICATED) and t["name"] not in repaired]
        # tables a refresh drops or truncates before the package's first job are empty by then
        state = packages.get_load_package_state(load_id)
        emptied = {t["name"] for key in ("dropped_tables", "truncated_tables") for t in state.get(key) or ()}
        chosen = [t for t in candidates if t["name"] in emptied]
        rest = [t for t in candidates if t["name"] not in emptied]
        if rest:
            with pipeline.sql_client(schema.name) as client:
                if not client.has_dataset():
                    chosen += rest
                else:
                    chosen += [t for t in rest if _absent_or_empty(client, t["name"])]
        for table in chosen:
            _quiet_dedup_sort_warning(table["name"])
            table["write_disposition"] = "append"
            table[DIRECT] = True
            switched.append(table["name"])
        if repaired or chosen:
            packages.save_schema(load_id, schema)
    if switched:
        logger.info("first load of %s: appended (the tables are empty and the run's keys unique)", ", ".join(switched))
    return switched


def store_own_schemas(pipeline: Any) -> None:
    """After a direct load: store the pipeline's own schemas (``merge``) in the destination, newer
    than the package's (``append``) which dlt stored when the load began, so that a pipeline
    restored from the destination merges. (Should this never happen, :func:`_repair_leaked`
    catches the marker on the next run.)"""
    for name in pipeline.schema_names:
        pipeline.sync_schema(name)


def finish_interrupted_direct_loads(pipeline: Any) -> list[str]:
    """Turn every direct first load of a pending package back into a merge (see the module);
    returns the tables whose staging table was created for an interrupted one."""
    from sources.common.hints import DEDUPLICATED

    packages, load_ids = _packages(pipeline)
    resumed: list[str] = []
    for load_id in load_ids:
        schema = packages.load_schema(load_id)
        # a marker without the append it came with (a schema restored from the destination) is stale
        tables = [t for t in schema.tables.values() if t.get(DIRECT) and _disposition(t) == "append"]
        if not tables:
            continue
        for table in tables:
            table["write_disposition"] = "merge"
            table[DEDUPLICATED] = False
            table.pop(DIRECT, None)
        started = _started(packages, load_id)
        if started:
            with pipeline.sql_client(schema.name) as client:
                final = {t["name"]: client.make_qualified_table_name(t["name"]) for t in tables}
                with client.with_staging_dataset():
                    if not client.has_dataset():
                        client.create_dataset()
                    for name, qualified in final.items():
                        # empty, with the final table's columns (which dlt created when the package started)
                        client.execute_sql(
                            f"CREATE OR REPLACE TABLE {client.make_qualified_table_name(name)} AS "
                            f"SELECT * FROM {qualified} LIMIT 0"
                        )
                        resumed.append(name)
        packages.save_schema(load_id, schema)
    if resumed:
        logger.warning("finishing the interrupted first load of %s as a merge (rows already appended are "
                       "replaced, not doubled)", ", ".join(resumed))
    return resumed
