"""The users scan admits a batch's rows column-wise: the same rows land, and the same cursor and
fingerprints are committed, as when every row is shown to the cursor one by one."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sources.common.cursor import LookbackCursor
from sources.common.errors import MalformedResponse
from sources.lytics import (
    _admit_rows,
    _check_keys,
    _seconds_before,
    _users_batch,
    canonical,
    to_canonical,
    user_table,
)
from sources.lytics.tables import parse_iso_column

LOOKBACK = 600
BASE = 1_767_000_000 * 1_000_000  # early 2026, in microseconds


def _rows(spec: list[tuple[int, int | None, int]]) -> list[dict]:
    """(key number, microseconds after BASE or None, payload) -> profiles as Lytics sends them."""
    return [{"_uid": f"u{k}", "_modified": None if m is None else canonical(BASE + m)[:-1] + "123Z", "v": v}
            for k, m, v in spec]


def _one_by_one(cur: LookbackCursor, batches: list[list[dict]], run_start: str) -> tuple[list[dict], str | None]:
    """The row-by-row admission the column-wise one replaces."""
    kept, newest = [], None
    for batch in batches:
        for row in batch:
            modified = to_canonical(row.get("_modified"), "users._modified")
            if modified is not None and (newest is None or modified > newest):
                newest = modified
                cur.set_floor(min(modified, run_start))
            if cur.admit(row["_uid"], modified, row):
                kept.append(row)
    return kept, newest


def _column_wise(cur: LookbackCursor, batches: list[list[dict]], run_start: str) -> tuple[list[dict], str | None]:
    kept, newest = [], None
    for batch in batches:
        modified = parse_iso_column(pa.array([r.get("_modified") for r in batch], pa.string()), "t")
        texts = [to_canonical(r.get("_modified"), "t") for r in batch]
        top = max((t for t in texts if t is not None), default=None)
        if top is not None and (newest is None or top > newest):
            newest = top
            cur.set_floor(min(top, run_start))
        mask = _admit_rows(cur, batch, pa.chunked_array([modified]), "_uid")
        kept += batch if mask is None else [r for r, k in zip(batch, mask.to_pylist(), strict=True) if k]
    return kept, newest


def _landed(rows: list[dict]) -> dict[str, tuple]:
    """What the merge keeps per key: the copy with the newest ``_modified`` (dedup_sort desc)."""
    out: dict[str, tuple] = {}
    for r in rows:
        m = r["_modified"] or ""
        if r["_uid"] not in out or m > out[r["_uid"]][0]:
            out[r["_uid"]] = (m, r["v"])
    return out


_ROW = st.tuples(st.integers(0, 12), st.one_of(st.none(), st.integers(0, 20).map(lambda s: s * 100_000_000)),
                 st.integers(0, 2))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.lists(st.lists(_ROW, min_size=1, max_size=8), min_size=1, max_size=4), st.integers(0, 25).map(lambda s: s * 100))
def test_column_wise_admission_lands_and_commits_what_one_by_one_does(spec, start_s):
    batches = [_rows(b) for b in spec]
    run_start = canonical(BASE + start_s * 1_000_000)
    states = []
    landed = []
    for admit in (_one_by_one, _column_wise):
        state: dict = {}
        cur = LookbackCursor(state, _seconds_before(LOOKBACK), newest_wins=True)
        kept, newest = admit(cur, batches, run_start)
        cur.commit(None if newest is None else min(newest, run_start))
        states.append((state["cursor"] if "cursor" in state else None, state.get("seen")))
        landed.append(_landed(kept))
        assert cur.rows_read == sum(len(b) for b in batches)
    assert landed[0] == landed[1]
    assert states[0] == states[1]


def test_a_profile_without_its_key_fails_naming_the_key_and_its_fields():
    rows = [{"_uid": "a", "_modified": None}, {"_uid": "", "email": "x@example.com"}]
    with pytest.raises(MalformedResponse, match=r"lytics user without _uid .*\['_uid', 'email'\]"):
        _check_keys(pa.chunked_array([pa.array(["a", ""])]), rows, "_uid")
    with pytest.raises(MalformedResponse, match="without email"):
        _check_keys(pa.chunked_array([pa.array([None, "b"], pa.string())]), rows, "email")
    _check_keys(pa.chunked_array([pa.array(["a", "b"])]), rows, "_uid")  # every key present: no error


def test_a_profile_whose_modified_time_does_not_read_fails_the_batch():
    table, _ = user_table({"columns": []}, "_uid", [], 0)
    good = {"_uid": "a", "_modified": "2026-01-05T10:00:00.5Z"}
    assert _users_batch(table, [good], Counter(), "_uid").num_rows == 1
    with pytest.raises(MalformedResponse, match="cannot read '2026-13-05T10:00:00Z'"):
        _users_batch(table, [good, {"_uid": "b", "_modified": "2026-13-05T10:00:00Z"}], Counter(), "_uid")
