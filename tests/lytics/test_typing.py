"""Undeclared profile fields are typed as ``/api/schema/user`` says before they go to ``attributes``."""

from __future__ import annotations

import copy

from sources.lytics import _typer, user_table

SCHEMA = {"columns": [
    {"as": "_uid", "type": "string"}, {"as": "visits", "type": "int"}, {"as": "hourly", "type": "map[string]int"},
    {"as": "weights", "type": "map[string]number"}, {"as": "scores", "type": "[]number"},
    {"as": "counts", "type": "[]int"}, {"as": "vip", "type": "bool"}, {"as": "ltv", "type": "number"},
]}


def typer() -> object:
    table, kinds = user_table(SCHEMA, "_uid", [], 0)  # no typed extra columns: every field is an attribute
    return _typer(table, kinds)


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
