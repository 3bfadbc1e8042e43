"""Airflow DAGs for cdp-sync: an example to copy into Airflow's ``dags/`` folder and adapt.

Airflow is not a dependency of this project (it is large); install cdp-sync into Airflow's
environment (``pip install cdp-sync`` from a checkout, with the destination's extra) and
``apache-airflow>=2.5`` (Airflow 3 works too: dlt's helper and this file import from either).

Two kinds of DAG per vendor:

``cdp_sync_<vendor>`` — **the scheduled incremental run**, what ``cdp-sync run <vendor>`` does,
through dlt's Airflow helper :class:`dlt.helpers.airflow_helper.PipelineTasksGroup`: pipeline
``<vendor>``, dataset ``<vendor>_data``. The helper gives every task a fresh, throw-away dlt
folder, so the cursors come back from the destination's ``_dlt_pipeline_state`` each run (dlt
restores them on the first run of a pipeline without local state) and go back with the load.
The source is passed *uncalled*: the helper calls it inside the task, so its API key is read
there (from ``SOURCES__<VENDOR>__API_KEY`` in the worker's environment, or dlt's secrets, which
the helper also reads from the Airflow Variable ``dlt_secrets_toml``), never when the scheduler
parses this file. ``max_active_runs=1``: two incremental runs of one pipeline never overlap.
After the load, the task ``verify`` runs ``cdp-sync verify <vendor>``
(:func:`pipelines.verify.run_verification`: the loaded tables against the vendor's own counts,
recorded in ``<vendor>_data._cdp_verification``); a disagreeing slice fails it, naming the slice.
The data interval plays no part: the sources keep their own keyset cursor (not dlt's
``incremental``, so ``allow_external_schedulers`` does not apply) and each run carries on from it.

``cdp_sync_<vendor>_<resource>_windows`` — **backfill windows** of each time-windowed resource
(the source's ``BACKFILL_RESOURCES``). A run loads the window of its data interval,
``[data_interval_start, data_interval_end)`` → :func:`pipelines.backfill.window_for_interval`,
with :func:`pipelines.backfill.run_window`: exactly the window job ``cdp-sync backfill`` runs
(own pipeline and state, the scheduled pipeline's destination and dataset, the scheduled cursor
untouched, a finished window skipped unless the run's ``force`` param is true, an exception on
failure so Airflow retries it). The DAGs are daily and created paused; a backfill is Airflow's own:

    airflow dags backfill -s 2026-01-01 -e 2026-03-31 cdp_sync_posthog_events_windows          # Airflow 2
    airflow backfill create --dag-id cdp_sync_posthog_events_windows \\
        --from-date 2026-01-01 --to-date 2026-03-31                                          # Airflow 3

Each day is one DAG run, so the windows fan out over Airflow's workers, ``max_active_runs`` at a
time; re-running a day (clearing its task) skips it if it finished, or loads it if it failed.

Destination: a warehouse (``DESTINATION`` below, credentials under ``[destination.<name>]`` in
``dags/.dlt/secrets.toml``, the Airflow Variable ``dlt_secrets_toml`` or the environment). DuckDB
lets one process write a file at a time and lives on one machine: with DuckDB, run Airflow on one
machine, name an absolute file (``[destination.duckdb] credentials = "/srv/cdp/personyze.duckdb"``)
and keep ``max_active_runs`` of every DAG writing it at 1.
"""

import datetime as dt
import tempfile
from typing import Any

import dlt
from dlt.helpers.airflow_helper import PipelineTasksGroup

from pipelines.backfill import backfill_resources, destination_for, run_window, window_for_interval
from pipelines.destinations import loader_file_format
from pipelines.vendors import VENDORS
from pipelines.verify import run_verification

try:  # Airflow 3
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.5+
    from airflow.decorators import dag, task

