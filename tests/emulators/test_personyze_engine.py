"""The Personyze emulator engine and backend, in process (no server, no TLS).

Each test names one behaviour of the vendor contract (``api/personyze.md`` §9) and fails when it
breaks. Reads go through ``engine.handle`` with the path exactly as on the wire (after ``/rest/``);
auth and routing go through Starlette's TestClient against ``backend.routes()``."""

from __future__ import annotations

import base64
import random
import threading
from collections import Counter
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from emulators.common.backend import EmulatorBackend, MutationError
from emulators.personyze import create_backend
from emulators.personyze.data import SPECS

NOW = 1_750_000_000  # 2025-06-15 15:06:40 UTC
SCALE = 2500


def make(**options: Any) -> Any:
    options.setdefault("now", NOW)
    options.setdefault("ticking", False)
    return create_backend(seed=options.pop("seed", 7), scale=options.pop("scale", SCALE), **options)


@pytest.fixture(scope="module")
def ro() -> Any:
    """A shared backend for tests that only read (numbers as numbers, for easy comparison)."""
    b = make()
    b.configure({"numbers_as_strings": "none"})
    return b


@pytest.fixture
def be() -> Any:
    """A fresh backend per test (for tests that write or change options)."""
    b = make()
    b.configure({"numbers_as_strings": "none"})
    return b


def get(b: Any, path: str) -> tuple[int, Any]:
    status, body, ctype = b.engine.handle("GET", path, b"")
    if status == 200:
        assert ctype == "application/json"
        return status, orjson.loads(body)
    assert ctype.startswith("text/plain"), ctype
    return status, body.decode()


def ok(b: Any, path: str) -> Any:
    status, data = get(b, path)
    assert status == 200, (path, data)
    return data


def write(b: Any, method: str, path: str, payload: Any = None) -> tuple[int, bytes]:
    body = b"" if payload is None else orjson.dumps(payload)
    status, out, ctype = b.engine.handle(method, path, body, "application/json")
    if status != 200:
        assert ctype.startswith("text/plain")
    return status, out


def ids(rows: list[dict[str, Any]], key: str = "id") -> list[int]:
    return [int(r[key]) for r in rows]


# --------------------------------------------------------------------------- protocol


def test_backend_satisfies_the_harness_protocol(ro):
    assert isinstance(ro, EmulatorBackend)
    assert ro.vendor == "personyze" and ro.base_path == "/rest"
    state = ro.state()
    assert set(state) >= set(SPECS)
    assert state["users"] == SCALE and state["events"] == 3 * SCALE and state["products"] > 1000


# --------------------------------------------------------------------------- grammar, end to end


def test_each_modifier_at_most_once_and_order_by_with_order_by_desc_is_400(ro):
    for path in (
        "placeholders/limit/5/limit/6",
        "placeholders/where/id=11/where/id=12",
        "placeholders/columns/id/columns/name",
        "placeholders/order_by/id/order_by_desc/id",
        "placeholders/order_by_desc/id/order_by/name",
    ):
        status, text = get(ro, path)
        assert status == 400 and text, path


def test_modifiers_in_any_order_mean_the_same(ro):
    a = ok(ro, "placeholders/where/id%3E12/order_by/id/limit/0,3/columns/id,name")
    b = ok(ro, "placeholders/columns/id,name/limit/0,3/order_by/id/where/id%3E12")
    assert a == b and ids(a) == [13, 14, 15] and list(a[0]) == ["id", "name"]


@pytest.mark.parametrize(
    ("cond", "expect"),
    [
        ("id=14", lambda i: i == 14),
        ("id!=14", lambda i: i != 14),
        ("id>20", lambda i: i > 20),
        ("id>=20", lambda i: i >= 20),
        ("id<13", lambda i: i < 13),
        ("id<=13", lambda i: i <= 13),
        ("id:12,15,99", lambda i: i in (12, 15, 99)),
        ("id!:12,15,99", lambda i: i not in (12, 15, 99)),
    ],
)
def test_the_eight_operators(ro, cond, expect):
    every = ids(ro.export("placeholders"))
    got = ids(ok(ro, f"placeholders/where/{cond}/order_by/id"))
    assert got == [i for i in every if expect(i)]
    assert got, "each case must select something"


def test_and_binds_tighter_than_or(ro):
    rows = {r["id"]: r for r in ro.export("placeholders")}
    other = next(v for v in range(1, 99) if v not in (rows[11]["units_count_max"], rows[12]["units_count_max"]))
    # a=1 | b=2 & c=3  ==  a=1 | (b=2 & c=3): row 11 only (row 12 fails c); (a|b)&c would be empty
    assert ids(ok(ro, f"placeholders/where/id=11|id=12&units_count_max={other}/order_by/id")) == [11]
    assert ids(ok(ro, f"placeholders/where/id=12&units_count_max={other}|id=11/order_by/id")) == [11]


def test_escaped_operators_and_separators_act_as_operators(ro):
    # %3C is <, %7C is |, %3E is >, %26 is & (decoded once by the server, then split)
    assert ids(ok(ro, "placeholders/where/id%3C13%7Cid=20/order_by/id")) == [11, 12, 20]
    assert ids(ok(ro, "placeholders/where/id%3E12%26id%3C15/order_by/id")) == [13, 14]
    assert ids(ok(ro, "placeholders/where/id:11%2C12/order_by/id")) == [11, 12]


def test_double_encoded_comma_in_a_list_value(be):
    status, new_id = write(be, "POST", "placeholders", {"name": "a,b", "html_id": ".ab"})
    assert status == 200
    # %252C arrives as a literal comma inside one value; %2C and , split the list
    assert ids(ok(be, "placeholders/where/name:a%252Cb,Sidebar/order_by/id")) == [12, int(new_id)]
    assert ok(be, "placeholders/where/name:a%2Cb") == []
    assert ids(ok(be, "placeholders/where/name=a%252Cb")) == [int(new_id)]


