"""The column-wise events path gives the answers of the row-by-row one: the uuid set (each event
once per run, the first copy read kept), the typed tables (fast path and fallback), and the
admission of the lookback window's rows (the same fingerprints in state)."""

from __future__ import annotations

import random
import uuid

import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sources.common.arrow import rows_to_table
from sources.common.cursor import LookbackCursor
from sources.posthog import _admit_page, _minus, columnar
from sources.posthog.client import cursor_text, iso_to_us, us_to_iso
from sources.posthog.columnar import EventPage, UuidSet, batched_tables, dict_rows, uuid_words
from sources.posthog.keys import KeySet
from sources.posthog.settings import EVENT_COLUMNS, EVENTS

US = 1_000_000
PID = 4242


def _row(i: int, ts: str, *, props: object = None, uid: str | None = None) -> list:
    properties = orjson.dumps({"$current_url": f"https://x.test/{i}", "n": i, "b": {"z": 1, "a": [1, 2]}}).decode() \
        if props is None else props
    return [uid or str(uuid.UUID(int=random.getrandbits(128))), "$pageview", f"user-{i % 7}", ts,
            "2026-11-20T10:00:00.000000+00:00", str(uuid.UUID(int=i + 1)), f"s{i % 3}" if i % 5 else "",
            "", properties]


def _page(n: int, start_us: int = 1_795_000_000 * US, step_us: int = 1000, **kw: object) -> list[list]:
    return [_row(i, us_to_iso(start_us + i * step_us).replace("Z", "+00:00"), **kw) for i in range(n)]


