"""PostHog emulator: the private REST API and the HogQL query endpoint (see ``backend.py``)."""

from __future__ import annotations

from .backend import PostHogBackend, create_backend

__all__ = ["PostHogBackend", "create_backend"]
