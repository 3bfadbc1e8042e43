"""The Lytics emulator's fast paths answer exactly as the slow ones: compiled FilterQL against the
interpreter, the RFC3339Nano formatter against ``strftime``, and the cache of rendered scan rows
against the data as it changes (control-plane mutations, ``/collect``, mid-scan changes, the clock)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import emulators
from emulators.lytics import data as lytics_data
from emulators.lytics.filterql import (
    All,
    And,
    Between,
    Compare,
    Exists,
    Include,
    Not,
    Or,
    _compare,
    compile_compare,
    compile_expr,
    evaluate,
    parse,
    uses_now,
)

NOW = 1_764_000_000 * 10**9 + 123_456_789
FIELDS = ("a", "b", "c")

_instants = st.integers(min_value=-(10**18), max_value=4_000_000_000 * 10**9)
_dates = st.one_of(
    _instants.map(lytics_data.rfc3339),
    st.sampled_from(["2025-07-01", "2025-07-01T10:00:00+02:00", "2025-07-01 10:00", "2025-13-01", "now", "now-30d",
                     "NOW - 15m", "now-1w", "now-x"]),
)
_numbers = st.one_of(st.integers(min_value=-3, max_value=3), st.sampled_from([0.0, 1.5, -2.0, 3.0, 2.5e-7, 1e300]),
                     st.integers(min_value=-(2**70), max_value=2**70))
_scalars = st.one_of(
    _numbers,
    st.booleans(),
    _numbers.map(str),
    st.sampled_from(["", "US", " US", "US ", "DE", "true", "false", "True", "yogurt", "Yogurt notes", "1e3", " 2 ",
                     "nan", "inf"]),
    _dates,
)
_values = st.one_of(
    st.none(),
    st.sampled_from([[], "", [""], {}]),
    _scalars,
    st.lists(_scalars, max_size=3),
    st.dictionaries(st.sampled_from(["1", "2", "US", "true"]), st.integers(0, 5), max_size=3),
)
_literals = st.one_of(st.none(), _scalars)


def _leaf() -> Any:
    field = st.sampled_from(FIELDS)
    return st.one_of(
        st.builds(Compare, field, st.sampled_from(["=", "!=", ">", ">=", "<", "<=", "contains"]), _literals),
        st.builds(Compare, field, st.just("in"), st.lists(_literals, min_size=1, max_size=3).map(tuple)),
        st.builds(Between, field, _literals, _literals),
        st.builds(Exists, field),
        st.builds(Include, st.sampled_from(["yes", "no"])),
        st.just(All()),
    )


_exprs = st.recursive(
    _leaf(),
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.lists(inner, min_size=1, max_size=3).map(lambda ps: And(tuple(ps))),
        st.lists(inner, min_size=1, max_size=3).map(lambda ps: Or(tuple(ps))),
    ),
    max_leaves=6,
)


@settings(max_examples=1000, deadline=None, derandomize=True, database=None)
@given(expr=st.one_of(_leaf(), _exprs), row=st.fixed_dictionaries({}, optional=dict.fromkeys(FIELDS, _values)))
def test_compiled_filterql_answers_as_the_interpreter(expr: Any, row: dict[str, Any]) -> None:
    def include(slug: str) -> bool:
        return slug == "yes"

    assert compile_expr(expr)(row.get, include, NOW) == evaluate(expr, row.get, include, NOW)


def _near(literal: Any) -> Any:
    """Values close to ``literal``: itself, its text, padded, recased, a date a hair later."""
    text = str(literal)
    near = [literal, text, f" {text}", f"{text} ", text.upper(), text.lower(), [literal], {text: 1}]
    if isinstance(literal, str) and literal.endswith("Z"):
        near.append(literal[:-1] + ".000000001Z" if "." not in literal else literal[:-1] + "1Z")
    return st.sampled_from(near)


@settings(max_examples=1500, deadline=None, derandomize=True, database=None)
@given(data=st.data(), op=st.sampled_from(["=", "!=", ">", ">=", "<", "<=", "contains", "in"]), literal=_literals)
def test_compiled_comparison_answers_as_the_interpreter(data: Any, op: str, literal: Any) -> None:
    actual = data.draw(st.one_of(_near(literal), _values).filter(lambda v: v is not None))
    if op == "in":
        literal = (literal, *data.draw(st.lists(_literals, max_size=2)))
    assert compile_compare(op, literal)(actual, NOW) == _compare(actual, op, literal, NOW)


def test_date_math_is_recognised_as_clock_dependent() -> None:
    assert uses_now(parse('FILTER _modified >= "now-30d" FROM user').expr)
    assert uses_now(parse('FILTER AND(EXISTS email, NOT _modified BETWEEN "2025-01-01" AND now) FROM user').expr)
    assert uses_now(parse('FILTER country IN ("DE", "now-1d") FROM user').expr)
    assert not uses_now(parse('FILTER _modified >= "2025-07-01T00:00:00Z" FROM user').expr)
    assert not uses_now(parse("FILTER AND(INCLUDE high_intensity, EXISTS email) FROM user").expr)


def _reference_rfc3339(ns: int) -> str:
    secs, frac = divmod(ns, 10**9)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return text + ("." + f"{frac:09d}".rstrip("0") if frac else "") + "Z"


@settings(max_examples=1000, deadline=None, derandomize=True, database=None)
@given(ns=st.one_of(_instants, st.integers(min_value=-(10**18), max_value=10**19)))
def test_rfc3339nano_rendering(ns: int) -> None:
    assert lytics_data.rfc3339(ns) == _reference_rfc3339(ns)


# ------------------------------------------------------------------------------ the row cache


@pytest.fixture
def emu() -> Any:
    server = emulators.start("lytics", scale=300, seed=31)
    yield server
    server.stop()


@pytest.fixture
def api(emu: Any) -> Any:
    with httpx.Client(base_url=emu.base_url, verify=emu.ca_file, headers={"Authorization": emu.api_key}) as c:
        yield c


def scan(api: Any, **params: Any) -> list[dict[str, Any]]:
    rows, start = [], ""
    for _ in range(100):
        r = api.post("/api/segment/scan", params={"limit": 100, **params, "start": start},
                     content=b"FILTER * FROM user", headers={"Content-Type": "text/plain"})
        assert r.status_code == 200, r.text
        body = r.json()
        rows += body["data"]
        start = body["_next"]
        if not start:
            return rows
    raise AssertionError("the scan did not end")


def by_uid(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["_uid"]: r for r in rows}


def test_cached_rows_follow_every_change(emu: Any, api: Any, control_for: Any) -> None:
    ctl = control_for(emu)
    acct = emu.backend.account
    assert acct.row_cache_enabled
    first = by_uid(scan(api))
    assert first == by_uid(ctl.export("users"))
    assert len(acct._row_cache) == 300, "a full scan fills the cache"
    assert ctl.mutate({"op": "warm_cache"})["cached"] == 300
    assert by_uid(scan(api)) == first, "served again from the cache, unchanged"

    changed = ctl.mutate({"op": "modify_users", "count": 5})["uids"]
    second = by_uid(scan(api))
    assert second == by_uid(ctl.export("users"))
    for uid in changed:
        assert second[uid]["visitct"] != first[uid]["visitct"] and second[uid]["_modified"] != first[uid]["_modified"]
    assert {u for u in first if first[u] != second[u]} == set(changed)

    uid = next(u for u in first if u not in changed)
    assert api.post("/collect/json/default", json={"_uid": uid, "plan": "gold"}).status_code == 200
    third = by_uid(scan(api))
    assert third[uid]["plan"] == "gold" and third == by_uid(ctl.export("users"))
    assert by_uid(scan(api, fields="_uid,plan"))[uid] == {"_uid": uid, "plan": "gold"}

    ctl.mutate({"op": "collect", "events": [{"_uid": uid, "plan": "platinum", "score_intensity": "99"}]})
    added = ctl.mutate({"op": "add_users", "count": 3})["uids"]
    warmed = ctl.mutate({"op": "warm_cache"})
    assert warmed["users"] == warmed["cached"] == 303
    fourth = by_uid(scan(api))
    assert fourth == by_uid(ctl.export("users")) and len(fourth) == 303 and set(added) <= set(fourth)
    assert fourth[uid]["plan"] == "platinum" and "high_intensity" in fourth[uid]["segments"] != third[uid]["segments"]
    assert api.get(f"/api/entity/user/_uid/{uid}").json()["data"]["plan"] == "platinum"


def test_rows_changed_during_a_scan_are_served_changed(emu: Any, api: Any, control_for: Any) -> None:
    ctl = control_for(emu)
    before = by_uid(scan(api))  # every row cached
    ctl.configure(mid_scan_modify={"page": 2, "count": 6})
    try:
        during = scan(api)
    finally:
        ctl.configure(mid_scan_modify=None)
    after = by_uid(ctl.export("users"))
    changed = {u for u in before if before[u] != after[u]}
    assert len(changed) == 6
    ahead = [r for r in during[100:] if r["_uid"] in changed]
    assert ahead and all(r == after[r["_uid"]] for r in ahead), "pages after the change carry the new values"
    assert by_uid(scan(api)) == after


def test_clock_dependent_public_segment_turns_the_cache_off() -> None:
    backend = emulators.create_backend("lytics", seed=5, scale=200)
    acct = backend.account
    slot = 17
    assert acct.row_cache_enabled and acct.user_json(slot) is acct.user_json(slot), "cached by default"
    seg = acct.segment("recently_changed")
    seg.d = dataclasses.replace(seg.d, is_public=True)  # "_modified >= now-30d", now listed on profiles
    acct._plan_segments()
    assert not acct.row_cache_enabled
    uid = backend.mutate({"op": "modify_users", "count": 1, "offset": slot})["uids"][0]
    assert acct.uid_of(slot) == uid
    assert "recently_changed" in orjson.loads(acct.user_json(slot))["segments"]
    backend.mutate({"op": "advance_clock", "seconds": 31 * 86400})
    assert "recently_changed" not in orjson.loads(acct.user_json(slot))["segments"]
    assert orjson.loads(acct.user_json(slot)) == acct.user(slot)


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lytics_data, "ROW_CACHE_MAX", 50)
    backend = emulators.create_backend("lytics", seed=9, scale=120)
    acct = backend.account
    for slot in range(120):
        assert orjson.loads(acct.user_json(slot)) == acct.user(slot)
    assert len(acct._row_cache) == 50
    assert backend.mutate({"op": "warm_cache"}) | {"seconds": 0} == {"users": 120, "cached": 50, "seconds": 0}
    assert sorted(acct._row_cache) == list(range(50)), "warming renders the first slots the cache can hold"
    for slot in range(120):
        assert orjson.loads(acct.user_json(slot)) == acct.user(slot)
    assert sorted(acct._row_cache) == list(range(70, 120)), "the oldest entries go first"


def test_segment_membership_matches_the_interpreter() -> None:
    """Rendered ``segments``, sizes and ad-hoc scans agree with :func:`evaluate` run directly on
    each row (the compiled, memoised path must not change a single answer)."""
    backend = emulators.create_backend("lytics", seed=13, scale=600)
    acct = backend.account
    backend.mutate({"op": "collect", "events": [{"user_id": "100007", "score_intensity": 99, "is_subscriber": "true"}]})
    now = acct.clock.now()
    user_segs = [s for s in acct.segments if s.d.table == "user"]

    def member(seg: Any, row: dict[str, Any]) -> bool:
        return evaluate(acct.parsed[seg.id].expr, row.get,
                        lambda slug: member(acct.segment(slug, "user"), row), now)

    sizes = dict.fromkeys((s.id for s in user_segs), 0)
    for slot in range(acct.n_users):
        row = acct.user(slot)
        plain = {k: v for k, v in row.items() if k != "segments"}
        assert row["segments"] == [s.d.slug for s in user_segs if s.d.is_public and member(s, plain)]
        assert orjson.loads(acct.user_json(slot)) == row
        for s in user_segs:
            sizes[s.id] += member(s, plain)
    assert {k: v for k, v in acct.sizes().items() if k in sizes} == sizes
    assert all(0 < n < acct.n_users for s, n in sizes.items() if acct.segment(s).d.slug != "all_users")
    for s in user_segs:
        expr = acct.parsed[s.id].expr
        assert list(backend._snapshot("user", expr, None)) == [
            slot for slot in range(acct.n_users) if member(s, {k: v for k, v in acct.user(slot).items()
                                                               if k != "segments"})]
