"""The Synerise emulator: workspace login and JWTs, ``/v4`` profiles, workspace and per-profile
activities, catalogs, tags, CRM segmentations, analytics and the profile export task, each with
the contract's caps, horizons, quirks and error-body families (see README.md)."""

from __future__ import annotations

from typing import Any

from .backend import SyneriseBackend

__all__ = ["SyneriseBackend", "create_backend"]


def create_backend(seed: int = 1, scale: int = 1000, **options: Any) -> SyneriseBackend:
    return SyneriseBackend(seed=seed, scale=scale, **options)
