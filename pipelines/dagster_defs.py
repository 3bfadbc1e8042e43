"""Dagster definitions for cdp-sync: every available source's resources as assets (dagster-dlt).

Load them with ``dagster dev -m pipelines.dagster_defs`` (or ``-f pipelines/dagster_defs.py``)
from the project directory, where ``.dlt/`` lives. Install with ``pip install -e ".[orchestration]"``
(plus ``dagster-webserver`` for the UI). What you get, per vendor:

* **Scheduled assets** ``<vendor>/<resource>`` (group ``<vendor>``): one multi-asset over every
  resource of the source, run through dagster-dlt's ``DagsterDltResource`` with the same pipeline
  and dataset as ``cdp-sync run <vendor>`` (pipeline ``<vendor>``, dataset ``<vendor>_data``,
  DuckDB file ``<vendor>.duckdb`` or the configured destination): an incremental run from the
  cursors in dlt state. The job ``<vendor>_incremental_job`` and the schedule
  ``<vendor>_incremental`` (daily; hourly for Synerise, whose API keeps only 6 hours of
  activity) run them. Resources can be materialised one by one (the asset is subsettable).
* **Daily window assets** ``<vendor>/windows/<resource>`` (group ``<vendor>_windows``) for the
  time-windowed resources (the source's ``BACKFILL_RESOURCES``), daily-partitioned in UTC from a
  configurable start date. Materialising partition ``D`` runs exactly the window job that
  ``cdp-sync backfill <vendor> --resource R --from D --to D+1`` runs
  (:func:`pipelines.backfill.run_window`): its own pipeline
  ``<vendor>_backfill_<resource>_<D>0000_<D+1>0000`` and state, loading into the scheduled
  pipeline's destination and dataset, never touching the scheduled pipeline's state; a day
  already finished (by Dagster or by the CLI: the record is the same) is skipped unless the run
  config says ``force: true``. Each partition is its own run (``BackfillPolicy.multi_run(1)``),
  so a Dagster backfill over a date range fans the windows out over Dagster's run workers.

The window resources are also in the scheduled assets: the incremental run keeps loading them
(with its lookback for late rows; for Synerise, the only way to keep up with the 6-hour horizon).
Dagster lets one asset key have one definition, so the daily windows are separate assets that
write the same tables (their ``dagster/table_name`` metadata says which).

**Configuration** (the dlt way: ``.dlt/config.toml`` or environment variables, which win):

===================================  =========================================  ====================
key                                  environment variable                       default
===================================  =========================================  ====================
``cdp_sync.dagster.vendors``         ``CDP_SYNC__DAGSTER__VENDORS``             every available one
``cdp_sync.dagster.destination``     ``CDP_SYNC__DAGSTER__DESTINATION``         ``duckdb``
``cdp_sync.dagster.table_format``    ``CDP_SYNC__DAGSTER__TABLE_FORMAT``        none (``delta`` …)
``cdp_sync.dagster.start_date``      ``CDP_SYNC__DAGSTER__START_DATE``          ``2025-01-01``
``cdp_sync.dagster.<vendor>.…``      ``CDP_SYNC__DAGSTER__<VENDOR>__START_DATE`` the global one
``cdp_sync.dagster.<vendor>.cron``   ``CDP_SYNC__DAGSTER__<VENDOR>__CRON``      see ``DEFAULT_CRON``
===================================  =========================================  ====================

**Credentials** never appear here: each run builds its source with ``<vendor>_source()``, which
resolves ``api_key`` (``SOURCES__<VENDOR>__API_KEY`` or ``.dlt/secrets.toml``) when the run starts;
the destination's credentials come from ``[destination.<name>]`` likewise. The definitions name
their assets from a source built with a placeholder key, so loading them needs no secret and the
assets' metadata holds none. Failures reach Dagster as one redacted line (and a redacted
traceback in the failure's metadata), never with an API key.

**Concurrency.** DuckDB lets one process write a file at a time, and Dagster runs every run in a
process of its own: both the scheduled and the window assets of a vendor are in the pool
``cdp_sync_<vendor>`` (the pipeline name); give it a limit of 1
(``dagster instance concurrency set cdp_sync_personyze 1``). With a warehouse the window assets
use the pool ``cdp_sync_<vendor>_windows`` instead, whose limit is how many days load at once
(mind the vendor's rate limits); keep ``cdp_sync_<vendor>``'s limit at 1 so scheduled runs never
overlap.
"""