def test_grammar_errors_are_plain_text_400(ro):
    for path in ("users//limit/5", "placeholders/limit/a,b", "placeholders/where/=5", "placeholders/sort/id"):
        status, text = get(ro, path)
        assert status == 400 and text, path


# --------------------------------------------------------------------------- shapes


def test_single_id_form_returns_one_object_or_row_not_found(ro):
    row = ok(ro, "placeholders/14")
    assert isinstance(row, dict) and row["id"] == 14
    user = ro.export("users")[3]
    assert ok(ro, f"users/{user['user_id']}") == user
    assert ok(ro, f"users/{user['user_id']}/columns/user_id,email") == {
        "user_id": user["user_id"],
        "email": user["email"],
    }
    assert get(ro, "placeholders/9999") == (400, "Row not found")
    assert get(ro, "users/1") == (400, "Row not found")
    assert get(ro, "placeholders/14/limit/1")[0] == 400


def test_column_returns_a_flat_array(ro):
    assert ok(ro, "placeholders/column/id/order_by/id/limit/0,3") == [11, 12, 13]
    names = ok(ro, "conditions/where/id:201,202/column/name/order_by/id")
    assert all(isinstance(n, str) for n in names) and len(names) == 2


def test_columns_projection_and_camel_case_on_users(ro):
    rows = ok(ro, "users/order_by/user_id/limit/0,2/columns/email,firstName,user_id")
    assert [list(r) for r in rows] == [["email", "first_name", "user_id"]] * 2
    assert get(ro, "users/order_by/user_id/limit/0,2/columns/nope")[0] == 400


def test_unknown_object_and_unknown_columns_are_400(ro):
    assert get(ro, "tracker_code") == (400, "Unknown object 'tracker_code'")
    assert get(ro, "placeholders/where/nope=1") == (400, "Unknown column 'nope'")
    assert get(ro, "placeholders/order_by/nope") == (400, "Unknown column 'nope'")
    assert get(ro, "users/where/user_id=1&nope=2/order_by/user_id/limit/0,10")[0] == 400


def test_empty_result_is_an_empty_array_and_account_probe(ro):
    assert ok(ro, "placeholders/where/id=1") == []
    account = ok(ro, "account")
    assert isinstance(account, dict) and account["name"] == "Emulated account" and "id" in account


# --------------------------------------------------------------------------- limits


def test_row_cap_and_offset_plus_count_past_1000(ro):
    assert len(ok(ro, "products/order_by/id")) == 1000, "no limit means 1000"
    assert len(ok(ro, "products/order_by/id/limit/1000")) == 1000
    assert len(ok(ro, "products/order_by/id/limit/990,10")) == 10
    for path in ("products/order_by/id/limit/1001", "products/order_by/id/limit/990,11", "products/limit/1000,1000"):
        status, text = get(ro, path)
        assert status == 400 and "1000" in text, path
    assert get(ro, "products/order_by/id/limit/0")[0] == 400


def test_offsets_page_in_requested_order(ro):
    first = ids(ok(ro, "products/order_by/id/limit/0,20"))
    assert ids(ok(ro, "products/order_by/id/limit/10,10")) == first[10:]


# --------------------------------------------------------------------------- index requirement


def test_not_indexed_400_lists_indexes_and_composites(ro):
    status, text = get(ro, "sessions_archive/where/city=Berlin/limit/0,10")
    assert status == 400
    assert text == (
        "Cannot do this operation on whole table: column 'city' is not indexed. "
        "Indexed columns: id, [user_id, start_time], end_time"
    )
    status, text = get(ro, "users/where/uset_id=5/limit/0,10")
    assert status == 400 and text.startswith("Cannot do this operation on whole table: column 'uset_id' is not indexed.")
    assert "user_id, internal_id, fb_id, email, last_session_time, data_last_modified" in text
    status, text = get(ro, "summary_actions/order_by/clicks/limit/0,10")
    assert status == 400 and "column 'clicks' is not indexed" in text and "[date, action_id]" in text
    status, text = get(ro, "events/limit/0,10")
    assert status == 400 and text.startswith("Cannot do this operation on whole table")


def test_only_the_leading_column_of_a_composite_counts_alone(ro):
    status, text = get(ro, "sessions_archive/where/start_time%3E5/limit/0,10")
    assert status == 400 and "column 'start_time' is not indexed" in text
    assert get(ro, "sessions_archive/order_by/start_time/limit/0,10")[0] == 400
    session = ro.export("sessions_archive")[0]
    rows = ok(ro, f"sessions_archive/where/user_id={session['user_id']}&start_time%3E5/limit/0,10")
    assert session["id"] in ids(rows)
    # the leading column alone is enough
    assert ok(ro, f"sessions_archive/where/user_id={session['user_id']}/limit/0,10")
    # summary_actions: the date range anchors; action_id alone does not
    assert ok(ro, "summary_actions/where/date%3E=2025-06-14%2000:00:00/order_by/date,action_id/limit/0,50")
    assert get(ro, "summary_actions/where/action_id=1001/limit/0,10")[0] == 400


def test_an_indexed_where_or_an_indexed_order_by_anchors_a_large_table(ro):
    user = ro.export("users")[10]
    assert ok(ro, f"users/where/email={user['email'].replace('@', '%40')}") == [user]
    assert len(ok(ro, "users/order_by/user_id/limit/0,1000")) == 1000
    assert len(ok(ro, "users/order_by/first_name,user_id/limit/0,5/where/user_id%3E0")) == 5
    # an OR branch without an indexed condition leaves the where un-anchored
    assert get(ro, f"users/where/user_id={user['user_id']}|first_name=Anna/limit/0,10")[0] == 400


