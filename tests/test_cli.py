"""The CLI's own behaviour, independent of any vendor: bad destinations, where state lives."""

from __future__ import annotations

import os
from pathlib import Path

import dlt

from tests.support import cdp_sync

KEY = "0123456789abcdef0123456789abcdef01234567"


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))}
    env.update({"DLT_DATA_DIR": str(tmp_path / "dlt_data"), "RUNTIME__DLTHUB_TELEMETRY": "false",
                "SOURCES__PERSONYZE__API_KEY": KEY})
    return env


def test_an_unknown_destination_is_one_line_naming_the_known_ones_and_exit_2(tmp_path):
    for args in (("run", "personyze", "--destination", "nope"),
                 ("backfill", "personyze", "--resource", "users", "--from", "2026-01-01", "--to", "2026-01-02",
                  "--destination", "nope")):
        result = cdp_sync(*args, env=_env(tmp_path), cwd=tmp_path)
        assert result.returncode == 2, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: unknown destination 'nope'"), result.stderr
        assert "postgres" in lines[0] and "duckdb" in lines[0] and "Traceback" not in result.stderr


def test_state_prints_the_folder_it_read(tmp_path):
    pipelines_dir = tmp_path / "dlt_data" / "pipelines"

    @dlt.source(name="personyze")
    def fake():
        @dlt.resource(name="users")
        def users():
            dlt.current.resource_state()["cursor"] = 7
            yield {"id": 1}

        return users

    pipeline = dlt.pipeline(pipeline_name="personyze", pipelines_dir=str(pipelines_dir),
                            destination=dlt.destinations.duckdb(str(tmp_path / "x.duckdb")), dataset_name="d")
    pipeline.run(fake())
    result = cdp_sync("state", "personyze", env=_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"state in {pipelines_dir / 'personyze'}" in result.stdout.splitlines()[0]
    assert "cursor = 7" in result.stdout


def test_a_step_failure_names_its_cause_in_one_line():
    """dlt's step failure says "… failed at `step=sync` with exception:" on its first line and the
    cause on the next: the one-line error names the step and the cause."""
    from dlt.pipeline.exceptions import PipelineStepFailed

    from pipelines.cli import _explain

    class _Pipeline:
        pipeline_name = "p"
        has_pending_data = False
        first_run = False

    cause = ValueError("the state table is locked\nsecond line")
    failure = PipelineStepFailed(_Pipeline(), "sync", None, cause, None)
    message, code = _explain(failure, None)
    assert message == "PipelineStepFailed at step=sync: ValueError: the state table is locked"
    assert code != 0