# no `from __future__ import annotations`: Dagster reads the annotations of asset functions
# (the context and run config types) at definition time
import os
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dlt
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    BackfillPolicy,
    Backoff,
    Config,
    DailyPartitionsDefinition,
    DefaultScheduleStatus,
    Definitions,
    Failure,
    Jitter,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    ScheduleDefinition,
    define_asset_job,
    definitions,
    multi_asset,
    multi_asset_check,
)
from dagster_dlt import DagsterDltResource, DagsterDltTranslator, dlt_assets
from dagster_dlt.translator import DltResourceTranslatorData

from pipelines import backfill as bf
from pipelines.destinations import loader_file_format, run_within_cap
from pipelines.runtime import settle_heap
from pipelines.vendors import VENDORS
from sources.common.window import Window, iso, parse_instant

#: the first daily partition unless configured (``cdp_sync.dagster.start_date``)
DEFAULT_START_DATE = "2025-01-01"
#: scheduled incremental runs: daily, except Synerise, whose API keeps activities for 6 hours
DEFAULT_CRON = {"synerise": "15 * * * *"}
DAILY_CRON = "0 3 * * *"
#: stands in for the API key while the definitions are built (the key format every source accepts);
#: never used for a request: each run builds its source with the configured key
PLACEHOLDER_API_KEY = "0" * 40
#: a failed window is retried (a busy DuckDB file, a vendor outage); configuration and credential
#: errors are not (see :func:`_failure`)
WINDOW_RETRY = RetryPolicy(max_retries=2, delay=30, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


@dataclass(frozen=True)
class VendorSettings:
    """How one vendor is orchestrated; :func:`settings_from_config` reads them the dlt way."""

    vendor: str
    destination: str = "duckdb"
    table_format: str | None = None
    start_date: str = DEFAULT_START_DATE
    cron: str | None = None
    pipeline_name: str | None = None
    dataset_name: str | None = None
    #: dlt's pipelines folder (default: dlt's own, under ``~/.dlt``)
    pipelines_dir: str | None = None
    #: asset checks ``matches_vendor_counts`` on the scheduled assets (``cdp-sync verify``)
    verify: bool = True
    #: a failed check fails the run and blocks what depends on the asset
    verify_blocking: bool = False
    #: UTC days sliced one by one (``--days``)
    verify_days: int = 7

    @property
    def pipeline(self) -> str:
        return self.pipeline_name or self.vendor

    @property
    def dataset(self) -> str:
        return self.dataset_name or f"{self.vendor}_data"

    @property
    def schedule_cron(self) -> str:
        return self.cron or DEFAULT_CRON.get(self.vendor, DAILY_CRON)

    @property
    def pool(self) -> str:
        """The pool of the scheduled assets (and, with DuckDB, of the windows too)."""
        return f"cdp_sync_{self.pipeline}"

    @property
    def window_pool(self) -> str:
        return self.pool if self.destination == "duckdb" else f"{self.pool}_windows"


def _listed(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.strip().strip("[]").replace('"', "").replace("'", "").split(",") if v.strip()]
    return [str(v).strip() for v in value]


def settings_from_config() -> list[VendorSettings]:
    """The vendors to orchestrate and their settings, from ``[cdp_sync.dagster]`` (see the module
    docstring). An unknown vendor is a :class:`ValueError` naming the known ones."""
    get = dlt.config.get
    wanted = _listed(get("cdp_sync.dagster.vendors")) or list(VENDORS)
    unknown = [v for v in wanted if v not in VENDORS]
    if unknown:
        raise ValueError(f"cdp_sync.dagster.vendors: unknown vendor {', '.join(unknown)}; known: {', '.join(VENDORS)}")
    destination = str(get("cdp_sync.dagster.destination") or "duckdb")
    table_format = get("cdp_sync.dagster.table_format") or None
    if table_format and destination != "filesystem":
        raise ValueError(f"cdp_sync.dagster.table_format {table_format} needs the filesystem destination")
    start = str(get("cdp_sync.dagster.start_date") or DEFAULT_START_DATE)

    def flag(v: str, key: str, default: bool) -> bool:
        value = get(f"cdp_sync.dagster.{v}.{key}")
        value = get(f"cdp_sync.dagster.{key}") if value is None else value
        if value is None:
            return default
        return value.strip().lower() in ("1", "true", "yes", "on") if isinstance(value, str) else bool(value)

    return [
        VendorSettings(
            vendor=v,
            destination=destination,
            table_format=table_format,
            start_date=str(get(f"cdp_sync.dagster.{v}.start_date") or start),
            cron=get(f"cdp_sync.dagster.{v}.cron") or None,
            verify=flag(v, "verify", True),
            verify_blocking=flag(v, "verify_blocking", False),
            verify_days=int(get(f"cdp_sync.dagster.{v}.verify_days") or get("cdp_sync.dagster.verify_days") or 7),
        )
        for v in wanted
    ]


# -- asset specs -----------------------------------------------------------------------------------


@dataclass
class CdpSyncTranslator(DagsterDltTranslator):
    """Asset keys ``<vendor>/<resource>`` (scheduled) or ``<vendor>/windows/<resource>`` (daily
    windows), the table each writes as ``dagster/table_name`` (``<dataset>.<table>``), no
    upstream stub assets."""

    vendor: str = ""
    dataset_name: str = ""
    #: ``{resource: time axis}`` for the window assets; empty for the scheduled ones
    windowed: Mapping[str, str] = field(default_factory=dict)

    def get_asset_spec(self, data: DltResourceTranslatorData) -> AssetSpec:
        spec = super().get_asset_spec(data)
        resource = data.resource
        table = resource.table_name if isinstance(resource.table_name, str) else resource.name
        if self.windowed:
            key = AssetKey([self.vendor, "windows", resource.name])
            group = f"{self.vendor}_windows"
            description = (
                f"One UTC day of {self.vendor} {resource.name} (by {self.windowed[resource.name]}) merged into "
                f"{self.dataset_name}.{table}: partition D runs the window job of "
                f"`cdp-sync backfill {self.vendor} --resource {resource.name} --from D --to D+1`."
            )
        else:
            key = AssetKey([self.vendor, resource.name])
            group = self.vendor
            description = (
                f"{self.vendor} {resource.name} into {self.dataset_name}.{table}, incrementally: "
                f"the scheduled run of `cdp-sync run {self.vendor}`."
            )
        return spec.replace_attributes(key=key, group_name=group, deps=[], description=description).merge_attributes(
            metadata={"dagster/table_name": f"{self.dataset_name}.{table}"}
        )


def _shape(settings: VendorSettings, **window: Any) -> Any:
    """The source as the definitions see it: its resources, with a placeholder key (see
    :data:`PLACEHOLDER_API_KEY`); other options resolve from the configuration as a run's would."""
    return VENDORS[settings.vendor].load_source()(api_key=PLACEHOLDER_API_KEY, **window)


def _pipeline(settings: VendorSettings) -> dlt.Pipeline:
    """The scheduled pipeline, named and placed as ``cdp-sync run`` names and places it."""
    return dlt.pipeline(
        pipeline_name=settings.pipeline,
        destination=bf.destination_for(settings.destination, settings.pipeline),
        dataset_name=settings.dataset,
        pipelines_dir=settings.pipelines_dir,
    )


# -- failures ----------------------------------------------------------------------------------------


def _one_line(exc: BaseException, vendor: str) -> tuple[str, bool]:
    """The CLI's one-line, redacted explanation of a failure, and whether retrying may help
    (not for bad configuration or refused credentials)."""
    from dlt.common.configuration.exceptions import ConfigFieldMissingException

    from pipelines.cli import EXIT_USAGE, _explain
    from sources.common.errors import AuthError

    message, code = _explain(exc, vendor)
    chain, seen = [exc], set()
    permanent = code == EXIT_USAGE
    while chain:
        e = chain.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, (AuthError, ConfigFieldMissingException)):
            permanent = True
        chain += [getattr(e, "exception", None), e.__cause__, e.__context__]
    return message, not permanent


