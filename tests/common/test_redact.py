"""Redaction of known secrets and of credential-shaped values, in text and in log records."""

from __future__ import annotations

import base64
import logging

from sources.common.errors import RequestRejected
from sources.common.redact import install_log_redaction, redact, register_basic_auth, register_secret

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ3b3Jrc3BhY2UiLCJleHAiOjE3MDAwMDAwMDB9."
    "c2lnbmF0dXJlLWJ5dGVzLWhlcmU"
)


def test_known_secrets_are_masked_in_any_case_and_context():
    register_secret("ABCDEF0123456789ABCDEF0123456789ABCDEF01")
    text = "key ABCDEF0123456789ABCDEF0123456789ABCDEF01 or abcdef0123456789abcdef0123456789abcdef01"
    assert "0123456789" not in redact(text)


def test_basic_auth_header_form_is_registered():
    register_basic_auth("api", "s3cr3t-password-value")
    pair = base64.b64encode(b"api:s3cr3t-password-value").decode()
    assert pair not in redact(f"sent {pair} and s3cr3t-password-value")


def test_credential_shapes_are_masked_even_when_unknown():
    cases = {
        "Authorization: Bearer abcdefghijklmnop1234": "abcdefghijklmnop1234",
        "Authorization: Basic YXBpOnNvbWVrZXl2YWx1ZTEyMw==": "YXBpOnNvbWVrZXl2YWx1ZTEyMw==",
        f"token {JWT} expired": "eyJzdWIi",
        "https://api.lytics.io/api/segment?key=lytics-secret-1&limit=5": "lytics-secret-1",
        "https://x.io/?access_token=tok123456&x=1": "tok123456",
        "https://user:pass-word-9@host.example/path": "pass-word-9",
        '{"apiKey": "workspace-key-77", "other": 1}': "workspace-key-77",
        "{'token': 'abc-def-ghi-jkl'}": "abc-def-ghi-jkl",
    }
    for text, secret in cases.items():
        out = redact(text)
        assert secret not in out, (text, out)
        assert "***" in out


def test_ordinary_text_is_left_alone():
    for text in ["users/where/data_last_modified%3E1700000000/limit/0,50", "rows read: 1,000", "Basic plan", ""]:
        assert redact(text) == text


def test_errors_are_redacted_at_construction():
    register_secret("error-secret-value-42")
    e = RequestRejected("rejected error-secret-value-42", url="https://h/x?key=error-secret-value-42",
                        body="echo error-secret-value-42")
    assert "error-secret-value-42" not in str(e) + repr(e) + (e.url or "") + (e.body_excerpt or "")


def test_log_records_are_redacted_everywhere(caplog):
    install_log_redaction()
    register_secret("log-secret-value-99")
    caplog.set_level(logging.DEBUG)
    logging.getLogger("some.library").warning("calling %s with %s", "https://h/?key=abc123456", "log-secret-value-99")
    try:
        raise ValueError("boom log-secret-value-99")
    except ValueError:
        logging.getLogger("other").exception("failed")
    assert "log-secret-value-99" not in caplog.text
    assert "abc123456" not in caplog.text
    assert "calling https://h/?key=*** with ***" in caplog.text
