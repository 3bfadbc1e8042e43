"""The vendors the CLI knows: their dlt source, credential probe and configuration keys."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Vendor:
    name: str
    #: the ``@dlt.source`` function (imported lazily so one vendor's import error spares the rest)
    load_source: Callable[[], Callable[..., Any]]
    #: ``probe(api_key, base_url) -> str``: verifies credentials and reachability, returns a summary
    probe: Callable[[str, str], str]
    default_base_url: str

    @property
    def section(self) -> str:
        return f"sources.{self.name}"

    @property
    def key_env(self) -> str:
        return f"SOURCES__{self.name.upper()}__API_KEY"

    @property
    def url_env(self) -> str:
        return f"SOURCES__{self.name.upper()}__BASE_URL"


def _personyze_source() -> Callable[..., Any]:
    from sources.personyze import personyze_source

    return personyze_source


def _personyze_probe(api_key: str, base_url: str) -> str:
    from sources.personyze.client import PersonyzeClient

    client = PersonyzeClient(api_key, base_url)
    try:
        account = client.check()
    finally:
        client.close()
    name = account.get("name") if isinstance(account, dict) else None
    return f"account {name!r}" if name else "credentials accepted"


VENDORS: dict[str, Vendor] = {
    "personyze": Vendor(
        name="personyze",
        load_source=_personyze_source,
        probe=_personyze_probe,
        default_base_url="https://app.personyze.com/rest",
    ),
}
