"""Signing (checked with the Standard Webhooks reference library), secrets, and the retry decisions."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import orjson
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from streamq.shared import webhooks
from streamq.shared.settings import Settings
from streamq.shared.webhooks import WebhookStatus, decide

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OTHER = "whsec_" + base64.b64encode(b"z" * 32).decode()


def test_signature_verifies_with_the_reference_library() -> None:
    keys = webhooks.parse_secrets(SECRET)
    body = webhooks.body("completed", {"id": "T1", "status": "completed"}, 1_700_000_000_123)
    headers = webhooks.headers(keys, "msg_1-0", body)
    payload = Webhook(SECRET).verify(body, headers)
    assert payload == {"type": "task.completed", "timestamp": "2023-11-14T22:13:20.123Z",
                       "data": {"id": "T1", "status": "completed"}}  # fmt: skip
    assert headers["webhook-id"] == "msg_1-0"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5


def test_rotation_signs_with_every_secret_and_a_wrong_secret_fails() -> None:
    keys = webhooks.parse_secrets(f"{SECRET} {OTHER}")
    body = b'{"a":1}'
    headers = webhooks.headers(keys, "msg_x", body)
    assert headers["webhook-signature"].count("v1,") == 2
    Webhook(SECRET).verify(body, headers)
    Webhook(OTHER).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"q" * 32).decode()).verify(body, headers)
    tampered = dict(headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(b'{"a":2}', tampered)


def test_signature_matches_the_spec_formula_by_hand() -> None:
    import hashlib
    import hmac

    body = orjson.dumps({"x": "é"})
    sig = webhooks.sign([b"k" * 32], "msg_1", 1234, body)
    expected = base64.b64encode(hmac.new(b"k" * 32, b"msg_1.1234." + body, hashlib.sha256).digest()).decode()
    assert sig == f"v1,{expected}"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("secret", "must start with 'whsec_'"),
        ("whsec_!!!", "not valid base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "24 to 64 bytes"),
        (f"{SECRET} nope", "secret 2"),
    ],
)
def test_bad_secrets_are_named(value: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        webhooks.parse_secrets(value)
    with pytest.raises(ValueError, match="webhook_secret"):
        Settings(webhook_secret=value, _env_file=None)  # type: ignore[call-arg]


def test_new_secret_round_trips() -> None:
    assert len(webhooks.parse_secrets(webhooks.new_secret())[0]) == 32


def test_schedule_setting_parses_seconds() -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.webhook_schedule == [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
    import os

    os.environ["STREAMQ_WEBHOOK_SCHEDULE"] = "0, 0.5,2"
    try:
        assert Settings(_env_file=None).webhook_schedule == [0, 0.5, 2]  # type: ignore[call-arg]
    finally:
        del os.environ["STREAMQ_WEBHOOK_SCHEDULE"]
    with pytest.raises(ValueError, match="webhook_schedule"):
        Settings(webhook_schedule="1,-2", _env_file=None)  # type: ignore[call-arg,arg-type]


SCHEDULE = [0.0, 5.0, 300.0]


@pytest.mark.parametrize(
    ("code", "status"),
    [(200, WebhookStatus.DELIVERED), (204, WebhookStatus.DELIVERED), (410, WebhookStatus.GONE),
     (400, WebhookStatus.FAILED), (404, WebhookStatus.FAILED), (301, WebhookStatus.FAILED),
     (302, WebhookStatus.FAILED), (429, WebhookStatus.RETRYING), (500, WebhookStatus.RETRYING),
     (503, WebhookStatus.RETRYING), (None, WebhookStatus.RETRYING)],
)  # fmt: skip
def test_each_answer_has_its_verdict(code: int | None, status: WebhookStatus) -> None:
    verdict = decide(SCHEDULE, 1, code, "ConnectError" if code is None else "")
    assert verdict.status == status
    if status == WebhookStatus.RETRYING:
        assert verdict.delay_s is not None and 4.5 <= verdict.delay_s <= 5.5  # schedule[1] with 10 % jitter
    else:
        assert verdict.delay_s is None
    if status != WebhookStatus.DELIVERED:
        assert verdict.error


def test_schedule_runs_out() -> None:
    assert decide(SCHEDULE, 2, 500).delay_s is not None
    last = decide(SCHEDULE, 3, 500)
    assert last.status == WebhookStatus.FAILED and "gave up after 3 attempts" in last.error


def test_retry_after_is_honoured_in_both_forms() -> None:
    assert decide(SCHEDULE, 1, 429, retry_after=120).delay_s == 120
    assert webhooks.retry_after_s("7") == 7
    later = datetime.now(UTC) + timedelta(seconds=90)
    parsed = webhooks.retry_after_s(format_datetime(later, usegmt=True))
    assert parsed is not None and 85 <= parsed <= 91
    assert webhooks.retry_after_s("soon") is None
    assert webhooks.retry_after_s("99999999") == webhooks.MAX_RETRY_AFTER_S


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.example.com/in", "https://hooks.example.com/in"),
        ("https://user:s3cret@example.com:8443/h?token=abc", "https://example.com:8443/h?..."),
        ("http://[::1]:9000/x", "http://[::1]:9000/x"),
        ("http://example.com:99999/", "<unparsable>"),
    ],
)
def test_a_webhook_attempt_s_log_line_shows_the_url_without_credentials_or_query(url: str, shown: str) -> None:
    from streamq.services.notifier.sender import log_url

    assert log_url(url) == shown