def test_index_rule_is_per_object_and_switchable(be):
    assert ok(be, "products/where/brand=Acme/limit/0,10"), "products is not a large table by default"
    assert get(be, "users/where/first_name=Anna/limit/0,10")[0] == 400
    be.configure({"index_rule": False})
    assert len(ok(be, "users/where/first_name=Anna/limit/0,10")) == 10
    be.configure({"index_rule": True, "large_tables": ["users", "products"]})
    assert get(be, "products/where/brand=Acme/limit/0,10")[0] == 400


# --------------------------------------------------------------------------- slow queries


def test_slow_query_past_50_rows_is_a_bare_400_with_empty_body(be):
    status, body, ctype = be.engine.handle("GET", "users/where/data_last_modified%3E0/order_by/data_last_modified/limit/0,51")
    assert (status, body) == (400, b"") and ctype.startswith("text/plain")
    assert len(ok(be, "users/where/data_last_modified%3E0/order_by/data_last_modified/limit/0,50")) == 50
    assert get(be, "users/where/data_last_modified%3E0/order_by/data_last_modified/limit/40,11") == (400, "")
    assert get(be, "users/where/data_last_modified%3E0/order_by/data_last_modified") == (400, ""), "no limit = 1000"
    # != and !: are slow too; a filter on a non-indexed column anchored by an indexed order_by is slow
    assert get(be, "users/where/user_id!=5/order_by/user_id/limit/0,51") == (400, "")
    assert get(be, "users/where/user_id!:5,6/order_by/user_id/limit/0,51") == (400, "")
    assert get(be, "users/where/first_name=Anna/order_by/user_id/limit/0,51") == (400, "")
    user = be.export("events")[0]["user_id"]
    assert get(be, f"events/where/user_id={user}/order_by/id/limit/0,51") == (400, "")
    assert isinstance(ok(be, f"events/where/user_id={user}/order_by/id/limit/0,50"), list)
    # = and : on indexed columns, and no where at all, are fast
    assert len(ok(be, "users/where/user_id:100001,100002,100003/limit/0,1000")) >= 2
    assert len(ok(be, "users/order_by_desc/data_last_modified/limit/0,1000")) == 1000
    # small tables are never slow
    assert len(ok(be, "products/where/id%3E0/order_by/id/limit/0,1000")) == 1000
    be.configure({"slow_query_cap": 0})
    assert len(ok(be, "users/where/data_last_modified%3E0/order_by/data_last_modified/limit/0,1000")) == 1000


# --------------------------------------------------------------------------- ordering and ties


def _bulk_second(b: Any) -> tuple[int, list[int]]:
    per_second = Counter(r["data_last_modified"] for r in b.export("users"))
    second, n = per_second.most_common(1)[0]
    members = sorted(r["user_id"] for r in b.export("users") if r["data_last_modified"] == second)
    assert len(members) == n
    return second, members


def test_many_users_share_one_data_last_modified_second(ro):
    second, members = _bulk_second(ro)
    assert len(members) >= 100
    small = make(scale=300)
    assert Counter(r["data_last_modified"] for r in small.export("users")).most_common(1)[0][1] >= 100


def test_ties_are_shuffled_between_requests_and_the_requested_order_holds(ro):
    second, members = _bulk_second(ro)
    path = f"users/where/data_last_modified%3E={second}/order_by/data_last_modified/limit/0,50"
    pages = [ok(ro, path) for _ in range(6)]
    for page in pages:
        dlms = [r["data_last_modified"] for r in page]
        assert dlms == [second] * 50, "the whole page sits in the tie run"
    id_lists = [ids(p, "user_id") for p in pages]
    assert len({tuple(sorted(x)) for x in id_lists}) > 1, "a page boundary inside a tie picks different rows"
    assert any(x != sorted(x) for x in id_lists), "no hidden tie-breaker on user_id"
    for x in id_lists:
        assert set(x) <= set(members)
    # ordering on two columns is exact, whatever the shuffle
    page = ok(ro, f"users/where/data_last_modified%3E={second - 1}/order_by/data_last_modified,user_id/limit/0,50")
    keys = [(r["data_last_modified"], r["user_id"]) for r in page]
    assert keys == sorted(keys) and keys[0][0] == second and [k[1] for k in keys] == members[:50]
    desc = ok(ro, "users/order_by_desc/data_last_modified,user_id/limit/0,200")
    dkeys = [(r["data_last_modified"], r["user_id"]) for r in desc]
    assert dkeys == sorted(dkeys, reverse=True)


def test_shuffle_switch_makes_ties_deterministic(be):
    be.configure({"shuffle_ties": False})
    second, members = _bulk_second(be)
    path = f"users/where/data_last_modified={second}/order_by/data_last_modified/limit/0,50"
    assert ok(be, path) == ok(be, path)
    assert ids(ok(be, path), "user_id") == members[:50]


def test_nulls_sort_first_ascending_and_last_descending_and_never_match(ro):
    asc = ok(ro, "users/order_by/last_session_time/limit/0,5")
    assert [r["last_session_time"] for r in asc] == [None] * 5
    desc = ok(ro, "users/order_by_desc/internal_id/limit/0,5")
    assert all(r["internal_id"] is not None for r in desc)
    every = ro.export("users")
    with_value = [r for r in every if r["last_session_time"] is not None]
    some = with_value[0]["last_session_time"]
    got = ok(ro, f"users/where/last_session_time!={some}&user_id%3E0/order_by/user_id/limit/0,50")
    assert all(r["last_session_time"] is not None for r in got)


# --------------------------------------------------------------------------- numbers as strings


