"""The contract between a vendor emulator and the shared harness.

A vendor package (``emulators/<vendor>/``) exposes ``create_backend(seed, scale, **options)``
returning an object that satisfies :class:`EmulatorBackend`. The harness
(:func:`emulators.common.app.build_app`) wraps the backend's routes with everything every
emulator shares: the ``/_emulator/`` control plane, scripted faults, added latency and the
request log. The harness knows nothing about any vendor; a backend knows nothing about TLS,
ports, faults or the request log.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from starlette.routing import BaseRoute


class MutationError(ValueError):
    """A control-plane mutation was malformed; the control plane answers 400 with its text."""


@runtime_checkable
class EmulatorBackend(Protocol):
    #: vendor name, e.g. ``"personyze"``
    vendor: str
    #: the credential a client must present (an API key, a workspace key ...)
    api_key: str
    #: path prefix of the vendor API below the server root, e.g. ``"/rest"``; ``""`` for none.
    #: ``base_url`` printed by ``python -m emulators`` is ``https://127.0.0.1:<port><base_path>``.
    base_path: str

    def routes(self) -> list[BaseRoute]:
        """Starlette routes of the vendor API (paths include ``base_path``)."""
        ...

    def state(self) -> dict[str, int]:
        """Row counts per table, for ``GET /_emulator/state``."""
        ...

    def mutate(self, operation: dict[str, Any]) -> dict[str, Any]:
        """Apply one vendor-specific operation (``POST /_emulator/mutate``).

        ``operation["op"]`` names it (for example ``"modify_users"``, ``"add_users"``,
        ``"add_events"``); the result is JSON-serialisable and describes what changed.
        Raise :class:`MutationError` for a malformed operation.
        """
        ...

    def export(self, table: str) -> list[dict[str, Any]]:
        """Every row of ``table`` exactly as the vendor API would render it, in primary-key
        order (``GET /_emulator/tables/<table>``). Tests compare loaded data against this.
        Raise ``KeyError`` for an unknown table."""
        ...

    def configure(self, options: dict[str, Any]) -> dict[str, Any]:
        """Change vendor options at run time (``POST /_emulator/config``), returning the
        options now in force. Raise :class:`MutationError` for an unknown option."""
        ...
