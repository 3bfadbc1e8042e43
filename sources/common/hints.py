"""Per-run table hints a resource attaches to the first page it yields.

**Rows unique within a run.** dlt's default merge (``delete-insert``) first de-duplicates the
staging table on the primary key with a window function over every column, which on a large
load costs DuckDB several hundred MB (it sorts full rows). When a run's rows are unique by
construction — a backfill walking disjoint id ranges on a unique key, a keyset walk on a
unique id — that step is pure cost, and dlt can skip it (``deduplicated``). When they may not
be (an incremental walk on a moving cursor can read a row twice if it changes during the walk),
the step stays and the copy kept is chosen by the ``dedup_sort`` column hint (the newest cursor
value), never at random.

The hint is written on every run (``True`` or ``False``), because a table's hints persist in the
dlt schema: a backfill's "unique" must not leak into the next incremental run.
"""

from __future__ import annotations

import logging
from typing import Any

import dlt

DEDUPLICATED = "x-stage-data-deduplicated"


class _DeliberateDedupFilter(logging.Filter):
    """dlt warns that a ``dedup_sort`` hint is ignored while staging data is declared
    de-duplicated; that is exactly the intent on a unique run, so the warning would only teach
    users to ignore warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("dedup_sort" in message and "already deduplicated" in message)


def _quiet_deliberate_dedup_warning() -> None:
    logger = logging.getLogger("dlt")
    if not any(isinstance(f, _DeliberateDedupFilter) for f in logger.filters):
        logger.addFilter(_DeliberateDedupFilter())


def merge_run_hints(item: Any, *, unique_in_run: bool) -> Any:
    """``item`` marked so that this run's merge skips staging de-duplication iff
    ``unique_in_run`` (the resource's other hints are unchanged)."""
    _quiet_deliberate_dedup_warning()
    hints = dlt.mark.make_hints(
        # no strategy: each destination keeps its default (delete-insert on SQL databases, where
        # this matters; upsert on Delta tables, which do not support delete-insert)
        write_disposition={"disposition": "merge", "deduplicated": unique_in_run},
        additional_table_hints={DEDUPLICATED: unique_in_run},
    )
    return dlt.mark.with_hints(item, hints)
