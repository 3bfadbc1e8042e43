"""``cdp-sync verify``: does the warehouse agree with the vendor's own counts?

For every resource a vendor can count, the vendor is asked for its count (the cheapest query that
counts: a HogQL ``count()`` grouped by day, a list's ``count``/``total``/``totalCount``; never the
rows themselves), the destination is asked for the same slice with SQL through the pipeline's
``sql_client`` (one ``SELECT`` per table, a ``SUM(CASE …)`` per slice, UTC range predicates on
``timestamptz`` columns: no cast that depends on a session time zone), and each slice gets a
verdict:

* ``agrees``: the same number;
* ``inside tolerance``: a difference the resource documents as legitimate (rows still inside a
  vendor's ingestion horizon or the source's lookback, see each vendor's ``TOLERANCES``);
* ``disagrees``: any other difference (missing rows are negative, extra or doubled rows positive);
* ``not countable``: the vendor has no count for it (a row, never a silent skip).

Each verification is appended to ``<dataset>._cdp_verification`` (merged on
``(verified_at, pipeline_name, resource, slice)``, so a re-loaded package never doubles a row) by a
pipeline of its own, ``<pipeline_name>_verification``, which leaves the loading pipeline's state
alone.

The vendor-side counts live in ``sources/<vendor>/counts.py`` (over the vendor's client; no dlt);
what is counted where, and the tolerances, in ``pipelines/verify/<vendor>.py``.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

AGREES = "agrees"
INSIDE = "inside tolerance"
DISAGREES = "disagrees"
NOT_COUNTABLE = "not countable"

VERIFICATION_TABLE = "_cdp_verification"
#: the note of whole-table counts: what an extra row usually means
DELETIONS = "rows deleted at the vendor stay loaded; --full-refresh reconciles"
DEFAULT_DAYS = 7
MAX_DAYS = 3660
UTC = dt.UTC


class VerifyInputError(Exception):
    """Bad input for a verification (unknown resource, bad --days, no pipeline): exit 2."""


# --------------------------------------------------------------------------- what is counted


@dataclass(frozen=True)
class Where:
    """The destination side of a slice: rows of ``table`` with ``start <= ts_column < end``
    (UTC instants; either bound may be open) and ``column = value`` for each of ``equals``."""

    ts_column: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    equals: tuple[tuple[str, Any], ...] = ()


@dataclass
class Check:
    """One slice of one resource: the vendor's count and where to count it in the destination.

    ``tolerance`` is the closed range a difference (loaded − vendor) may take and still pass as
    ``inside tolerance`` (``(0, 0)``: exact); ``vendor is None`` means not countable (``note``
    says why)."""

    resource: str
    slice: str
    vendor: int | None
    table: str | None = None
    where: Where | None = None
    tolerance: tuple[int, int] = (0, 0)
    note: str = ""


@dataclass
class SliceResult:
    resource: str
    slice: str
    vendor: int | None
    loaded: int | None
    verdict: str
    note: str = ""

    @property
    def difference(self) -> int | None:
        if self.vendor is None or self.loaded is None:
            return None
        return self.loaded - self.vendor


@dataclass
class Verification:
    vendor: str
    pipeline_name: str
    dataset_name: str
    verified_at: dt.datetime
    results: list[SliceResult] = field(default_factory=list)
    recorded: str | None = None  # where the rows went, e.g. posthog_data._cdp_verification

    def count(self, verdict: str) -> int:
        return sum(r.verdict == verdict for r in self.results)

    @property
    def failed(self) -> list[SliceResult]:
        return [r for r in self.results if r.verdict == DISAGREES]

    @property
    def ok(self) -> bool:
        return not self.failed

    def worst(self) -> SliceResult | None:
        failed = self.failed
        return max(failed, key=lambda r: (abs(r.difference or 0), r.resource, r.slice)) if failed else None

    def summary(self) -> str:
        parts = [f"{self.count(AGREES)} agree", f"{self.count(INSIDE)} inside tolerance",
                 f"{self.count(DISAGREES)} disagree", f"{self.count(NOT_COUNTABLE)} not countable"]
        n = len(self.results)
        return f"{n} slice{'s' if n != 1 else ''}: " + ", ".join(parts)

    def error_line(self) -> str | None:
        """One line naming the worst slice, or ``None`` when nothing disagrees."""
        worst = self.worst()
        if worst is None:
            return None
        d = worst.difference or 0
        hint = f" ({worst.note})" if worst.note and (d > 0 or worst.note != DELETIONS) else ""
        return (f"{self.vendor} {worst.resource} {worst.slice} disagrees: the vendor counts {worst.vendor:,}, "
                f"the destination holds {worst.loaded:,} ({d:+,}){hint}; {len(self.failed)} of {len(self.results)} "
                f"slices disagree")


def judge(check: Check, loaded: int | None) -> SliceResult:
    if check.vendor is None:
        return SliceResult(check.resource, check.slice, None, loaded, NOT_COUNTABLE, check.note)
    loaded = loaded or 0
    d = loaded - check.vendor
    if d == 0:
        verdict = AGREES
    elif check.tolerance[0] <= d <= check.tolerance[1]:
        verdict = INSIDE
    else:
        verdict = DISAGREES
    return SliceResult(check.resource, check.slice, check.vendor, loaded, verdict, check.note)


# --------------------------------------------------------------------------- days


def utc_days(days: int, now: dt.datetime) -> list[tuple[str, dt.datetime, dt.datetime]]:
    """The last ``days`` UTC days up to and including the one holding ``now``, oldest first:
    ``(YYYY-MM-DD, start, end)``."""
    today = dt.datetime(now.year, now.month, now.day, tzinfo=UTC)
    out = []
    for k in range(days - 1, -1, -1):
        start = today - dt.timedelta(days=k)
        out.append((start.date().isoformat(), start, start + dt.timedelta(days=1)))
    return out


def check_days(days: Any) -> int:
    try:
        n = int(days)
    except (TypeError, ValueError):
        raise VerifyInputError(f"--days must be a whole number of days, not {days!r}") from None
    if not 1 <= n <= MAX_DAYS:
        raise VerifyInputError(f"--days must be between 1 and {MAX_DAYS}, not {n}")
    return n


# --------------------------------------------------------------------------- the vendor side


@dataclass
class Context:
    """What a vendor's planner gets: the loading pipeline's state for the source, the tables the
    destination's schema holds, the days to slice, the time of the verification."""

    vendor: str
    resources: list[str]
    source_state: dict[str, Any]
    tables: set[str]
    days: list[tuple[str, dt.datetime, dt.datetime]]
    now: dt.datetime
    config: Callable[[str, Any], Any]

    def resource_state(self, resource: str) -> dict[str, Any]:
        return (self.source_state.get("resources") or {}).get(resource) or {}