def _failure(what: str, errors: Sequence[tuple[str, BaseException]], vendor: str) -> Failure:
    """A Dagster failure holding only redacted text: the exceptions themselves (whose messages
    and chained causes Dagster would record) are not attached."""
    from sources.common.redact import redact

    lines, retry = [], False
    for label, exc in errors:
        message, retryable = _one_line(exc, vendor)
        lines.append(f"{label}: {message}")
        retry = retry or retryable
    trace = "\n".join(redact("".join(traceback.format_exception(exc))) for _, exc in errors)
    return Failure(
        description=f"{what} failed: " + "; ".join(lines),
        metadata={"errors": MetadataValue.json(lines), "traceback (redacted)": MetadataValue.text(trace)},
        allow_retries=retry,
    )


# -- scheduled assets ---------------------------------------------------------------------------------


def scheduled_assets(settings: VendorSettings) -> AssetsDefinition:
    """Every resource of the vendor as assets of one subsettable dagster-dlt multi-asset, run
    like ``cdp-sync run <vendor>`` (same pipeline, dataset, destination and file format)."""
    vendor = settings.vendor
    source = VENDORS[vendor].load_source()
    pipeline = _pipeline(settings)
    fmt = loader_file_format(settings.destination)

    @dlt_assets(
        dlt_source=_shape(settings),
        dlt_pipeline=pipeline,
        name=f"{vendor}_incremental",
        dagster_dlt_translator=CdpSyncTranslator(vendor=vendor, dataset_name=settings.dataset),
        pool=settings.pool,
    )
    def _assets(context: AssetExecutionContext, dlt: DagsterDltResource) -> Iterator[Any]:
        try:
            # credentials resolve now, the dlt way (environment, .dlt/secrets.toml)
            run = source()
            settle_heap()
            if pipeline.has_pending_data:
                # an earlier materialization stopped before its load finished (DuckDB over its
                # memory cap, a crash): finish that package first, uncapped if it must be
                finished = run_within_cap(pipeline, pipeline.run, warn=context.log.warning)
                if finished is not None:
                    finished.raise_on_failed_jobs()
            yield from dlt.run(context=context, dlt_source=run, dlt_pipeline=pipeline,
                               loader_file_format=fmt, table_format=settings.table_format)
        except Exception as exc:
            raise _failure(f"{vendor} incremental run", [(vendor, exc)], vendor) from None

    return _assets


