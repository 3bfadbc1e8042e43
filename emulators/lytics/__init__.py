"""The Lytics emulator: ``create_backend(seed, scale, **options)`` for the shared harness.

See ``emulators/lytics/README.md`` for the behaviours, options and control-plane operations."""

from .backend import OPTIONS, LyticsBackend, create_backend

__all__ = ["OPTIONS", "LyticsBackend", "create_backend"]