def test_numbers_as_strings_switch(be):
    be.configure({"numbers_as_strings": "mixed"})
    rows = ok(be, "users/order_by/user_id/limit/0,1000")
    kinds = Counter(type(r["user_id"]).__name__ for r in rows)
    assert kinds["str"] > 100 and kinds["int"] > 100, kinds
    as_text = [r for r in rows if isinstance(r["user_id"], str)]
    assert all(isinstance(r["data_last_modified"], str) for r in as_text)
    assert all(r["custom_f_1"] is None or isinstance(r["custom_f_1"], str) for r in as_text)
    assert all(isinstance(r["email"], str) for r in as_text)
    # account-defined keys keep the type they were written with
    extras = [r["newsletter_opt_in"] for r in as_text if "newsletter_opt_in" in r]
    assert extras and all(isinstance(v, int) for v in extras)
    assert ok(be, "users/order_by/user_id/limit/0,1000") == rows, "the same rows are strings every time"
    be.configure({"numbers_as_strings": "all"})
    assert all(isinstance(v, str) for v in ok(be, "users/order_by/user_id/limit/0,100/column/user_id"))
    be.configure({"numbers_as_strings": "none"})
    assert all(isinstance(v, int) for v in ok(be, "users/order_by/user_id/limit/0,100/column/user_id"))
    be.configure({"numbers_as_strings": "all"})
    assert all(isinstance(r["user_id"], int) for r in be.export("users")), "export is canonical"


def test_dates_and_zero_dates_are_text(ro):
    users = ro.export("users")
    birthdays = {r["birthday"] for r in users} - {None}
    assert "0000-00-00 00:00:00" in birthdays
    assert all(len(b) == 19 and b[4] == "-" and b[10] == " " for b in birthdays)


# --------------------------------------------------------------------------- writes


def test_post_and_put_on_users_bump_data_last_modified_and_return_bare_numbers(be):
    before = be.export("users")[5]
    be.mutate({"op": "advance_clock", "seconds": 100})
    status, body = write(be, "PUT", f"users/{before['user_id']}", {"first_name": "Zed"})
    assert (status, body) == (200, b"1")
    after = ok(be, f"users/{before['user_id']}")
    assert after["first_name"] == "Zed" and after["data_last_modified"] == NOW + 100
    status, body = write(be, "POST", "users", {"email": "new.person@example.com", "first_name": "New"})
    assert status == 200 and body.isdigit()
    new = ok(be, f"users/{int(body)}")
    assert new["data_last_modified"] == NOW + 100 and new["first_name"] == "New"
    assert int(body) > max(r["user_id"] for r in be.export("users") if r["user_id"] != int(body))
    # PUT by where: rows affected
    status, body = write(be, "PUT", "users/where/email=new.person%40example.com", {"last_name": "Person"})
    assert (status, body) == (200, b"1")
    # the modified rows are found through the index by their new data_last_modified
    newest = ok(be, "users/order_by_desc/data_last_modified/limit/0,2/column/user_id")
    assert sorted(newest) == sorted([before["user_id"], new["user_id"]])


def test_post_users_merges_on_email_or_user_id_not_internal_id(be):
    n = be.state()["users"]
    existing = be.export("users")[7]
    status, body = write(be, "POST", "users", {"email": existing["email"], "company": "Acme", "first_name": ""})
    assert (status, int(body)) == (200, existing["user_id"])
    merged = ok(be, f"users/{existing['user_id']}")
    assert merged["company"] == "Acme" and merged["first_name"] == existing["first_name"], "empty ignored"
    status, body = write(be, "POST", "users", {"user_id": existing["user_id"], "phone": "123"})
    assert (status, int(body)) == (200, existing["user_id"])
    assert be.state()["users"] == n
    with_iid = next(r for r in be.export("users") if r["internal_id"] is not None)
    status, body = write(be, "POST", "users", {"internal_id": with_iid["internal_id"], "email": "other@example.com"})
    assert status == 200 and int(body) != with_iid["user_id"]
    assert be.state()["users"] == n + 1
    assert write(be, "POST", "users", {"user_id": 1, "email": "x@example.com"})[0] == 400
    # camelCase keys are stored snake_case
    write(be, "POST", "users", {"email": existing["email"], "lastName": "Camel"})
    assert ok(be, f"users/{existing['user_id']}")["last_name"] == "Camel"


def test_empty_values_are_ignored_on_write(be):
    user = be.export("users")[2]
    status, _ = write(be, "PUT", f"users/{user['user_id']}", {"email": "", "sex": None, "custom_t_1": "kept"})
    assert status == 200
    after = ok(be, f"users/{user['user_id']}")
    assert after["email"] == user["email"] and after["sex"] == user["sex"] and after["custom_t_1"] == "kept"
    assert write(be, "PUT", f"users/{user['user_id']}", {"email": ""})[0] == 400, "nothing left to write"


def test_products_post_upserts_on_internal_id_as_a_patch(be):
    n = be.state()["products"]
    product = be.export("products")[0]
    status, body = write(be, "POST", "products", {"internal_id": product["internal_id"], "price": "12.5"})
    assert (status, int(body)) == (200, product["id"])
    after = ok(be, f"products/{product['id']}")
    assert after["price"] == 12.5 and after["title"] == product["title"] and be.state()["products"] == n
    status, body = write(be, "POST", "products", {"internal_id": "SKU-NEW-1", "title": "New"})
    assert status == 200 and int(body) == n + 1 and be.state()["products"] == n + 1
    assert ok(be, "products/where/internal_id=SKU-NEW-1")[0]["title"] == "New"
    assert write(be, "POST", "products", {"title": "no key"})[0] == 400
    assert write(be, "DELETE", "products/where/internal_id=SKU-NEW-1") == (200, b"1")
    assert be.state()["products"] == n


