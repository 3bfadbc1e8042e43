"""``cdp-sync verify personyze``: the API states no count, so every loaded resource is a
``not countable`` row (with the rows the destination holds), never a silent skip; exit 0."""

from __future__ import annotations

from tests import support

from .helpers import cli, table


def test_every_loaded_resource_is_reported_not_countable(start_emulator, tmp_path, monkeypatch):
    server = start_emulator("personyze", scale=100, seed=4)
    env = support.cli_env("personyze", server, tmp_path)
    assert cli(monkeypatch, env, tmp_path, "run", "personyze", "--resources", "products,actions").returncode == 0
    result = cli(monkeypatch, env, tmp_path, "verify", "personyze")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = table(result.stdout)
    assert [r[0] for r in rows] == ["products", "actions"]
    assert all(" ".join(r[5:7]) == "not countable" and r[2] == "-" and int(r[3]) > 0 for r in rows), result.stdout
    assert "verification: nothing countable" in result.stdout
