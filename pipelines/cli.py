"""``cdp-sync``: run, inspect and try the sources from the shell.

    cdp-sync run <vendor> [--resources a,b] [--destination duckdb] [--dataset-name NAME]
                          [--pipeline-name NAME] [--full-refresh] [--verify]
    cdp-sync backfill <vendor> --resource R --from T1 --to T2 [--window 1d] [--workers N]
                          [--destination duckdb] [--dataset-name NAME] [--pipeline-name NAME] [--force]
    cdp-sync demo         every emulator on loopback, every source into cdp_demo.duckdb
    cdp-sync state <vendor>   each resource's cursor and last run
    cdp-sync check <vendor>   credentials and reachability
    cdp-sync verify <vendor> [--resources a,b] [--days N] [--destination duckdb] [--dataset-name NAME]
                          [--pipeline-name NAME]   the destination against the vendor's own counts

Configuration comes the dlt way: ``.dlt/config.toml``, ``.dlt/secrets.toml`` and environment
variables (``SOURCES__PERSONYZE__API_KEY``, ``SOURCES__PERSONYZE__BASE_URL``; ``SSL_CERT_FILE``
for a private CA). A failure prints one line and exits non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from pipelines.vendors import VENDORS, Vendor

EXIT_FAILED = 1  # the run failed: the vendor refused, a server kept failing, a load job failed
EXIT_USAGE = 2  # bad input or configuration

DEMO_DATABASE = "cdp_demo.duckdb"
DEMO_SCALE = 2000


def default_dataset(vendor: str) -> str:
    """``<vendor>_data``: not the vendor's name itself, because the default DuckDB file is
    ``<vendor>.duckdb`` and DuckDB refuses a schema named like its database."""
    return f"{vendor}_data"


class CliFailure(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


def _setup_environment() -> None:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    # Arrow allocates with the C library's malloc rather than its bundled allocator, which keeps
    # freed pages reserved: a Lytics load of 1,000,000 profiles peaks at 405 MB instead of 555 MB
    # and spends 10 % less CPU (benchmarks/README.md). Read by Arrow at its first allocation; a
    # value set in the environment wins.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    from sources.common.redact import install_log_redaction

    install_log_redaction()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("  %(message)s"))
    for name, level in (("cdp_sync.progress", logging.INFO), ("cdp_sync.http", logging.WARNING)):
        log = logging.getLogger(name)
        log.setLevel(level)
        log.addHandler(handler)
        log.propagate = False


def _vendor(name: str) -> Vendor:
    try:
        return VENDORS[name]
    except KeyError:
        raise CliFailure(f"unknown vendor {name!r}; known: {', '.join(sorted(VENDORS))}", EXIT_USAGE) from None


def _explain(exc: BaseException, vendor: str | None) -> tuple[str, int]:
    """One line for any failure: the innermost cdp-sync error if there is one."""
    from dlt.common.configuration.exceptions import ConfigFieldMissingException

    from sources.common.errors import AuthError, CdpSyncError, ConfigurationError
    from sources.common.redact import redact

    seen: set[int] = set()
    stack = [exc]
    found: BaseException | None = None
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, (CdpSyncError, ConfigFieldMissingException, CliFailure)):
            found = e
            break
        stack += [getattr(e, "exception", None), e.__cause__, e.__context__]
    if isinstance(found, CliFailure):
        return str(found), found.code
    if isinstance(found, ConfigFieldMissingException):
        fields = ", ".join(found.fields) if getattr(found, "fields", None) else "a required value"
        v = vendor or "the source"
        hint = f"; set {VENDORS[vendor].key_env} or put it under [sources.{vendor}] in .dlt/secrets.toml" if vendor in VENDORS else ""
        return f"{v}: missing configuration ({fields}){hint}", EXIT_USAGE
    if isinstance(found, ConfigurationError):
        return redact(str(found)), EXIT_USAGE
    if isinstance(found, AuthError):
        return redact(str(found)), EXIT_FAILED
    if found is not None:
        return redact(str(found)), EXIT_FAILED
    step = getattr(exc, "step", None)
    cause, inner = exc, getattr(exc, "exception", None)
    while isinstance(inner, BaseException) and inner is not exc and inner is not cause:
        # dlt's step failure carries the error of the step ("with exception:"), which may wrap another
        cause, inner = inner, getattr(inner, "exception", None)
    text = redact(str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__)
    if cause is not exc:
        where = f" at step={step}" if step else ""
        return f"{type(exc).__name__}{where}: {type(cause).__name__}: {text}", EXIT_FAILED
    return f"{type(exc).__name__}: {text}", EXIT_FAILED


def _fail(exc: BaseException, vendor: str | None, debug: bool) -> NoReturn:
    message, code = _explain(exc, vendor)
    if debug:
        from sources.common.redact import redact

        click.echo(redact("".join(traceback.format_exception(exc))), err=True)
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """cdp-sync: load customer-data platforms into DuckDB or a warehouse, incrementally."""
    _setup_environment()


def _table_format_option(f: Any) -> Any:
    return click.option(
        "--table-format",
        type=click.Choice(["delta", "iceberg"]),
        default=None,
        help="With --destination filesystem: write Delta (or Iceberg) tables, which merge; plain parquet appends.",
    )(f)


def _debug_option(f: Any) -> Any:
    return click.option("--debug", is_flag=True, help="Show the full traceback on failure.")(f)


def _run_pipeline(
    vendor: Vendor,
    source: Any,
    *,
    pipeline_name: str,
    destination: Any,
    dataset_name: str,
    full_refresh: bool,
    destination_name: str,
    pipelines_dir: str | None = None,
    table_format: str | None = None,
) -> dict[str, Any]:
    import dlt

    from pipelines.destinations import loader_file_format, run_within_cap
    from pipelines.runtime import settle_heap
    from sources.common.progress import requests_made

    pipeline = dlt.pipeline(
        pipeline_name=pipeline_name,
        destination=destination,
        dataset_name=dataset_name,
        pipelines_dir=pipelines_dir,
    )
    fmt = loader_file_format(destination_name)

    def warn(message: str) -> None:
        click.echo(f"{vendor.name}: warning: {message}", err=True)

    settle_heap()  # the collector's thresholds and what the imports left alive (pipelines/runtime.py)
    before = requests_made(vendor.name)
    started = time.monotonic()
    if pipeline.has_pending_data:
        # a previous run stopped after extracting: finish loading its packages first, otherwise
        # dlt's run() would load them and skip the new extract
        click.echo(f"{vendor.name}: finishing the load packages of an interrupted run", err=True)
        finished = run_within_cap(pipeline, pipeline.run, warn=warn)
        if finished is not None:
            finished.raise_on_failed_jobs()
    info = run_within_cap(pipeline, lambda: pipeline.run(
        source, loader_file_format=fmt, table_format=table_format, refresh="drop_sources" if full_refresh else None
    ), warn=warn)
    info.raise_on_failed_jobs()
    elapsed = time.monotonic() - started
    counts = {}
    trace = pipeline.last_trace
    if trace is not None and trace.last_normalize_info is not None:
        counts = {t: n for t, n in trace.last_normalize_info.row_counts.items() if not t.startswith("_dlt")}
    return {
        "pipeline": pipeline,
        "rows": counts,
        "requests": requests_made(vendor.name) - before,
        "seconds": elapsed,
    }


def _print_summary(vendor: str, result: dict[str, Any]) -> None:
    rows = result["rows"]
    total = sum(rows.values())
    click.echo(
        f"{vendor}: {total:,} rows loaded in {result['seconds']:.1f} s with {result['requests']:,} requests"
    )
    for table in sorted(rows):
        click.echo(f"  {table:<24} {rows[table]:>10,}")


@main.command()
@click.argument("vendor")
@click.option("--resources", default=None, help="Comma-separated resources to load (default: all).")
@click.option("--destination", default="duckdb", show_default=True, help="A dlt destination name.")
@click.option("--dataset-name", default=None, help="Dataset (schema) name; default: <vendor>_data.")
@click.option("--pipeline-name", default=None, help="Pipeline name (state, DuckDB file); default: the vendor.")
@click.option("--full-refresh", is_flag=True, help="Drop this source's tables and state, then load everything.")
@click.option("--verify/--no-verify", "verify_after", default=None,
              help="Verify the resources just loaded against the vendor's counts (default: [cdp_sync] verify_after_run).")
@_table_format_option
@_debug_option
def run(
    vendor: str,
    resources: str | None,
    destination: str,
    dataset_name: str | None,
    pipeline_name: str | None,
    full_refresh: bool,
    verify_after: bool | None,
    table_format: str | None,
    debug: bool,
) -> None:
    """Load VENDOR into a destination (incrementally after the first run)."""
    verification = None
    try:
        if verify_after is None:
            verify_after = _config_flag("cdp_sync.verify_after_run")
        v = _vendor(vendor)
        pipeline_name = pipeline_name or vendor
        dataset_name = dataset_name or default_dataset(vendor)
        _check_dataset(destination, dataset_name, pipeline_name)
        table_format = _checked_table_format(table_format, destination)
        source = v.load_source()()
        if resources:
            wanted = [r.strip() for r in resources.split(",") if r.strip()]
            unknown = [r for r in wanted if r not in source.resources]
            if unknown:
                raise CliFailure(
                    f"{vendor} has no resource {', '.join(unknown)}; available: {', '.join(source.resources)}",
                    EXIT_USAGE,
                )
            source = source.with_resources(*wanted)
        result = _run_pipeline(
            v,
            source,
            pipeline_name=pipeline_name,
            destination=_destination(destination, pipeline_name),
            dataset_name=dataset_name,
            full_refresh=full_refresh,
            destination_name=destination,
            table_format=table_format,
        )
        if verify_after:
            loaded = [name for name in source.selected_resources]
            verification = _verify(v, result["pipeline"], loaded, days=None, destination_name=destination,
                                   pipeline_name=pipeline_name, strict=False)
    except Exception as exc:
        _fail(exc, vendor, debug)
    _print_summary(vendor, result)
    if verification is not None:
        _print_verification(verification)
        _fail_verification(verification)


def _checked_table_format(table_format: str | None, destination: str) -> str | None:
    if table_format and destination != "filesystem":
        raise CliFailure(f"--table-format {table_format} needs --destination filesystem", EXIT_USAGE)
    return table_format


def _destination(name: str, pipeline_name: str) -> Any:
    """DuckDB as an explicit file (``<pipeline_name>.duckdb`` unless configured otherwise), so a
    DuckDB setting in ``.dlt/config.toml`` (the memory cap) never stands in for its credentials
    and a backfill window writes to the scheduled pipeline's file; other names as they are."""
    from pipelines.backfill import destination_for

    return destination_for(name, pipeline_name)


