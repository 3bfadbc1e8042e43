"""Typed Arrow pages: a value that does not fit its declared column never fails a run."""

from __future__ import annotations

import json
import logging

import pyarrow as pa
import pytest

from sources.common.arrow import TableSpec, TolerantConverter, rows_to_table
from sources.common.errors import MalformedResponse

SPEC = TableSpec("users", {"id": "int", "score": "int", "seen": "unix_s", "vip": "bool", "name": "text"},
                 primary_key=("id",))


def test_the_fast_path_is_the_plain_conversion():
    rows = [{"id": 1, "score": "7", "seen": 1_700_000_000, "vip": "yes", "name": "a", "extra": 1}]
    convert = TolerantConverter(SPEC, "v")
    assert convert(rows).equals(rows_to_table(rows, SPEC))
    assert not convert.misfits


def test_misfits_land_as_text_in_a_variant_column_and_warn_once(caplog):
    rows = [
        {"id": 1, "score": "CRM-000042", "seen": 1_700_000_000, "vip": "maybe", "name": "a"},
        {"id": 2, "score": 5, "seen": "not a time", "vip": "no", "name": "b"},
        {"id": 3, "score": {"x": 1}, "seen": None, "vip": True, "name": "c"},
    ]
    with pytest.raises(MalformedResponse):
        rows_to_table(rows, SPEC)  # the plain conversion refuses the page
    convert = TolerantConverter(SPEC, "v")
    table = convert(rows)
    assert table.column("score").to_pylist() == [None, 5, None]
    assert table.column("score__v_text").to_pylist() == ["CRM-000042", None, '{"x":1}']
    assert table.column("vip").to_pylist() == [None, False, True]
    assert table.column("vip__v_text").to_pylist() == ["maybe", None, None]
    assert table.column("seen__v_text").to_pylist() == [None, "not a time", None]
    assert table.column("name").to_pylist() == ["a", "b", "c"]
    convert(rows[:1])
    with caplog.at_level(logging.WARNING, logger="cdp_sync.progress"):
        convert.warn()
        convert.warn()  # nothing new: no second line
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert lines[0] == ("v.users: 6 values did not fit the column type and loaded as text: score (3 in "
                        "score__v_text, declared int), seen (1 in seen__v_text, declared unix_s), "
                        "vip (2 in vip__v_text, declared bool)")


def test_misfits_can_go_into_the_extras_column():
    rows = [{"id": 1, "score": "n/a", "name": "a", "color": "red"}, {"id": 2, "score": 3, "name": "b"}]
    table = TolerantConverter(SPEC, "v", into_extras=True)(rows)
    assert "score__v_text" not in table.column_names
    assert table.column("score").to_pylist() == [None, 3]
    assert [json.loads(x) if x else x for x in table.column("attributes").to_pylist()] == [
        {"color": "red", "score__v_text": "n/a"}, None]


def test_a_primary_key_that_does_not_fit_stops_the_run():
    with pytest.raises(MalformedResponse) as err:
        TolerantConverter(SPEC, "v")([{"id": "abc", "score": 1}])
    assert "primary key id 'abc' does not read as int" in str(err.value)


# -- the columnar conversion answers exactly as the per-value one ----------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import sources.common.arrow as arrow_module  # noqa: E402

ALL_KINDS = TableSpec("t", {"i": "int", "f": "float", "b": "bool", "t": "text", "s": "unix_s", "m": "unix_ms"},
                      extras_column="attributes")
_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=0, max_value=2**60), st.sampled_from([0, 1, 2**53 + 1, -1, 1_700_000_000]),
    st.floats(allow_nan=False), st.sampled_from([1.0, 2.5, 0.0]),
    st.text(max_size=4), st.sampled_from(["", "0", "12", "1.5", "yes", "no", "x", "1700000000"]),
    st.dictionaries(st.sampled_from("ab"), st.integers(0, 3), max_size=2),
)
_ROW = st.dictionaries(st.sampled_from(["i", "f", "b", "t", "s", "m", "other"]), _VALUE)


def _outcome(rows, monkeypatch=None):
    try:
        return rows_to_table(rows, ALL_KINDS)
    except (MalformedResponse, OverflowError, pa.ArrowException) as e:
        return type(e).__name__


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(_ROW, max_size=6))
def test_columnar_and_per_value_conversion_agree(rows, monkeypatch):
    fast = _outcome(rows)
    with monkeypatch.context() as m:
        m.setattr(arrow_module, "_NATIVE", frozenset())  # every column through its per-value path
        slow = _outcome(rows)
    if isinstance(slow, str) or isinstance(fast, str):
        assert fast == slow
    else:
        assert fast.equals(slow), (fast.to_pylist(), slow.to_pylist())


def test_columnar_conversion_keeps_each_kinds_rules():
    rows = [{"i": 5, "f": 3, "b": True, "t": "x", "s": 0, "m": 1_700_000_000_123},
            {"i": None, "f": 2.5, "b": None, "t": None, "s": 1_700_000_000, "m": 0}]
    table = rows_to_table(rows, ALL_KINDS).to_pylist()
    assert [r["f"] for r in table] == [3.0, 2.5]
    assert table[0]["s"] is None and table[1]["m"] is None  # a zero timestamp is no timestamp
    assert table[1]["s"].timestamp() == 1_700_000_000
    assert table[0]["m"].timestamp() == 1_700_000_000.123
    with pytest.raises(MalformedResponse, match="t.i: cannot read 1.5 as int"):
        rows_to_table([{"i": 1.5}], ALL_KINDS)  # never truncated to 1


def test_an_integer_beyond_int64_is_a_misfit_not_a_crash():
    rows = [{"id": 1, "score": 2**70}, {"id": 2, "score": 3}]
    with pytest.raises(MalformedResponse, match="users.score: cannot read 1180591620717411303424 as int"):
        rows_to_table(rows, SPEC)
    convert = TolerantConverter(SPEC, "v")
    table = convert(rows).to_pylist()
    assert [r["score"] for r in table] == [None, 3]
    assert table[0]["score__v_text"] == str(2**70)
