"""Small runnable examples of the PostHog source, in the dlt verified-sources style.

    python -m pipelines.posthog_pipeline

Credentials come from .dlt/secrets.toml or SOURCES__POSTHOG__API_KEY (a personal API key, phx_...);
the host from SOURCES__POSTHOG__BASE_URL (default https://us.posthog.com).
"""

from __future__ import annotations

import dlt

from sources.posthog import posthog_source


def load_everything() -> None:
    """Every resource of every project the key can read into DuckDB (posthog.duckdb);
    incremental after the first run."""
    pipeline = dlt.pipeline(pipeline_name="posthog", destination="duckdb", dataset_name="posthog_data")
    info = pipeline.run(posthog_source(), loader_file_format="parquet")
    print(info)


def load_events_of_one_project(project_id: int, start_date: str = "2025-01-01") -> None:
    """Events and their daily summaries of one project, from ``start_date`` on."""
    pipeline = dlt.pipeline(pipeline_name="posthog_events", destination="duckdb", dataset_name="posthog_data")
    source = posthog_source(project_ids=[project_id], start_date=start_date).with_resources(
        "events", "event_summaries"
    )
    print(pipeline.run(source, loader_file_format="parquet"))


def load_eu_definitions() -> None:
    """Cohorts, feature flags, insights and the event/property catalogue from EU Cloud."""
    pipeline = dlt.pipeline(pipeline_name="posthog_eu", destination="duckdb", dataset_name="posthog_data")
    source = posthog_source(base_url="https://eu.posthog.com").with_resources(
        "projects", "cohorts", "feature_flags", "insights", "event_definitions", "property_definitions"
    )
    print(pipeline.run(source, loader_file_format="parquet"))


def backfill_in_steps(days_per_run: int = 30) -> None:
    """A long history, committed run by run: each run reads at most ``days_per_run`` windows per
    project; repeat until no project's run was cut short."""
    pipeline = dlt.pipeline(pipeline_name="posthog", destination="duckdb", dataset_name="posthog_data")
    for _ in range(1000):
        info = pipeline.run(posthog_source(events_max_windows=days_per_run).with_resources("events"),
                            loader_file_format="parquet")
        print(info)
        projects = pipeline.state["sources"]["posthog"]["resources"]["events"]["projects"]
        if not any("first" in str(p.get("last_run", {}).get("mode", "")) for p in projects.values()):
            break


if __name__ == "__main__":
    load_everything()