def _check_dataset(destination: str, dataset_name: str, pipeline_name: str) -> None:
    if destination == "duckdb" and dataset_name == pipeline_name:
        # DuckDB names the attached database after its file, <pipeline_name>.duckdb; a schema of
        # the same name makes every "<name>.<table>" reference ambiguous and the load fails
        raise CliFailure(
            f"--dataset-name {dataset_name!r} equals the pipeline name, which DuckDB refuses "
            f"(database {pipeline_name}.duckdb); choose another dataset name",
            EXIT_USAGE,
        )


@main.command()
@click.argument("vendor")
@click.option("--resource", "resource", required=True, help="The time-windowed resource to backfill.")
@click.option("--from", "start", required=True, help="Start of the range (ISO 8601, UTC unless an offset is given).")
@click.option("--to", "end", required=True, help="End of the range, excluded (ISO 8601).")
@click.option("--window", "window", default="1d", show_default=True, help="Window size: 1h, 6h, 1d, 7d …")
@click.option("--workers", default=1, show_default=True, type=int, help="Windows loaded at the same time.")
@click.option("--destination", default="duckdb", show_default=True, help="The scheduled pipeline's destination.")
@click.option("--dataset-name", default=None, help="The scheduled pipeline's dataset; default: <vendor>_data.")
@click.option("--pipeline-name", default=None, help="The scheduled pipeline's name; default: the vendor.")
@click.option("--force", is_flag=True, help="Read finished windows again (and merge) instead of skipping them.")
@_table_format_option
@_debug_option
def backfill(
    vendor: str,
    resource: str,
    start: str,
    end: str,
    window: str,
    workers: int,
    destination: str,
    dataset_name: str | None,
    pipeline_name: str | None,
    force: bool,
    table_format: str | None,
    debug: bool,
) -> None:
    """Load [FROM, TO) of one time-windowed resource of VENDOR as independent windows.

    Each window is its own re-runnable job (its own dlt pipeline and state) loading into the
    scheduled pipeline's destination and dataset; the scheduled cursor never moves. A finished
    window is skipped on a re-run unless --force."""
    from pipelines import backfill as bf
    from pipelines.destinations import loader_file_format
    from sources.common.errors import CdpSyncError
    from sources.common.window import Window, parse_instant

    try:
        v = _vendor(vendor)
        windowed = bf.backfill_resources(vendor)
        if resource not in windowed:
            listed = "; ".join(f"{r} (by {axis})" for r, axis in windowed.items()) or "none"
            raise CliFailure(f"{vendor} {resource!r} is not a time-windowed resource; backfillable: {listed}",
                             EXIT_USAGE)
        try:
            t1, t2 = parse_instant(start, "--from"), parse_instant(end, "--to")
            windows = bf.plan_windows(t1, t2, bf.parse_window_size(window))
        except (ValueError, CdpSyncError) as exc:
            raise CliFailure(str(exc), EXIT_USAGE) from None
        if workers < 1:
            raise CliFailure(f"--workers must be at least 1, not {workers}", EXIT_USAGE)
        pipeline_name = pipeline_name or vendor
        dataset_name = dataset_name or default_dataset(vendor)
        _check_dataset(destination, dataset_name, pipeline_name)
        table_format = _checked_table_format(table_format, destination)
        # the source's configuration (API key, options) and the destination are checked once,
        # before any window starts
        v.load_source()(window_start=windows[0].start, window_end=windows[0].end).with_resources(resource)
        _destination(destination, pipeline_name)
    except Exception as exc:
        _fail(exc, vendor, debug)

    click.echo(
        f"{vendor}.{resource}: backfill {Window(t1, t2).label} by {windowed[resource]}: {len(windows)} window"
        f"{'s' if len(windows) != 1 else ''} of {window}, {min(workers, len(windows))} at a time",
        err=True,
    )

    def progress(kind: str, result: bf.WindowResult) -> None:
        label = f"{vendor}.{resource}[{result.window.label}]"
        if kind == "start":
            click.echo(f"{label}: started", err=True)
        elif result.status == bf.SKIPPED:
            click.echo(f"{label}: skipped, {result.note} ({result.rows:,} rows)", err=True)
        elif result.status == bf.DONE:
            note = f"; {result.note}" if result.note else ""
            click.echo(f"{label}: done, {result.rows:,} rows in {result.seconds:.1f} s{note}", err=True)
        else:
            message, _ = _explain(result.error, vendor) if result.error is not None else ("failed", 1)
            result.note = message
            if debug and result.error is not None:
                from sources.common.redact import redact

                click.echo(redact("".join(traceback.format_exception(result.error))), err=True)
            click.echo(f"{label}: FAILED after {result.seconds:.1f} s: {message}", err=True)

    from pipelines.runtime import settle_heap

    settle_heap()
    started = time.monotonic()
    results = bf.run_backfill(
        vendor, resource, windows, workers=workers, on_event=progress, pipeline_name=pipeline_name,
        destination=destination, dataset_name=dataset_name, force=force,
        loader_file_format=loader_file_format(destination), table_format=table_format,
    )
    _print_backfill_table(results, time.monotonic() - started)
    failed = bf.failed_ranges(results)
    if failed:
        click.echo(f"\n{sum(r.status == bf.FAILED for r in results)} window(s) failed; re-run just those with:")
        for a, b in failed:
            click.echo("  " + _rerun_command(vendor, resource, a, b, window, workers, destination,
                                             dataset_name if dataset_name != default_dataset(vendor) else None,
                                             pipeline_name if pipeline_name != vendor else None, table_format))
        sys.exit(EXIT_FAILED)


