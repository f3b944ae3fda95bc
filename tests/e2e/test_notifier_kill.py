"""The notifier as a real process, SIGKILLed while webhooks are in flight and started again: every
task's webhook still arrives (at least once), each correctly signed."""

from __future__ import annotations

import asyncio
import base64
import signal
import time
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis
from standardwebhooks import Webhook

from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Queue
from streamq.testing import RedisServer, Service
from tests.integration.receivers import Answer, Receiver, serving, wait_until

SECRET = "whsec_" + base64.b64encode(b"e2e-kill-test-secret-0123456789a").decode()
TASKS = 30


@pytest.mark.e2e
async def test_sigkill_mid_delivery_loses_no_webhook(
    redis_server: RedisServer, prefix: str, redis: Redis, log_dir: Path
) -> None:
    keys = KeySchema(prefix, "default")
    queue = Queue(redis, keys)
    env = {
        "STREAMQ_REDIS_URL": redis_server.url,
        "STREAMQ_KEY_PREFIX": prefix,
        "STREAMQ_WEBHOOK_SECRET": SECRET,
        "STREAMQ_ALLOW_PRIVATE_NETWORKS": "true",
        "STREAMQ_WEBHOOK_SCHEDULE": "0,0.5,0.5,1,1,2,2",
        "STREAMQ_WEBHOOK_TIMEOUT_S": "1.5",
        "STREAMQ_WEBHOOK_LEASE_S": "2",
        "STREAMQ_WEBHOOK_POLL_S": "0.05",
        "STREAMQ_WEBHOOK_CONCURRENCY": "4",
        "STREAMQ_NOTIFIER_CLAIM_IDLE_S": "1",
        "STREAMQ_SHUTDOWN_GRACE_S": "2",
    }
    receiver = Receiver()
    receiver.on("/hook", Answer(200, delay_s=0.25))  # slow enough that a kill lands mid-delivery
    async with serving(receiver):
        worker = Service("streamq.services.worker", env, log_dir)
        notifier = Service("streamq.services.notifier", env, log_dir)
        restarted: Service | None = None
        try:
            submitted = await queue.submit(
                [TaskCreate(type="echo", payload=i, webhook=receiver.url("/hook")) for i in range(TASKS)]
            )
            ids = {s.task.id for s in submitted}
            await wait_until(lambda: len(receiver.requests) >= 6 and receiver.in_flight > 0, 30, "deliveries")
            in_flight, before = receiver.in_flight, len(receiver.requests)
            notifier.signal(signal.SIGKILL)
            notifier.wait(10)
            killed_at = time.monotonic()
            restarted = Service("streamq.services.notifier", env, log_dir, name="notifier-restarted")

            def seen() -> set[str]:
                return {orjson.loads(r.body)["data"]["id"] for r in receiver.requests}

            await wait_until(lambda: seen() >= ids, 60, "every webhook")
            recovered_s = time.monotonic() - killed_at
            while len(await redis.zrange(keys.webhooks_due, 0, -1)):
                await asyncio.sleep(0.05)
        finally:
            for service in (notifier, restarted, worker):
                if service is not None:
                    service.stop()
    for r in receiver.requests:
        Webhook(SECRET).verify(r.body, r.headers)
    unique = {r.headers["webhook-id"] for r in receiver.requests}
    print(
        f"\n{TASKS} tasks; SIGKILL after {before} requests with {in_flight} in flight; all {len(ids)} webhooks "
        f"arrived {recovered_s:.2f} s after the kill; {len(receiver.requests)} requests for {len(unique)} "
        f"messages ({len(receiver.requests) - len(unique)} repeats, at least once)"
    )
    assert in_flight > 0 and len(unique) == TASKS
    statuses = {t.webhook_status for t in await queue.get_many(sorted(ids))}
    assert statuses == {"delivered"}
