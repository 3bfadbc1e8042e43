"""The workspace API key and the JWTs minted from it never appear in logs, exceptions, dlt traces,
state or any file on disk — even when the server echoes them back in error bodies."""

from __future__ import annotations

import json
import logging
import traceback

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sources.common.redact import install_log_redaction
from sources.synerise import synerise_source
from tests.support import assert_nowhere, destination_states


def test_no_key_or_jwt_after_a_successful_and_a_failed_run(emu, control_for, make_pipeline, tmp_path, caplog,
                                                           monkeypatch):
    install_log_redaction()
    caplog.set_level(logging.DEBUG)
    ctl = control_for(emu)
    key = emu.api_key
    monkeypatch.setenv("SOURCES__SYNERISE__API_KEY", key)
    monkeypatch.setenv("SOURCES__SYNERISE__BASE_URL", emu.base_url)
    pipeline = make_pipeline()
    # a token expiring mid-run makes the source log in twice: two JWTs to keep secret
    ctl.add_faults([{"path": "^/v4/clients\\?", "actions": [{"pass": True}, {"status": 401, "json": {"status": 401}}]}])
    src = synerise_source(profiles_page_size=100).with_resources("profiles", "events", "tags")
    info = pipeline.run(src, loader_file_format="parquet")
    logins = [e for e in ctl.requests() if e["path"] == "/uauth/v2/auth/login/profile"]
    assert len(logins) >= 2 and all(key in (e["body"] or "") for e in logins), "the key travels only in the login body"
    from sources.common.redact import known_secrets

    jwts = sorted(s for s in known_secrets() if s.count(".") == 2 and s.startswith("eyJ"))
    assert len(jwts) >= 2, "every token the source received is registered as a secret"
    needles = [key, *jwts]
    texts = [caplog.text, str(info), str(pipeline.last_trace), json.dumps(pipeline.state, default=str)]
    texts += destination_states(tmp_path / "test.duckdb")
    assert_nowhere(needles, texts, tmp_path)

    # a failing server that echoes the key and the bearer token back, past the retry budget
    jwt = jwts[-1]
    body = f"internal error: apiKey={key} Authorization: Bearer {jwt} token {jwt} key {key}"
    ctl.add_faults([{"path": "^/v4/clients/tags", "actions": [{"status": 500, "body": body}] * 5}])
    monkeypatch.setenv("SOURCES__SYNERISE__MAX_ATTEMPTS", "2")
    caplog.clear()
    with pytest.raises(PipelineStepFailed) as failed:
        pipeline.run(synerise_source().with_resources("tags"), loader_file_format="parquet")
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


def test_state_holds_no_credentials(emu, make_pipeline):
    pipeline = make_pipeline()
    pipeline.run(synerise_source(api_key=emu.api_key, base_url=emu.base_url).with_resources("events"))
    blob = json.dumps(pipeline.state, default=str)
    assert emu.api_key not in blob and "eyJ" not in blob
    assert pipeline.state["sources"]["synerise"]["resources"]["events"]["cursor"] > 0
