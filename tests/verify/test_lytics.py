"""``cdp-sync verify lytics``: users and content against the ``total`` of a one-row scan; users
added since the run are inside tolerance, users missing from the destination are not."""

from __future__ import annotations

import duckdb

from tests import support

from .helpers import cli


def test_users_and_content_agree_new_users_are_inside_tolerance_missing_ones_fail(
        start_emulator, control_for, tmp_path, monkeypatch):
    server = start_emulator("lytics", scale=200, seed=4)
    ctl = control_for(server)
    env = support.cli_env("lytics", server, tmp_path)
    result = cli(monkeypatch, env, tmp_path, "run", "lytics", "--resources", "users,content_documents,segments",
                 "--verify")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("  ") and "slice" not in line}
    assert lines["users"].split()[2:6] == ["200", "200", "0", "agrees"], result.stdout
    assert lines["content_documents"].endswith("agrees")
    assert "not countable" in lines["segments"]

    ctl.mutate({"op": "add_users", "count": 3})
    result = cli(monkeypatch, env, tmp_path, "verify", "lytics")
    assert result.returncode == 0, result.stdout + result.stderr
    users = next(line for line in result.stdout.splitlines() if line.strip().startswith("users "))
    assert "203" in users and "-3" in users and "inside tolerance" in users, result.stdout

    with duckdb.connect(str(tmp_path / "lytics.duckdb")) as con:
        con.execute("delete from lytics_data.users where _uid in (select _uid from lytics_data.users order by _uid limit 5)")
    result = cli(monkeypatch, env, tmp_path, "verify", "lytics", "--resources", "users")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "error: lytics users all disagrees: the vendor counts 203, the destination holds 195 (-8)" in result.stderr
