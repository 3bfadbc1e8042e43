"""Small runnable examples of the Personyze source, in the dlt verified-sources style.

    python -m pipelines.personyze_pipeline

Credentials come from .dlt/secrets.toml or SOURCES__PERSONYZE__API_KEY.
"""

from __future__ import annotations

import dlt

from sources.personyze import personyze_source


def load_everything() -> None:
    """All resources into DuckDB (personyze.duckdb); incremental after the first run."""
    pipeline = dlt.pipeline(pipeline_name="personyze", destination="duckdb", dataset_name="personyze")
    info = pipeline.run(personyze_source(), loader_file_format="parquet")
    print(info)


def load_users_by_session_time() -> None:
    """Only users and events, paging users by last_session_time as the vendor docs do."""
    pipeline = dlt.pipeline(pipeline_name="personyze_sessions", destination="duckdb", dataset_name="personyze")
    source = personyze_source(user_cursor="last_session_time").with_resources("users", "events")
    print(pipeline.run(source, loader_file_format="parquet"))


if __name__ == "__main__":
    load_everything()
