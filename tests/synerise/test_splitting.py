"""Reading a window of workspace activities under the 1,000-event cap: cutting windows by the
events per millisecond read so far (``Density``) returns exactly what plain halving returns,
every event of the window once, whatever the API's order within a capped answer and however
the events bunch up; only the number of requests changes.

The API here is the contract's rule for ``GET /activities-api/activities`` on a list in memory
(events with ``dateFrom <= time <= dateTo``, at most ``limit`` of them, in an order the contract
does not state): the HTTP side is covered against the emulator in ``test_source.py``."""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sources.synerise import Density, _split_read


class Window:
    """``activities(a, b, limit)`` over sorted event times, answering a capped window in the
    order ``order`` picks (newest first, oldest first, or a fixed shuffle)."""

    def __init__(self, times: list[int], order: str) -> None:
        self.times = sorted(times)
        self.order = order
        self.asked: list[tuple[int, int]] = []
        self.served = 0  # rows answered, full answers (thrown away) included

    def activities(self, a: int, b: int, limit: int) -> list[dict[str, Any]]:
        assert a <= b
        self.asked.append((a, b))
        i, j = bisect.bisect_left(self.times, a), bisect.bisect_right(self.times, b)
        rows = [{"eventUUID": f"e{k}", "time": self.times[k]} for k in range(i, j)]
        if self.order == "newest":
            rows.reverse()
        elif self.order == "shuffled":
            rows.sort(key=lambda r: hash((r["eventUUID"], 7)))
        self.served += min(len(rows), limit)
        return rows[:limit]


def _read(api: Window, lo: int, hi: int, limit: int, density: Density | None) -> tuple[Counter[str], list[int]]:
    overflowed: list[int] = []
    got: Counter[str] = Counter()
    for page in _split_read(api, lo, hi, limit, lambda ms, n: overflowed.append(ms), density=density):
        got.update(r["eventUUID"] for r in page)
    return got, overflowed


@settings(max_examples=150, deadline=None)
@given(spread=st.lists(st.integers(0, 50_000), max_size=600),
       bursts=st.lists(st.tuples(st.integers(0, 50_000), st.integers(1, 120), st.integers(0, 40)), max_size=4),
       limit=st.sampled_from([7, 25, 100]), order=st.sampled_from(["newest", "oldest", "shuffled"]),
       pieces=st.integers(1, 4), warm=st.booleans())
def test_cutting_by_density_reads_what_halving_reads(spread, bursts, limit, order, pieces, warm):
    times = list(spread)
    for at, count, width in bursts:
        times += [at + (i % (width + 1)) for i in range(count)]
    lo, hi = 0, 50_040
    density = Density()
    if warm:  # a density learnt elsewhere in the run (another piece of the window)
        density.add(len(times) * 3, hi - lo + 1)
    chunk = (hi - lo + 1) // pieces + 1
    slow, fast = Window(times, order), Window(times, order)
    expected_slow: Counter[str] = Counter()
    expected_fast: Counter[str] = Counter()
    over_slow: list[int] = []
    over_fast: list[int] = []
    for a in range(lo, hi + 1, chunk):
        b = min(a + chunk - 1, hi)
        got, over = _read(slow, a, b, limit, None)
        expected_slow += got
        over_slow += over
        got, over = _read(fast, a, b, limit, density)
        expected_fast += got
        over_fast += over
    assert sorted(over_fast) == sorted(over_slow)
    # a millisecond at the cap is always cut down to itself, and answers as the API picks: the same
    assert expected_fast == expected_slow
    if not over_slow:  # no millisecond at the cap: every event exactly once
        assert expected_fast == Counter(f"e{k}" for k in range(len(times)))
    # the windows asked for never overlap within one answer's parts and stay inside the read
    assert all(lo <= a <= b <= hi for a, b in fast.asked)


def _reads(times: list[int], pieces: int, limit: int, density: Density | None) -> Window:
    api, hi = Window(times, "newest"), max(times)
    chunk = hi // pieces + 1
    for a in range(0, hi + 1, chunk):
        _read(api, a, min(a + chunk - 1, hi), limit, density)
    return api


def test_a_steady_stream_throws_fewer_full_answers_away_than_halving():
    times = [i * 37 for i in range(20_000)]  # ~27 events a second for 740 s
    halving, cut = _reads(times, 4, 100, None), _reads(times, 4, 100, Density())
    assert cut.served - len(times) < 0.5 * (halving.served - len(times)), (cut.served, halving.served)
    assert len(cut.asked) <= len(halving.asked)


def test_a_rate_learnt_from_a_burst_does_not_fan_out_over_a_quiet_stretch():
    # a dense stretch read first (1 event per ms), then 1 per second for ~17 minutes: the rate
    # learnt first is 1,000 times too high for the rest; the answers correct it, and no cut
    # makes more than MAX_PARTS requests on a guess
    times = list(range(3_000)) + list(range(3_000, 1_000_000, 1_000))
    halving, cut = len(_reads(times, 1, 100, None).asked), len(_reads(times, 1, 100, Density()).asked)
    assert cut <= 2.5 * halving, (cut, halving)


def test_density_cuts_a_window_expected_full_and_leaves_a_quiet_one_whole():
    d = Density()
    assert d.parts(0, 999, 1000, full=False) == 1  # nothing known: ask
    assert d.parts(0, 999, 1000, full=True) == 4  # full, nothing known yet
    d.add(500, 1000)  # half an event per ms
    assert d.parts(0, 999, 1000, full=False) == 1  # ~500 expected: ask
    assert d.parts(0, 3999, 1000, full=False) == 4  # ~2,000 expected: four parts of ~500
    assert d.parts(0, 999, 1000, full=True) == 2
    assert d.parts(5, 6, 1000, full=True) == 2  # never more parts than milliseconds
    assert d.parts(0, 10**9, 1000, full=False) == Density.MAX_PARTS  # a guess never fans out further