@pytest.mark.parametrize("max_run", [None, 300])
def test_uuid_set_keeps_each_uuid_once_like_the_row_by_row_set(max_run):
    rng = random.Random(7)
    fresh = lambda: str(uuid.UUID(int=rng.getrandbits(128)))  # noqa: E731
    pool = [fresh() for _ in range(200)]
    columnar, rowwise = UuidSet(), KeySet()
    if max_run is not None:  # runs that stop merging at max_run keys: many runs, the same answers
        columnar.max_run = max_run
    for p in range(400):  # enough pages for runs to merge many times
        page = [rng.choice(pool) if rng.random() < 0.03 else fresh() for _ in range(rng.randint(0, 120))]
        if p % 9 == 0 and page:
            page[0] = page[0].upper()  # one UUID, two spellings
        if p % 13 == 0 and page:
            page.append(page[0])  # a repeat inside the page: the first copy is the one kept
        if p % 17 == 0:
            page += ["not-a-uuid", "not-a-uuid"]
        pool += page
        got = columnar.first_seen(pa.array(page, type=pa.string()))
        assert (None if got is None else got.to_pylist()) == rowwise.first_seen(page), f"page {p}"
    assert len(columnar) == len(rowwise)
    if max_run is not None:
        runs = [len(keys) for keys, _ in columnar._runs]
        assert max(runs) <= max_run and sum(r > max_run // 2 for r in runs) >= 20, runs


def test_uuid_set_tells_apart_uuids_whose_halves_xor_to_one_key():
    high, low, mask = bytes.fromhex("0190c3a17b2e7000"), bytes.fromhex("8000000000000001"), bytes(range(1, 9))
    other = bytes(a ^ b for a, b in zip(high, mask, strict=True)) + bytes(a ^ b for a, b in zip(low, mask, strict=True))
    a, b = str(uuid.UUID(bytes=high + low)), str(uuid.UUID(bytes=other))
    ha, la = uuid_words(pa.array([a]))
    hb, lb = uuid_words(pa.array([b]))
    assert ha[0].as_py() ^ la[0].as_py() == hb[0].as_py() ^ lb[0].as_py() and a != b
    keys = UuidSet()
    assert keys.first_seen(pa.array([a])) is None
    assert keys.first_seen(pa.array([b])) is None, "same key, another UUID: new"
    assert keys.first_seen(pa.array([b, a, str(uuid.uuid4())])).to_pylist() == [False, False, True]
    both = UuidSet()
    assert both.first_seen(pa.array([a, b, a])).to_pylist() == [True, True, False]


def test_uuid_words_refuse_what_is_not_a_canonical_uuid():
    good = "0190c3a1-7b2e-7000-8000-000000000001"
    assert uuid_words(pa.array([good, good.upper()])) is not None
    for bad in ("0190c3a1-7b2e-7000-8000-00000000000g", "0190c3a1x7b2e-7000-8000-000000000001",
                "0190c3a17b2e70008000000000000001", None):
        assert uuid_words(pa.array([good, bad], type=pa.string())) is None, bad
    # a slice (offset into the buffers) reads its own values
    sliced = pa.array([str(uuid.UUID(int=i)) for i in range(10)]).slice(3, 4)
    h, lo = uuid_words(sliced)
    want = [uuid.UUID(int=i).bytes for i in range(3, 7)]
    assert [x.to_bytes(8, "little") + y.to_bytes(8, "little") for x, y in zip(h.to_pylist(), lo.to_pylist(),
                                                                            strict=True)] == want

def _same_columns(fast: pa.Table, slow: pa.Table) -> None:
    """Column by column the same values (``properties`` the same JSON: the fast path keeps PostHog's text)."""
    for name in EVENTS.columns:
        fast_col, slow_col = fast.column(name).to_pylist(), slow.column(name).to_pylist()
        if name == "properties":
            fast_col = [None if v is None else orjson.loads(v) for v in fast_col]
            slow_col = [None if v is None else orjson.loads(v) for v in slow_col]
        assert fast_col == slow_col, name



def test_the_fast_table_is_the_row_by_row_table():
    random.seed(1)
    results = _page(500)
    results[3][-1] = ""  # empty properties: null, as before
    results[4][6] = None
    page = EventPage.build(list(EVENT_COLUMNS), results, PID)
    slow = rows_to_table(dict_rows(EVENT_COLUMNS, results, PID), EVENTS)
    assert page.table.schema == slow.schema
    assert page.table.column("properties")[3].as_py() is None
    _same_columns(page.table, slow)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 40), chunk=st.integers(1, 9), seed=st.integers(0, 10_000),
       bad=st.one_of(st.none(), st.tuples(st.integers(0, 39), st.sampled_from([
           ("properties", '["not", "an object"]'), ("timestamp", "2026-11-20 10:00:00"), ("distinct_id", 12345),
           ("properties", ""), ("session_id", None)]))),
       picks=st.lists(st.integers(0, 39), max_size=8))
