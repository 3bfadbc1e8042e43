"""The compact key store of full reads behaves as the dict it replaces (keys, versions, counts),
whatever order the keys arrive in."""

from __future__ import annotations

import random

import pytest

from sources.synerise import columnar
from sources.synerise.client import iso_to_ms
from sources.synerise.keys import Keys


def _version(raw):
    v = iso_to_ms(raw) if isinstance(raw, str) and raw else raw
    return v if type(v) is int else None


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("columnwise", [True, False])
def test_keys_match_a_dict_through_compactions(ordered, columnwise):
    r = random.Random(5)
    ids = list(range(1000, 1000 + 3 * 5000, 3))
    if not ordered:
        r.shuffle(ids)
    keys = Keys(versions=True, version=_version, versions_of=columnar.iso_versions if columnwise else None,
                compact_every=700)
    ref: dict = {}
    for start in range(0, len(ids), 250):
        page = ids[start:start + 250]
        raws = [r.choice([None, f"2026-01-{r.randint(1, 28):02d}T10:00:00Z"]) for _ in page]
        assert keys.isdisjoint(page) == ref.keys().isdisjoint(page)
        keys.update(page, raws)
        ref.update(zip(page, raws, strict=True))
        # some keys read again: a newer version replaces the kept one
        for k in r.sample(ids[:start + 250], 20):
            assert k in keys
            assert keys.version(k) == _version(ref[k])
            raw = f"2026-02-{r.randint(1, 28):02d}T10:00:00Z"
            keys.add(k, raw)
            ref[k] = raw
        assert len(keys) == len(ref)
    assert keys.isdisjoint([7, 8, 10**12]) and not keys.isdisjoint([7, ids[0]])
    assert sorted(keys) == sorted(ref)
    for k in r.sample(ids, 300):
        assert keys.version(k) == _version(ref[k])
    with pytest.raises(KeyError):
        keys.version(5)


def test_keys_that_are_not_integers_and_counting_new_ones():
    keys = Keys(compact_every=3)
    assert keys.add_new(["a", 1, 2, 3, 4]) == 5
    assert keys.add_new([4, 5, "a", "b", 5]) == 2  # 5 and b; the second 5 repeats within the page
    assert len(keys) == 7 and "b" in keys and 1 in keys and 6 not in keys
    assert keys.version(1) is None
