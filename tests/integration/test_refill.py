"""Refilling freed slots in the finisher's round trip (finish.lua + take.lua in one pipeline), and an
idle worker's burst (a watcher's read, then a follow-up take before the first jobs run): never more
running than the concurrency, every task run once, nothing read once stopping."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis.asyncio import Redis

from streamq.services.worker.consumer import FOLLOW_UP_CHUNK
from streamq.services.worker.registry import Registry
from streamq.shared.keys import WORKER_GROUP, KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Queue
from streamq.shared.settings import Settings
from tests.integration.helpers import running_worker

pytestmark = pytest.mark.timeout(60)


@dataclass
class Tracked:
    running: int = 0
    most: int = 0  # the most ever running at once
    seen: list[int] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)  # held tasks run until it is set


def tracking(run_s: float | None) -> tuple[Registry, Tracked]:
    """A registry whose ``track`` task records how many run at once and which payloads ran; it runs
    ``run_s`` seconds, or (None) until the test sets ``tracked.gate``."""
    tracked = Tracked()
    registry = Registry()

    async def track(payload: Any) -> None:
        tracked.running += 1
        tracked.most = max(tracked.most, tracked.running)
        if run_s is None:
            await tracked.gate.wait()
        else:
            await asyncio.sleep(run_s)
        tracked.seen.append(payload)
        tracked.running -= 1

    registry.register("track", track)
    return registry, tracked


async def test_refill_keeps_concurrency_and_runs_each_task_once(
    settings: Settings, queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    registry, tracked = tracking(0.005)
    seen = tracked.seen
    n = 60
    done = await queue.submit([TaskCreate(type="track", payload=i) for i in range(n)])
    two = settings.model_copy(update={"worker_concurrency": 2})
    async with running_worker(two, registry) as worker:
        while len(seen) < n:
            await asyncio.sleep(0.02)
        refilled = worker.consumer.refilled
    assert sorted(seen) == list(range(n))  # each once
    assert tracked.most <= 2
    assert refilled > 0  # the path under test was taken
    tasks = await queue.get_many([d.task.id for d in done])
    assert {t.status for t in tasks} == {"completed"} and {t.attempts for t in tasks} == {1}
    for priority in range(1, 6):
        assert await redis.xlen(keys.stream(priority)) == 0
        assert (await redis.xpending(keys.stream(priority), WORKER_GROUP))["pending"] == 0


async def test_a_burst_on_an_idle_worker_keeps_concurrency_and_runs_each_task_once(
    settings: Settings, queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    registry, tracked = tracking(0.002)
    seen = tracked.seen
    n, concurrency = 300, 40
    wide = settings.model_copy(update={"worker_concurrency": concurrency})
    async with running_worker(wide, registry) as worker:
        while not worker.consumer.idle.is_set():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the watcher blocks in its read
        done = await queue.submit([TaskCreate(type="track", payload=i) for i in range(n)])  # one call: a burst
        while len(seen) < n:
            await asyncio.sleep(0.02)
        assert worker.watchers.started >= 1  # the watcher's read started the first ones
        assert worker.consumer.refilled > 0  # and a follow-up or refill took more in one call each
    assert sorted(seen) == list(range(n)) and tracked.most <= concurrency
    tasks = await queue.get_many([d.task.id for d in done])
    assert {t.status for t in tasks} == {"completed"} and {t.attempts for t in tasks} == {1}
    assert worker.consumer.reserved == 0 and not worker.consumer.ready
    for priority in range(1, 6):
        assert (await redis.xpending(keys.stream(priority), WORKER_GROUP))["pending"] == 0


async def test_a_burst_is_followed_up_chunk_by_chunk_until_the_slots_are_full(
    settings: Settings, queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    registry, tracked = tracking(None)  # no slot frees during the burst (a timed run could end first on a loaded host)
    concurrency = 3 * FOLLOW_UP_CHUNK + 20
    wide = settings.model_copy(update={"worker_concurrency": concurrency})
    async with running_worker(wide, registry) as worker:
        try:
            consumer = worker.consumer
            asked: list[int] = []
            got: list[int] = []
            call_take = consumer._call_take

            async def counted(keys_: list[str], args: list[Any]) -> Any:
                asked.append(int(args[4]))
                reply = await call_take(keys_, args)
                got.append(len(reply))
                return reply

            consumer._call_take = counted  # type: ignore[method-assign]  # records each take's COUNT and yield
            while not consumer.idle.is_set():
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # the watcher blocks in its read
            await queue.submit([TaskCreate(type="track", payload=i) for i in range(concurrency + 50)])
            while tracked.running < concurrency:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            assert tracked.running == concurrency and consumer.reserved == 0
            at_wake = worker.watchers.started
            # the watcher started the first ones with its read; the rest came in follow-ups of at most
            # one chunk each, until the slots were full (the run loop did not take them all at once)
            # (a take of the run loop's that found nothing before the burst, on a loaded host, counts no task)
            assert at_wake >= 1 and asked and max(asked) <= FOLLOW_UP_CHUNK
            assert sum(got) == concurrency - at_wake and len([n for n in got if n]) >= 3
            # the tasks beyond the slots were not read: in the streams and not delivered to the group
            streams = [keys.stream(p) for p in range(1, 6)]
            entries = sum([await redis.xlen(s) for s in streams])
            delivered = sum([(await redis.xpending(s, WORKER_GROUP))["pending"] for s in streams])
            assert entries - delivered == 50 and delivered == concurrency
        finally:
            tracked.gate.set()  # the held tasks end, whatever failed above


async def test_nothing_is_read_once_stopping(settings: Settings, queue: Queue, redis: Redis, keys: KeySchema) -> None:
    done = await queue.submit([TaskCreate(type="sleep", payload=0.3) for _ in range(6)])
    two = settings.model_copy(update={"worker_concurrency": 2})
    async with running_worker(two) as worker:
        while len(worker.consumer.running) < 2:
            await asyncio.sleep(0.01)
    # the two in flight finished during the shutdown; their freed slots were not refilled
    statuses = [t.status for t in await queue.get_many([d.task.id for d in done])]
    assert sorted(statuses) == ["completed"] * 2 + ["pending"] * 4
    assert (await redis.xpending(keys.stream(3), WORKER_GROUP))["pending"] == 0
    assert await redis.xlen(keys.stream(3)) == 4
    assert worker.consumer.reserved == 0
