"""The worker over named queues and partitions (in-process worker, real Redis): weights, strict order,
pause and resume (with the blocked-read race), partitions read fairly with priorities holding."""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from typing import Any

import pytest
from redis.asyncio import Redis

from streamq.services.worker.registry import Registry, TaskContext
from streamq.shared.broker import Broker
from streamq.shared.keys import WORKER_GROUP, KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queues import partition_of
from streamq.shared.settings import Settings
from tests.integration.helpers import running_worker

pytestmark = pytest.mark.timeout(90)


def recorder(started: list[tuple[str, str]], release: asyncio.Event | None = None) -> Registry:
    """A registry whose ``rec`` handler records (queue, task id) of every run as it starts."""
    registry = Registry()

    async def rec(_payload: Any, ctx: TaskContext) -> None:
        started.append((ctx.queue, ctx.task_id))
        if release is not None:
            await release.wait()

    registry.register("rec", rec)
    return registry


async def until(check: Any, timeout: float = 30.0) -> None:
    """Poll an async or sync condition until it holds (a deadline only against hanging forever)."""
    async with asyncio.timeout(timeout):
        while True:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return
            await asyncio.sleep(0.01)


async def test_weights_share_starts_when_every_queue_is_backlogged(
    settings: Settings, redis: Redis, keys: KeySchema
) -> None:
    broker = Broker(redis, keys)
    for name in ("critical", "default", "bulk"):
        await broker.submit([TaskCreate(type="rec", queue=name) for _ in range(300)])
    started: list[tuple[str, str]] = []
    s = settings.model_copy(update={"queues": "critical:6,default:3,bulk:1", "worker_concurrency": 1})
    async with running_worker(s, recorder(started)):
        await until(lambda: len(started) >= 300)
    shares = Counter(q for q, _ in started[:300])
    # expected 180 : 90 : 30; the order is random per round, so assert loosely (about 4 standard deviations)
    assert 145 <= shares["critical"] <= 215, shares
    assert 60 <= shares["default"] <= 120, shares
    assert 12 <= shares["bulk"] <= 50, shares


async def test_strict_order_drains_the_first_queue_first(settings: Settings, redis: Redis, keys: KeySchema) -> None:
    broker = Broker(redis, keys)
    await broker.submit([TaskCreate(type="rec", queue="later") for _ in range(20)])
    await broker.submit([TaskCreate(type="rec", queue="first") for _ in range(20)])
    started: list[tuple[str, str]] = []
    s = settings.model_copy(update={"queues": "first:1,later:9", "queues_strict": True, "worker_concurrency": 2})
    async with running_worker(s, recorder(started)):
        await until(lambda: len(started) >= 40)
    assert [q for q, _ in started] == ["first"] * 20 + ["later"] * 20


async def test_paused_queue_accepts_and_starts_nothing_until_resumed(
    settings: Settings, redis: Redis, keys: KeySchema
) -> None:
    broker = Broker(redis, keys)
    await broker.registry.configure("held", 2)
    await broker.registry.set_paused("held", True)
    held = await broker.submit([TaskCreate(type="rec", queue="held") for _ in range(20)])
    free = await broker.submit([TaskCreate(type="rec", queue="free") for _ in range(40)])
    started: list[tuple[str, str]] = []
    s = settings.model_copy(update={"queues": "held:9,free:1", "worker_concurrency": 3})
    async with running_worker(s, recorder(started)) as worker:
        # the window: every task of the other queue runs to completion meanwhile
        await until(lambda: len(started) >= 40)
        await until(lambda: not worker.consumer.running)
        assert {q for q, _ in started} == {"free"}
        assert (await broker.stats("free")).completed == 40
        stats = await broker.stats("held")
        assert stats.pending == 20 and stats.processing == 0 and stats.completed == 0
        for part in keys.for_queue("held").partitions(2):
            assert (await redis.xpending(part.stream(3), WORKER_GROUP))["pending"] == 0
        await broker.registry.set_paused("held", False)
        await until(lambda: len(started) >= 60)
        await until(lambda: not worker.consumer.running)
    assert Counter(q for q, _ in started) == {"free": 40, "held": 20}
    for d in [*held, *free]:
        assert (await broker.get(d.task.id)).status == "completed"


@pytest.mark.standalone_only(reason="finds the blocked read with CLIENT LIST, which a cluster client asks one node")
async def test_pause_closes_the_race_with_a_blocked_read(settings: Settings, redis: Redis, keys: KeySchema) -> None:
    broker = Broker(redis, keys)
    started: list[tuple[str, str]] = []
    s = settings.model_copy(update={"queues": "racy", "worker_concurrency": 2})
    async with running_worker(s, recorder(started)) as worker:
        await until(lambda: worker.consumer.idle.is_set())
        await until(lambda: _blocked_reads(redis), timeout=10)  # the watcher waits in XREADGROUP on "racy"
        await broker.registry.set_paused("racy", True)  # what POST /api/queues/racy/pause does
        [done] = await broker.submit([TaskCreate(type="rec", queue="racy")])
        # the blocked read receives the entry; start.lua sees the flag and puts it back
        await until(lambda: worker.watchers.received >= 1)
        await until(lambda: not worker.consumer.ready and not worker.consumer.in_flight)
        task = await broker.get(done.task.id)
        assert task.status == "pending" and task.attempts == 0 and task.started_at is None and started == []
        racy = keys.for_queue("racy")
        [(entry, fields)] = await redis.xrange(racy.stream(3))
        assert fields == {"id": done.task.id} and await redis.hget(racy.task(done.task.id), "msg_id") == entry
        assert (await redis.xpending(racy.stream(3), WORKER_GROUP))["pending"] == 0
        await broker.registry.set_paused("racy", False)
        await until(lambda: len(started) == 1)
    assert started == [("racy", done.task.id)]


