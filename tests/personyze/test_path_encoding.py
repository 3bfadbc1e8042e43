"""Whatever the source encodes into a Personyze path, the emulator's parser reads back exactly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulators.personyze.grammar import parse_path
from sources.personyze.client import OPERATORS, build_path, encode_value

columns = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)
texts = st.text(min_size=0, max_size=40)
scalars = st.one_of(texts, st.integers(min_value=-(10**12), max_value=10**12))
ops = st.sampled_from([op for op in OPERATORS if op not in (":", "!:")])


def _wire(v: object) -> str:
    return str(v)


@settings(max_examples=400, deadline=None)
@given(column=columns, op=ops, value=scalars, double=st.booleans())
def test_single_condition_round_trips(column, op, value, double):
    try:
        path = build_path("users", where=[[(column, op, value)]], order_by=["user_id"], count=50, double_encode=double)
    except ValueError:
        # only values the two decoding models would read differently may be refused, and only
        # when not double-encoding
        assert not double
        text = _wire(value)
        assert set(text) & set("/&|,%+") or text[:1] in "=<>!:"
        return
    q = parse_path(path)
    assert q.object == "users"
    assert len(q.where) == 1 and len(q.where[0]) == 1
    cond = q.where[0][0]
    assert (cond.column, cond.op, cond.value) == (column, op, _wire(value))
    assert (q.order_by, q.offset, q.count) == (["user_id"], 0, 50)


@settings(max_examples=300, deadline=None)
@given(
    branches=st.lists(
        st.lists(st.tuples(columns, st.sampled_from(OPERATORS), st.lists(scalars, min_size=1, max_size=4)), min_size=1, max_size=3),
        min_size=1,
        max_size=3,
    )
)
def test_or_of_and_groups_round_trips_with_double_encoding(branches):
    where = [[(c, op, vals if op in (":", "!:") else vals[0]) for c, op, vals in b] for b in branches]
    path = build_path("events", where=where, order_by=["id"], descending=True, offset=10, count=40, double_encode=True)
    q = parse_path(path)
    got = [[(c.column, c.op, c.value) for c in b] for b in q.where]
    want = [[(c, op, tuple(map(_wire, v)) if op in (":", "!:") else _wire(v)) for c, op, v in b] for b in where]
    assert got == want
    assert q.descending and (q.offset, q.count) == (10, 40)


@pytest.mark.parametrize("value", ["2024-01-02 03:04:05", "a@b.com", "O'Brien & Sons"[:8], "naïve ünïcode"])
def test_cursor_values_are_single_encoded_and_read_back(value):
    encoded = encode_value(value)
    assert "%25" not in encoded, "single encoding: no escaped percent signs"
    q = parse_path(build_path("users", where=[[("email", "=", value)]], count=1))
    assert q.where[0][0].value == value


def test_reserved_characters_are_refused_without_double_encoding():
    for bad in ["a/b", "a&b", "a|b", "1,2", "50%", "a+b", "=x", ">1"]:
        with pytest.raises(ValueError):
            encode_value(bad)