def planner(vendor: str) -> Any:
    """``pipelines.verify.<vendor>``: ``RESOURCES`` (every resource of the source, for input
    checks), ``plan(ctx, api_key, base_url) -> list[Check]``."""
    return importlib.import_module(f"pipelines.verify.{vendor}")


def config_getter(vendor: str) -> Callable[[str, Any], Any]:
    import dlt

    def get(key: str, default: Any = None) -> Any:
        value = dlt.config.get(f"sources.{vendor}.{key}")
        return default if value is None else value

    return get


# --------------------------------------------------------------------------- the destination side


def _ts_literal(value: dt.datetime) -> str:
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%d %H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return f"TIMESTAMPTZ '{text}+00'"


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.datetime):
        return _ts_literal(value)
    return "'" + str(value).replace("'", "''") + "'"


def predicate(where: Where, escape: Callable[[str], str]) -> str:
    parts = []
    if where.ts_column is not None:
        col = escape(where.ts_column)
        if where.start is not None:
            parts.append(f"{col} >= {_ts_literal(where.start)}")
        if where.end is not None:
            parts.append(f"{col} < {_ts_literal(where.end)}")
    for column, value in where.equals:
        parts.append(f"{escape(column)} IS NULL" if value is None else f"{escape(column)} = {_literal(value)}")
    return " AND ".join(parts) or "TRUE"