# -- asset checks: cdp-sync verify --------------------------------------------------------------------------

#: the name of every verification check (one per scheduled asset)
CHECK_NAME = "matches_vendor_counts"


def verification_checks(settings: VendorSettings) -> AssetChecksDefinition:
    """``cdp-sync verify <vendor>`` as one asset check per scheduled asset,
    ``matches_vendor_counts``: it fails when a slice of the resource disagrees with the vendor's
    own count (outside the resource's documented tolerance); each evaluation's metadata holds the
    slices, and the verification is recorded in ``<dataset>._cdp_verification`` as the CLI records
    it. A resource the vendor cannot count passes, saying so. ``verify_blocking`` makes the
    checks blocking: a failure fails the run and blocks what depends on the asset."""
    vendor = settings.vendor
    resources = list(_shape(settings).resources)
    specs = [
        AssetCheckSpec(CHECK_NAME, asset=AssetKey([vendor, r]), blocking=settings.verify_blocking,
                       description=f"{settings.dataset}.{r} agrees with {vendor}'s own counts (`cdp-sync verify "
                                   f"{vendor} --resources {r}`)")
        for r in resources
    ]

    @multi_asset_check(name=f"{vendor}_verification", specs=specs, can_subset=True, pool=settings.pool)
    def _checks(context: AssetCheckExecutionContext) -> Iterator[AssetCheckResult]:
        from pipelines import verify as vf

        wanted = [k.asset_key.path[-1] for k in context.selected_asset_check_keys]
        try:
            key = dlt.secrets.get(f"sources.{vendor}.api_key")
            if not key:
                from sources.common.errors import ConfigurationError

                raise ConfigurationError(f"{vendor}: no API key; set {VENDORS[vendor].key_env}")
            base_url = dlt.config.get(f"sources.{vendor}.base_url") or VENDORS[vendor].default_base_url
            destination = bf.destination_for(settings.destination, settings.pipeline)
            pipeline = vf.open_pipeline(vendor, settings.pipeline, destination, settings.dataset,
                                        settings.destination, settings.pipelines_dir)
            result = vf.verify(vendor, pipeline=pipeline, resources=wanted, days=settings.verify_days,
                               api_key=str(key), base_url=str(base_url), destination=destination, strict=False)
        except Exception as exc:
            raise _failure(f"{vendor} verification", [(vendor, exc)], vendor) from None
        for resource in wanted:
            slices = [r for r in result.results if r.resource == resource]
            failed = [r for r in slices if r.verdict == vf.DISAGREES]
            worst = max(failed, key=lambda r: abs(r.difference or 0)) if failed else None
            counted = [r for r in slices if r.verdict != vf.NOT_COUNTABLE]
            if worst is not None:
                text = (f"{len(failed)} of {len(slices)} slices disagree; worst: {worst.slice}: {vendor} counts "
                        f"{worst.vendor:,}, the destination holds {worst.loaded:,} ({worst.difference:+,})")
            elif counted:
                text = f"{len(counted)} slices agree with {vendor}'s counts" + (
                    f" ({sum(r.verdict == vf.INSIDE for r in slices)} inside tolerance)"
                    if any(r.verdict == vf.INSIDE for r in slices) else "")
            else:
                text = f"not countable: {slices[0].note if slices else 'nothing to count'}"
            yield AssetCheckResult(
                asset_key=AssetKey([vendor, resource]),
                check_name=CHECK_NAME,
                passed=worst is None,
                severity=AssetCheckSeverity.ERROR,
                description=text,
                metadata={
                    "slices": MetadataValue.json([
                        {"slice": r.slice, "vendor": r.vendor, "loaded": r.loaded, "difference": r.difference,
                         "verdict": r.verdict, **({"note": r.note} if r.note else {})} for r in slices]),
                    "disagreeing": MetadataValue.int(len(failed)),
                    "verified_at": result.verified_at.isoformat(),
                    "recorded_in": result.recorded or "",
                },
            )

    return _checks


