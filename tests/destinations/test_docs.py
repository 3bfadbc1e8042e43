"""The README's "Warehouses" examples are read by dlt as written.

Every ``toml`` block of that section goes into a ``.dlt/secrets.toml`` of a fresh folder, and a
separate process (dlt binds its configuration files to the working directory) resolves each
destination's configuration from it, without connecting anywhere. A key that dlt does not know,
or that lands in the wrong section, leaves its field empty or at its default: the comparison with
the block's own values then fails. BigQuery, Snowflake, MotherDuck and Databricks are checked
this way only: their services cannot be reached from here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import dlt

README = Path(__file__).resolve().parents[2] / "README.md"

RESOLVE = r"""
import json, sys
import dlt
out = {}
for name in json.loads(sys.argv[1]):
    factory = getattr(dlt.destinations, name)()
    initial = factory.spec()
    initial.dataset_name = "cdp_data"
    if hasattr(initial, "local_dir"):
        initial.local_dir = "."
    try:
        config = factory.configuration(initial, accept_partial=False)
    except Exception as exc:
        out[name] = {"error": str(exc).strip().splitlines()[0]}
        continue
    out[name] = {"config": {k: v for k, v in dict(config).items() if k != "credentials"},
                 "credentials": dict(config.credentials)}
print(json.dumps(out, default=str))
"""


def warehouses_section() -> str:
    text = README.read_text()
    start = text.index("\n## Warehouses\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def documented_blocks() -> list[dict[str, Any]]:
    return [tomllib.loads(b) for b in re.findall(r"```toml\n(.*?)```", warehouses_section(), re.S)]


def test_every_documented_destination_block_resolves_with_its_values(tmp_path):
    blocks = documented_blocks()
    destinations: dict[str, dict[str, Any]] = {}
    raw_blocks = re.findall(r"```toml\n(.*?)```", warehouses_section(), re.S)
    for block in blocks:
        if set(block) == {"cdp_sync"}:  # cdp-sync's own DuckDB setting: as in the project's config.toml
            project = tomllib.loads((README.parent / ".dlt" / "config.toml").read_text())
            # each documented setting as the project sets it (config.toml has other cdp_sync keys)
            assert block["cdp_sync"] == {k: project["cdp_sync"][k] for k in block["cdp_sync"]}
            continue
        assert set(block) == {"destination"}, f"a Warehouses example outside [destination.*]: {block}"
        for name, section in block["destination"].items():
            destinations.setdefault(name, {}).update(section)
    documented = {"postgres", "filesystem", "bigquery", "snowflake", "motherduck", "databricks"}
    assert set(destinations) == documented

    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "secrets.toml").write_text(
        "\n".join(b for b in raw_blocks if not b.lstrip().startswith("[cdp_sync]")))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DESTINATION__", "DLT_"))}
    done = subprocess.run([sys.executable, "-c", RESOLVE, json.dumps(sorted(destinations))], cwd=tmp_path,
                          env={**env, "RUNTIME__DLTHUB_TELEMETRY": "false", "RUNTIME__LOG_LEVEL": "ERROR"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    resolved = json.loads(done.stdout.strip().splitlines()[-1])

    for name, section in destinations.items():
        assert "error" not in resolved[name], f"[destination.{name}]: {resolved[name].get('error')}"
        for key, value in section.items():
            if key == "credentials":
                for ckey, cvalue in value.items():
                    got = resolved[name]["credentials"].get(ckey)
                    assert got == cvalue, f"[destination.{name}.credentials] {ckey}: dlt read {got!r}"
            else:
                got = resolved[name]["config"].get(key)
                assert got == value, f"[destination.{name}] {key}: dlt read {got!r}"


def test_documented_commands_name_real_destinations():
    commands = re.findall(r"cdp-sync run (\w+) --destination (\w+)", warehouses_section())
    assert {d for _, d in commands} >= {"postgres", "filesystem", "bigquery", "snowflake", "motherduck", "databricks"}
    for vendor, destination in commands:
        assert vendor in {"personyze", "synerise", "lytics", "posthog"}, vendor
        assert hasattr(dlt.destinations, destination), destination


def test_documented_extras_exist():
    import tomllib as toml

    project = toml.loads((README.parent / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    for extra in re.findall(r'pip install -e "\.\[(\w+)\]"', warehouses_section()):
        assert extra in extras, f"README names the extra {extra!r}, which pyproject.toml lacks"
        assert any(dep.startswith(f"dlt[{extra}]") for dep in extras[extra]), extra
    assert {"postgres", "deltalake"} <= set(re.findall(r"cdp-sync\[([\w,]+)\]", " ".join(extras["dev"]))[0].split(","))
