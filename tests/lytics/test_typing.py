"""Undeclared profile fields are typed as ``/api/schema/user`` says before they go to ``attributes``."""

from __future__ import annotations

import copy
from collections import Counter

import orjson
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from sources.common.arrow import TIMESTAMP, rows_to_table
from sources.common.errors import MalformedResponse
from sources.lytics import user_table
from sources.lytics.tables import UNFIT_SUFFIX, Table, parse_iso_column, typed_value

SCHEMA = {"columns": [
    {"as": "_uid", "type": "string"}, {"as": "visits", "type": "int"}, {"as": "hourly", "type": "map[string]int"},
    {"as": "weights", "type": "map[string]number"}, {"as": "scores", "type": "[]number"},
    {"as": "counts", "type": "[]int"}, {"as": "vip", "type": "bool"}, {"as": "ltv", "type": "number"},
]}


def typer() -> object:
    table, _ = user_table(SCHEMA, "_uid", [], 0)  # no typed extra columns: every field is an attribute

    def typed(row: dict) -> dict:
        attributes = table.to_arrow([row]).column("attributes")[0].as_py()
        return {"_uid": row["_uid"], **(orjson.loads(attributes) if attributes else {})}

    return typed


def test_numbers_sent_as_strings_become_numbers_and_the_row_read_is_left_alone():
    row = {"_uid": "u1", "visits": "7", "ltv": "12.50", "vip": "TRUE", "hourly": {"3": "5", "4": 2},
           "weights": {"a": "0.5"}, "scores": ["1.5", 2], "counts": ["3", "4.0"], "other": "9"}
    before = copy.deepcopy(row)
    out = typer()(row)
    assert out == {"_uid": "u1", "visits": 7, "ltv": 12.5, "vip": True, "hourly": {"3": 5, "4": 2},
                   "weights": {"a": 0.5}, "scores": [1.5, 2], "counts": [3, 4], "other": "9"}
    assert type(out["counts"][1]) is int and type(out["weights"]["a"]) is float
    assert row == before, "the row as read is not changed"


def test_values_already_typed_or_unreadable_stay_as_sent():
    row = {"_uid": "u2", "visits": 3, "hourly": {"1": 1, "2": 7}, "scores": [1.0, 2], "counts": [],
           "vip": "maybe", "ltv": "n/a", "weights": {"a": "heavy"}}
    assert typer()(row) == row
    assert typer()({"_uid": "u3"}) == {"_uid": "u3"}


# -- the column-wise conversion gives exactly what the value-by-value converters give ---------------------

_TEXTS = ["5", "-0", "0012", "+5", " 5", "5.0", "5.5", "1e3", "1E-2", ".5", "5.", "0x1F", "1_000", "nan", "inf",
          "-inf", "true", "False", "yes", "n/a", "", "99999999999999999999", "2026-01-05T10:00:00.123456789Z",
          "2026-01-05T10:00:07Z", "2026-01-05 10:00:07", "2026-13-05T10:00:07Z", "1969-12-31T23:59:59.9999999Z",
          "1600-01-01T00:00:00Z", "2026-01-05T12:00:07.5+02:00"]
_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.integers(-5, 5),  # what orjson reads as ints
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([1.0, 2.5, -0.0, 2.0**60]),
    st.sampled_from(_TEXTS), st.text(max_size=4), st.lists(st.integers(-3, 3), max_size=2),
    st.dictionaries(st.sampled_from(["b", "a"]), st.sampled_from([1, "2", "x"]), max_size=2),
)
_KINDS = {"t": "text", "i": "int", "f": "float", "b": "bool", "d": "iso", "j": "json"}
def _probe_table() -> Table:
    """A new table each time: a table remembers which columns its one-pass read refused."""
    return Table("probe", {"k": "text", **_KINDS}, primary_key=("k",), extras_kinds={"x": "int", "m": "map[string]int"})


_TABLE = _probe_table()


def _reference(rows: list[dict]) -> pa.Table | type[MalformedResponse]:
    """The value-by-value converters (``rows_to_table``), then ``iso`` text parsed per column."""
    try:
        table = rows_to_table(rows, _TABLE.spec)
        for c in _TABLE.iso:
            i = table.schema.get_field_index(c)
            table = table.set_column(i, pa.field(c, TIMESTAMP), parse_iso_column(table.column(i), f"probe.{c}"))
    except (MalformedResponse, OverflowError):  # the shared converters let an int beyond 64 bits through
        return MalformedResponse
    return table


