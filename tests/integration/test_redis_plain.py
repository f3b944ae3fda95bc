"""``STREAMQ_REDIS_PLAIN=true``: redis-py as it comes, none of shared/redisfast.py's overrides, and the
core path still works: submit through the api, take, finish, a failure retried by the scheduler, a
dead letter, a cancel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster

from streamq.services.scheduler.watcher import Watcher
from streamq.services.worker import builtin  # noqa: F401
from streamq.services.worker.registry import Registry
from streamq.shared.keys import KeySchema
from streamq.shared.queue import Queue
from streamq.shared.redis import make_client
from streamq.shared.redisfast import HeldConnection, HiredisPacking, is_plain, raw_stream_reads
from streamq.shared.settings import Settings
from tests.integration.helpers import running_worker, wait_for_status
from tests.integration.scheduling import running_scheduler
from tests.support import in_process_api


@pytest.fixture
def plain(settings: Settings) -> Settings:
    return settings.model_copy(update={"redis_plain": True, "strict_types": False})  # handlers of this file only


@pytest.fixture
async def plain_api(plain: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_api(plain) as client:
        yield client


async def test_a_plain_client_has_none_of_the_overrides(plain: Settings, settings: Settings, keys: KeySchema) -> None:
    client = make_client(plain)
    fast = make_client(settings)
    try:
        assert is_plain(client) and not is_plain(fast)
        assert not HeldConnection.usable(client)
        if not isinstance(client, RedisCluster):
            assert HeldConnection.usable(fast)
            assert type(client.connection_pool) is BlockingConnectionPool
            assert not issubclass(client.connection_pool.connection_class, HiredisPacking)
            assert issubclass(fast.connection_pool.connection_class, HiredisPacking)
        # XREAD replies stay parsed by redis-py: each entry's fields a dict
        reader = raw_stream_reads(client)
        await client.xadd(keys.events, {"event": "created", "task": "a", "status": "pending"})
        [[_stream, [(_id, fields)]]] = await reader.xread({keys.events: "0-0"})
        assert fields == {"event": "created", "task": "a", "status": "pending"}
        # the scheduler's watcher reads such replies too: woken by a scheduled task's event
        woken: list[int] = []
        watcher = Watcher(reader, keys, lambda: woken.append(1), block_ms=50, page=100, busy_at=20)
        await watcher.tick()
        assert woken == []
        await client.xadd(keys.wakeups, {"event": "retrying"})
        await watcher.tick()
        assert woken == [1]
    finally:
        await client.aclose()
        await fast.aclose()


async def test_submit_take_finish_retry_and_cancel_with_the_plain_client(
    plain: Settings, plain_api: httpx.AsyncClient, queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    attempts: dict[str, int] = {}
    registry = Registry()

    async def flaky(payload: Any) -> Any:
        attempts[payload] = attempts.get(payload, 0) + 1
        if attempts[payload] == 1:
            raise RuntimeError("first attempt")
        return payload

    async def fail(payload: Any) -> None:
        raise RuntimeError(payload)

    registry.register("flaky", flaky)
    registry.register("fail", fail)
    registry.register("echo", lambda payload: payload)
    r = await plain_api.post("/api/tasks", json={"type": "echo", "payload": {"a": 1}})
    assert r.status_code == 201
    echo_id = r.json()["id"]
    r = await plain_api.post(
        "/api/tasks/batch",
        json={
            "tasks": [
                {"type": "flaky", "payload": "x", "max_retries": 2, "retry_backoff_s": 0.1},
                {"type": "fail", "payload": "boom", "max_retries": 0},
            ]
        },
    )
    assert r.status_code == 201, r.text
    flaky_id, fail_id = (t["id"] for t in r.json()["tasks"])
    async with running_scheduler(plain), running_worker(plain, registry):
        assert await wait_for_status(queue, echo_id, {"completed"}) == "completed"
        assert await wait_for_status(queue, flaky_id, {"completed"}) == "completed"
        assert await wait_for_status(queue, fail_id, {"failed"}) == "failed"
    echo = (await plain_api.get(f"/api/tasks/{echo_id}")).json()
    assert echo["result"] == {"a": 1} and echo["attempts"] == 1
    retried = await queue.get(flaky_id)
    assert (
        retried.result == "x"
        and retried.attempts == 2
        and [h.error for h in retried.history] == ["RuntimeError: first attempt"]
    )
    [(_, dead)] = await redis.xrange(keys.dead)
    assert dead["id"] == fail_id
    assert await redis.hget(keys.stats, "retried_total") == "1"
    # a pending task cancelled through the plain api client
    r = await plain_api.post("/api/tasks", json={"type": "echo", "payload": 2})
    pending_id = r.json()["id"]
    r = await plain_api.post(f"/api/tasks/{pending_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