def _print_backfill_table(results: list[Any], seconds: float) -> None:
    from pipelines import backfill as bf

    click.echo(f"  {'window':<44} {'status':<8} {'rows':>10} {'seconds':>8}  note")
    for r in results:
        note = r.note if len(r.note) <= 120 else r.note[:119] + "…"
        click.echo(f"  {r.window.label:<44} {r.status:<8} {r.rows:>10,} {r.seconds:>8.1f}  {note}".rstrip())
    n = {s: sum(r.status == s for r in results) for s in (bf.DONE, bf.SKIPPED, bf.FAILED)}
    loaded = sum(r.rows for r in results if r.status == bf.DONE)
    click.echo(
        f"  total: {len(results)} windows: {n[bf.DONE]} done ({loaded:,} rows loaded), {n[bf.SKIPPED]} skipped "
        f"(already done), {n[bf.FAILED]} failed; {seconds:.1f} s"
    )


def _rerun_command(vendor: str, resource: str, a: Any, b: Any, window: str, workers: int, destination: str,
                   dataset_name: str | None, pipeline_name: str | None, table_format: str | None = None) -> str:
    import shlex

    from sources.common.window import iso

    args = ["cdp-sync", "backfill", vendor, "--resource", resource, "--from", iso(a), "--to", iso(b),
            "--window", window]
    if workers != 1:
        args += ["--workers", str(workers)]
    if destination != "duckdb":
        args += ["--destination", destination]
    if dataset_name:
        args += ["--dataset-name", dataset_name]
    if pipeline_name:
        args += ["--pipeline-name", pipeline_name]
    if table_format:
        args += ["--table-format", table_format]
    return " ".join(shlex.quote(x) for x in args)


