from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from emulators.common.control import ControlClient
from emulators.common.server import serve

from .paging_backend import PagingBackend


@pytest.fixture
def paging(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The generic paging API behind the real emulator harness, over HTTPS on loopback."""
    server = serve(PagingBackend())
    monkeypatch.setenv("SSL_CERT_FILE", server.ca_file)
    yield server
    server.stop()


@pytest.fixture
def paging_ctl(paging: Any) -> Iterator[ControlClient]:
    with ControlClient(paging.root_url, paging.ca_file) as ctl:
        yield ctl
