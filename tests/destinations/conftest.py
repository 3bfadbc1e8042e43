"""Fixtures of the destination tests: one throwaway PostgreSQL server per session (see
``pgserver.py``), a fresh schema name per test, and pipelines bound to any destination."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dlt
import pytest

from .pgserver import PostgresServer, PostgresUnavailable, start_server

_datasets = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = start_server()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """``postgresql://loader:…@127.0.0.1:<port>/cdp``: the credentials dlt takes."""
    return postgres_server.url


@pytest.fixture
def dataset_name(request: pytest.FixtureRequest) -> str:
    """A schema of its own for every test (all tests share the session's database)."""
    words = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower().removeprefix("test_")).strip("_")
    return f"t{next(_datasets)}_{words[:40].strip('_')}"


@pytest.fixture
def destination_pipeline(tmp_path: Path) -> Callable[..., dlt.Pipeline]:
    """``destination_pipeline(destination, dataset, name=..., pipelines_dir=...)``: a pipeline
    whose local working folder lives under the test's ``tmp_path`` (``pipelines`` by default;
    pass another folder to start as on a machine that never ran it)."""

    def make(destination: Any, dataset_name: str, *, name: str = "test", pipelines_dir: str = "pipelines") -> dlt.Pipeline:
        return dlt.pipeline(
            pipeline_name=name,
            destination=destination,
            dataset_name=dataset_name,
            pipelines_dir=str(tmp_path / pipelines_dir),
        )

    return make
