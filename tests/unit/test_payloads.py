"""Payload rules of the email and http task types, and the email message the worker builds."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import getaddresses

import pytest
from pydantic import ValidationError

from streamq.services.worker.handlers_email import build_message
from streamq.shared.models import TaskCreate
from streamq.shared.payloads import (
    SEED_SUBJECT,
    SEED_TEXT,
    EmailPayload,
    HttpPayload,
    check_address,
    check_tasks,
    parse_email,
)
from streamq.shared.ssrf import SsrfGuard


@pytest.mark.parametrize(
    "address",
    ["user@example.com", "Ann <ann@example.com>", "a.b+tag@sub.example.co.uk", "o'hara@example.ie", "X@EXAMPLE.COM",
     '"Doe, Jane" <jane@example.com>', "Zoë Ä. Smith <zoe@example.com>", "<ann@example.com>"],
)  # fmt: skip
def test_good_addresses(address: str) -> None:
    assert check_address(address) == address


@pytest.mark.parametrize(
    "address",
    ["user", "user@", "@example.com", "a@b", "a..b@example.com", ".a@example.com", "a.@example.com",
     "a@-example.com", "a b@example.com", "a@example.com\r\nBcc: x@example.com", "Ann <ann@>",
     # one address per item: lists, several angle addresses, comments, an address as the display name
     "a@example.com, victim@example.org", "a@example.com;victim@example.org", "a@example.com victim@example.org",
     "<a@example.com>victim@example.org", "Ann <a@example.com> <victim@example.org>", "a@example.com <b@example.org>",
     '"victim@example.org" <a@example.com>', "a@example.com (victim@example.org)", "a(x)@example.com",
     "Ann\u2028Bcc <a@example.com>", '"Ann" "Bob" <a@example.com>'],
)  # fmt: skip
def test_bad_addresses_name_themselves(address: str) -> None:
    with pytest.raises(ValueError, match="not a valid email address"):
        check_address(address)


def test_seed_shape_becomes_a_short_message() -> None:
    p = parse_email("user@example.com")
    assert (p.to, p.subject, p.text, p.html) == (["user@example.com"], SEED_SUBJECT, SEED_TEXT, None)


def test_message_shapes() -> None:
    sender = "Streamq <q@example.org>"
    text = build_message(EmailPayload(to=["a@example.com"], subject="s", text="hi"), sender, "T1")
    assert text.get_content_type() == "text/plain" and text["Message-ID"] == "<T1@example.org>"
    html = build_message(EmailPayload(to=["a@example.com"], html="<p>x</p>"), sender, "T1")
    assert html.get_content_type() == "text/html"
    both = EmailPayload.model_validate(
        {"to": "a@example.com", "bcc": ["b@example.com"], "text": "t", "html": "<p>h</p>", "headers": {"X-A": "1"}}
    )
    message = build_message(both, sender, "T2")
    assert message.get_content_type() == "multipart/alternative" and message["Bcc"] is None
    assert message["X-A"] == "1" and message["X-Streamq-Task"] == "T2"
    assert both.recipients() == ["a@example.com", "b@example.com"]


def test_too_many_recipients() -> None:
    with pytest.raises(ValidationError, match="at most 100"):
        EmailPayload.model_validate({"to": [f"u{i}@example.com" for i in range(101)]})


def test_expected_status() -> None:
    assert HttpPayload(url="https://x.example").expected(204)
    assert not HttpPayload(url="https://x.example").expected(301)
    assert HttpPayload.model_validate({"url": "https://x.example", "expect_status": 404}).expected(404)
    assert HttpPayload.model_validate({"url": "https://x.example", "expect_status": [200, 409]}).expected(409)


async def test_submission_checks_skip_plain_tasks_and_name_batch_positions() -> None:
    guard = SsrfGuard()
    tasks = [
        TaskCreate(type="echo", payload="anything"),
        TaskCreate(type="email", payload="nope"),
        TaskCreate(type="http", payload={"url": "http://10.1.2.3/"}),
        TaskCreate(type="echo", webhook="http://[::1]/x"),
    ]
    errors = await check_tasks(tasks, guard, batch=True)
    assert [e["loc"] for e in errors] == [
        ["body", "tasks", 1, "payload"],
        ["body", "tasks", 2, "payload", "url"],
        ["body", "tasks", 3, "webhook"],
    ]
    assert await check_tasks(tasks[3:], SsrfGuard(allow_private=True), batch=False) == []


@pytest.mark.parametrize("address", ["Ann <ann@example.com>", '"Doe, Jane" <jane@example.com>', "bob@example.com"])
def test_the_envelope_recipient_is_the_address_the_header_shows(address: str) -> None:
    message = build_message(EmailPayload(to=[address]), "q@example.org", "T1")
    [(_name, shown)] = getaddresses([str(message["To"])])
    assert EmailPayload(to=[address]).recipients() == [shown]


def _headers_fail(text: str) -> bool:
    """Whether the email package refuses ``text`` as a subject or a custom header's value: the steps of
    build_message that read the payload's free text (nothing else in the message depends on it)."""
    msg = EmailMessage()
    try:
        msg["Subject"] = text
        msg["X-Note"] = text
    except ValueError:
        return True
    return False


def _build_fails(text: str) -> bool:
    """Whether the worker's build_message fails with ``text`` as the subject and a header's value (the
    payload built without its rules, so only the email package decides)."""
    payload = EmailPayload.model_construct(to=["a@example.com"], subject=text, headers={"X-Note": text})
    try:
        build_message(payload, "q@e.org", "T1")
    except ValueError:
        return True
    return False


def test_every_character_the_email_package_refuses_in_a_header_is_refused_at_submission() -> None:
    """The worker builds the message with Python's email package: whatever fails there for a subject or
    a header value must already be refused by the payload's rules (U+2028 and U+0085 were not). Every
    character goes through the header steps alone (a whole message costs 1 ms, 12,000 of them took over
    2 minutes on a loaded host); build_message itself agrees with them on every character they refuse
    and on every 61st of the others."""
    refusing = 0
    for code in [*range(0x3000), 0xFEFF, 0xFFFD]:
        text = f"a{chr(code)}b"
        fails = _headers_fail(text)
        if fails or code % 61 == 0:
            assert _build_fails(text) == fails, f"U+{code:04X}: build_message and its header steps disagree"
        if not fails:
            continue
        refusing += 1
        for payload in ({"to": "a@example.com", "subject": text}, {"to": "a@example.com", "headers": {"X-Note": text}}):
            try:
                EmailPayload.model_validate(payload)
            except ValidationError:
                continue
            raise AssertionError(f"U+{code:04X} passes the payload's rules and fails in the worker")
    assert refusing > 0  # the sweep met characters the email package refuses
