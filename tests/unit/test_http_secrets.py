"""The http handler's masking of secret header values in what it stores, and its payload errors."""

from __future__ import annotations

import pytest

from streamq.services.worker.handlers_http import _mask, _secrets, http_request
from streamq.shared.errors import Permanent
from streamq.shared.payloads import HttpPayload

TOKEN = "tok-0123456789abcdef"


def payload(**secret: str) -> HttpPayload:
    return HttpPayload.model_validate({"url": "https://example.com/", "secret_headers": secret})


def test_values_and_their_long_words_are_masked() -> None:
    secrets = _secrets(payload(Authorization=f"Bearer {TOKEN}", Short="abc"))
    assert secrets[0] == f"Bearer {TOKEN}"  # longest first: the whole value before its words
    text = f"auth=Bearer {TOKEN}; token={TOKEN}; short=abc; Bearer alone"
    assert _mask(text, secrets, False) == "auth=***; token=***; short=abc; Bearer alone"  # too short to mask


def test_a_truncated_body_loses_a_secret_cut_at_its_end() -> None:
    secrets = _secrets(payload(Authorization=f"Bearer {TOKEN}"))
    assert _mask("echo: tok-0123", secrets, True) == "echo: ***"
    assert _mask("echo: tok-0123", secrets, False) == "echo: tok-0123"  # whole: not the start of a secret
    assert _mask("echo: nothing", secrets, True) == "echo: nothing"


async def test_payload_errors_name_the_field_not_the_value() -> None:
    bad = {"url": "https://example.com/", "secret_headers": {"Authorization": f"Bearer {TOKEN}\n"}}
    with pytest.raises(Permanent) as info:
        await http_request(bad)
    assert "secret_headers.Authorization" in str(info.value) and TOKEN not in str(info.value)
