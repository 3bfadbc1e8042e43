"""Throttled progress lines for long extracts, on the ``cdp_sync.progress`` logger.

The CLI shows this logger on stderr; library users see it only if they configure logging."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

logger = logging.getLogger("cdp_sync.progress")

_requests: Counter[str] = Counter()
_requests_lock = threading.Lock()


def record_requests(vendor: str, count: int) -> None:
    """Add the requests a closed API client made to the process-wide tally (the CLI's summary)."""
    with _requests_lock:
        _requests[vendor] += count


def requests_made(vendor: str) -> int:
    with _requests_lock:
        return _requests[vendor]


class ProgressLog:
    """Counts rows of one resource and logs at most every ``interval`` seconds."""

    def __init__(self, vendor: str, resource: str, interval: float = 5.0):
        self.vendor = vendor
        self.resource = resource
        self.interval = interval
        self.rows_read = 0
        self.rows_loaded = 0
        self._started = time.monotonic()
        self._last = self._started

    def update(self, read: int, loaded: int) -> None:
        self.rows_read += read
        self.rows_loaded += loaded
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._log("reading")

    def done(self, note: str = "") -> None:
        self._log("done" + (f" ({note})" if note else ""))

    def _log(self, what: str) -> None:
        elapsed = time.monotonic() - self._started
        logger.info(
            "%s.%s %s: %s rows read, %s new or changed, %.1f s",
            self.vendor,
            self.resource,
            what,
            f"{self.rows_read:,}",
            f"{self.rows_loaded:,}",
            elapsed,
        )
