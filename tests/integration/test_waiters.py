"""The api's long-poll waiters (services/api/waiters.py) on a real Redis: the partition reader hands each
woken waiter its ended task read with the reader's next XREAD (standalone), or wakes it to read the task
itself (Cluster); a deleted task answers NotFound; a reader whose connection is killed reads on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from streamq.services.api.waiters import Waiters
from streamq.shared.broker import Broker
from streamq.shared.errors import NotFound
from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskCreate, TaskPublic
from streamq.shared.redis import make_client
from streamq.shared.redisfast import HeldConnection
from streamq.shared.settings import Settings
from tests.integration.receivers import wait_until


@pytest.fixture
async def waiters(settings: Settings) -> AsyncIterator[Waiters]:
    readers = make_client(settings, blocking_reads=True)
    found = Waiters(readers)
    yield found
    await found.stop()
    await readers.aclose()


def recording(waiters: Waiters) -> list[tuple[str, bool]]:
    """Each delivery the readers make: (task id, whether they read its hash)."""
    seen: list[tuple[str, bool]] = []
    deliver = waiters.deliver

    def record(task_id: str, raw: dict[str, str] | None) -> None:
        seen.append((task_id, raw is not None))
        deliver(task_id, raw)

    waiters.deliver = record  # type: ignore[method-assign]
    for feed in waiters.feeds.values():
        feed.deliver = record
    return seen


async def parked(waiters: Waiters, broker: Broker, task_id: str) -> asyncio.Task[TaskPublic]:
    """A waiter on ``task_id``, registered, its readers positioned and its first read done."""
    waiter = asyncio.create_task(waiters.task(broker, task_id, None, 30))
    await wait_until(lambda: task_id in waiters.waiting and bool(waiters.feeds), what="the waiter registered")
    await asyncio.sleep(0.3)  # its first read of the task (pending) is done
    assert not waiter.done()
    return waiter


async def test_an_ended_task_reaches_its_waiters_as_stored(redis: Redis, keys: KeySchema, waiters: Waiters) -> None:
    broker = Broker(redis, keys)
    [submitted] = await broker.submit([TaskCreate(type="noop", payload={"n": 1})])
    task_id = submitted.task.id
    first = await parked(waiters, broker, task_id)
    seen = recording(waiters)
    second = await parked(waiters, broker, task_id)  # two waiters on one task: one read for both
    await broker.cancel(task_id)
    answers = await asyncio.wait_for(asyncio.gather(first, second), 10)
    stored = await broker.get(task_id)
    assert stored.status == "cancelled"
    assert [a.model_dump() for a in answers] == [stored.model_dump()] * 2
    held = HeldConnection.usable(waiters.readers)  # standalone: read by the reader; Cluster: by each waiter
    assert seen == [(task_id, held)]
    assert task_id not in waiters.waiting


async def test_a_deleted_task_answers_not_found(redis: Redis, keys: KeySchema, waiters: Waiters) -> None:
    broker = Broker(redis, keys)
    [submitted] = await broker.submit([TaskCreate(type="noop")])
    task_id = submitted.task.id
    waiter = await parked(waiters, broker, task_id)
    # as remove.lua leaves it (it deletes only ended tasks, which a waiter never parks on): gone, and said so
    await redis.delete(keys.task(task_id))
    await redis.xadd(keys.events, {"event": "deleted", "task": task_id, "status": "pending"})
    with pytest.raises(NotFound):
        await asyncio.wait_for(waiter, 10)


@pytest.mark.standalone_only(reason="finds the reader's connection in one redis-server's CLIENT LIST")
async def test_a_reader_whose_connection_is_killed_reads_on(redis: Redis, keys: KeySchema, waiters: Waiters) -> None:
    broker = Broker(redis, keys)
    [submitted] = await broker.submit([TaskCreate(type="noop")])
    waiter = await parked(waiters, broker, submitted.task.id)
    blocked = [c for c in await redis.client_list() if c["cmd"] == "xread"]
    assert len(blocked) == 1
    await redis.client_kill_filter(_id=blocked[0]["id"])
    await asyncio.sleep(0.2)
    await broker.cancel(submitted.task.id)  # while the reader is reconnecting (it waits 1 s after an error)
    answer = await asyncio.wait_for(waiter, 10)
    assert answer.status == "cancelled"