def _config_flag(key: str) -> bool:
    import dlt

    value = dlt.config.get(key)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _vendor_credentials(v: Vendor) -> tuple[str, str]:
    import dlt

    key = dlt.secrets.get(f"{v.section}.api_key")
    if not key:
        raise CliFailure(
            f"{v.name}: no API key; set {v.key_env} or api_key under [{v.section}] in .dlt/secrets.toml",
            EXIT_USAGE,
        )
    base_url = dlt.config.get(f"{v.section}.base_url") or v.default_base_url
    return str(key), str(base_url)


def _verify(v: Vendor, pipeline: Any, resources: list[str] | None, *, days: int | None, destination_name: str,
            pipeline_name: str, strict: bool = True) -> Any:
    """``pipelines.verify.verify`` with the CLI's input errors (exit 2); ``resources`` the vendor
    cannot verify at all are left to the planner, which reports them."""
    import dlt

    from pipelines import verify as vf

    api_key, base_url = _vendor_credentials(v)
    if days is None:
        days = dlt.config.get("cdp_sync.verify_days") or vf.DEFAULT_DAYS
    try:
        return vf.verify(v.name, pipeline=pipeline, resources=resources, days=days, api_key=api_key,
                         base_url=base_url, destination=_destination(destination_name, pipeline_name), strict=strict)
    except vf.VerifyInputError as exc:
        raise CliFailure(str(exc), EXIT_USAGE) from None


