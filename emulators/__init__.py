"""Local, faithful stand-ins for each vendor API, served over HTTPS on 127.0.0.1.

    server = emulators.start("personyze", scale=2000, seed=7)   # in-process, background thread
    ...                                                         # server.base_url, .api_key, .ca_file
    server.stop()

or from the shell: ``python -m emulators personyze --port 0 --scale 100000``. Emulators import
nothing from ``sources/``: they are the other side of the wire.
"""

from __future__ import annotations

import importlib
from typing import Any

#: vendor name -> package providing ``create_backend(seed, scale, **options)``
VENDOR_PACKAGES: dict[str, str] = {
    "personyze": "emulators.personyze",
    "synerise": "emulators.synerise",
    "lytics": "emulators.lytics",
    "posthog": "emulators.posthog",
}


def available_vendors() -> list[str]:
    """Vendors whose emulator package exists, in a stable order."""
    out = []
    for name, package in VENDOR_PACKAGES.items():
        if importlib.util.find_spec(package) is not None:
            module = importlib.import_module(package)
            if hasattr(module, "create_backend"):
                out.append(name)
    return out


def create_backend(vendor: str, *, seed: int = 1, scale: int = 1000, **options: Any) -> Any:
    if vendor not in VENDOR_PACKAGES or vendor not in available_vendors():
        raise ValueError(f"no emulator for {vendor!r}; available: {', '.join(available_vendors())}")
    module = importlib.import_module(VENDOR_PACKAGES[vendor])
    return module.create_backend(seed=seed, scale=scale, **options)


def start(vendor: str, *, port: int = 0, seed: int = 1, scale: int = 1000, latency_ms: float = 0.0,
          **options: Any) -> Any:
    """Start ``vendor``'s emulator in a background thread; returns an ``EmulatorServer``."""
    from emulators.common.server import serve

    # hostile mode: the harness injects the wire's bad days, the backend its vendor's own
    hostile = {k: options.pop(k) for k in ("hostile", "hostile_seed", "hostile_rate") if k in options}
    if hostile.get("hostile"):
        options["hostile"] = hostile["hostile"]
        options["hostile_seed"] = hostile.get("hostile_seed")
    backend = create_backend(vendor, seed=seed, scale=scale, **options)
    return serve(backend, port=port, latency_ms=latency_ms, **hostile)