def test_a_page_converted_in_chunks_is_the_row_by_row_page(n, chunk, seed, bad, picks):
    """A page converted :data:`~sources.posthog.columnar.CHUNK_ROWS` rows at a time (here 1..9, so
    pages span many chunks) gives the row-by-row table, the rows as sent (all, some, a filter of
    them), and falls back as a whole when a value in any chunk does not fit the fast path."""
    random.seed(seed)
    results = _page(n)
    if bad is not None and n:
        at, (column, value) = bad
        results[at % n][EVENT_COLUMNS.index(column)] = value
    sent = [list(r) for r in results]
    default, columnar.CHUNK_ROWS = columnar.CHUNK_ROWS, chunk
    try:
        page = EventPage.build(list(EVENT_COLUMNS), results, PID)
    finally:
        columnar.CHUNK_ROWS = default
    assert page.results is not None or page.table.column("uuid").num_chunks == max(1, -(-n // chunk))
    want = dict_rows(EVENT_COLUMNS, sent, PID)
    slow = rows_to_table(want, EVENTS)
    assert page.table.schema == slow.schema
    _same_columns(page.table, slow)
    assert page.rows() == want
    indices = sorted({i % n for i in picks}) if n else []
    assert page.rows(indices) == [want[i] for i in indices]
    mask = pa.array([i in indices for i in range(n)], type=pa.bool_())
    assert page.where(mask).rows() == [want[i] for i in indices]


@pytest.mark.parametrize("column, value", [
    ("properties", '["not", "an object"]'),
    ("properties", '{"truncated": '),
    ("timestamp", "2026-11-20 10:00:00"),  # no offset: the general path reads it as UTC
    ("distinct_id", 12345),  # a number where text is declared
])
def test_a_page_the_fast_path_refuses_goes_the_row_by_row_way(column, value):
    random.seed(2)
    results = _page(20)
    results[5][EVENT_COLUMNS.index(column)] = value
    if value == '{"truncated": ':
        with pytest.raises(orjson.JSONDecodeError):  # as before: not loaded as if it were JSON
            EventPage.build(list(EVENT_COLUMNS), results, PID)
        return
    page = EventPage.build(list(EVENT_COLUMNS), results, PID)
    assert page.table.equals(rows_to_table(dict_rows(EVENT_COLUMNS, results, PID), EVENTS))


def test_admission_keeps_the_fingerprints_of_the_row_by_row_admission():
    random.seed(3)
    end_us = 1_795_000_000 * US
    lookback_us = 600 * US
    results = _page(2000, start_us=end_us - 1200 * US, step_us=600_000)  # half inside the lookback
    page = EventPage.build(list(EVENT_COLUMNS), results, PID)

    def cursor(state: dict) -> LookbackCursor:
        cur = LookbackCursor(state, _minus(lookback_us), max_seen=100_000)
        cur.set_floor(us_to_iso(end_us))
        return cur

    old_state: dict = {}
    old = cursor(old_state)
    as_sent = dict_rows(EVENT_COLUMNS, results, PID)  # the rows as the row-by-row path built them
    old_keep = [r for r in as_sent if old.admit(r["uuid"], cursor_text(r["timestamp"]), r)]
    new_state: dict = {}
    new = cursor(new_state)
    kept = _admit_page(page, new, end_us - lookback_us)
    assert kept.num_rows == len(old_keep) == 2000
    assert (new.rows_read, new.rows_admitted) == (old.rows_read, old.rows_admitted)
    old.commit(us_to_iso(end_us))
    new.commit(us_to_iso(end_us))
    assert new_state["seen"] == old_state["seen"] and len(new_state["seen"]) == 1000

    # the next run re-reads the window: rows unchanged are dropped, a changed one is kept
    results[-1][-1] = orjson.dumps({"changed": True}).decode()
    again = EventPage.build(list(EVENT_COLUMNS), results, PID)
    nxt = cursor(new_state)
    kept = _admit_page(again, nxt, end_us - lookback_us)
    assert kept.num_rows == 1001, "the 1,000 rows older than the window, and the changed one"
    assert kept.column("uuid")[-1].as_py() == results[-1][0]
    assert iso_to_us(cursor_text(results[1000][3])) >= end_us - lookback_us


def test_a_fast_page_gives_back_the_rows_as_sent():
    random.seed(4)
    results = _page(300, start_us=1_795_000_000 * US)
    results[7][3] = "2026-11-20T03:15:30.123456-05:00"  # the project's zone, as HogQL renders it
    results[8][-1] = ""
    page = EventPage.build(list(EVENT_COLUMNS), results, PID)
    assert page.results is None, "the fast path keeps no Python rows"
    assert page.rows() == dict_rows(EVENT_COLUMNS, results, PID)
    assert page.rows([8, 7, 0]) == dict_rows(EVENT_COLUMNS, [results[8], results[7], results[0]], PID)
    mask = pa.array([i % 3 == 0 for i in range(300)])
    assert page.where(mask).rows() == dict_rows(EVENT_COLUMNS, results[::3], PID)


def test_tables_are_batched_without_losing_rows():
    tables = [pa.table({"a": pa.array(range(n), type=pa.int64())}) for n in (3, 4, 10, 1, 0, 2)]
    out = list(batched_tables(iter(tables), 5))
    assert [t.num_rows for t in out] == [7, 10, 3]
    assert sum((t.column("a").to_pylist() for t in out), []) == sum((t.column("a").to_pylist() for t in tables), [])
