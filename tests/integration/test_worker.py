"""The worker in-process against a real Redis: runs, results, failures, retries, shutdown."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from streamq.services.worker import builtin  # noqa: F401
from streamq.services.worker.registry import REGISTRY, Registry
from streamq.shared.keys import WORKER_GROUP, KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Queue
from streamq.shared.settings import Settings
from tests.integration.helpers import running_worker, wait_for_status


async def test_runs_task_and_stores_result(settings: Settings, queue: Queue, redis: Redis, keys: KeySchema) -> None:
    [done] = await queue.submit([TaskCreate(type="echo", payload={"a": [1, 2]})])
    async with running_worker(settings):
        await wait_for_status(queue, done.task.id, {"completed"})
    task = await queue.get(done.task.id)
    assert task.result == {"a": [1, 2]} and task.attempts == 1 and task.worker
    assert task.started_at and task.completed_at and task.completed_at >= task.started_at
    # raw state: entry acknowledged and deleted, indexes moved, retention set, counters
    assert await redis.xlen(keys.stream(3)) == 0
    assert (await redis.xpending(keys.stream(3), WORKER_GROUP))["pending"] == 0
    assert await redis.zrange(keys.index_status("completed"), 0, -1) == [done.task.id]
    assert await redis.zcard(keys.index_status("processing")) == 0
    assert await redis.zscore(keys.retention, done.task.id) is not None
    assert await redis.hget(keys.stats, "completed_total") == "1"
    events = [f["event"] for _, f in await redis.xrange(keys.events)]
    assert events == ["created", "started", "completed"]


async def test_failure_with_no_retries_is_dead_lettered(
    settings: Settings, queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    [done] = await queue.submit([TaskCreate(type="fail", payload="boom", max_retries=0)])
    async with running_worker(settings):
        await wait_for_status(queue, done.task.id, {"failed"})
    task = await queue.get(done.task.id)
    assert task.error == "RuntimeError: boom" and task.attempts == 1
    assert [h.error for h in task.history] == ["RuntimeError: boom"]
    [(_, fields)] = await redis.xrange(keys.dead)
    assert fields["id"] == done.task.id


async def test_failure_is_scheduled_for_retry(settings: Settings, queue: Queue, redis: Redis, keys: KeySchema) -> None:
    [done] = await queue.submit([TaskCreate(type="fail", payload="again", max_retries=2, retry_backoff_s=60)])
    async with running_worker(settings):
        await wait_for_status(queue, done.task.id, {"scheduled"})
    task = await queue.get(done.task.id)
    assert task.attempts == 1 and task.error == "RuntimeError: again" and task.scheduled_for
    due = await redis.zscore(keys.scheduled, done.task.id)
    assert due is not None
    assert 0 <= due - task.history[0].at.timestamp() * 1000 <= 60_000 + 50
    assert await redis.hget(keys.stats, "retried_total") == "1"


async def test_strict_priority_with_one_slot(settings: Settings, queue: Queue) -> None:
    order: list[int] = []
    registry = Registry()

    async def record(payload: Any) -> None:
        order.append(payload)

    registry.register("record", record)
    low = [TaskCreate(type="record", payload=1, priority=1) for _ in range(30)]
    high = [TaskCreate(type="record", payload=5, priority=5) for _ in range(5)]
    await queue.submit(low)
    await queue.submit(high)
    one = settings.model_copy(update={"worker_concurrency": 1})
    async with running_worker(one, registry):
        while len(order) < 35:
            await asyncio.sleep(0.02)
    assert order[:5] == [5] * 5


async def test_cancelled_before_start_never_runs(settings: Settings, queue: Queue) -> None:
    ran: list[Any] = []
    registry = Registry()
    registry.register("mark", lambda payload: ran.append(payload))
    [done] = await queue.submit([TaskCreate(type="mark", payload="x")])
    await queue.cancel(done.task.id)
    async with running_worker(settings, registry):
        await asyncio.sleep(0.3)
    assert ran == [] and (await queue.get(done.task.id)).status == "cancelled"


async def test_shutdown_finishes_in_flight(settings: Settings, queue: Queue) -> None:
    done = await queue.submit([TaskCreate(type="sleep", payload=0.3) for _ in range(3)])
    async with running_worker(settings) as worker:
        while len(worker.consumer.running) < 3:
            await asyncio.sleep(0.01)
    for d in done:
        assert (await queue.get(d.task.id)).status == "completed"


async def test_registers_and_advertises(settings: Settings, queue: Queue) -> None:
    async with running_worker(settings) as worker:
        workers = await queue.workers()
        assert [w.id for w in workers] == [worker.worker_id]
        assert set(REGISTRY.names()) <= await queue.advertised_types()
    assert await queue.workers() == []


async def test_an_idle_workers_read_starts_the_task_in_its_own_round_trip(
    settings: Settings, queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    async with running_worker(settings) as worker:
        while not worker.consumer.idle.is_set():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the watcher blocks in XREADGROUP, take.lua queued behind it
        [first] = await queue.submit([TaskCreate(type="echo", payload=1)])
        await wait_for_status(queue, first.task.id, {"completed"})
        assert worker.watchers.started == 1  # started by the script behind the read, not a later fetch
        # the server loses its scripts (a restart): the read's script fails with NOSCRIPT, is loaded and
        # called again, and starts what the read delivered
        while not worker.consumer.idle.is_set():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        await redis.script_flush()
        [second] = await queue.submit([TaskCreate(type="echo", payload=2)])
        await wait_for_status(queue, second.task.id, {"completed"})
        assert worker.watchers.started == 2
    # the staging consumer keeps nothing, and the worker's own consumer ran both
    staged = await redis.xpending_range(
        keys.stream(3), WORKER_GROUP, "-", "+", 10, consumername=f"{worker.worker_id}~staged"
    )
    assert staged == [] and (await queue.get(second.task.id)).worker == worker.worker_id


@pytest.mark.standalone_only(reason="a watcher holds its own connection on standalone and Sentinel clients only")
async def test_a_watcher_whose_connection_was_dropped_reads_again_at_once(
    settings: Settings, queue: Queue, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_worker(settings) as worker:
        while not worker.consumer.idle.is_set():
            await asyncio.sleep(0.01)
        # until the watcher blocks in XREADGROUP on its held connection (a loaded machine takes a while)
        deadline = time.monotonic() + 10
        while True:
            blocked = [c for c in await redis.client_list() if c["cmd"] == "xreadgroup" and "b" in c["flags"]]
            if (blocked and worker.watchers.held) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        [held] = worker.watchers.held.values()
        assert held.conn is not None
        assert len(blocked) == 1
        await redis.client_kill_filter(_id=blocked[0]["id"])  # as a restart or a failover drops it
        await asyncio.sleep(0.05)
        [task] = await queue.submit([TaskCreate(type="echo", payload=3)])
        await wait_for_status(queue, task.task.id, {"completed"})
        assert worker.watchers.started == 1  # started by the watcher's read on its new connection
    assert "redis unavailable" not in caplog.text  # read again at once, not after the error path's back-off


async def test_consumer_groups_lost_by_the_server_are_created_again(
    settings: Settings, queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    """A failover inside the replication window (or a server restarted empty) can lose the groups while
    the tasks come back: the worker gets NOGROUP, creates them again from id 0, and runs what waits."""
    async with running_worker(settings):
        [first] = await queue.submit([TaskCreate(type="echo", payload=1)])
        await wait_for_status(queue, first.task.id, {"completed"})
        for stream in keys.streams():
            await redis.xgroup_destroy(stream, WORKER_GROUP)  # a blocked read gets NOGROUP at once
        [second] = await queue.submit([TaskCreate(type="echo", payload=2)])
        await wait_for_status(queue, second.task.id, {"completed"})
    for stream in keys.streams():
        assert [g["name"] for g in await redis.xinfo_groups(stream)] == [WORKER_GROUP]
