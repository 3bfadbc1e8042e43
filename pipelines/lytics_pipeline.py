"""Small runnable examples of the Lytics source, in the dlt verified-sources style.

    python -m pipelines.lytics_pipeline

Credentials come from .dlt/secrets.toml or SOURCES__LYTICS__API_KEY.
"""

from __future__ import annotations

import dlt

from sources.lytics import lytics_source


def load_everything() -> None:
    """All resources into DuckDB (lytics.duckdb); users incremental after the first run."""
    pipeline = dlt.pipeline(pipeline_name="lytics", destination="duckdb", dataset_name="lytics")
    print(pipeline.run(lytics_source(), loader_file_format="parquet"))


def load_one_segment(segment: str = "high_intensity") -> None:
    """Only the profiles of one saved segment (its scan first, then its changed members)."""
    pipeline = dlt.pipeline(pipeline_name=f"lytics_{segment}", destination="duckdb", dataset_name="lytics_segment")
    source = lytics_source(segment=segment).with_resources("users")
    print(pipeline.run(source, loader_file_format="parquet"))


def load_catalog() -> None:
    """Segments, collections, sizes (one snapshot per run, merged on id and extracted_at), schema, streams and jobs."""
    pipeline = dlt.pipeline(pipeline_name="lytics_catalog", destination="duckdb", dataset_name="lytics")
    source = lytics_source().with_resources(
        "segments", "segment_collections", "segment_sizes", "schema_fields", "streams", "jobs"
    )
    print(pipeline.run(source, loader_file_format="parquet"))


if __name__ == "__main__":
    load_everything()
