"""Secrets never appear in logs, exceptions, dlt traces, state or anything on disk."""

from __future__ import annotations

import base64
import json
import logging
import traceback
from typing import Any

import pytest
from dlt.common.pipeline import TPipelineState
from dlt.pipeline.exceptions import PipelineStepFailed

from sources.common.redact import install_log_redaction
from sources.personyze import personyze_source
from tests.support import assert_nowhere, destination_states


def forms_of(key: str) -> list[bytes]:
    basic = base64.b64encode(f"api:{key}".encode()).decode()
    return [key.encode(), key.lower().encode(), basic.encode()]


@pytest.fixture
def emu(start_emulator: Any) -> Any:
    return start_emulator("personyze", scale=300, seed=11)


def test_no_secret_after_a_successful_and_a_failed_run(emu, control_for, make_pipeline, tmp_path, caplog, monkeypatch):
    install_log_redaction()
    caplog.set_level(logging.DEBUG)
    key = emu.api_key
    needles = forms_of(key)
    # the key comes from the environment, as in production: dlt resolves it as a secret
    monkeypatch.setenv("SOURCES__PERSONYZE__API_KEY", key)
    monkeypatch.setenv("SOURCES__PERSONYZE__BASE_URL", emu.base_url)
    pipeline = make_pipeline()
    info = pipeline.run(personyze_source(), loader_file_format="parquet")
    texts = [caplog.text, str(info), str(pipeline.last_trace), json.dumps(pipeline.state, default=str)]
    texts += destination_states(tmp_path / "test.duckdb")
    assert_nowhere(needles, texts, tmp_path)

    # a failing server that echoes the credentials back in its error bodies, past the retry budget
    basic = base64.b64encode(f"api:{key}".encode()).decode()
    body = f"internal error: key={key} header=Basic {basic} token {key}"
    control_for(emu).add_faults([{"path": "^/rest/users", "actions": [{"status": 500, "body": body}] * 5}])
    monkeypatch.setenv("SOURCES__PERSONYZE__MAX_ATTEMPTS", "2")
    caplog.clear()
    with pytest.raises(PipelineStepFailed) as failed:
        pipeline.run(personyze_source().with_resources("users"), loader_file_format="parquet")
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


def test_state_shape_has_no_credentials(emu, make_pipeline):
    pipeline = make_pipeline()
    pipeline.run(personyze_source(api_key=emu.api_key, base_url=emu.base_url).with_resources("users"))
    state: TPipelineState = pipeline.state
    blob = json.dumps(state, default=str)
    for n in forms_of(emu.api_key):
        assert n.decode() not in blob
    assert state["sources"]["personyze"]["resources"]["users"]["cursor"] > 0
