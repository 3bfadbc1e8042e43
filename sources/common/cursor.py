"""Incremental position of a keyset-paginated resource, kept in dlt resource state.

The rules it implements (DESIGN.md, "Rules that make the numbers right"):

* The cursor is a value of the column the API filters and sorts by, taken from server data only.
* Each run re-reads a lookback window behind the stored cursor, so rows committed late inside an
  already-passed second (or day, or id) are caught; the destination merges on the primary key.
* Rows re-read inside that window that have not changed since they were loaded are dropped
  before they reach dlt: the state keeps a short fingerprint of every row loaded whose cursor
  value lies inside the window behind the newest cursor. A run with no changes therefore loads
  nothing, and a run after changes loads exactly the changed rows.
* With ``newest_wins``, when a row comes back twice in one load (changed while the walk runs, a
  replica that lags, a lookback that re-reads it), the copy with the larger cursor value — the
  vendor's own modification time, which the merge's ``dedup_sort`` hint also picks — is the one
  that lands: an older copy read after a newer one is dropped, and the fingerprint kept is always
  the landed copy's. Two *different* copies with the same cursor value cannot be ordered: both
  load and no fingerprint is kept for that row, so the next run loads it again whichever copy
  the merge kept.
* Nothing here writes state until :meth:`LookbackCursor.commit`, which the resource calls after
  its last page; dlt commits resource state with the load package, so a crash anywhere leaves
  the previous position and a re-run fetches the same range again.

Why not ``dlt.sources.incremental``: its boundary de-duplication keys on one cursor value and is
switched off when ``lag`` is used, while these APIs need a compound keyset (cursor, primary key)
*and* a lookback. The state layout stays plain JSON so ``cdp-sync state`` can show it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import pendulum
import pyarrow as pa
import pyarrow.compute as pc


def fingerprint(row: Mapping[str, Any]) -> str:
    """A short, stable digest of a row's content.

    Values are compared by their text form, so a number the API sends once as ``5`` and once as
    ``"5"`` has the same fingerprint."""
    h = hashlib.blake2b(digest_size=8)
    for k in sorted(row):
        v = row[k]
        h.update(k.encode())
        h.update(b"\x1f")
        h.update(b"\x00" if v is None else str(v).encode())
        h.update(b"\x1e")
    return h.hexdigest()


class LookbackCursor:
    """Cursor + lookback + fingerprints of the rows inside the lookback window.

    ``state`` is the resource's dlt state dict (mutated only by :meth:`commit`). ``behind(v)``
    returns the value ``lookback`` before ``v`` in the cursor's own units (seconds, ids, days).
    """

    #: a fingerprint no row has: the row's next re-read is loaded whatever it holds
    UNKNOWN = ""

    def __init__(self, state: dict[str, Any], behind: Callable[[Any], Any], max_seen: int | None = None,
                 *, newest_wins: bool = False):
        """``max_seen`` (optional) bounds the fingerprints kept in state: when the lookback window
        holds more rows, none are kept and the next run loads the window again (the destination
        merges it), so state stays small for very busy sources. ``newest_wins``: see the module
        doc (a row read twice in one load lands as its newest copy)."""
        self._newest_wins = newest_wins
        self._state = state
        self._behind = behind
        self._max_seen = max_seen
        self._seen: dict[str, str] = dict(state.get("seen") or {})
        self._observed: dict[str, tuple[Any, str]] = {}
        self._max: Any = None
        self._floor: Any = None  # only rows at or above this can land in the next window
        self._pruned_at = 0
        self.rows_read = 0
        self.rows_admitted = 0

    @property
    def value(self) -> Any:
        """The stored cursor (the newest cursor value loaded), ``None`` before the first run."""
        return self._state.get("cursor")

    def lower_bound(self) -> Any:
        """Where this run starts reading: the stored cursor minus the lookback."""
        v = self.value
        return None if v is None else self._behind(v)

    def set_floor(self, cursor_value: Any) -> None:
        """Promise that the committed cursor will be at least ``cursor_value``; rows below its
        lookback window need no fingerprint (keeps memory flat during a backfill)."""
        self._floor = self._behind(cursor_value)

    @property
    def floor(self) -> Any:
        """The lowest cursor value a row needs to be shown to :meth:`admit` with (``None``: every row)."""
        return self._floor

    def admit_below_floor(self, count: int) -> None:
        """Record ``count`` rows read below the floor (:meth:`set_floor`), which the caller found
        column-wise: they need no fingerprint and load as read, so only the count is kept."""
        self.rows_read += count
        self.rows_admitted += count

    def admit(self, key: str, cursor_value: Any, row: Mapping[str, Any]) -> bool:
        """Record a row read from the API; return False when it is an unchanged re-read (or,
        with ``newest_wins``, an older copy of a row this load already read newer)."""
        self.rows_read += 1
        if cursor_value is None:  # no cursor value: never inside a window, always loaded
            self.rows_admitted += 1
            return True
        prior = self._observed.get(key) if self._newest_wins else None
        if prior is not None and prior[0] > cursor_value:
            return False  # an older copy: the newer one already read is the one that lands
        if self._max is None or cursor_value > self._max:
            self._max = cursor_value
        if self._floor is None or cursor_value >= self._floor:
            fp = fingerprint(row)
            if prior is not None and prior[0] == cursor_value and prior[1] != fp:
                fp = self.UNKNOWN  # two different copies of one instant: reload next run
            self._observed[key] = (cursor_value, fp)
            if len(self._observed) > 2 * self._pruned_at + 10_000:
                self._prune()
            if fp != self.UNKNOWN and self._seen.get(key) == fp:
                return False
        self.rows_admitted += 1
        return True

    def _prune(self) -> None:
        if self._max is not None:
            low = self._behind(self._max)
            self._observed = {k: v for k, v in self._observed.items() if v[0] >= low}
        self._pruned_at = len(self._observed)

    def commit(self, new_cursor: Any = None, **run_info: Any) -> None:
        """Write the new position into state: ``new_cursor`` (default: the newest value read,
        never moving backwards) and the fingerprints of rows inside its lookback window."""
        if new_cursor is None:
            new_cursor = self._max
        old = self.value
        if old is not None and (new_cursor is None or new_cursor < old):
            new_cursor = old
        if new_cursor is None:  # nothing read and nothing stored: stay unset
            self._state["last_run"] = _run_info(run_info, self)
            return
        # every row inside the new window was read in this run (the run started reading at the
        # old window, which the new one never precedes), so the observed rows are the whole window
        low = self._behind(new_cursor)
        seen = {k: fp for k, (cv, fp) in self._observed.items() if cv >= low}
        if self._max_seen is not None and len(seen) > self._max_seen:
            run_info = {**run_info, "fingerprints_dropped": len(seen)}
            seen = {}
        self._state["cursor"] = new_cursor
        self._state["seen"] = seen
        self._state["last_run"] = _run_info(run_info, self)


def admit_column_wise(cur: LookbackCursor, count: int, at: pa.Array | pa.ChunkedArray | None,
                      edge: pa.Scalar | None, show: Callable[[int], bool]) -> pa.Array | None:
    """Admit the ``count`` rows of a batch: the rows whose cursor column ``at`` is at least
    ``edge`` (the floor of :meth:`LookbackCursor.set_floor`, in the column's type) are shown to
    the cursor one by one and in order (``show(i)`` returns ``cur.admit(...)`` for row ``i``); the
    rest, and rows without a cursor value, need no fingerprint and are only counted
    (:meth:`LookbackCursor.admit_below_floor`). ``edge=None``: every row is shown. Returns the
    mask of the rows kept, ``None`` when every row is."""
    if at is None or edge is None:
        visit: list[int] = list(range(count))
    else:
        inside = pc.fill_null(pc.greater_equal(at, edge), False)
        if isinstance(inside, pa.ChunkedArray):
            inside = inside.combine_chunks()
        visit = pc.indices_nonzero(inside).to_pylist()
        cur.admit_below_floor(count - len(visit))
    dropped = [i for i in visit if not show(i)]
    if not dropped:
        return None
    keep = [True] * count
    for i in dropped:
        keep[i] = False
    return pa.array(keep, pa.bool_())


def _run_info(extra: dict[str, Any], cur: LookbackCursor) -> dict[str, Any]:
    info = {
        "finished_at": pendulum.now("UTC").to_iso8601_string(),
        "rows_read": cur.rows_read,
        "rows_loaded": cur.rows_admitted,
    }
    info.update(extra)
    return info