def test_placeholders_crud_and_user_lists_names_are_not_unique(be):
    status, body = write(be, "POST", "placeholders", {"name": "Fake", "html_id": ".fake"})
    pid = int(body)
    assert status == 200 and pid == 23
    assert write(be, "PUT", f"placeholders/{pid}", {"html_id": "#fake"}) == (200, b"1")
    assert ok(be, f"placeholders/{pid}")["html_id"] == "#fake"
    assert write(be, "DELETE", f"placeholders/{pid}") == (200, b"1")
    assert get(be, f"placeholders/{pid}") == (400, "Row not found")
    a = int(write(be, "POST", "user_lists", {"name": "Dup"})[1])
    b = int(write(be, "POST", "user_lists", {"name": "Dup"})[1])
    assert a != b


def test_read_only_objects_and_malformed_writes_are_400(be):
    for obj in ("events", "sessions_archive", "summary_actions", "actions", "conditions"):
        status, body = write(be, "POST", obj, {"x": 1})
        assert status == 400 and b"read-only" in body, obj
    assert write(be, "DELETE", "events/1000001")[0] == 400
    assert be.engine.handle("POST", "placeholders", b"{not json", "application/json")[0] == 400
    assert write(be, "POST", "placeholders", [1, 2])[0] == 400
    assert write(be, "POST", "placeholders", {"nope": 1})[0] == 400
    assert write(be, "PUT", "placeholders", {"name": "x"})[0] == 400, "PUT needs an id or a where"
    assert write(be, "PUT", "placeholders/11", {"id": 5})[0] == 400
    assert write(be, "PUT", "placeholders/11", {"units_count_max": "many"})[0] == 400
    user = be.export("users")[0]
    other = be.export("users")[1]
    status, body = write(be, "PUT", f"users/{user['user_id']}", {"email": other["email"]})
    assert status == 400 and b"Duplicate entry" in body


def test_form_encoded_post_is_accepted(be):
    status, body, _ = be.engine.handle(
        "POST", "placeholders", b"name=Form&html_id=.form", "application/x-www-form-urlencoded"
    )
    assert status == 200
    assert ok(be, f"placeholders/{int(body)}")["name"] == "Form"


def test_user_list_users_and_do(be):
    user = be.export("users")[0]
    status, body = write(be, "POST", "user_list_users", {"user_list_id": 7, "user_email": user["email"]})
    assert status == 200 and body.isdigit()
    members = ok(be, "user_list_users/where/user_list_id=7/column/user_id")
    assert user["user_id"] in members
    status, body = write(be, "POST", "user_list_users", {"user_list_id": 7, "user_email": "nobody@example.com"})
    assert status == 400 and body.startswith(b"User not found by")
    status, body = write(
        be,
        "POST",
        "do",
        [["email", user["email"], "User profile", "first_name", "Doer"],
         ["email", "fresh@example.com", "User profile", "last_name", "Fresh"],
         ["user_id", user["user_id"], "Product Viewed", "SKU-100001"]],
    )
    assert (status, body) == (200, b"3")
    assert ok(be, f"users/{user['user_id']}")["first_name"] == "Doer"
    assert ok(be, "users/where/email=fresh%40example.com")[0]["last_name"] == "Fresh"
    assert write(be, "POST", "do", [["user_id", user["user_id"], "Product Viewed", "NO-SUCH"]])[0] == 400


# --------------------------------------------------------------------------- mutations


def test_mutation_ops_and_their_result_shapes(be):
    e = be.engine
    assert be.mutate({"op": "advance_clock", "seconds": 30}) == {"now": NOW + 30}
    res = be.mutate({"op": "modify_users", "count": 120})
    assert set(res) == {"user_ids"} and len(res["user_ids"]) == 120 == len(set(res["user_ids"]))
    rows = {r["user_id"]: r for r in be.export("users")}
    assert {rows[u]["data_last_modified"] for u in res["user_ids"]} == {NOW + 30}
    assert sum(1 for r in rows.values() if r["data_last_modified"] == NOW + 30) == 120
    chosen = res["user_ids"][:2]
    assert be.mutate({"op": "modify_users", "user_ids": chosen}) == {"user_ids": sorted(chosen)}

    added = be.mutate({"op": "add_users", "count": 3})["user_ids"]
    assert len(added) == 3 and added == sorted(added) and added[0] > max(res["user_ids"])
    assert be.state()["users"] == SCALE + 3
    new = ok(be, f"users/{added[0]}")
    assert new["data_last_modified"] == NOW + 30

    last_event = max(r["id"] for r in be.export("events"))
    ev = be.mutate({"op": "add_events", "count": 20, "late_seconds": 86400})
    assert ev == {"ids": [last_event + 1, last_event + 20]}
    late = ok(be, f"events/where/id%3E{last_event}/order_by/id/limit/0,50")
    assert ids(late) == list(range(last_event + 1, last_event + 21))
    assert {r["time"] for r in late} == {NOW + 30 - 86400}

    last_session = max(r["id"] for r in be.export("sessions_archive"))
    ss = be.mutate({"op": "add_sessions", "count": 5, "late_seconds": 60})
    assert ss == {"ids": [last_session + 1, last_session + 5]}
    got = ok(be, f"sessions_archive/where/end_time={NOW + 30 - 60}/order_by/id/limit/0,50")
    assert set(range(last_session + 1, last_session + 6)) <= set(ids(got))

    before = {(r["date"], r["action_id"]): r for r in be.export("summary_actions")}
    us = be.mutate({"op": "update_summaries", "days": 2})
    assert us == {"rows": 2 * 30}
    after = {(r["date"], r["action_id"]): r for r in be.export("summary_actions")}
    changed = [k for k in after if after[k] != before.get(k)]
    assert len(changed) == 60 and {k[0] for k in changed} == {"2025-06-14 00:00:00", "2025-06-15 00:00:00"}

    n_products = be.state()["products"]
    pr = be.mutate({"op": "add_products", "count": 4})
    assert pr == {"ids": list(range(n_products + 1, n_products + 5))}
    assert be.state()["products"] == n_products + 4

    gone = be.mutate({"op": "delete_users", "count": 2})["user_ids"]
    assert get(be, f"users/{gone[0]}") == (400, "Row not found") and be.state()["users"] == SCALE + 1
    assert e.last_scanned >= 0