def _print_verification(result: Any) -> None:
    from pipelines import verify as vf
    from pipelines.verify import format_table

    click.echo(f"\n{result.vendor}: verification against the vendor's counts (pipeline {result.pipeline_name!r}, "
               f"dataset {result.dataset_name!r})")
    for line in format_table(result):
        click.echo(line)
    where = f"; recorded in {result.recorded}" if result.recorded else ""
    counted = len(result.results) - result.count(vf.NOT_COUNTABLE)
    verdict = "DISAGREES" if not result.ok else "agrees" if counted else "nothing countable"
    click.echo(f"  verification: {verdict}: {result.summary()}{where}")


def _fail_verification(result: Any) -> None:
    line = result.error_line()
    if line is not None:
        click.echo(f"error: {line}", err=True)
        sys.exit(EXIT_FAILED)


@main.command()
@click.argument("vendor")
@click.option("--resources", default=None, help="Comma-separated resources to verify (default: every one loaded).")
@click.option("--days", default=None, help="UTC days sliced one by one for time-based tables (default: 7).")
@click.option("--destination", default="duckdb", show_default=True, help="The pipeline's destination.")
@click.option("--dataset-name", default=None, help="The pipeline's dataset; default: <vendor>_data.")
@click.option("--pipeline-name", default=None, help="The pipeline's name; default: the vendor.")
@_debug_option
def verify(
    vendor: str,
    resources: str | None,
    days: str | None,
    destination: str,
    dataset_name: str | None,
    pipeline_name: str | None,
    debug: bool,
) -> None:
    """Compare what the destination holds with VENDOR's own counts, slice by slice.

    Time-based tables are sliced per UTC day (the last --days days, and everything before them),
    others compared whole. Each verification is appended to <dataset>._cdp_verification. Exit 0
    when every slice agrees (or differs inside its documented tolerance), 1 when one disagrees."""
    from pipelines import verify as vf

    try:
        v = _vendor(vendor)
        pipeline_name = pipeline_name or vendor
        dataset_name = dataset_name or default_dataset(vendor)
        _check_dataset(destination, dataset_name, pipeline_name)
        try:
            n_days = vf.check_days(days if days is not None else vf.DEFAULT_DAYS)
        except vf.VerifyInputError as exc:
            raise CliFailure(str(exc), EXIT_USAGE) from None
        wanted = [r.strip() for r in resources.split(",") if r.strip()] if resources else None
        if wanted is not None:
            known = vf.planner(vendor).RESOURCES
            unknown = [r for r in wanted if r not in known]
            if unknown:
                raise CliFailure(f"{vendor} has no resource {', '.join(unknown)}; available: {', '.join(known)}",
                                 EXIT_USAGE)
        _vendor_credentials(v)  # a missing key is bad input before anything is opened
        dest = _destination(destination, pipeline_name)
        try:
            pipeline = vf.open_pipeline(vendor, pipeline_name, dest, dataset_name, destination)
        except vf.VerifyInputError as exc:
            raise CliFailure(str(exc), EXIT_USAGE) from None
        result = _verify(v, pipeline, wanted, days=n_days, destination_name=destination,
                         pipeline_name=pipeline_name)
    except Exception as exc:
        _fail(exc, vendor, debug)
    _print_verification(result)
    _fail_verification(result)


