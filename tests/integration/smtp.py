"""A real SMTP server (aiosmtpd) on a free loopback port with scripted answers, and retry
promotion for tests whose tasks are rescheduled (the scheduler service when it exists)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from importlib import resources
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from redis.asyncio import Redis

from streamq.shared.keys import KeySchema
from streamq.shared.settings import Settings
from streamq.testing import Service, free_port


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class SmtpHandler:
    """Answers RCPT with ``rcpt_reply`` (None = accept) and DATA with the next of ``data_replies``
    (the last one repeats); records every accepted message and every DATA attempt."""

    rcpt_reply: str | None = None
    data_replies: list[str] = field(default_factory=lambda: ["250 OK"])
    received: list[Mail] = field(default_factory=list)
    data_attempts: int = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_attempts += 1
        reply = self.data_replies.pop(0) if len(self.data_replies) > 1 else self.data_replies[0]
        if reply.startswith("250"):
            message = message_from_bytes(envelope.content, policy=policy.default)
            self.received.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return reply


@contextlib.contextmanager
def smtp_server(handler: SmtpHandler) -> Iterator[int]:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


LIB = (resources.files("shared") / "lua" / "lib.lua").read_text()
PROMOTE = (
    LIB
    + """
-- test-only stand-in for the scheduler: a due scheduled task back on its stream
local task_key, id = KEYS[17], ARGV[2]
local due = redis.call('ZSCORE', SCHEDULED, id)
if not due or tonumber(due) > now_ms() then return 0 end
redis.call('ZREM', SCHEDULED, id)
local h = redis.call('HMGET', task_key, 'status', 'priority')
if h[1] ~= 'scheduled' then return 0 end
enqueue(task_key, id, h[2])
set_status(task_key, id, 'scheduled', 'pending')
return 1
"""
)


def scheduler_exists() -> bool:
    return (
        importlib.util.find_spec("streamq.services.scheduler") is not None
        and (Path(__file__).resolve().parents[2] / "services" / "scheduler" / "__main__.py").exists()
    )


@contextlib.asynccontextmanager
async def promoting(settings: Settings, redis: Redis, log_dir: Path) -> AsyncIterator[str]:
    """Due retries go back on their streams: ``python -m streamq.services.scheduler`` when the module exists
    (issue 3), else a small promotion loop here (one script per due task, as the scheduler does)."""
    if scheduler_exists():
        env = {**os.environ, "STREAMQ_REDIS_URL": settings.redis_url, "STREAMQ_KEY_PREFIX": settings.key_prefix}
        service = Service("streamq.services.scheduler", env, log_dir)
        try:
            yield "streamq.services.scheduler"
        finally:
            service.stop()
        return
    keys = KeySchema(settings.key_prefix, settings.queue)
    script = redis.register_script(PROMOTE)
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            ids = await redis.zrangebyscore(keys.scheduled, "-inf", int(time.time() * 1000) + 5)
            for task_id in ids:
                await script(keys=[*keys.common(), keys.task(task_id)], args=[settings.events_maxlen, task_id])
            await asyncio.sleep(0.02)

    task = asyncio.create_task(loop())
    try:
        yield "in-test promotion"
    finally:
        stop.set()
        await task
