"""Small runnable examples of the Synerise source, in the dlt verified-sources style.

    python -m pipelines.synerise_pipeline

Credentials come from .dlt/secrets.toml or SOURCES__SYNERISE__API_KEY; the region's host from
SOURCES__SYNERISE__BASE_URL (default https://api.synerise.com).
"""

from __future__ import annotations

import dlt

from sources.synerise import synerise_source


def load_everything() -> None:
    """Every resource into DuckDB; events are incremental (run it more often than every 6 hours)."""
    pipeline = dlt.pipeline(pipeline_name="synerise_pipeline", destination="duckdb", dataset_name="synerise")
    print(pipeline.run(synerise_source(), loader_file_format="parquet"))


def load_recent_events() -> None:
    """Only workspace activities: schedule this every hour or two (the API keeps 6 hours)."""
    pipeline = dlt.pipeline(pipeline_name="synerise_events", destination="duckdb", dataset_name="synerise")
    print(pipeline.run(synerise_source().with_resources("events"), loader_file_format="parquet"))


def backfill_profile_history() -> None:
    """Every profile's full event history (no 6-hour horizon), eight profiles at a time."""
    pipeline = dlt.pipeline(pipeline_name="synerise_history", destination="duckdb", dataset_name="synerise")
    source = synerise_source(profile_events_backfill=True).with_resources("profiles", "profile_events")
    print(pipeline.run(source, loader_file_format="parquet"))


def load_consistent_profiles(segmentation_uuid: str) -> None:
    """Profiles through the export task of an "all profiles" segmentation: frozen at creation."""
    pipeline = dlt.pipeline(pipeline_name="synerise_export", destination="duckdb", dataset_name="synerise")
    source = synerise_source(export_segmentation_uuid=segmentation_uuid).with_resources("profiles")
    print(pipeline.run(source, loader_file_format="parquet"))


if __name__ == "__main__":
    load_everything()
