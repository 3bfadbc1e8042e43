"""The vendors the CLI knows, discovered by convention from ``sources/<vendor>/``.

A vendor package ``sources/<vendor>`` provides:

* ``<vendor>_source`` — the ``@dlt.source`` function (``api_key``, ``base_url``, options);
* ``check_credentials(api_key, base_url) -> str`` — verifies credentials and reachability with
  one cheap request and returns a short summary (``cdp-sync check``);
* ``settings.DEFAULT_BASE_URL``.

Packages are imported lazily, so one vendor's import error spares the others.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: every vendor cdp-sync targets, in display order; those without a package yet are skipped
KNOWN_VENDORS = ("personyze", "synerise", "lytics", "posthog")


@dataclass(frozen=True)
class Vendor:
    name: str

    @property
    def module(self) -> Any:
        return importlib.import_module(f"sources.{self.name}")

    def load_source(self) -> Callable[..., Any]:
        return getattr(self.module, f"{self.name}_source")

    def probe(self, api_key: str, base_url: str) -> str:
        return self.module.check_credentials(api_key, base_url)

    @property
    def default_base_url(self) -> str:
        return importlib.import_module(f"sources.{self.name}.settings").DEFAULT_BASE_URL

    @property
    def section(self) -> str:
        return f"sources.{self.name}"

    @property
    def key_env(self) -> str:
        return f"SOURCES__{self.name.upper()}__API_KEY"

    @property
    def url_env(self) -> str:
        return f"SOURCES__{self.name.upper()}__BASE_URL"


def _available() -> dict[str, Vendor]:
    return {
        name: Vendor(name)
        for name in KNOWN_VENDORS
        if importlib.util.find_spec(f"sources.{name}") is not None
    }


VENDORS: dict[str, Vendor] = _available()
