"""The verification's own parts, without a vendor: verdicts and tolerances, UTC day slices, and
the destination-side count (UTC range predicates, whatever the session's time zone)."""

from __future__ import annotations

import datetime as dt

import dlt
import pytest

from pipelines import verify as vf

UTC = dt.UTC


@pytest.mark.parametrize(("vendor", "loaded", "tolerance", "verdict"), [
    (10, 10, (0, 0), vf.AGREES),
    (10, 8, (-2, 0), vf.INSIDE),
    (10, 7, (-2, 0), vf.DISAGREES),
    (10, 11, (-2, 0), vf.DISAGREES),  # a tolerance for late rows never excuses an extra one
    (None, 5, (0, 0), vf.NOT_COUNTABLE),
])
def test_verdicts(vendor, loaded, tolerance, verdict):
    result = vf.judge(vf.Check("events", "2026-12-01", vendor, tolerance=tolerance), loaded)
    assert result.verdict == verdict
    assert result.difference == (None if vendor is None else loaded - vendor)


def test_the_worst_slice_is_named_and_days_are_utc():
    v = vf.Verification("posthog", "posthog", "posthog_data", dt.datetime(2026, 12, 6, tzinfo=UTC))
    v.results = [vf.judge(vf.Check("events", "a", 10), 9), vf.judge(vf.Check("events", "b", 10), 14),
                 vf.judge(vf.Check("persons", "all", 3), 3)]
    assert v.error_line() == ("posthog events b disagrees: the vendor counts 10, the destination holds 14 (+4); "
                              "2 of 3 slices disagree")
    assert vf.utc_days(2, dt.datetime(2026, 12, 6, 1, 30, tzinfo=UTC)) == [
        ("2026-12-05", dt.datetime(2026, 12, 5, tzinfo=UTC), dt.datetime(2026, 12, 6, tzinfo=UTC)),
        ("2026-12-06", dt.datetime(2026, 12, 6, tzinfo=UTC), dt.datetime(2026, 12, 7, tzinfo=UTC))]
    for bad in (0, -1, "x", vf.MAX_DAYS + 1):
        with pytest.raises(vf.VerifyInputError):
            vf.check_days(bad)


def test_the_destination_counts_utc_days_whatever_its_session_time_zone(tmp_path):
    from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

    # a session in Kolkata (+05:30): a cast to date would move rows across midnight
    creds = DuckDbCredentials(str(tmp_path / "t.duckdb"), global_config={"TimeZone": "Asia/Kolkata"})
    pipeline = dlt.pipeline("units", destination=dlt.destinations.duckdb(creds), dataset_name="d",
                            pipelines_dir=str(tmp_path / "p"))
    stamps = ["2026-12-05T23:59:59.999999+00:00", "2026-12-06T00:00:00+00:00", "2026-12-06T18:45:00+00:00",
              "2026-12-07T00:00:00+00:00"]
    pipeline.run([{"id": i, "ts": dt.datetime.fromisoformat(t), "name": "o'hara" if i else "x"}
                  for i, t in enumerate(stamps)], table_name="t")
    day = vf.Where("ts", dt.datetime(2026, 12, 6, tzinfo=UTC), dt.datetime(2026, 12, 7, tzinfo=UTC))
    checks = [vf.Check("t", "day", 2, "t", day),
              vf.Check("t", "quote", 3, "t", vf.Where(equals=(("name", "o'hara"),))),
              vf.Check("t", "all", 4, "t", vf.Where()),
              vf.Check("ghost", "all", 0, "ghost", vf.Where()),  # declared, never created
              vf.Check("gone", "all", 0, "gone", vf.Where())]  # not in the schema at all
    assert vf.count_loaded(pipeline, checks, {"t", "ghost"}) == [2, 3, 4, 0, 0]
    assert "TIMESTAMPTZ '2026-12-06 00:00:00+00'" in vf.predicate(day, str)
