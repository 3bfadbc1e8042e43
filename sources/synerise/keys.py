"""The keys a full read has seen, in flat memory: a walk over a million profiles keeps a million
``clientId`` values (and, for ``profiles``, the modification time of each), which as a Python
dict of int objects and ISO strings costs ~140 bytes a key; here integer keys live in sorted
``array('q')`` columns (8 bytes a key, 16 with a version).

Recent keys sit in a small dict; every ``compact_every`` keys they move into the sorted arrays
(an append when they all sort after the last key, as a walk ordered by id gives them; otherwise
one Arrow sort of the whole column). A lookup checks the dict, then bisects the array, and a
page whose keys all sort after the largest key seen skips the array entirely. Keys that are not
integers (item keys, definition ids) stay in the dict.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

#: a version that is ``None`` (not comparable), as stored in the version column
NO_VERSION = -(2**63)
_MISSING = object()


def _to_array(values: pa.Array) -> array:
    """An int64 Arrow array without nulls as ``array('q')`` (one copy of its bytes)."""
    out = array("q")
    if len(values):
        buf = values.buffers()[1]
        out.frombytes(buf.to_pybytes()[values.offset * 8:(values.offset + len(values)) * 8])
    return out


def _from_array(values: array) -> pa.Array:
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


class Keys:
    """A set of keys, each with an optional version (``versions=True``): the newest copy's
    modification value as a comparable integer, or ``None``.

    ``version(raw)`` turns a raw modification field into that integer (or ``None``); it is
    called only when a key moves into the compact arrays or when its raw value is asked for
    as a version; ``versions_of(raws)`` (optional) parses a list at once (column-wise) into an
    int64 Arrow array with nulls, or returns ``None`` to leave it to ``version``."""

    def __init__(self, *, versions: bool = False, version: Callable[[Any], int | None] | None = None,
                 versions_of: Callable[[list[Any]], pa.Array | None] | None = None,
                 compact_every: int = 50_000) -> None:
        self._with_versions = versions
        self._version = version or (lambda raw: raw if type(raw) is int else None)
        self._versions_of = versions_of
        self._recent: dict[Any, Any] = {}
        self._recent_ints = 0  # integer keys in `_recent` (only they move into the arrays)
        self._keys = array("q")
        self._vers = array("q")
        self._compact_every = compact_every

    # -- reading ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._recent) + len(self._keys)

    def __contains__(self, key: Any) -> bool:
        return self._find(key) is not None

    def __iter__(self) -> Iterator[Any]:
        yield from self._keys
        yield from self._recent

    def _find(self, key: Any) -> int | None:
        """``-1`` when ``key`` is a recent key, its index in the arrays, or ``None``."""
        if key in self._recent:
            return -1
        if type(key) is int and self._keys and key <= self._keys[-1]:
            i = bisect.bisect_left(self._keys, key)
            if i < len(self._keys) and self._keys[i] == key:
                return i
        return None

    def isdisjoint(self, keys: list[Any]) -> bool:
        """Whether none of ``keys`` was seen (one C-level test when they all sort after the
        largest compact key, as pages of a walk ordered by id do)."""
        if not self._recent.keys().isdisjoint(keys):
            return False
        if not self._keys:
            return True
        top = self._keys[-1]
        for k in keys:
            if type(k) is int and k <= top and self._find(k) is not None:
                return False
        return True

    def version(self, key: Any) -> int | None:
        """The version kept for a key that was seen (``KeyError`` when it was not)."""
        i = self._find(key)
        if i is None:
            raise KeyError(key)
        if i == -1:
            return self._version(self._recent[key])
        if not self._with_versions:
            return None
        v = self._vers[i]
        return None if v == NO_VERSION else v

    # -- writing ---------------------------------------------------------------------------

    def add(self, key: Any, raw: Any = None) -> None:
        """Keep ``key`` (new, or seen before: its version is replaced) with the raw version."""
        i = self._find(key)
        if i is not None and i >= 0:  # a compact key read again: its newer version in place
            if self._with_versions:
                v = self._version(raw)
                self._vers[i] = NO_VERSION if v is None else v
            return
        self._recent[key] = raw
        if type(key) is int:
            self._recent_ints += 1
            if self._recent_ints >= self._compact_every:
                self.compact()

    def update(self, keys: list[Any], raws: Iterable[Any] | None = None) -> None:
        """Keep keys known not to be seen yet (see :meth:`isdisjoint`), with their raw versions."""
        if raws is None:
            self._recent.update(dict.fromkeys(keys))
        else:
            self._recent.update(zip(keys, raws, strict=True))
        self._recent_ints += sum(type(k) is int for k in keys)
        if self._recent_ints >= self._compact_every:
            self.compact()

    def add_new(self, keys: list[Any]) -> int:
        """Keep every key of ``keys``; return how many were not kept already."""
        if len(set(keys)) == len(keys) and self.isdisjoint(keys):
            self.update(keys)
            return len(keys)
        new = 0
        for k in keys:
            if k not in self:
                self.add(k)
                new += 1
        return new

    def compact(self) -> None:
        """Move the recent integer keys (and their versions) into the sorted arrays."""
        self._recent_ints = 0
        ints = [k for k in self._recent if type(k) is int and -(2**63) <= k < 2**63]
        if not ints:
            return
        if self._with_versions:
            raws = [self._recent[k] for k in ints]
            column = self._versions_of(raws) if self._versions_of is not None else None
            if column is not None:
                vers = _to_array(pc.fill_null(column.cast(pa.int64()), NO_VERSION))
            else:
                vers = array("q", [NO_VERSION if v is None else v for v in map(self._version, raws)])
        else:
            vers = array("q", bytes(8 * len(ints)))
        for k in ints:
            del self._recent[k]
        keys = array("q", ints)
        ordered = all(keys[j] < keys[j + 1] for j in range(len(keys) - 1))
        if ordered and (not self._keys or keys[0] > self._keys[-1]):
            self._keys.extend(keys)
            if self._with_versions:
                self._vers.extend(vers)
            return
        # out of order: one sort of the whole column (Arrow, in C++)
        all_keys = pa.concat_arrays([_from_array(self._keys), _from_array(keys)])
        order = pc.sort_indices(all_keys)
        self._keys = _to_array(pc.take(all_keys, order))
        if self._with_versions:
            all_vers = pa.concat_arrays([_from_array(self._vers), _from_array(vers)])
            self._vers = _to_array(pc.take(all_vers, order))
