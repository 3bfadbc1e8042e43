"""Class 7 (issue 11): a load package finished after the process died in the middle of loading it
lands every row once. The deterministic form of what the model-based test found: the process is
killed right after DuckDB copied ``events`` into the staging table and before dlt recorded that
job, so finishing the package copies the same file into staging a second time; a merge that was
told the run's rows are unique skipped de-duplicating staging and loaded every event twice. The
run still declares them unique (memory); cdp-sync finishes a pending package with
de-duplication."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import duckdb

SCRIPT = textwrap.dedent('''
    import os, sys
    import dlt
    from dlt.destinations.impl.duckdb import duck
    from sources.posthog import posthog_source

    tmp, key, url, mode = sys.argv[1:5]
    pipeline = dlt.pipeline(pipeline_name="replay", destination=dlt.destinations.duckdb(tmp + "/replay.duckdb"),
                            dataset_name="data", pipelines_dir=tmp + "/pipelines")
    if mode == "die":
        original = duck.DuckDbCopyJob.run

        def run_then_die(self):
            original(self)
            if self.load_table_name == "events" and "staging" in self._sql_client.fully_qualified_dataset_name():
                os._exit(9)  # the copy is committed in DuckDB; dlt never hears of it

        duck.DuckDbCopyJob.run = run_then_die
        pipeline.run(posthog_source(api_key=key, base_url=url).with_resources("events"), loader_file_format="parquet")
    else:
        from pipelines.destinations import run_within_cap

        assert pipeline.has_pending_data
        run_within_cap(pipeline, pipeline.load).raise_on_failed_jobs()  # as cdp-sync finishes a package
''')


def test_a_package_finished_after_dying_mid_load_lands_each_event_once(start_emulator: Any, control_for: Any,
                                                                         tmp_path: Path) -> None:
    emu = start_emulator("posthog", scale=200, seed=7, history_days=3)
    ctl = control_for(emu)
    script = tmp_path / "replay.py"
    script.write_text(SCRIPT)
    args = [sys.executable, str(script), str(tmp_path), emu.api_key, emu.base_url]
    env = {**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    died = subprocess.run([*args, "die"], env=env, capture_output=True, text=True, timeout=300)
    assert died.returncode == 9, died.stderr[-2000:]
    finished = subprocess.run([*args, "finish"], env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    with duckdb.connect(str(tmp_path / "replay.duckdb"), read_only=True) as con:
        rows, distinct = con.execute("select count(*), count(distinct uuid) from data.events").fetchone()
    assert rows == distinct == len({e["uuid"] for e in ctl.export("events")}), (rows, distinct)