@pytest.mark.parametrize(
    "op",
    [
        {},
        {"op": "nope"},
        {"op": "modify_users"},
        {"op": "modify_users", "count": -1},
        {"op": "modify_users", "count": "3"},
        {"op": "modify_users", "count": 10**9},
        {"op": "modify_users", "user_ids": [1]},
        {"op": "add_users", "count": 1, "extra": True},
        {"op": "advance_clock"},
        {"op": "update_summaries", "days": 0},
        {"op": "add_events", "count": 1, "late_seconds": -5},
    ],
)
def test_malformed_mutations_raise_mutation_error(be, op):
    with pytest.raises(MutationError):
        be.mutate(op)


def test_configure_returns_options_and_refuses_unknown_names(be):
    opts = be.configure({"shuffle_ties": False})
    assert opts["shuffle_ties"] is False and opts["slow_query_cap"] == 50 and opts["require_https"] is True
    assert opts["large_tables"] == ["users", "events", "sessions_archive", "summary_actions"]
    for bad in ({"nope": 1}, {"shuffle_ties": "yes"}, {"large_tables": ["nope"]}, {"now": 5}):
        with pytest.raises(MutationError):
            be.configure(bad)
    assert be.configure({})["shuffle_ties"] is False, "a refused configure changes nothing"


# --------------------------------------------------------------------------- export


def test_export_is_canonical_and_in_primary_key_order(be):
    be.mutate({"op": "add_users", "count": 2})
    be.configure({"numbers_as_strings": "all"})
    users = be.export("users")
    assert [r["user_id"] for r in users] == sorted(r["user_id"] for r in users) and len(users) == SCALE + 2
    assert all(isinstance(r["data_last_modified"], int) for r in users)
    summary = be.export("summary_actions")
    keys = [(r["date"], r["action_id"]) for r in summary]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    for name in SPECS:
        rows = be.export(name)
        pk = SPECS[name].pk
        if pk:
            assert [r[pk] for r in rows] == sorted(r[pk] for r in rows), name
    with pytest.raises(KeyError):
        be.export("nope")


def test_export_equals_what_the_api_serves(be):
    be.mutate({"op": "modify_users", "count": 30})
    served = []
    last = 0
    while True:
        page = ok(be, f"users/where/user_id%3E{last}/order_by/user_id/limit/0,50")
        served += page
        if len(page) < 50:
            break
        last = page[-1]["user_id"]
    assert served == be.export("users")


# --------------------------------------------------------------------------- planner vs brute force


def _matches(row: dict[str, Any], where: list[list[tuple[str, str, Any]]]) -> bool:
    def one(c: str, op: str, v: Any) -> bool:
        x = row.get(c)
        if x is None:
            return False
        return {
            "=": lambda: x == v, "!=": lambda: x != v, ">": lambda: x > v, ">=": lambda: x >= v,
            "<": lambda: x < v, "<=": lambda: x <= v, ":": lambda: x in v, "!:": lambda: x not in v,
        }[op]()

    return any(all(one(*cond) for cond in branch) for branch in where)


def test_index_planner_agrees_with_a_brute_force_scan_after_mutations():
    b = make(scale=600, seed=3)
    b.configure({"numbers_as_strings": "none", "shuffle_ties": False, "slow_query_cap": 0, "index_rule": False})
    b.mutate({"op": "modify_users", "count": 80})
    b.mutate({"op": "advance_clock", "seconds": 7})
    b.mutate({"op": "modify_users", "count": 40})
    b.mutate({"op": "add_users", "count": 25})
    b.mutate({"op": "delete_users", "count": 15})
    for i in range(10):
        write(b, "PUT", f"users/where/user_id={b.export('users')[i * 7]['user_id']}", {"custom_i_2": i})
    rows = b.export("users")
    rr = random.Random(11)
    cols = ["user_id", "data_last_modified", "last_session_time", "internal_id", "custom_i_2"]
    ops = ["=", "!=", ">", ">=", "<", "<=", ":", "!:"]
    for _ in range(250):
        where = []
        for _b in range(rr.choice((1, 1, 2))):
            branch = []
            for _c in range(rr.choice((1, 2))):
                col = rr.choice(cols)
                pool = [r[col] for r in rows if r[col] is not None]
                op = rr.choice(ops)
                value = tuple(rr.sample(pool, 3)) if op in (":", "!:") else rr.choice(pool)
                branch.append((col, op, value))
            where.append(branch)
        order = rr.choice([["data_last_modified", "user_id"], ["user_id"], ["last_session_time", "user_id"],
                           ["internal_id", "user_id"]])
        desc = rr.random() < 0.3
        count = rr.choice((1, 7, 50, 1000))
        text = "|".join(
            "&".join(f"{c}{op}{','.join(map(str, v)) if isinstance(v, tuple) else v}" for c, op, v in br)
            for br in where
        )
        path = f"users/where/{text}/{'order_by_desc' if desc else 'order_by'}/{','.join(order)}/limit/0,{count}"
        got = ids(ok(b, path), "user_id")

        def key(r: dict[str, Any], order: list[str] = order) -> tuple:
            return tuple((0, 0) if r[c] is None else (1, r[c]) for c in order)

        expect = sorted((r for r in rows if _matches(r, where)), key=key, reverse=desc)[:count]
        assert got == [r["user_id"] for r in expect], path