def _assert_converts_as(table: Table, rows: list[dict], want: pa.Table | type[MalformedResponse], label: str) -> None:
    """``table.to_arrow(rows)`` gives ``want`` (the reference's table, or its refusal)."""
    try:
        got = table.to_arrow(rows)
    except MalformedResponse:
        got = MalformedResponse
    if want is MalformedResponse or got is MalformedResponse:
        assert got is want, label
    else:
        assert got.schema.types == want.schema.types, label
        assert repr(got.to_pylist()) == repr(want.to_pylist()), label


def _reads(kind: str, v: object) -> bool:
    return not isinstance(_reference([{"k": "1", "t": None, **{c: (v if c == f else None) for c in _KINDS}}
                                       for f in [next(c for c, k in _KINDS.items() if k == kind)]]), type)


@settings(max_examples=600, deadline=None, derandomize=True, database=None)
@given(st.lists(st.fixed_dictionaries({"k": st.sampled_from(["a", "b"])},
                                      optional={**{c: _VALUES for c in _KINDS}, "x": _VALUES, "m": _VALUES}),
                min_size=1, max_size=6))
def test_column_wise_conversion_equals_value_by_value(rows: list[dict]) -> None:
    before = copy.deepcopy(rows)
    typed = [{k: (typed_value(_TABLE.extras_kinds[k], v) if k in _TABLE.extras_kinds else v) for k, v in r.items()}
             for r in rows]
    want = _reference(typed)
    table = _probe_table()
    for attempt in ("every column in the one-pass read", "after the columns it refused left it"):
        _assert_converts_as(table, rows, want, attempt)
    # with misfits set aside: each value a column cannot hold is NULL there and text in attributes
    unfit: Counter[str] = Counter()
    fixed, moved = [], Counter()
    for r in typed:
        out = dict(r)
        for c, kind in _KINDS.items():
            v = r.get(c)
            if kind not in ("text", "json") and v is not None and v != "" and not _reads(kind, v):
                del out[c]
                out[c + UNFIT_SUFFIX] = v if isinstance(v, str) else orjson.dumps(v).decode()
                moved[c] += 1
        fixed.append(out)
    got = _probe_table().to_arrow(rows, unfit)
    assert repr(got.to_pylist()) == repr(_reference(fixed).to_pylist())
    assert unfit == moved
    assert rows == before, "the rows as read are not changed"


#: one kind of value per column of a batch (as an API sends them), so the one-pass read is taken
_COLUMN_STYLES = (
    st.sampled_from(_TEXTS), st.text(max_size=4), st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([1.0, 2.5, -0.0, 2.0**60, 7.0]), st.floats(allow_nan=False, allow_infinity=False), st.none(),
)
_ONE_PASS_TAKEN: Counter[str] = Counter()


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(st.data())
def test_one_pass_read_equals_value_by_value(data: st.DataObject) -> None:
    """Batches whose columns each hold one kind of value (the usual page): the struct pass reads
    them, and what it gives equals the value-by-value converters; a second batch of the same table
    (after any column refused the pass) too."""
    styles = {c: data.draw(st.sampled_from(range(len(_COLUMN_STYLES))), label=f"style of {c}") for c in _KINDS}
    row = st.fixed_dictionaries({"k": st.sampled_from(["a", "b"])},
                                optional={c: st.one_of(st.none(), _COLUMN_STYLES[i]) for c, i in styles.items()})
    table = _probe_table()
    for label in ("first batch", "second batch"):
        rows = data.draw(st.lists(row, min_size=1, max_size=5), label=label)
        before = table._one_pass
        if table._read_in_one_pass(rows):
            _ONE_PASS_TAKEN["taken"] += 1
        object.__setattr__(table, "_one_pass", before)
        _assert_converts_as(table, rows, _reference(rows), label)


def test_one_pass_read_was_exercised() -> None:
    """The property above is only worth something if the struct pass ran in many of its batches."""
    if not _ONE_PASS_TAKEN:
        test_one_pass_read_equals_value_by_value()
    assert _ONE_PASS_TAKEN["taken"] >= 100
