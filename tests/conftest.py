"""Shared fixtures: emulators on loopback over HTTPS, isolated dlt pipelines and DuckDB files."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dlt
import pytest

# hermetic dlt configuration for every test (independent of any .dlt/ in the working directory)
_ENV = {
    "RUNTIME__DLTHUB_TELEMETRY": "false",
    "RUNTIME__LOG_LEVEL": "WARNING",
    "NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_LOAD_ID": "true",
    "LOAD__DELETE_COMPLETED_JOBS": "true",
}


@pytest.fixture(autouse=True)
def _dlt_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k, v in _ENV.items():
        monkeypatch.setenv(k, v)
    # no secrets from the developer's environment leak into tests
    for k in list(os.environ):
        if k.startswith("SOURCES__"):
            monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt_data"))


@pytest.fixture
def start_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """Start a vendor emulator in-process: ``server = start_emulator("personyze", scale=2000)``.

    The server's CA becomes ``SSL_CERT_FILE`` so sources verify TLS exactly as in production."""
    import emulators

    servers: list[Any] = []

    def start(vendor: str, **options: Any) -> Any:
        server = emulators.start(vendor, **options)
        servers.append(server)
        monkeypatch.setenv("SSL_CERT_FILE", server.ca_file)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def control_for() -> Iterator[Callable[[Any], Any]]:
    from emulators.common.control import ControlClient

    clients: list[Any] = []

    def make(server: Any) -> Any:
        client = ControlClient(server.root_url, server.ca_file)
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def make_pipeline(tmp_path: Path) -> Callable[..., dlt.Pipeline]:
    """A dlt pipeline with its own pipelines dir and DuckDB file under the test's tmp_path."""

    def make(name: str = "test", *, dataset_name: str = "data", db: str = "test.duckdb") -> dlt.Pipeline:
        return dlt.pipeline(
            pipeline_name=name,
            destination=dlt.destinations.duckdb(str(tmp_path / db)),
            dataset_name=dataset_name,
            pipelines_dir=str(tmp_path / "pipelines"),
        )

    return make


@pytest.fixture
def paging(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A small generic API (tests/common/paging_backend.py) behind the real emulator harness,
    over HTTPS on loopback: for the shared HTTP core, the paginators and the harness itself."""
    from emulators.common.server import serve
    from tests.common.paging_backend import PagingBackend

    server = serve(PagingBackend())
    monkeypatch.setenv("SSL_CERT_FILE", server.ca_file)
    yield server
    server.stop()


@pytest.fixture
def paging_ctl(paging: Any) -> Iterator[Any]:
    from emulators.common.control import ControlClient

    with ControlClient(paging.root_url, paging.ca_file) as ctl:
        yield ctl