# --------------------------------------------------------------------------- HTTP: auth and routes


@pytest.fixture
def client(be) -> Any:
    app = Starlette(routes=be.routes())
    with TestClient(app, base_url="https://testserver") as c:
        yield c


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_api_key_is_40_uppercase_hex_derived_from_the_seed(be):
    key = be.api_key
    assert len(key) == 40 and key == key.upper() and int(key, 16) >= 0
    assert make().api_key == key and make(seed=8).api_key != key


def test_auth(client, be):
    r = client.get("/rest/account")
    assert (r.status_code, r.text) == (401, "Please, log in") and r.headers["content-type"].startswith("text/plain")
    for header in ({"Authorization": "Bearer x"}, {"Authorization": "Basic !!!"}, basic("admin", be.api_key)):
        r = client.get("/rest/account", headers=header)
        assert (r.status_code, r.text) == (401, "Please, log in"), header
    r = client.get("/rest/account", headers=basic("api", "0" * 40))
    assert r.status_code == 401 and r.text and r.text != "Please, log in"
    r = client.get("/rest/account", headers={**basic("api", be.api_key), "X-Forwarded-Proto": "http"})
    assert r.status_code == 401
    r = client.get("/rest/account", headers=basic("api", be.api_key))
    assert r.status_code == 200 and r.json()["name"] == "Emulated account"
    be.configure({"require_https": False})
    r = client.get("/rest/account", headers={**basic("api", be.api_key), "X-Forwarded-Proto": "http"})
    assert r.status_code == 200


def test_routes_pass_the_raw_path_and_bodies(client, be):
    auth = basic("api", be.api_key)
    r = client.get("/rest/placeholders/where/id%3C13%7Cid=20/order_by/id", headers=auth)
    assert r.status_code == 200 and [x["id"] for x in r.json()] == [11, 12, 20]
    r = client.post("/rest/placeholders", headers=auth, json={"name": "a,b"})
    new_id = r.json()
    assert r.status_code == 200 and isinstance(new_id, int)
    r = client.get("/rest/placeholders/where/name:a%252Cb/column/id", headers=auth)
    assert r.json() == [new_id]
    r = client.put(f"/rest/placeholders/{new_id}", headers=auth, json={"html_id": "#x"})
    assert (r.status_code, r.json()) == (200, 1)
    r = client.delete(f"/rest/placeholders/{new_id}", headers=auth)
    assert (r.status_code, r.json()) == (200, 1)
    r = client.get("/rest/nope", headers=auth)
    assert (r.status_code, r.text) == (400, "Unknown object 'nope'")
    r = client.get("/rest", headers=auth)
    assert r.status_code == 400
    r = client.get("/rest/users/where/data_last_modified%3E0/order_by/data_last_modified/limit/0,51", headers=auth)
    assert (r.status_code, r.content) == (400, b"")


# --------------------------------------------------------------------------- determinism, threads, speed


def test_determinism_by_seed():
    a, b, c = make(seed=5, scale=400), make(seed=5, scale=400), make(seed=6, scale=400)
    for name in ("users", "events", "sessions_archive", "summary_actions", "products", "actions"):
        assert a.export(name) == b.export(name), name
    assert a.export("users") != c.export("users")
    assert a.mutate({"op": "modify_users", "count": 5}) == b.mutate({"op": "modify_users", "count": 5})
    a.configure({"numbers_as_strings": "mixed"})
    b.configure({"numbers_as_strings": "mixed"})
    path = "users/order_by/user_id/limit/0,100"
    assert a.engine.handle("GET", path) == b.engine.handle("GET", path)


def test_concurrent_requests_and_mutations_are_safe(be):
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            last = 0
            for _ in range(40):
                page = ok(be, f"users/where/user_id%3E{last}/order_by/user_id/limit/0,50")
                last = page[-1]["user_id"] if len(page) == 50 else 0
                ok(be, "users/order_by_desc/data_last_modified/limit/0,20")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def writer() -> None:
        try:
            for _ in range(20):
                be.mutate({"op": "modify_users", "count": 10})
                be.mutate({"op": "add_users", "count": 2})
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert be.state()["users"] == SCALE + 40


def test_keyset_pages_touch_a_bounded_number_of_rows_at_scale():
    """Speed sanity without a clock: a keyset page at 200,000 users examines about one page of
    index entries (plus one tie run), never the table."""
    b = make(scale=200_000, seed=2)
    e = b.engine
    ok(b, "users/where/user_id%3E150000/order_by/user_id/limit/0,50")
    assert e.last_scanned <= 51
    ok(b, "users/where/user_id%3E150000&user_id%3C=190000/order_by/user_id/limit/0,50")
    assert e.last_scanned <= 51
    users = e.tables["users"]
    mid = users.n_slots // 2
    v, u = users.getter("data_last_modified")(mid), users.getter("user_id")(mid)
    page = ok(b, f"users/where/data_last_modified%3E{v}%7Cdata_last_modified={v}&user_id%3E{u}"
                 f"/order_by/data_last_modified,user_id/limit/0,50")
    assert len(page) == 50 and e.last_scanned <= 50 + 2 * 400, e.last_scanned
    ok(b, "users/order_by_desc/data_last_modified/limit/0,1000")
    assert e.last_scanned <= 1000 + 400
    ok(b, "events/where/id%3E1200000/order_by/id/limit/0,50")
    assert e.last_scanned <= 51
    ok(b, "products/where/id%3E100/order_by/id/limit/0,1000")
    assert e.last_scanned <= 1001
    b.mutate({"op": "modify_users", "count": 500})
    now = e.clock.now_s()
    ok(b, f"users/where/data_last_modified%3E{now - 1}/order_by/data_last_modified,user_id/limit/0,50")
    assert e.last_scanned <= 500


