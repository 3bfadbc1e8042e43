"""A small client for an emulator's ``/_emulator/`` control plane (tests and benchmarks)."""

from __future__ import annotations

from typing import Any

import httpx


class ControlError(RuntimeError):
    pass


class ControlClient:
    def __init__(self, root_url: str, ca_file: str, timeout: float = 120.0) -> None:
        self._http = httpx.Client(base_url=root_url.rstrip("/") + "/_emulator/", verify=ca_file, timeout=timeout)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._http.request(method, path, json=body)
        if response.status_code >= 400:
            raise ControlError(f"{method} /_emulator/{path}: {response.status_code} {response.text}")
        return response.json()

    def info(self) -> dict[str, Any]:
        return self._call("GET", "info")

    def state(self) -> dict[str, Any]:
        return self._call("GET", "state")

    def mutate(self, op: dict[str, Any]) -> Any:
        return self._call("POST", "mutate", op)

    def export(self, table: str) -> list[dict[str, Any]]:
        return self._call("GET", f"tables/{table}")

    def add_faults(self, rules: list[dict[str, Any]]) -> Any:
        return self._call("POST", "faults", rules)

    def clear_faults(self) -> Any:
        return self._call("DELETE", "faults")

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "faults")["rules"]

    def requests(self) -> list[dict[str, Any]]:
        return self._call("GET", "requests")

    def clear_requests(self) -> None:
        self._call("DELETE", "requests")

    def configure(self, **options: Any) -> dict[str, Any]:
        return self._call("POST", "config", options)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