def count_loaded(pipeline: Any, checks: Sequence[Check], tables: set[str]) -> list[int | None]:
    """The destination's count for each check (``None`` for a check without a table): one
    ``SELECT SUM(CASE WHEN … THEN 1 ELSE 0 END), …`` per table, run by the destination itself.
    A table the destination does not hold counts 0 rows."""
    out: list[int | None] = [None] * len(checks)
    by_table: dict[str, list[int]] = {}
    for i, c in enumerate(checks):
        if c.table is not None:
            by_table.setdefault(c.table, []).append(i)
    if not by_table:
        return out
    delta = _delta_tables(pipeline, [t for t in by_table if t in tables])
    for table, idx in list(by_table.items()):
        if table not in tables:
            for i in idx:
                out[i] = 0
            del by_table[table]
        elif table in delta:
            for i in idx:
                out[i] = _count_arrow(delta[table], checks[i].where or Where())
            del by_table[table]
    if not by_table:
        return out
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    with pipeline.sql_client() as client:
        for table, idx in by_table.items():
            name = client.make_qualified_table_name(table)
            sums = ", ".join(
                f"SUM(CASE WHEN {predicate(checks[i].where or Where(), client.escape_column_name)} THEN 1 ELSE 0 END)"
                for i in idx
            )
            try:
                with client.execute_query(f"SELECT {sums} FROM {name}") as cur:
                    row = cur.fetchone()
            except DatabaseUndefinedRelation:  # declared in the schema, never created: no rows
                row = [0] * len(idx)
            for i, v in zip(idx, row or [], strict=False):
                out[i] = int(v or 0)
    return out


def _delta_tables(pipeline: Any, tables: list[str]) -> dict[str, Any]:
    """Delta tables of a filesystem destination, opened with ``deltalake``: DuckDB reads them
    only through its ``delta`` extension, which it would download (not possible offline)."""
    if getattr(pipeline.destination, "destination_type", "").rsplit(".", 1)[-1] != "filesystem":
        return {}
    schema = pipeline.default_schema
    names = [t for t in tables if (schema.tables.get(t) or {}).get("table_format") == "delta"]
    if not names:
        return {}
    from dlt.common.libs.deltalake import get_delta_tables

    return dict(get_delta_tables(pipeline, *names, schema_name=schema.name))