async def _blocked_reads(redis: Redis) -> int:
    clients: list[dict[str, Any]] = await redis.client_list()
    return sum(1 for c in clients if c.get("cmd") == "xreadgroup" and "b" in str(c.get("flags", "")))


async def test_partitions_are_read_fairly_and_keep_priority(settings: Settings, redis: Redis, keys: KeySchema) -> None:
    broker = Broker(redis, keys)
    await broker.registry.configure("wide", 4)
    await broker.registry.set_paused("wide", True)  # everything queued before the worker may start
    done = await broker.submit([TaskCreate(type="rec", queue="wide", priority=1 + i % 5) for i in range(60)])
    await broker.registry.set_paused("wide", False)
    started: list[tuple[str, str]] = []
    s = settings.model_copy(update={"queues": "wide", "worker_concurrency": 1})
    async with running_worker(s, recorder(started)) as worker:
        await until(lambda: len(started) >= 60)
        await until(lambda: not worker.consumer.running)
    order = [task_id for _, task_id in started]
    assert sorted(order) == sorted(d.task.id for d in done)  # each once
    priority = {d.task.id: d.task.priority for d in done}
    parts = keys.for_queue("wide").partitions(4)
    for k in range(4):
        mine = [priority[t] for t in order if partition_of(t, 4) == k]
        assert mine and mine == sorted(mine, reverse=True), (k, mine)  # highest first in each partition
        for p in range(1, 6):
            assert await redis.xlen(parts[k].stream(p)) == 0
            assert (await redis.xpending(parts[k].stream(p), WORKER_GROUP))["pending"] == 0
    # fair: in the first 20 starts every partition had its turn
    assert {partition_of(t, 4) for t in order[:20]} == {0, 1, 2, 3}
    # one more task, submitted while the worker idles: a watcher's blocking read wakes it
    async with running_worker(s, recorder(started)) as worker:
        await until(lambda: worker.consumer.idle.is_set())
        await broker.submit([TaskCreate(type="rec", queue="wide", payload=i) for i in range(3)])
        await until(lambda: len(started) >= 63)
    assert (await broker.stats("wide")).completed == 63


async def test_worker_registration_lists_its_queues(settings: Settings, redis: Redis, keys: KeySchema) -> None:
    broker = Broker(redis, keys)
    s = settings.model_copy(update={"queues": "critical:6,default:3,bulk:1"})
    async with running_worker(s, Registry()) as worker:
        [info] = await broker.workers()
        assert info.id == worker.worker_id and info.queues == ["critical", "default", "bulk"]
        assert info.queue == "critical"
        assert sorted(await broker.registry.all()) == ["bulk", "critical", "default"]  # created on first use


async def test_equal_entry_ids_in_two_partitions_are_two_tasks(
    settings: Settings, redis: Redis, keys: KeySchema
) -> None:
    """Entry ids are numbered per stream, so two partitions' streams often hold the same id: each
    delivery is told apart by its partition (a worker keyed by entry id alone ran one task twice and
    left the other processing)."""
    broker = Broker(redis, keys)
    await broker.registry.configure("twin", 2)
    parts = keys.for_queue("twin").partitions(2)
    ids = ["A" * 26, "B" * 26]
    for part, task_id in zip(parts, ids, strict=True):
        await redis.hset(
            part.task(task_id),
            mapping={"id": task_id, "queue": "twin", "type": "rec", "payload": "null", "priority": 3,
                     "max_retries": 0, "status": "pending", "created_at": 1, "attempts": 0, "msg_id": "7-1"},
        )  # fmt: skip
        await redis.zadd(part.index_status("pending"), {task_id: 0})
        await redis.xadd(part.stream(3), {"id": task_id}, id="7-1")  # the same entry id in both partitions
    started: list[tuple[str, str]] = []
    s = settings.model_copy(update={"queues": "twin", "worker_concurrency": 2})
    async with running_worker(s, recorder(started)) as worker:
        await until(lambda: len(started) >= 2)
        await until(lambda: not worker.consumer.running)
    assert sorted(t for _, t in started) == ids
    for part, task_id in zip(parts, ids, strict=True):
        assert await redis.hget(part.task(task_id), "status") == "completed"
        assert (await redis.xpending(part.stream(3), WORKER_GROUP))["pending"] == 0