@main.command()
@click.argument("vendor")
@_debug_option
def check(vendor: str, debug: bool) -> None:
    """Verify VENDOR's credentials and that its API is reachable."""
    import dlt

    try:
        v = _vendor(vendor)
        key = dlt.secrets.get(f"{v.section}.api_key")
        if not key:
            raise CliFailure(
                f"{vendor}: no API key; set {v.key_env} or api_key under [{v.section}] in .dlt/secrets.toml",
                EXIT_USAGE,
            )
        base_url = dlt.config.get(f"{v.section}.base_url") or v.default_base_url
        summary = v.probe(str(key), str(base_url))
    except Exception as exc:
        _fail(exc, vendor, debug)
    click.echo(f"{vendor}: ok, {summary} at {base_url}")


@main.command()
@click.argument("vendor")
@click.option("--pipeline-name", default=None, help="Pipeline name; default: the vendor.")
@_debug_option
def state(vendor: str, pipeline_name: str | None, debug: bool) -> None:
    """Show each resource's cursor and last run."""
    import dlt
    from dlt.pipeline.exceptions import CannotRestorePipelineException

    try:
        _vendor(vendor)
        name = pipeline_name or vendor
        try:
            pipeline = dlt.attach(pipeline_name=name)
        except CannotRestorePipelineException:
            raise CliFailure(
                f"no pipeline named {name!r} here; run `cdp-sync run {vendor}` first or pass --pipeline-name",
                EXIT_USAGE,
            ) from None
        resources = pipeline.state.get("sources", {}).get(vendor, {}).get("resources", {})
    except Exception as exc:
        _fail(exc, vendor, debug)
    if not resources:
        click.echo(f"{vendor}: pipeline {name!r} has no resource state yet (state in {pipeline.working_dir})")
        return
    click.echo(f"{vendor} (pipeline {name!r}, state in {pipeline.working_dir}):")
    for res in sorted(resources):
        _print_resource_state(res, resources[res], indent="  ")
    for key, value in pipeline.state.get("sources", {}).get(vendor, {}).items():
        if key != "resources":
            click.echo(f"  {key}: {_compact(value)}")


#: state keys every cursor-based resource keeps (sources/common/cursor.py); others are printed as-is
_CURSOR_KEYS = {"cursor", "cursor_column", "seen", "last_run"}