#: where every DAG loads (a dlt destination name; credentials the dlt way)
DESTINATION = "postgres"
#: the vendors to orchestrate (each needs its API key in the workers' environment or dlt secrets)
VENDOR_NAMES = list(VENDORS)
#: scheduled runs: daily, except Synerise, whose API keeps activities for 6 hours
SCHEDULES = {"synerise": "15 * * * *"}
DAILY = "0 3 * * *"
#: the first day the window DAGs know (a backfill may start no earlier)
WINDOWS_START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
#: days loaded at once per windowed resource (mind the vendor's rate limits)
WINDOW_RUNS_AT_ONCE = 4


def scheduled_dag(vendor: str) -> Any:
    @dag(
        dag_id=f"cdp_sync_{vendor}",
        schedule=SCHEDULES.get(vendor, DAILY),
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        catchup=False,  # each run catches up from its cursor; past intervals add nothing
        max_active_runs=1,
        default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=5)},
        tags=["cdp-sync", vendor],
        doc_md=f"`cdp-sync run {vendor}`: every {vendor} resource, incrementally, into `{vendor}_data`.",
    )
    def incremental() -> None:
        # the task group first: it points dlt at a fresh local folder the pipeline must live in
        tasks = PipelineTasksGroup(vendor, use_data_folder=False, wipe_local_data=True)
        pipeline = dlt.pipeline(
            pipeline_name=vendor,
            destination=destination_for(DESTINATION, vendor),
            dataset_name=f"{vendor}_data",
        )
        tasks.add_run(
            pipeline,
            VENDORS[vendor].load_source(),  # called in the task: credentials are read there
            decompose="none",
            loader_file_format=loader_file_format(DESTINATION),
            trigger_rule="all_done",
            retries=0,
            provide_context=True,
        )

        @task(task_id="verify", retries=0)
        def verify() -> dict[str, Any]:
            # `cdp-sync verify <vendor>`: the state comes back from the destination into a
            # throw-away folder; a disagreeing slice raises (the task fails, naming it)
            with tempfile.TemporaryDirectory(prefix="cdp-sync-verify-") as pipelines_dir:
                result = run_verification(vendor, destination=DESTINATION, pipeline_name=vendor,
                                          dataset_name=f"{vendor}_data", pipelines_dir=pipelines_dir)
            return {"summary": result.summary(), "recorded_in": result.recorded}

        tasks >> verify()

    return incremental()


def windows_dag(vendor: str, resource: str) -> Any:
    @dag(
        dag_id=f"cdp_sync_{vendor}_{resource}_windows",
        schedule="@daily",
        start_date=WINDOWS_START,
        catchup=False,  # past days are loaded by an explicit backfill
        is_paused_upon_creation=True,
        max_active_runs=WINDOW_RUNS_AT_ONCE,
        params={"force": False},
        default_args={"retries": 3, "retry_delay": dt.timedelta(minutes=2), "retry_exponential_backoff": True},
        tags=["cdp-sync", vendor, "backfill"],
        doc_md=(f"One window of {vendor} `{resource}` per data interval: "
                f"`cdp-sync backfill {vendor} --resource {resource} --from <start> --to <end>`."),
    )
    def windows() -> None:
        @task(task_id=f"{resource}_window")
        def load_window(data_interval_start: Any = None, data_interval_end: Any = None,
                        params: dict[str, Any] | None = None) -> dict[str, Any]:
            window = window_for_interval(data_interval_start, data_interval_end)
            # the window's record lives in the destination: a throw-away local folder is enough
            with tempfile.TemporaryDirectory(prefix="cdp-sync-window-") as pipelines_dir:
                result = run_window(
                    vendor, resource, window, destination=DESTINATION, pipelines_dir=pipelines_dir,
                    force=bool((params or {}).get("force")), loader_file_format=loader_file_format(DESTINATION),
                )
            return {"window": window.label, "status": result.status, "rows": result.rows, "note": result.note}

        load_window()

    return windows()


for _vendor in VENDOR_NAMES:
    globals()[f"cdp_sync_{_vendor}"] = scheduled_dag(_vendor)
    for _resource in backfill_resources(_vendor):
        globals()[f"cdp_sync_{_vendor}_{_resource}_windows"] = windows_dag(_vendor, _resource)