# -- daily window assets ---------------------------------------------------------------------------------


class WindowRunConfig(Config):
    """Run config of the window assets: ``force`` reads finished days again (``--force``)."""

    force: bool = False


def daily_partitions(settings: VendorSettings) -> DailyPartitionsDefinition:
    """UTC days from the configured start date up to yesterday (a day is a partition once it
    has ended)."""
    start = parse_instant(settings.start_date, "cdp_sync.dagster.start_date", settings.vendor)
    return DailyPartitionsDefinition(start_date=start.strftime("%Y-%m-%d"), timezone="UTC")


def partition_windows(start: Any, end: Any) -> list[Window]:
    """The daily windows of a partition range ``[start, end)`` (one for one partition)."""
    return bf.plan_windows(parse_instant(start), parse_instant(end), bf.parse_window_size("1d"))


def window_assets(settings: VendorSettings) -> AssetsDefinition | None:
    """The vendor's time-windowed resources as daily-partitioned assets (``None`` if it has none)."""
    vendor = settings.vendor
    windowed = bf.backfill_resources(vendor)
    if not windowed:
        return None
    # any window will do: the bounded source lists the time-windowed resources
    shape = _shape(settings, window_start="2026-01-01", window_end="2026-01-02").with_resources(*windowed)
    translator = CdpSyncTranslator(vendor=vendor, dataset_name=settings.dataset, windowed=windowed)
    scheduled = _pipeline(settings)
    specs = [translator.get_asset_spec(DltResourceTranslatorData(resource=r, pipeline=scheduled))
             for r in shape.selected_resources.values()]
    resource_of = {spec.key: name for spec, name in zip(specs, shape.selected_resources, strict=True)}
    fmt = loader_file_format(settings.destination)

    @multi_asset(
        name=f"{vendor}_windows",
        specs=specs,
        partitions_def=daily_partitions(settings),
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=1),
        can_subset=True,
        retry_policy=WINDOW_RETRY,
        pool=settings.window_pool,
        op_tags={"cdp_sync/vendor": vendor},
    )
    def _assets(context: AssetExecutionContext, config: WindowRunConfig) -> Iterator[MaterializeResult]:
        span = context.partition_time_window
        days = partition_windows(span.start, span.end)
        errors: list[tuple[str, BaseException]] = []
        for key in sorted(context.selected_asset_keys, key=lambda k: k.to_user_string()):
            resource = resource_of[key]
            results: list[bf.WindowResult] = []
            for window in days:
                label = f"{vendor}.{resource}[{window.label}]"
                try:
                    result = bf.run_window(
                        vendor, resource, window, pipeline_name=settings.pipeline, destination=settings.destination,
                        dataset_name=settings.dataset, pipelines_dir=settings.pipelines_dir, force=config.force,
                        loader_file_format=fmt, table_format=settings.table_format,
                    )
                except Exception as exc:  # noqa: BLE001 - reported below, the other resources go on
                    errors.append((label, exc))
                    context.log.error(f"{label}: FAILED: {_one_line(exc, vendor)[0]}")
                    break
                context.log.info(f"{label}: {result.status}, {result.rows:,} rows"
                                 + (f" ({result.note})" if result.note else ""))
                results.append(result)
            else:
                yield MaterializeResult(asset_key=key, metadata=_window_metadata(settings, resource, results))
        if errors:
            raise _failure(f"{vendor} windows {iso(days[0].start)}..{iso(days[-1].end)}", errors, vendor)

    return _assets