def _compact(value: Any, limit: int = 300) -> str:
    import json

    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _print_resource_state(name: str, st: Any, indent: str) -> None:
    """One line per resource: cursor, last run, rows remembered; then any vendor-specific keys
    (unreachable gaps, per-project or per-profile positions …), nested states indented."""
    if not isinstance(st, dict):
        click.echo(f"{indent}{name}: {_compact(st)}")
        return
    if _CURSOR_KEYS & set(st):
        last = st.get("last_run") or {}
        col = st.get("cursor_column")
        where = f"{col} = {st.get('cursor')}" if col else f"cursor = {st.get('cursor')}"
        click.echo(
            f"{indent}{name:<18} {where:<42} last run {last.get('finished_at', '-')}: "
            f"{last.get('rows_loaded', 0):,} rows loaded ({last.get('mode', '-')}), "
            f"{len(st.get('seen') or {}):,} rows remembered in the lookback window"
        )
    else:
        click.echo(f"{indent}{name}:")
    for key in sorted(set(st) - _CURSOR_KEYS):
        value = st[key]
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            click.echo(f"{indent}  {key}:")
            for sub in sorted(value, key=str):
                _print_resource_state(str(sub), value[sub], indent + "    ")
        else:
            click.echo(f"{indent}  {key}: {_compact(value)}")


@contextmanager
def _demo_emulators(scale: int) -> Iterator[list[Any]]:
    try:
        import emulators
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise CliFailure(
            f"cdp-sync demo needs the emulators: pip install 'cdp-sync[emulators]' ({exc})", EXIT_USAGE
        ) from None
    with ExitStack() as stack:
        servers = []
        for name in emulators.available_vendors():
            if name in VENDORS:
                server = emulators.start(name, scale=scale)
                stack.callback(server.stop)
                servers.append(server)
        yield servers


@main.command()
@click.option("--scale", default=DEMO_SCALE, show_default=True, help="Users per emulated account.")
@click.option("--database", default=DEMO_DATABASE, show_default=True, help="DuckDB file to load into.")
@_debug_option
def demo(scale: int, database: str, debug: bool) -> None:
    """Start every emulator on loopback and load every source into one DuckDB file."""
    import duckdb

    from pipelines.destinations import duckdb_destination

    db = Path(database).resolve()
    loaded: list[str] = []
    try:
        with _demo_emulators(scale) as servers, tempfile.TemporaryDirectory(prefix="cdp-demo-") as tmp:
            if not servers:
                raise CliFailure("no emulator is available for any source")
            bundle = Path(tmp) / "ca-bundle.pem"
            bundle.write_text("".join(Path(s.ca_file).read_text() for s in servers))
            os.environ["SSL_CERT_FILE"] = str(bundle)
            for server in servers:
                v = VENDORS[server.vendor]
                click.echo(f"{v.name}: emulator at {server.base_url}", err=True)
                source = v.load_source()(api_key=server.api_key, base_url=server.base_url)
                result = _run_pipeline(
                    v,
                    source,
                    pipeline_name=f"cdp_demo_{v.name}",
                    destination=duckdb_destination(str(db)),
                    dataset_name=v.name,
                    full_refresh=True,
                    destination_name="duckdb",
                    pipelines_dir=str(Path(tmp) / "pipelines"),
                )
                _print_summary(v.name, result)
                loaded.append(v.name)
    except Exception as exc:
        _fail(exc, None, debug)
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in (select unnest(?)) and table_name not like '\\_dlt%' escape '\\' "
            "order by 1, 2",
            [loaded],
        ).fetchall()
        click.echo(f"\nLoaded into {db.name}:")
        click.echo(f"  {'table':<36} {'rows':>10}")
        for schema, table in tables:
            (n,) = con.execute(f'select count(*) from "{schema}"."{table}"').fetchone()
            click.echo(f"  {schema + '.' + table:<36} {n:>10,}")
    finally:
        con.close()
    first = tables[0] if tables else ("personyze", "users")
    click.echo(
        "\nQuery it with DuckDB, for example:\n"
        f"  python -c \"import duckdb; print(duckdb.connect('{db.name}').sql('select * from {first[0]}.{first[1]} limit 5'))\"\n"
        f"  duckdb {db.name} \"select count(*) from {first[0]}.{first[1]}\"   (with the DuckDB CLI)"
    )


if __name__ == "__main__":  # pragma: no cover
    main()
