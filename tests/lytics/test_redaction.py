"""The Lytics token never appears in logs, exceptions, dlt traces, state or anything on disk."""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sources.common.redact import install_log_redaction
from sources.lytics import check_credentials, lytics_source
from tests.support import scan_files


@pytest.fixture
def emu(start_emulator: Any) -> Any:
    return start_emulator("lytics", scale=300, seed=11)


def test_no_token_after_a_successful_and_a_failed_run(emu, control_for, make_pipeline, tmp_path, caplog, monkeypatch):
    install_log_redaction()
    caplog.set_level(logging.DEBUG)
    key, data_key = emu.api_key, emu.backend.data_api_key
    needles = [key, data_key]
    monkeypatch.setenv("SOURCES__LYTICS__API_KEY", key)
    monkeypatch.setenv("SOURCES__LYTICS__BASE_URL", emu.base_url)
    pipeline = make_pipeline()
    info = pipeline.run(lytics_source(), loader_file_format="parquet")
    # the account list carries both keys in its body: reading it must not leak them either
    summary = check_credentials(key, emu.base_url)
    texts = [caplog.text, str(info), str(pipeline.last_trace), json.dumps(pipeline.state, default=str), summary]
    for text in texts:
        assert not any(n in text for n in needles), text[:300]
    assert scan_files(tmp_path, needles) == []

    # a failing server that echoes the token back in its error bodies, past the retry budget
    body = f"internal error: key={key} Authorization: {key} access_token={key}"
    control_for(emu).add_faults([{"path": "^/api/segment/scan", "actions": [{"status": 500, "body": body}] * 5}])
    monkeypatch.setenv("SOURCES__LYTICS__MAX_ATTEMPTS", "2")
    caplog.clear()
    with pytest.raises(PipelineStepFailed) as failed:
        pipeline.run(lytics_source().with_resources("users"), loader_file_format="parquet")
    exc = failed.value
    texts = [caplog.text, str(exc), repr(exc), "".join(traceback.format_exception(exc)), str(pipeline.last_trace),
             json.dumps(pipeline.state, default=str)]
    texts += [json.dumps(step.asdict(), default=str) for step in pipeline.last_trace.steps]
    assert "500" in str(exc), "the failure must still say what happened"
    for text in texts:
        assert key not in text, text[:300]
    assert scan_files(tmp_path, needles) == []
