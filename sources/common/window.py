"""A bounded time window ``[start, end)`` in UTC: the unit of a backfill.

Every source takes optional ``window_start`` / ``window_end``. Given, the source runs in
*bounded mode*: only its time-windowed resources are returned, and each reads exactly the rows
whose time axis lies in ``[start, end)`` through the vendor's bounded read functions. Bounded
mode never reads or writes the scheduled cursor (:class:`~sources.common.cursor.LookbackCursor`):
its only state is the record :meth:`Window.record` writes when the window's last page has been
yielded (rows, finished_at), committed with the load package like any other dlt state. A backfill
runs each window in its own pipeline (``cdp-sync backfill``), so the scheduled pipeline's state
never moves, and that record is how a re-run recognises a finished window.

Windows tile a range without gaps or overlaps whatever their size: a row belongs to the window
holding its time value, and for day-valued axes (daily summaries) to the window holding the
day's first instant in the day's own time zone.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import math
from dataclasses import dataclass
from typing import Any

import pendulum

from .errors import ConfigurationError

#: the resource-state key of a bounded run's record
RECORD_KEY = "window"


def parse_instant(value: Any, what: str = "time", vendor: str | None = None) -> pendulum.DateTime:
    """An ISO 8601 string, a ``datetime`` or a ``date`` as a UTC ``pendulum.DateTime``; a value
    without an offset is UTC and a date is its UTC midnight."""
    try:
        if isinstance(value, _dt.datetime):
            parsed: Any = pendulum.instance(value if value.tzinfo else value.replace(tzinfo=_dt.UTC))
        elif isinstance(value, _dt.date):
            parsed = pendulum.datetime(value.year, value.month, value.day, tz="UTC")
        else:
            parsed = pendulum.parse(str(value).strip(), tz="UTC")
    except Exception:  # noqa: BLE001 - pendulum raises several types for bad text
        raise ConfigurationError(f"{what} is not an ISO 8601 date or timestamp: {value!r}", vendor=vendor) from None
    if isinstance(parsed, pendulum.Date) and not isinstance(parsed, pendulum.DateTime):
        parsed = pendulum.datetime(parsed.year, parsed.month, parsed.day, tz="UTC")
    if not isinstance(parsed, pendulum.DateTime):
        raise ConfigurationError(f"{what} is not a point in time: {value!r}", vendor=vendor)
    return parsed.in_timezone("UTC")


def iso(value: pendulum.DateTime) -> str:
    """``2026-11-01T00:00:00Z`` (microseconds only when there are any)."""
    text = value.in_timezone("UTC").isoformat()
    return text.replace("+00:00", "Z")


@dataclass(frozen=True)
class Window:
    """``[start, end)``, both UTC, ``start < end``."""

    start: pendulum.DateTime
    end: pendulum.DateTime

    @classmethod
    def from_options(cls, window_start: Any, window_end: Any, vendor: str) -> Window | None:
        """The window a source was given, ``None`` when neither bound is; one bound alone, an
        unreadable bound or an empty window is a :class:`ConfigurationError`."""
        if window_start in (None, "") and window_end in (None, ""):
            return None
        if window_start in (None, "") or window_end in (None, ""):
            raise ConfigurationError(f"{vendor}: window_start and window_end go together", vendor=vendor)
        start = parse_instant(window_start, f"{vendor} window_start", vendor)
        end = parse_instant(window_end, f"{vendor} window_end", vendor)
        if start >= end:
            raise ConfigurationError(
                f"{vendor}: window_start {iso(start)} must be before window_end {iso(end)}", vendor=vendor
            )
        return cls(start, end)

    @classmethod
    def day(cls, day: Any) -> Window:
        """The UTC day holding ``day`` (a ``YYYY-MM-DD`` partition key, a date or a datetime)."""
        start = parse_instant(day, "day").start_of("day")
        return cls(start, start.add(days=1))

    @property
    def label(self) -> str:
        return f"{iso(self.start)}..{iso(self.end)}"

    # the bounds in the units the APIs use -----------------------------------------------------

    @property
    def start_us(self) -> int:
        return _micros(self.start)

    @property
    def end_us(self) -> int:
        return _micros(self.end)

    @property
    def start_ms(self) -> int:
        """The first millisecond in the window."""
        return -(-_micros(self.start) // 1000)

    @property
    def end_ms(self) -> int:
        """The first millisecond after the window."""
        return -(-_micros(self.end) // 1000)

    @property
    def start_s(self) -> int:
        """The first whole second in the window: ``v >= start_s`` iff second ``v`` is inside."""
        return math.ceil(_micros(self.start) / 1_000_000)

    @property
    def end_s(self) -> int:
        """The first whole second after the window: ``v < end_s`` iff second ``v`` is inside."""
        return math.ceil(_micros(self.end) / 1_000_000)

    def local_text(self, tz: str, fmt: str = "%Y-%m-%d %H:%M:%S") -> tuple[str, str]:
        """Both bounds as wall-clock text in ``tz`` (for APIs that store local date strings)."""
        return (self.start.in_timezone(tz).strftime(fmt), self.end.in_timezone(tz).strftime(fmt))

    def is_past(self, margin_seconds: float = 0.0) -> bool:
        """The window ended at least ``margin_seconds`` ago (by the local clock)."""
        return self.end.add(seconds=margin_seconds) <= pendulum.now("UTC")

    # the record --------------------------------------------------------------------------------

    def record(self, state: dict[str, Any], rows: int, **extra: Any) -> None:
        """Mark this window finished in ``state`` (the resource state of the run reading it)."""
        state[RECORD_KEY] = {
            "start": iso(self.start),
            "end": iso(self.end),
            "rows": int(rows),
            "finished_at": pendulum.now("UTC").to_iso8601_string(),
            **extra,
        }

    def recorded_in(self, state: Any) -> dict[str, Any] | None:
        """The record of this very window in a resource state, if it finished there."""
        rec = state.get(RECORD_KEY) if isinstance(state, dict) else None
        if isinstance(rec, dict) and rec.get("start") == iso(self.start) and rec.get("end") == iso(self.end) \
                and rec.get("finished_at"):
            return rec
        return None


def _micros(value: pendulum.DateTime) -> int:
    utc = value.in_timezone("UTC")
    return calendar.timegm(utc.utctimetuple()) * 1_000_000 + utc.microsecond


class RowCount:
    """Rows of the Arrow pages (or lists) a bounded resource yields."""

    def __init__(self) -> None:
        self.rows = 0

    def __call__(self, page: Any) -> Any:
        n = getattr(page, "num_rows", None)
        self.rows += int(n) if n is not None else len(page)
        return page


def windows(start_us: int, end_us: int, size_us: int) -> list[tuple[int, int]]:
    """``[start, end)`` cut into consecutive windows of at most ``size_us``, their inner
    boundaries aligned to multiples of ``size_us`` (UTC midnights for one day)."""
    if end_us <= start_us:
        return []
    out = []
    a = start_us
    while a < end_us:
        b = min(end_us, (a // size_us + 1) * size_us)
        out.append((a, b))
        a = b
    return out
