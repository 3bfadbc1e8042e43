"""One API client per source run, shared by the resources that run at the same time.

A dlt source object is built once and its resources run (often in parallel) during one extract.
Every resource takes the client with ``with shared.use() as api:``; the client is built when the
first resource starts and closed when the last one finishes, so a run keeps one connection pool
and a finished run leaves no sockets open."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, Protocol, TypeVar


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


class SharedClient(Generic[C]):
    def __init__(
        self, factory: Callable[[], C], *, eager: bool = True, on_close: Callable[[C], None] | None = None
    ):
        self._factory = factory
        self._on_close = on_close
        self._lock = threading.Lock()
        self._users = 0
        # build once now so configuration errors (bad key, non-HTTPS URL) surface when the source
        # is created rather than in the middle of an extract
        self._client: C | None = factory() if eager else None

    @contextmanager
    def use(self) -> Iterator[C]:
        with self._lock:
            if self._client is None:
                self._client = self._factory()
            self._users += 1
            client = self._client
        try:
            yield client
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._client is not None:
                    self._close()

    def _close(self) -> None:
        assert self._client is not None
        try:
            if self._on_close is not None:
                self._on_close(self._client)
        finally:
            self._client.close()
            self._client = None

    def close(self) -> None:
        with self._lock:
            if self._client is not None and self._users == 0:
                self._close()
