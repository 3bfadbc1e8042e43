"""The PostHog key never appears in logs, exceptions, dlt traces, state or anything on disk."""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

import duckdb
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sources.common.redact import install_log_redaction
from sources.posthog import posthog_source
from tests.support import assert_nowhere, destination_states


@pytest.fixture
def emu(start_emulator: Any) -> Any:
    return start_emulator("posthog", scale=150, seed=13)


def test_no_key_after_a_successful_and_a_failed_run(emu, control_for, make_pipeline, tmp_path, caplog, monkeypatch):
    install_log_redaction()
    caplog.set_level(logging.DEBUG)
    key = emu.api_key
    needles = [key, key[4:], key.upper()]
    tokens = [p.api_token for p in emu.backend.projects.values()]  # project tokens are never loaded
    monkeypatch.setenv("SOURCES__POSTHOG__API_KEY", key)
    monkeypatch.setenv("SOURCES__POSTHOG__BASE_URL", emu.base_url)
    pipeline = make_pipeline()
    info = pipeline.run(posthog_source(), loader_file_format="parquet")
    info.raise_on_failed_jobs()
    texts = [caplog.text, str(info), str(pipeline.last_trace), json.dumps(pipeline.state, default=str)]
    texts += destination_states(tmp_path / "test.duckdb")
    assert_nowhere(needles + tokens, texts, tmp_path)
    with duckdb.connect(str(tmp_path / "test.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from data.projects").fetchone()[0] == len(tokens)

    # a failing server that echoes the key back in its error bodies, past the retry budget
    body = {"type": "server_error", "code": "error", "detail": f"boom for key {key} (Bearer {key})", "attr": None}
    control_for(emu).add_faults([{"path": "/query/", "repeat": True, "actions": [{"status": 500, "json": body}]}])
    monkeypatch.setenv("SOURCES__POSTHOG__MAX_ATTEMPTS", "2")
    caplog.clear()
    with pytest.raises(PipelineStepFailed) as failed:
        pipeline.run(posthog_source().with_resources("events"), loader_file_format="parquet")
    exc = failed.value
    texts = [
        caplog.text,
        str(exc),
        repr(exc),
        "".join(traceback.format_exception(exc)),
        str(pipeline.last_trace),
        json.dumps(pipeline.state, default=str),
    ]
    texts += [json.dumps(step.asdict(), default=str) for step in pipeline.last_trace.steps]
    assert "500" in str(exc), "the failure must still say what happened"
    assert_nowhere(needles, texts, tmp_path)


def test_a_project_token_is_refused_before_any_request_and_not_echoed(emu, control_for):
    token = next(iter(emu.backend.projects.values())).api_token
    ctl = control_for(emu)
    ctl.clear_requests()
    with pytest.raises(Exception) as refused:
        posthog_source(api_key=token, base_url=emu.base_url)
    assert "project token" in str(refused.value) and token not in str(refused.value)
    assert ctl.requests() == []
