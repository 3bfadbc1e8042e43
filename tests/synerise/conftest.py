"""Fixtures of the Synerise tests: the emulator over HTTPS on loopback and its control plane."""

from __future__ import annotations

from typing import Any

import pytest

from .support import SCALE, SEED


@pytest.fixture
def emu(start_emulator: Any) -> Any:
    return start_emulator("synerise", scale=SCALE, seed=SEED)


@pytest.fixture
def ctl(emu: Any, control_for: Any) -> Any:
    return control_for(emu)