# --------------------------------------------------------------------------- hostile mode


def test_clamp_rows_answers_a_prefix_of_the_ordered_result():
    b = make(scale=600)
    b.configure({"numbers_as_strings": "none", "clamp_rows": 7})
    full = make(scale=600)
    full.configure({"numbers_as_strings": "none"})
    path = "users/order_by/user_id/limit/0,50"
    assert ok(b, path) == ok(full, path)[:7]
    assert len(ok(b, "users/where/user_id%3E100000/order_by/user_id/limit/0,3")) == 3


def test_hostile_mode_is_seeded_and_shows_the_vendors_bad_days():
    def session(seed: int) -> tuple[list[Any], dict[str, Any], dict[str, int]]:
        b = make(scale=600, hostile=1, hostile_seed=seed)
        b.configure({"numbers_as_strings": "none"})
        answers = []
        for _ in range(300):
            b.mutate({"op": "advance_clock", "seconds": 1})
            for path in ("users/order_by_desc/data_last_modified/limit/0,50",
                         "events/order_by_desc/id/limit/0,20", "sessions_archive/order_by_desc/id/limit/0,20",
                         "summary_actions/order_by_desc/date/limit/0,30", "products/order_by/id/limit/0,40"):
                answers.append(ok(b, path))
        return answers, b.mutate({"op": "hostile_log"}), b.state()

    first, log, state = session(3)
    assert session(3) == (first, log, state), "the same seed gives the same bad days"
    assert session(4)[1] != log
    changes = log["changes"]
    for kind in ("changed_during_walk", "tie_storm", "committed_late", "clamped_page", "events_late",
                 "sessions_archive_late", "events_committed_out_of_order", "summaries_changed"):
        assert changes.get(kind, 0) > 0, (kind, changes)
    # a clamped page is a prefix of the ordered rows, never a reordering
    for page in first[::5]:
        dlm = [r["data_last_modified"] for r in page]
        assert dlm == sorted(dlm, reverse=True)


def test_hostile_changes_never_make_a_profile_older_and_late_rows_get_new_ids():
    b = make(scale=600, hostile=1, hostile_seed=9)
    b.configure({"numbers_as_strings": "none"})
    before = {r["user_id"]: r["data_last_modified"] for r in b.export("users")}
    top_event = max(r["id"] for r in b.export("events"))
    top_session = max(r["id"] for r in b.export("sessions_archive"))
    for _ in range(200):
        ok(b, "users/order_by/user_id/limit/0,10")
        ok(b, "events/order_by/id/limit/0,10")
        ok(b, "sessions_archive/order_by/id/limit/0,10")
    after = {r["user_id"]: r["data_last_modified"] for r in b.export("users")}
    assert all(after[u] >= before[u] for u in before)
    new_sessions = [r for r in b.export("sessions_archive") if r["id"] > top_session]
    new_events = [r for r in b.export("events") if r["id"] > top_event]
    assert new_sessions and new_events
    assert any(r["end_time"] <= NOW - 5400 for r in new_sessions), "some arrive hours late"


def test_rows_committed_out_of_order_appear_later_and_a_quiet_emulator_shows_them_all():
    b = make(scale=600, hostile=1, hostile_seed=21)
    b.configure({"numbers_as_strings": "none"})
    seen_pending = False
    for _ in range(600):
        ok(b, "events/order_by/id/limit/0,5")
        if b.mutate({"op": "hostile_log"})["pending"]:
            ids = [r["id"] for r in b.export("events")]
            if len(ids) < max(ids) - ids[0] + 1:  # a taken id not visible yet, behind newer ones
                seen_pending = True
                break
    assert seen_pending
    b.configure({"hostile": 0})
    assert b.mutate({"op": "hostile_log"})["pending"] == 0
    ids = [r["id"] for r in b.export("events")]
    assert ids == list(range(ids[0], ids[0] + len(ids))), "every id taken is visible once quiet"


def test_throttle_and_revoked_key_answers_are_plain_text_in_personyzes_words():
    b = make(scale=100)
    status, headers, body = b.throttle_response()
    assert status == 429 and headers["content-type"].startswith("text/plain")
    assert b"stand by 2 seconds" in body
    status, headers, body = b.unauthorized_response()
    assert status == 401 and body == b"Invalid API key"


def test_hostile_options_are_validated():
    b = make(scale=100)
    for bad in ({"hostile": 2}, {"hostile_seed": "x"}, {"clamp_rows": -1}):
        with pytest.raises(MutationError):
            b.configure(bad)
    assert b.configure({"hostile": 1, "hostile_seed": 5})["hostile"] == 1


def test_internal_id_is_text_and_digits_arrive_as_numbers_or_strings():
    b = make(scale=2500)
    rows = b.export("users")
    values = [r["internal_id"] for r in rows if r["internal_id"] is not None]
    assert all(isinstance(v, str) for v in values)
    assert any(v.startswith("CRM-") for v in values) and any(v.isdigit() for v in values)
    served = ok(b, "users/order_by/user_id/limit/0,1000")
    kinds = {type(r["internal_id"]) for r in served if r["internal_id"] is not None}
    assert kinds == {int, str}
    crm = next(v for v in values if v.startswith("CRM-"))
    assert [r["internal_id"] for r in ok(b, f"users/where/internal_id={crm}/limit/0,5")] == [crm] * len(
        [v for v in values if v == crm])
