"""Typed Arrow batches that never fail a run on a value that does not fit its column.

Columns are typed as the contract documents them (``settings.py``). A value the declared type
cannot hold (a text ``custom_i_1``, a date string Arrow and pendulum both refuse, a ``maybe`` in
``is_in_stock``) is not an error: the row loads with that column null and the value, as text, in
a variant column ``<column>__v_text`` (dlt's naming for a value of another type), and the
resource logs **one** warning at its end naming every such column and how many values went
there. Only a primary-key value that does not fit stops the run: a row without its key cannot
be merged.

The fast path is the shared converter (column-wise, no per-row work); the per-value search runs
only for a batch the fast path refused, and only on the columns that failed.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa

from sources.common.arrow import TableSpec
from sources.common.errors import MalformedResponse

logger = logging.getLogger("cdp_sync.progress")

VARIANT_SUFFIX = "__v_text"


def _as_text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (dict, list)):
        return orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode()
    return str(v)


class TolerantConverter:
    """``spec.to_arrow`` that sets aside values not fitting their column (see module doc)."""

    def __init__(self, spec: TableSpec, vendor: str) -> None:
        self.spec = spec
        self.vendor = vendor
        self.misfits: Counter[str] = Counter()
        self._single = {
            name: TableSpec(spec.name, {name: kind}, extras_column=None, tz=spec.tz)
            for name, kind in spec.columns.items()
        }

    def __call__(self, rows: Sequence[dict[str, Any]]) -> pa.Table:
        try:
            return self.spec.to_arrow(rows)
        except MalformedResponse:
            return self._set_aside(rows)

    def _fits(self, column: str, values: list[dict[str, Any]]) -> bool:
        try:
            self._single[column].to_arrow(values)
        except MalformedResponse:
            return False
        return True

    def _set_aside(self, rows: Sequence[dict[str, Any]]) -> pa.Table:
        fixed: list[dict[str, Any]] | None = None
        variants: dict[str, list[str | None]] = {}
        for column in self.spec.columns:
            cells = [{column: r.get(column)} for r in rows]
            if self._fits(column, cells):
                continue
            bad = [i for i, cell in enumerate(cells) if not self._fits(column, [cell])]
            if not bad:  # refused only together: nothing to set aside, let the error stand
                continue
            if column in self.spec.primary_key:
                value = rows[bad[0]].get(column) if bad else None
                raise MalformedResponse(
                    f"{self.vendor} {self.spec.name}: primary key {column} {value!r} is not a "
                    f"{self.spec.columns[column]}; the row cannot be merged",
                    vendor=self.vendor,
                )
            if fixed is None:
                fixed = [dict(r) for r in rows]
            texts: list[str | None] = [None] * len(rows)
            for i in bad:
                texts[i] = _as_text(fixed[i][column])
                fixed[i][column] = None
            variants[column + VARIANT_SUFFIX] = texts
            self.misfits[column] += len(bad)
        table = self.spec.to_arrow(fixed if fixed is not None else rows)
        for name, texts in variants.items():
            table = table.append_column(pa.field(name, pa.string()), pa.array(texts, type=pa.string()))
        return table

    def warn(self) -> None:
        """One line for the whole resource, if any value was set aside."""
        if not self.misfits:
            return
        total = sum(self.misfits.values())
        detail = ", ".join(
            f"{column} ({n} as text in {column}{VARIANT_SUFFIX}, declared {self.spec.columns[column]})"
            for column, n in sorted(self.misfits.items())
        )
        logger.warning(
            "%s.%s: warning: %d value%s did not fit the column type and loaded as text: %s",
            self.vendor, self.spec.name, total, "" if total == 1 else "s", detail,
        )
