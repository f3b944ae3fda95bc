"""Retries, leases, reclaim, poison, dead consumers and trimming, in-process against a real Redis."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import defaultdict
from typing import Any

import httpx
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from streamq.services.worker import builtin  # noqa: F401
from streamq.services.worker.registry import Registry, TaskContext
from streamq.services.worker.sweeper import Sweeper
from streamq.shared.keys import WORKER_GROUP, KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Queue
from streamq.shared.scripts import Scripts
from streamq.shared.settings import Settings
from streamq.shared.streams import claim_stale, ensure_group, trim_below_pending
from tests.integration.helpers import running_worker, wait_for_status
from tests.integration.scheduling import entry_ms, running_scheduler


async def _all_done(queue: Queue, ids: list[str], statuses: set[str], timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        for task_id in ids:
            await wait_for_status(queue, task_id, statuses, timeout=timeout)


class RetryRecorder:
    """Registers a handler that fails until ``succeed_at`` and records, for every retry it runs, the
    task's due time (``scheduled_for``, set by finish.lua) and when the retry started."""

    def __init__(self, redis: Redis, keys: KeySchema, succeed_at: int) -> None:
        self.redis, self.keys, self.succeed_at = redis, keys, succeed_at
        self.due: dict[tuple[str, int], int] = {}
        self.started: dict[tuple[str, int], float] = {}
        self.registry = Registry()
        self.registry.register("flaky", self.run)

    async def run(self, payload: Any, ctx: TaskContext) -> int:
        if ctx.attempt >= 2:
            self.started[(ctx.task_id, ctx.attempt)] = time.time() * 1000
            self.due[(ctx.task_id, ctx.attempt)] = int(
                await self.redis.hget(self.keys.task(ctx.task_id), "scheduled_for")
            )
        if ctx.attempt < self.succeed_at:
            raise RuntimeError(f"attempt {ctx.attempt} fails")
        return ctx.attempt

    async def delays(self) -> dict[str, list[int]]:
        """Per task, each retry's back-off in ms: its due time minus the server time the failure was
        recorded (the id of its ``retrying`` event, written by the same script call)."""
        failed_at: dict[str, list[int]] = defaultdict(list)
        for entry_id, fields in await self.redis.xrange(self.keys.events):
            if fields["event"] == "retrying":
                failed_at[fields["task"]].append(entry_ms(entry_id))
        return {task: [self.due[(task, n + 2)] - at for n, at in enumerate(ats)] for task, ats in failed_at.items()}

    def never_early(self) -> bool:
        return all(self.started[k] >= self.due[k] - CLOCK_MS for k in self.due)


CLOCK_MS = 5  # millisecond rounding between the script's TIME and its XADD id


