"""The lookback cursor's rules for a row read twice in one load (newest_wins)."""

from __future__ import annotations

from sources.common.cursor import LookbackCursor


def _cursor(state: dict, **kw) -> LookbackCursor:
    return LookbackCursor(state, lambda v: v - 10, **kw)


def test_an_older_copy_read_after_a_newer_one_is_dropped_and_the_newer_fingerprint_kept():
    state: dict = {}
    cur = _cursor(state, newest_wins=True)
    assert cur.admit("u1", 105, {"id": 1, "v": "new"})
    assert not cur.admit("u1", 100, {"id": 1, "v": "old"})
    cur.commit()
    # the next run re-reads the landed (newer) copy: unchanged, so not loaded again
    again = _cursor(state, newest_wins=True)
    assert not again.admit("u1", 105, {"id": 1, "v": "new"})


def test_without_newest_wins_the_last_copy_read_is_remembered():
    state: dict = {}
    cur = _cursor(state)
    assert cur.admit("u1", 105, {"id": 1, "v": "new"})
    assert cur.admit("u1", 100, {"id": 1, "v": "old"})  # the plain rule loads every copy
    cur.commit()
    assert _cursor(state).admit("u1", 105, {"id": 1, "v": "new"})  # and kept the stale fingerprint


def test_a_newer_copy_after_an_older_one_loads_and_is_remembered():
    state: dict = {}
    cur = _cursor(state, newest_wins=True)
    assert cur.admit("u1", 100, {"id": 1, "v": "old"})
    assert cur.admit("u1", 105, {"id": 1, "v": "new"})
    cur.commit()
    assert not _cursor(state, newest_wins=True).admit("u1", 105, {"id": 1, "v": "new"})


def test_two_different_copies_of_one_instant_keep_no_fingerprint():
    state: dict = {}
    cur = _cursor(state, newest_wins=True)
    assert cur.admit("u1", 100, {"id": 1, "v": "a"})
    assert cur.admit("u1", 100, {"id": 1, "v": "b"})
    cur.commit()
    # whichever copy the merge kept, the next run loads the row again
    assert _cursor(state, newest_wins=True).admit("u1", 100, {"id": 1, "v": "a"})
    assert _cursor(state, newest_wins=True).admit("u1", 100, {"id": 1, "v": "b"})


def test_rows_counted_below_the_floor_load_without_a_fingerprint():
    state: dict = {}
    cur = _cursor(state)
    cur.set_floor(100)  # the window the commit keeps starts at 90
    cur.admit_below_floor(5)  # found column-wise by the caller, older than 90
    assert cur.admit("u1", 100, {"id": 1})
    cur.commit()
    assert (state["last_run"]["rows_read"], state["last_run"]["rows_loaded"]) == (6, 6)
    assert set(state["seen"]) == {"u1"}  # only the row inside the window has a fingerprint