def _count_arrow(table: Any, where: Where) -> int:
    """Rows of a Delta table in ``where``: Arrow's ``count_rows`` with the predicate pushed into
    the scan (the rows are never materialised in Python)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    dataset = table.to_pyarrow_dataset()
    expr = None

    def both(a: Any, b: Any) -> Any:
        return b if a is None else a & b

    if where.ts_column is not None:
        field = ds.field(where.ts_column)
        kind = dataset.schema.field(where.ts_column).type
        for bound, ge in ((where.start, True), (where.end, False)):
            if bound is not None:
                value = pa.scalar(bound.astimezone(UTC), type=pa.timestamp("us", tz="UTC")).cast(kind)
                expr = both(expr, field >= value if ge else field < value)
    for column, value in where.equals:
        expr = both(expr, ds.field(column).is_null() if value is None else ds.field(column) == value)
    return int(dataset.count_rows(filter=expr) if expr is not None else dataset.count_rows())


# --------------------------------------------------------------------------- the pipeline


def open_pipeline(vendor: str, pipeline_name: str, destination: Any, dataset_name: str,
                  destination_name: str, pipelines_dir: str | None = None) -> Any:
    """The loading pipeline as it stands: its local state and schema, or (on a machine without
    them: a fresh container, an Airflow task) restored from the destination. No loaded data
    anywhere is bad input."""
    import os

    import dlt

    db_file = None
    if destination_name == "duckdb":
        from pipelines.backfill import duckdb_path

        db_file = duckdb_path(pipeline_name)
    if db_file is not None and not os.path.exists(db_file):
        raise VerifyInputError(
            f"no {os.path.basename(db_file)} here for pipeline {pipeline_name!r}; run `cdp-sync run {vendor}` "
            "first or pass --pipeline-name / --destination"
        )
    pipeline = dlt.pipeline(pipeline_name=pipeline_name, destination=destination, dataset_name=dataset_name,
                            pipelines_dir=pipelines_dir)
    if not pipeline.default_schema_name:
        pipeline.sync_destination()
    if not pipeline.default_schema_name or vendor not in pipeline.schemas:
        raise VerifyInputError(
            f"pipeline {pipeline_name!r} has loaded nothing of {vendor} into dataset {dataset_name!r}; run "
            f"`cdp-sync run {vendor}` first or pass --pipeline-name / --dataset-name"
        )
    return pipeline


def loaded_tables(pipeline: Any, vendor: str) -> set[str]:
    schema = pipeline.schemas[vendor]
    return {name for name, table in schema.tables.items() if not name.startswith("_dlt") and table.get("columns")}


def verify(
    vendor: str,
    *,
    pipeline: Any,
    resources: Iterable[str] | None = None,
    days: int = DEFAULT_DAYS,
    api_key: str,
    base_url: str,
    record: bool = True,
    destination: Any = None,
    now: dt.datetime | None = None,
    strict: bool = True,
) -> Verification:
    """Verify ``resources`` (default: every resource of the source whose table the pipeline
    holds) of ``pipeline`` against the vendor, record the result in the warehouse (unless
    ``record`` is false) and return it. Raises :class:`VerifyInputError` for bad input; with
    ``strict`` false (after a run) a resource verify does not know is a ``not countable`` row."""
    mod = planner(vendor)
    days = check_days(days)
    tables = loaded_tables(pipeline, vendor)
    unknown: list[str] = []
    if resources is None:
        wanted = [r for r in mod.RESOURCES if mod.TABLES.get(r, r) in tables]
    else:
        wanted = list(dict.fromkeys(r for r in resources if r))
        unknown = [r for r in wanted if r not in mod.RESOURCES]
        if unknown and strict:
            raise VerifyInputError(f"{vendor} has no resource {', '.join(unknown)}; available: {', '.join(mod.RESOURCES)}")
        wanted = [r for r in wanted if r not in unknown]
    now = now or dt.datetime.now(UTC)
    ctx = Context(vendor=vendor, resources=wanted, source_state=(pipeline.state.get("sources") or {}).get(vendor) or {},
                  tables=tables, days=utc_days(days, now), now=now, config=config_getter(vendor))
    checks = mod.plan(ctx, api_key, base_url) if wanted else []
    checks += [Check(r, "all", None, r if r in tables else None, Where(), note="cdp-sync verify does not know this resource")
               for r in unknown]
    loaded = count_loaded(pipeline, checks, tables)
    result = Verification(vendor, pipeline.pipeline_name, pipeline.dataset_name, now)
    result.results = [judge(c, n) for c, n in zip(checks, loaded, strict=True)]
    if record and result.results:
        result.recorded = record_verification(result, pipeline, destination)
    return result


def record_verification(result: Verification, pipeline: Any, destination: Any = None) -> str:
    """Append the slices to ``<dataset>._cdp_verification`` through a pipeline of its own
    (``<pipeline>_verification``: the loading pipeline's state and schema stay as they are),
    merged on ``(verified_at, pipeline_name, resource, slice)``."""
    import dlt

    rows = [
        {
            "verified_at": result.verified_at,
            "pipeline_name": result.pipeline_name,
            "vendor": result.vendor,
            "resource": r.resource,
            "slice": r.slice,
            "vendor_count": r.vendor,
            "loaded_count": r.loaded,
            "difference": r.difference,
            "verdict": r.verdict,
            "note": r.note or None,
        }
        for r in result.results
    ]
    columns = {
        "verified_at": {"data_type": "timestamp", "nullable": False},
        "pipeline_name": {"data_type": "text", "nullable": False},
        "vendor": {"data_type": "text"},
        "resource": {"data_type": "text", "nullable": False},
        "slice": {"data_type": "text", "nullable": False},
        "vendor_count": {"data_type": "bigint", "nullable": True},
        "loaded_count": {"data_type": "bigint", "nullable": True},
        "difference": {"data_type": "bigint", "nullable": True},
        "verdict": {"data_type": "text", "nullable": False},
        "note": {"data_type": "text", "nullable": True},
    }
    # files merge only as Delta (or Iceberg) tables: Delta where the pipeline writes Delta, else
    # an append (each verification has its own verified_at)
    table_format = None
    disposition = "merge"
    if getattr(pipeline.destination, "destination_type", "").rsplit(".", 1)[-1] == "filesystem":
        formats = {t.get("table_format") for t in pipeline.default_schema.tables.values()}
        table_format = "delta" if "delta" in formats else None
        disposition = "merge" if table_format else "append"
    resource = dlt.resource(
        rows, name=VERIFICATION_TABLE, table_name=VERIFICATION_TABLE, write_disposition=disposition,
        primary_key=["verified_at", "pipeline_name", "resource", "slice"], columns=columns,
        table_format=table_format,
    )
    recorder = dlt.pipeline(
        pipeline_name=f"{pipeline.pipeline_name}_verification",
        destination=destination if destination is not None else pipeline.destination,
        dataset_name=pipeline.dataset_name,
        pipelines_dir=pipeline.pipelines_dir,
    )
    info = recorder.run(resource)
    info.raise_on_failed_jobs()
    return f"{pipeline.dataset_name}.{VERIFICATION_TABLE}"


# --------------------------------------------------------------------------- printing


def format_table(result: Verification) -> list[str]:
    lines = [f"  {'resource':<22} {'slice':<34} {'vendor':>10} {'loaded':>10} {'difference':>10}  verdict"]
    for r in result.results:
        vendor = "-" if r.vendor is None else f"{r.vendor:,}"
        loaded = "-" if r.loaded is None else f"{r.loaded:,}"
        diff = "-" if r.difference is None else f"{r.difference:+,}" if r.difference else "0"
        note = f"  ({r.note})" if r.note and r.verdict != AGREES else ""
        lines.append(f"  {r.resource:<22} {r.slice:<34} {vendor:>10} {loaded:>10} {diff:>10}  {r.verdict}{note}".rstrip())
    return lines


# --------------------------------------------------------------------------- for orchestrators


class VerificationFailed(Exception):
    """A verification in which a slice disagrees (its message: the worst slice, one line)."""

    def __init__(self, result: Verification) -> None:
        super().__init__(result.error_line() or "verification failed")
        self.result = result


def run_verification(vendor: str, *, destination: str = "duckdb", pipeline_name: str | None = None,
                     dataset_name: str | None = None, pipelines_dir: str | None = None,
                     resources: Iterable[str] | None = None, days: int = DEFAULT_DAYS,
                     raise_on_disagreement: bool = True) -> Verification:
    """``cdp-sync verify <vendor>`` from Python (an Airflow task, a script): credentials the dlt
    way, the pipeline's state from ``pipelines_dir`` or, on a fresh machine, from the destination.
    Raises :class:`VerificationFailed` when a slice disagrees (unless ``raise_on_disagreement``
    is false), :class:`VerifyInputError` on bad input."""
    import dlt

    from pipelines.backfill import destination_for
    from pipelines.vendors import VENDORS

    if vendor not in VENDORS:
        raise VerifyInputError(f"unknown vendor {vendor!r}; known: {', '.join(sorted(VENDORS))}")
    v = VENDORS[vendor]
    key = dlt.secrets.get(f"{v.section}.api_key")
    if not key:
        raise VerifyInputError(f"{vendor}: no API key; set {v.key_env} or api_key under [{v.section}] in .dlt/secrets.toml")
    base_url = dlt.config.get(f"{v.section}.base_url") or v.default_base_url
    pipeline_name = pipeline_name or vendor
    dataset_name = dataset_name or f"{vendor}_data"
    dest = destination_for(destination, pipeline_name)
    pipeline = open_pipeline(vendor, pipeline_name, dest, dataset_name, destination, pipelines_dir)
    result = verify(vendor, pipeline=pipeline, resources=resources, days=days, api_key=str(key),
                    base_url=str(base_url), destination=dest)
    if raise_on_disagreement and not result.ok:
        raise VerificationFailed(result)
    return result