async def test_fails_twice_then_succeeds_with_growing_backoff(
    settings: Settings, queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    recorder = RetryRecorder(redis, keys, succeed_at=3)
    base_ms = 200
    submitted = await queue.submit(
        [TaskCreate(type="flaky", retry_backoff_s=base_ms / 1000, max_retries=5) for _ in range(40)]
    )
    ids = [s.task.id for s in submitted]
    async with running_scheduler(settings), running_worker(settings, recorder.registry):
        await _all_done(queue, ids, {"completed"})
    for t in await queue.get_many(ids):
        assert t.status == "completed" and t.attempts == 3 and t.result == 3
        assert [(h.attempt, h.error) for h in t.history] == [
            (1, "RuntimeError: attempt 1 fails"),
            (2, "RuntimeError: attempt 2 fails"),
        ]
        assert t.history[0].at < t.history[1].at < t.completed_at  # type: ignore[operator]
    delays = await recorder.delays()
    assert sorted(delays) == sorted(ids)
    first = [d[0] for d in delays.values()]
    second = [d[1] for d in delays.values()]
    assert all(-CLOCK_MS <= d <= base_ms + CLOCK_MS for d in first), first  # full jitter in [0, base]
    assert all(-CLOCK_MS <= d <= 2 * base_ms + CLOCK_MS for d in second), second  # in [0, 2 * base]
    assert recorder.never_early()  # no retry ran before its due time
    mean1, mean2 = statistics.mean(first), statistics.mean(second)
    print(
        f"\nmean back-off: retry 1 {mean1:.0f} ms (ceiling {base_ms}), retry 2 {mean2:.0f} ms (ceiling {2 * base_ms})"
    )
    assert mean2 > mean1  # the ceiling doubles; over 40 tasks the mean grows (fails with P < 1e-6)


async def test_retry_cap_and_no_retries(settings: Settings, queue: Queue, redis: Redis, keys: KeySchema) -> None:
    recorder = RetryRecorder(redis, keys, succeed_at=99)
    capped = settings.model_copy(update={"retry_max_s": 0.05})
    [zero] = await queue.submit([TaskCreate(type="flaky", max_retries=0)])
    [many] = await queue.submit([TaskCreate(type="flaky", max_retries=4, retry_backoff_s=30)])
    async with running_scheduler(capped), running_worker(capped, recorder.registry):
        await _all_done(queue, [zero.task.id, many.task.id], {"failed"}, timeout=10)
    z, m = await queue.get_many([zero.task.id, many.task.id])
    assert z.attempts == 1 and len(z.history) == 1  # max_retries=0 fails at once
    assert m.attempts == 5 and len(m.history) == 5
    delays = (await recorder.delays())[many.task.id]
    assert len(delays) == 4 and all(-CLOCK_MS <= d <= 50 + CLOCK_MS for d in delays), delays  # 30 s base, 50 ms cap
    assert recorder.never_early()


async def test_retry_failed_endpoint_revives_in_batches(
    settings: Settings, api: httpx.AsyncClient, queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    submitted = await queue.submit([TaskCreate(type="fail", max_retries=0) for _ in range(25)])
    ids = [s.task.id for s in submitted]
    async with running_worker(settings):
        await _all_done(queue, ids, {"failed"})
    assert await redis.xlen(keys.dead) == 25
    reply = await api.post("/api/tasks/retry-failed", params={"batch": 10})
    assert reply.status_code == 200 and reply.json() == {"revived": 25}
    assert await redis.xlen(keys.dead) == 0  # dead letters removed on revival
    for t in await queue.get_many(ids):
        assert t.status == "pending" and t.attempts == 0 and len(t.history) == 1
    assert (await api.post("/api/tasks/retry-failed", params={"batch": 0})).status_code == 422
    assert (await api.post("/api/tasks/retry-failed")).json() == {"revived": 0}


async def _deliver(redis: Redis, keys: KeySchema, consumer: str, priority: int = 3) -> list[tuple[str, str]]:
    reply = await redis.xreadgroup(WORKER_GROUP, consumer, {keys.stream(priority): ">"}, count=1000)
    return [(msg, fields["id"]) for _, entries in reply for msg, fields in entries]


async def _start_as(scripts: Scripts, keys: KeySchema, consumer: str, entries: list[tuple[str, str]]) -> None:
    args: list[object] = [100_000, WORKER_GROUP, consumer]
    for msg, task_id in entries:
        args += [msg, task_id, 3]
    await scripts.call("start", [*keys.common(), *(keys.task(t) for _, t in entries)], args)


async def test_renew_never_takes_back_a_reclaimed_entry(queue: Queue, redis: Redis, keys: KeySchema) -> None:
    await ensure_group(redis, keys.streams(), WORKER_GROUP)
    await queue.submit([TaskCreate(type="noop")])
    [(msg, _)] = await _deliver(redis, keys, "slow")
    renew = [100_000, WORKER_GROUP, "slow", 3, msg]
    assert await queue.scripts.call("renew", keys.common(), renew) == [1]
    await redis.xclaim(keys.stream(3), WORKER_GROUP, "fast", 0, [msg], justid=True)
    assert await queue.scripts.call("renew", keys.common(), renew) == [0]  # lease lost
    [row] = await redis.xpending_range(keys.stream(3), WORKER_GROUP, min="-", max="+", count=10)
    assert row["consumer"] == "fast" and row["times_delivered"] == 1  # JUSTID counts no delivery
    await redis.xack(keys.stream(3), WORKER_GROUP, msg)
    assert await queue.scripts.call("renew", keys.common(), renew) == [-1]  # finished: nothing to renew


async def test_claim_follows_the_cursor_past_the_first_page(redis: Redis, keys: KeySchema) -> None:
    stream = keys.stream(3)
    await ensure_group(redis, [stream], WORKER_GROUP)
    pipe = redis.pipeline(transaction=False)
    for i in range(1205):
        pipe.xadd(stream, {"id": f"t{i}"})
    await pipe.execute()
    entries = await _deliver(redis, keys, "ghost")
    await asyncio.sleep(0.15)
    fresh = [msg for msg, _ in entries[:1200]]
    await redis.xclaim(stream, WORKER_GROUP, "alive", 0, fresh, justid=True)  # the first 1,200 are not stale
    claimed = await claim_stale(redis, stream, WORKER_GROUP, "me", min_idle_ms=100, limit=50, page=100)
    # one XAUTOCLAIM COUNT 100 scans at most 1,000 entries: the stale five are only found on a later page
    assert [msg for msg, _ in claimed.entries] == [msg for msg, _ in entries[1200:]]
    assert claimed.deleted == []


async def test_deleted_pending_entry_is_requeued_not_lost(
    settings: Settings, queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    await ensure_group(redis, keys.streams(), WORKER_GROUP)
    [done] = await queue.submit([TaskCreate(type="echo", payload="kept")])
    entries = await _deliver(redis, keys, "crashed")
    await _start_as(queue.scripts, keys, "crashed", entries)
    await redis.xdel(keys.stream(3), entries[0][0])  # e.g. trimmed away by a careless MAXLEN
    fast = settings.model_copy(update={"lease_s": 0.3})
    await asyncio.sleep(0.35)
    async with running_worker(fast):
        await wait_for_status(queue, done.task.id, {"completed"}, timeout=5)
    task = await queue.get(done.task.id)
    assert task.result == "kept" and task.attempts == 1  # the lost entry did not cost an attempt
    assert "requeued" in [f["event"] for _, f in await redis.xrange(keys.events)]


async def test_stalled_task_is_reclaimed_without_using_a_retry(
    settings: Settings, queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    await ensure_group(redis, keys.streams(), WORKER_GROUP)
    [done] = await queue.submit([TaskCreate(type="echo", payload="again", max_retries=0)])
    entries = await _deliver(redis, keys, "crashed")
    await _start_as(queue.scripts, keys, "crashed", entries)  # started, then its worker died
    reclaimed_before = REGISTRY.get_sample_value("streamq_tasks_reclaimed_total", {"queue": "default"}) or 0
    fast = settings.model_copy(update={"lease_s": 0.2})
    await asyncio.sleep(0.25)
    async with running_worker(fast) as worker:
        await wait_for_status(queue, done.task.id, {"completed"}, timeout=5)
    task = await queue.get(done.task.id)
    assert task.result == "again" and task.attempts == 1 and task.worker == worker.worker_id
    assert REGISTRY.get_sample_value("streamq_tasks_reclaimed_total", {"queue": "default"}) == reclaimed_before + 1
    assert (await redis.xpending(keys.stream(3), WORKER_GROUP))["pending"] == 0


async def test_poison_is_dead_lettered_after_max_deliveries(
    settings: Settings, queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    await ensure_group(redis, keys.streams(), WORKER_GROUP)
    [poison] = await queue.submit([TaskCreate(type="noop", max_retries=10)])
    [(msg, _)] = await _deliver(redis, keys, "w0")
    await _start_as(queue.scripts, keys, "w0", [(msg, poison.task.id)])
    for n in range(1, 5):  # four more deliveries, each to a worker that "died"
        await redis.xclaim(keys.stream(3), WORKER_GROUP, f"w{n}", 0, [msg])
    dead_before = REGISTRY.get_sample_value("streamq_tasks_dead_lettered_total", {"queue": "default"}) or 0
    fast = settings.model_copy(update={"lease_s": 0.2, "max_deliveries": 5})
    await asyncio.sleep(0.25)
    async with running_worker(fast):
        await wait_for_status(queue, poison.task.id, {"failed"}, timeout=5)
    task = await queue.get(poison.task.id)
    assert task.error and task.error.startswith("Poison: delivered 6 times") and task.attempts == 1
    [(_, letter)] = await redis.xrange(keys.dead)
    assert letter["id"] == poison.task.id and letter["deliveries"] == "5"
    assert (await redis.xpending(keys.stream(3), WORKER_GROUP))["pending"] == 0
    assert await redis.xlen(keys.stream(3)) == 0
    assert await redis.hget(keys.stats, "poisoned_total") == "1"
    assert REGISTRY.get_sample_value("streamq_tasks_dead_lettered_total", {"queue": "default"}) == dead_before + 1


async def test_dead_consumer_removed_only_without_pending(queue: Queue, redis: Redis, keys: KeySchema) -> None:
    await ensure_group(redis, keys.streams(), WORKER_GROUP)
    await queue.submit([TaskCreate(type="noop") for _ in range(3)])
    await redis.xreadgroup(WORKER_GROUP, "dead-with-work", {keys.stream(3): ">"}, count=1)
    for name in ("dead-idle", "alive-idle"):
        [(_, [(msg, _)])] = await redis.xreadgroup(WORKER_GROUP, name, {keys.stream(3): ">"}, count=1)
        await redis.xack(keys.stream(3), WORKER_GROUP, msg)
    await redis.hset(keys.worker("alive-idle"), "id", "alive-idle")
    await asyncio.sleep(0.15)
    sweeper = Sweeper(redis, queue.scripts, keys, me="me", lease_s=0.1, events_maxlen=1000)
    await sweeper.tick()
    names = {c["name"] for c in await redis.xinfo_consumers(keys.stream(3), WORKER_GROUP)}
    assert (await redis.xpending(keys.stream(3), WORKER_GROUP))["pending"] == 1  # untouched
    assert names == {"dead-with-work", "alive-idle"} and sweeper.removed == 1


async def test_trim_keeps_pending_and_unread_entries(redis: Redis, keys: KeySchema) -> None:
    stream = keys.stream(2)
    await ensure_group(redis, [stream], WORKER_GROUP)
    ids = [await redis.xadd(stream, {"id": f"t{i}"}) for i in range(10)]
    reply = await redis.xreadgroup(WORKER_GROUP, "c", {stream: ">"}, count=6)
    delivered = [msg for msg, _ in reply[0][1]]
    await redis.xack(stream, WORKER_GROUP, *delivered[:3], *delivered[4:])  # ids[3] stays pending
    removed = await trim_below_pending(redis, stream)
    assert removed == 3
    assert [msg for msg, _ in await redis.xrange(stream)] == ids[3:]
    await redis.xack(stream, WORKER_GROUP, ids[3])
    assert await trim_below_pending(redis, stream) == 3  # down to the first unread entry, ids[6]
    assert [msg for msg, _ in await redis.xrange(stream)] == ids[6:]