def _window_metadata(settings: VendorSettings, resource: str, results: Sequence[bf.WindowResult]) -> dict[str, Any]:
    loaded = sum(r.rows for r in results if r.status == bf.DONE)
    meta: dict[str, Any] = {
        "status": ", ".join(sorted({r.status for r in results})),
        "rows_loaded": MetadataValue.int(loaded),
        "window_rows": MetadataValue.int(sum(r.rows for r in results)),
        "windows": MetadataValue.json([
            {"window": r.window.label, "status": r.status, "rows": r.rows, "pipeline": r.pipeline_name,
             "seconds": round(r.seconds, 1), **({"note": r.note} if r.note else {})}
            for r in results
        ]),
        "window_pipeline": results[0].pipeline_name if len(results) == 1 else f"{len(results)} window pipelines",
        "dataset_name": settings.dataset,
        "destination_name": settings.destination,
        "dagster/partition_row_count": MetadataValue.int(sum(r.rows for r in results)),
    }
    notes = [r.note for r in results if r.note and r.status == bf.DONE]
    if notes:
        meta["note"] = "; ".join(notes)
    return meta


# -- jobs, schedules, definitions -------------------------------------------------------------------------


@dataclass(frozen=True)
class VendorDefinitions:
    settings: VendorSettings
    scheduled: AssetsDefinition
    windows: AssetsDefinition | None
    job: Any  # an asset job (dagster's UnresolvedAssetJobDefinition)
    schedule: ScheduleDefinition
    checks: AssetChecksDefinition | None = None


def vendor_definitions(settings: VendorSettings) -> VendorDefinitions:
    vendor = settings.vendor
    scheduled = scheduled_assets(settings)
    job = define_asset_job(
        f"{vendor}_incremental_job",
        selection=AssetSelection.assets(scheduled),
        description=f"`cdp-sync run {vendor}`: every {vendor} resource, incrementally.",
        tags={"cdp_sync/pipeline": settings.pipeline},
    )
    schedule = ScheduleDefinition(
        name=f"{vendor}_incremental",
        job=job,
        cron_schedule=settings.schedule_cron,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.STOPPED,
        description=f"The scheduled incremental run of {vendor} ({settings.schedule_cron}, UTC).",
    )
    checks = verification_checks(settings) if settings.verify else None
    return VendorDefinitions(settings, scheduled, window_assets(settings), job, schedule, checks)


def build_definitions(settings: Sequence[VendorSettings] | None = None) -> Definitions:
    """Definitions for ``settings`` (default: :func:`settings_from_config`)."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    from sources.common.redact import install_log_redaction

    install_log_redaction()
    parts = [vendor_definitions(s) for s in (settings if settings is not None else settings_from_config())]
    return Definitions(
        assets=[a for p in parts for a in (p.scheduled, p.windows) if a is not None],
        asset_checks=[p.checks for p in parts if p.checks is not None],
        jobs=[p.job for p in parts],
        schedules=[p.schedule for p in parts],
        resources={"dlt": DagsterDltResource()},
    )


@definitions
def defs() -> Definitions:
    """What ``dagster dev -m pipelines.dagster_defs`` loads: built when Dagster asks for it, so
    importing this module has no side effect (no dlt pipeline folder is created)."""
    return build_definitions()
