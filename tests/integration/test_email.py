"""The email task type in a real worker against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from streamq.shared.models import TaskCreate
from streamq.shared.payloads import SEED_SUBJECT
from streamq.shared.queue import Queue
from streamq.shared.settings import Settings
from tests.integration.helpers import running_worker, wait_for_status
from tests.integration.smtp import SmtpHandler, promoting, smtp_server


def smtp_settings(settings: Settings, port: int) -> Settings:
    return settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_tls": "none", "smtp_from": "Streamq <q@example.org>"}
    )


async def test_seed_style_email_arrives(settings: Settings, queue: Queue, api: httpx.AsyncClient) -> None:
    handler = SmtpHandler()
    with smtp_server(handler) as port:
        response = await api.post("/api/tasks", json={"type": "email", "payload": "user@example.com"})
        assert response.status_code == 201, response.text
        task_id = response.json()["id"]
        async with running_worker(smtp_settings(settings, port)):
            await wait_for_status(queue, task_id, {"completed", "failed"})
    task = await queue.get(task_id)
    assert task.status == "completed", task.error
    [mail] = handler.received
    assert mail.sender == "q@example.org" and mail.recipients == ["user@example.com"]
    assert mail.message["Subject"] == SEED_SUBJECT and mail.message["To"] == "user@example.com"
    assert mail.message["Message-ID"] == f"<{task_id}@example.org>"
    assert "streamq" in mail.message.get_content()
    assert task.result["accepted"] == ["user@example.com"] and task.result["response"] == "OK"


async def test_multipart_email_with_every_field(settings: Settings, queue: Queue) -> None:
    handler = SmtpHandler()
    payload = {
        "to": ["Ann <ann@example.com>", "bob@example.com"],
        "cc": ["carol@example.com"],
        "bcc": ["dave@example.com"],
        "subject": "Your report",
        "text": "plain body",
        "html": "<p>html <b>body</b></p>",
        "reply_to": "support@example.org",
        "headers": {"X-Campaign": "spring"},
    }
    with smtp_server(handler) as port:
        [done] = await queue.submit([TaskCreate(type="email", payload=payload)])
        async with running_worker(smtp_settings(settings, port)):
            await wait_for_status(queue, done.task.id, {"completed", "failed"})
    assert (await queue.get(done.task.id)).status == "completed"
    [mail] = handler.received
    assert sorted(mail.recipients) == ["ann@example.com", "bob@example.com", "carol@example.com", "dave@example.com"]
    m = mail.message
    assert m["To"] == "Ann <ann@example.com>, bob@example.com" and m["Cc"] == "carol@example.com"
    assert m["Bcc"] is None  # blind copies are not in the headers
    assert m["Reply-To"] == "support@example.org" and m["X-Campaign"] == "spring"
    assert m["Subject"] == "Your report" and m["From"] == "Streamq <q@example.org>"
    assert m.get_content_type() == "multipart/alternative"
    parts = {p.get_content_type(): p.get_content() for p in m.iter_parts()}
    assert parts["text/plain"].strip() == "plain body"
    assert parts["text/html"].strip() == "<p>html <b>body</b></p>"


async def test_550_fails_at_once_with_the_reply(settings: Settings, queue: Queue) -> None:
    handler = SmtpHandler(rcpt_reply="550 5.1.1 No such user here")
    with smtp_server(handler) as port:
        [done] = await queue.submit([TaskCreate(type="email", payload="nobody@example.com", max_retries=3)])
        async with running_worker(smtp_settings(settings, port)):
            await wait_for_status(queue, done.task.id, {"failed"})
    task = await queue.get(done.task.id)
    assert task.attempts == 1 and "550 5.1.1 No such user here" in (task.error or "")
    assert task.error is not None and task.error.startswith("Permanent: SMTP recipients refused")
    assert handler.received == []


async def test_451_twice_then_250_completes_after_three_attempts(
    settings: Settings, queue: Queue, redis: Redis, log_dir: Path
) -> None:
    handler = SmtpHandler(data_replies=["451 4.3.0 Try again later", "451 4.3.0 Try again later", "250 OK"])
    with smtp_server(handler) as port:
        [done] = await queue.submit([TaskCreate(type="email", payload="user@example.com", retry_backoff_s=0.05)])
        async with running_worker(smtp_settings(settings, port)), promoting(settings, redis, log_dir) as how:
            print(f"retries promoted by: {how}")
            await wait_for_status(queue, done.task.id, {"completed", "failed"}, timeout=30)
    task = await queue.get(done.task.id)
    assert task.status == "completed" and task.attempts == 3
    assert [h.error for h in task.history] == ["SmtpTemporaryError: SMTP SMTPDataError: 451 4.3.0 Try again later"] * 2
    assert handler.data_attempts == 3 and len(handler.received) == 1


async def test_unreachable_server_is_retried(settings: Settings, queue: Queue) -> None:
    from streamq.testing import free_port

    [done] = await queue.submit(
        [TaskCreate(type="email", payload="user@example.com", max_retries=2, retry_backoff_s=60)]
    )
    async with running_worker(smtp_settings(settings, free_port())):
        await wait_for_status(queue, done.task.id, {"scheduled"})
    task = await queue.get(done.task.id)
    assert task.attempts == 1 and task.error is not None
    assert task.error.startswith("SmtpTemporaryError: SMTPConnectError: Error connecting to 127.0.0.1")


@pytest.mark.parametrize(
    ("payload", "loc", "fragment"),
    [
        ("not-an-address", ["body", "payload"], "'not-an-address' is not a valid email address"),
        ({"to": ["ok@example.com", "bad@"]}, ["body", "payload", "to", 1], "'bad@'"),
        ({"to": "ok@example.com", "cc": ["x@y"]}, ["body", "payload", "cc", 0], "'x@y'"),
        ({"to": "ok@example.com", "reply_to": "a b@example.com"}, ["body", "payload", "reply_to"], "a b@example"),
        ({"to": "ok@example.com", "subject": "a\r\nBcc: x@example.com"}, ["body", "payload", "subject"], "line"),
        ({"to": "ok@example.com", "headers": {"To": "x@example.com"}}, ["body", "payload"], "own field"),
        ({"to": []}, ["body", "payload"], "recipient"),
        ({"to": "ok@example.com", "surprise": 1}, ["body", "payload", "surprise"], "Extra inputs"),
    ],
)
async def test_bad_addresses_get_422_naming_them(
    api: httpx.AsyncClient, payload: object, loc: list[object], fragment: str
) -> None:
    response = await api.post("/api/tasks", json={"type": "email", "payload": payload})
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["loc"][: len(loc)] == loc and fragment in e["msg"] for e in errors), errors
    assert (await api.get("/api/stats")).json()["total"] == 0
