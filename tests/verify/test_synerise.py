"""``cdp-sync verify synerise``: snapshot lists against the number each list states; events are
reported not countable (the activities API states no count); a catalog missing items fails
naming it."""

from __future__ import annotations

import duckdb

from tests import support

from .helpers import cli, table


def test_stated_totals_agree_and_a_tampered_catalog_fails_naming_it(start_emulator, tmp_path, monkeypatch):
    server = start_emulator("synerise", scale=100, seed=4)
    env = support.cli_env("synerise", server, tmp_path)
    result = cli(monkeypatch, env, tmp_path, "run", "synerise", "--verify", "--resources",
                 "profiles,events,catalog_items,asset_tags,expressions")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = table(result.stdout)
    verdicts = {r[0]: " ".join(r[5:7]) if r[0] == "events" else r[-1] for r in rows}
    assert verdicts == {"profiles": "agrees", "catalog_items": "agrees", "asset_tags": "agrees",
                        "expressions": "agrees", "events": "not countable"}, result.stdout
    assert sum(r[0] == "catalog_items" for r in rows) >= 2  # one slice per catalog

    with duckdb.connect(str(tmp_path / "synerise.duckdb")) as con:
        cid = con.execute("select catalog_id from synerise_data.catalog_items order by catalog_id limit 1").fetchone()[0]
        con.execute(f"delete from synerise_data.catalog_items where catalog_id = {cid} and item_key in "
                    f"(select item_key from synerise_data.catalog_items where catalog_id = {cid} limit 2)")
    result = cli(monkeypatch, env, tmp_path, "verify", "synerise", "--resources", "catalog_items,profiles")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"error: synerise catalog_items catalog {cid} disagrees" in result.stderr and "(-2)" in result.stderr
