"""Fixtures shared by the emulator tests. A module names its emulator in an ``emu`` fixture; these
build on it (a module may still define its own ``api`` for another vendor's auth)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest


@pytest.fixture
def ctl(emu: Any, control_for: Any) -> Any:
    """The emulator's control plane."""
    return control_for(emu)


@pytest.fixture
def api(emu: Any) -> Iterator[httpx.Client]:
    """An HTTPS client of the emulator's API with its key as a bearer token (PostHog's scheme)."""
    with httpx.Client(base_url=emu.base_url, verify=emu.ca_file, timeout=60,
                      headers={"Authorization": f"Bearer {emu.api_key}"}) as client:
        yield client
