"""The users cursor's time text: the fast paths give exactly what parsing gives."""

from __future__ import annotations

import pendulum
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sources.common.errors import MalformedResponse
from sources.lytics import canonical, to_canonical
from sources.lytics.tables import iso_to_micros

YEAR_1000 = -30_610_224_000 * 1_000_000
YEAR_9999_END = 253_402_300_799_999_999


def parsed(text: str) -> str | BaseException:
    """The slow path: parse to epoch microseconds, then format."""
    try:
        return canonical(iso_to_micros(text, "users._modified"))
    except MalformedResponse as exc:
        return exc


@settings(max_examples=1500, deadline=None, derandomize=True, database=None)
@given(micros=st.integers(min_value=YEAR_1000, max_value=YEAR_9999_END))
def test_canonical_is_pendulums_text(micros: int) -> None:
    dt = pendulum.from_timestamp(micros // 1_000_000, tz="UTC").add(microseconds=micros % 1_000_000)
    assert canonical(micros) == dt.format("YYYY-MM-DDTHH:mm:ss.SSSSSS") + "Z"


_digits = st.text(alphabet="0123456789", min_size=1, max_size=3)


@settings(max_examples=3000, deadline=None, derandomize=True, database=None)
@given(
    year=st.integers(0, 9999), month=st.integers(0, 13), day=st.integers(0, 32), hour=st.integers(0, 25),
    minute=st.integers(0, 61), second=st.integers(0, 61), frac=st.one_of(st.none(), _digits, st.text("0123456789",
                                                                                                      max_size=12)),
    tail=st.sampled_from(["Z", "Z", "Z", "z", "+00:00", "-05:30", "", " "]), sep=st.sampled_from(["T", "T", " ", "t"]),
)
def test_lytics_time_text_matches_parsing(year: int, month: int, day: int, hour: int, minute: int, second: int,
                                          frac: str | None, tail: str, sep: str) -> None:
    text = f"{year:04d}-{month:02d}-{day:02d}{sep}{hour:02d}:{minute:02d}:{second:02d}"
    text += ("" if frac is None else f".{frac}") + tail
    want = parsed(text)
    if isinstance(want, BaseException):
        with pytest.raises(MalformedResponse):
            to_canonical(text, "users._modified")
    else:
        assert to_canonical(text, "users._modified") == want


def test_lytics_time_text_examples() -> None:
    assert to_canonical("2026-01-05T10:00:00.123456789Z", "x") == "2026-01-05T10:00:00.123456Z"
    assert to_canonical("2026-01-05T10:00:07Z", "x") == "2026-01-05T10:00:07.000000Z"
    assert to_canonical("2026-01-05T10:00:07.5Z", "x") == "2026-01-05T10:00:07.500000Z"
    assert to_canonical("2026-01-05T12:00:07.5+02:00", "x") == "2026-01-05T10:00:07.500000Z"
    assert to_canonical(None, "x") is None and to_canonical("", "x") is None
    for bad in ("2025-02-29T10:00:00Z", "2026-01-05T24:00:00Z", "2026-01-05T10:00:60.1Z", "٢٠٢٦-01-05T10:00:00Z"):
        with pytest.raises(MalformedResponse):
            to_canonical(bad, "x")
