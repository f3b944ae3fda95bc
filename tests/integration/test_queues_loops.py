"""The background services over named queues and partitions, on a real Redis: the scheduler's
promoter, watchers and cron, the notifier's lanes, the api's queue metrics and the dashboard's
event feeds. Each test seeds and asserts the raw Redis state of every partition it touches."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from streamq.dashboard.events import Broadcaster
from streamq.services.scheduler.promoter import Promoter
from streamq.services.scheduler.watcher import Watchers
from streamq.services.worker.registry import Registry, TaskContext
from streamq.shared.keys import NOTIFIER_GROUP, KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Queue
from streamq.shared.queues import QueueRegistry
from streamq.shared.redis import make_client
from streamq.shared.redisfast import raw_stream_reads
from streamq.shared.settings import Settings
from tests.integration.helpers import running_worker, wait_for_status
from tests.integration.receivers import Receiver, running_notifier, serving, wait_until
from tests.integration.scheduling import running_scheduler
from tests.integration.test_metrics import samples
from tests.support import task_ids

SECRET = "whsec_" + base64.b64encode(b"streamq-queues-secret-0123456789").decode()


def _in(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


@pytest.fixture
def registry(redis: Redis, keys: KeySchema) -> QueueRegistry:
    return QueueRegistry(redis, keys, cache_s=0.1)


def partition_queues(redis: Redis, keys: KeySchema, name: str, count: int) -> list[Queue]:
    """One Queue per partition of ``name`` (what the api's facade routes submits to)."""
    return [Queue(redis, part) for part in keys.for_queue(name).partitions(count)]


async def seed_retrying(redis: Redis, part: KeySchema, due_ms: int) -> str:
    """A task as finish.lua leaves a failed run that will be retried: status scheduled, one attempt
    and its error in the history, its id in the scheduled set at the retry's due time."""
    task_id = f"01RETRY{part.partition}"
    pipe = redis.pipeline(transaction=True)
    pipe.hset(
        part.task(task_id),
        mapping={
            "id": task_id,
            "queue": part.queue,
            "type": "noop",
            "payload": "null",
            "priority": "4",
            "max_retries": "3",
            "attempts": "1",
            "created_at": str(due_ms - 1000),
            "status": "scheduled",
            "scheduled_for": str(due_ms),
            "history": orjson.dumps([{"attempt": 1, "error": "boom", "at": due_ms - 500}]).decode(),
        },
    )
    pipe.zadd(part.index_status("scheduled"), {task_id: 0})
    pipe.zadd(part.scheduled, {task_id: due_ms})
    await pipe.execute()
    return task_id


async def stream_ids(redis: Redis, part: KeySchema) -> list[str]:
    return [fields["id"] for p in range(1, 6) for _, fields in await redis.xrange(part.stream(p))]


# --- scheduler: promoter ------------------------------------------------------------------------
async def test_delayed_and_retried_tasks_of_every_partition_are_promoted(
    redis: Redis, keys: KeySchema, queue: Queue, registry: QueueRegistry
) -> None:
    await registry.configure("bulk", 3)
    parts = keys.for_queue("bulk").partitions(3)
    delayed = {}
    for part, q in zip(parts, partition_queues(redis, keys, "bulk", 3), strict=True):
        submitted = await q.submit([TaskCreate(type="noop", scheduled_for=_in(0.2)) for _ in range(4)])
        delayed[part] = {s.task.id for s in submitted}
    retried = await seed_retrying(redis, parts[2], int(time.time() * 1000) + 200)
    [default_task] = await queue.submit([TaskCreate(type="noop", scheduled_for=_in(0.2))])
    [later] = await partition_queues(redis, keys, "bulk", 3)[1].submit([TaskCreate(type="noop", scheduled_for=_in(30))])
    promoter = Promoter(queue, registry=registry, batch=3, max_wait_s=60)  # batch < 4: a second page per partition
    await asyncio.sleep(0.3)
    await promoter.tick()
    assert promoter.promoted == 12 + 1 + 1
    for part in parts:
        expected = delayed[part] | ({retried} if part == parts[2] else set())
        assert set(await stream_ids(redis, part)) == expected
        assert set(await redis.zrange(part.index_status("pending"), 0, -1)) == expected
        promoted = [f["task"] for _, f in await redis.xrange(part.events) if f["event"] == "promoted"]
        assert set(promoted) == expected
    assert await redis.zrange(parts[0].scheduled, 0, -1) == [] == await redis.zrange(parts[2].scheduled, 0, -1)
    assert await redis.zrange(parts[1].scheduled, 0, -1) == [later.task.id]  # not due yet: left alone
    assert await stream_ids(redis, keys) == [default_task.task.id]  # the default queue too
    assert await redis.hget(parts[2].task(retried), "status") == "pending"
    # the next pass wakes for the earliest due time of any partition: the task due in 30 s
    assert 20 < promoter.interval_s <= 30


async def test_scheduler_picks_up_a_queue_created_while_it_runs(
    settings: Settings, redis: Redis, keys: KeySchema
) -> None:
    async with running_scheduler(settings):
        await QueueRegistry(redis, keys).configure("late", 2)  # after the scheduler started
        late = partition_queues(redis, keys, "late", 2)
        [one] = await late[1].submit([TaskCreate(type="noop", scheduled_for=_in(0.3))])
        await wait_for_status(late[1], one.task.id, {"pending"}, timeout=10)
    part = keys.for_queue("late", 1)
    assert await stream_ids(redis, part) == [one.task.id]
    assert await redis.zcard(part.scheduled) == 0


async def test_watchers_read_each_partition_and_wake_the_promoter(
    settings: Settings, redis: Redis, keys: KeySchema, registry: QueueRegistry
) -> None:
    await registry.configure("bulk", 3)
    woken: list[int] = []
    reader = raw_stream_reads(make_client(settings))
    watchers = Watchers(registry, reader, lambda: woken.append(1), also=keys.queue, interval_s=0.05)
    watchers.start()
    try:
        await wait_until(lambda: len(watchers.watchers) == 4, what="a watcher per partition")
        assert {p.tag for p in watchers.watchers} == {"default", "bulk", "bulk:1", "bulk:2"}
        await wait_until(lambda: all(w.last_id is not None for w in watchers.watchers.values()), what="reads")
        assert not woken
        bulk2 = partition_queues(redis, keys, "bulk", 3)[2]
        await bulk2.submit([TaskCreate(type="noop", scheduled_for=_in(60))])
        await wait_until(lambda: woken, what="the promoter woken by a task scheduled in partition 2")
    finally:
        await watchers.stop()
        await reader.aclose()


# --- scheduler: cron ----------------------------------------------------------------------------
async def test_cron_schedule_targeting_bulk_fires_into_bulk(
    settings: Settings, api: httpx.AsyncClient, redis: Redis, keys: KeySchema
) -> None:
    bulk = keys.for_queue("bulk")
    body = {"name": "every-second", "cron": "* * * * * *", "task": {"type": "noop", "queue": "bulk", "priority": 2}}
    created = await api.post("/api/schedules", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["queue"] == "bulk" and created.json()["task"]["queue"] == "bulk"
    assert await redis.zrange(bulk.schedules, 0, -1) == ["every-second"]  # stored in bulk's slot
    assert await redis.zcard(keys.schedules) == 0
    assert "bulk" in await redis.hkeys(keys.queues)  # the queue was created on first use
    other = {"name": "home", "cron": "0 3 * * *", "task": {"type": "noop"}}
    assert (await api.post("/api/schedules", json=other)).status_code == 201
    clash = await api.post("/api/schedules", json={**other, "task": {"type": "noop", "queue": "bulk"}})
    assert clash.status_code == 409 and "name 'home'" in clash.json()["detail"]  # names are global
    assert await redis.zcard(bulk.schedules) == 1
    listed = (await api.get("/api/schedules")).json()
    assert [(s["name"], s["queue"]) for s in listed] == [("every-second", "bulk"), ("home", settings.queue)]

    async with running_scheduler(settings):
        deadline = time.monotonic() + 10
        while not await task_ids(redis, bulk):
            assert time.monotonic() < deadline, "the schedule did not fire"
            await asyncio.sleep(0.05)
    [task_id, *_] = await task_ids(redis, bulk)
    raw = await redis.hgetall(bulk.task(task_id))
    assert raw["schedule"] == "every-second" and raw["priority"] == "2"  # in bulk's partition: its queue
    assert task_id in await stream_ids(redis, bulk)
    assert await task_ids(redis, keys) == []  # nothing fired into the default queue
    state = (await api.get("/api/schedules/every-second")).json()
    assert state["queue"] == "bulk" and state["fired_total"] >= 1
    assert (await api.post("/api/schedules/every-second/pause")).json()["paused"]
    assert await redis.zcard(bulk.schedules_due) == 0
    assert not (await api.post("/api/schedules/every-second/resume")).json()["paused"]
    assert (await api.delete("/api/schedules/every-second")).status_code == 204
    assert await redis.exists(bulk.schedule("every-second")) == 0
    assert (await api.get("/api/schedules/every-second")).status_code == 404


async def test_schedule_queue_name_is_validated(api: httpx.AsyncClient, redis: Redis, keys: KeySchema) -> None:
    body = {"name": "bad-queue", "cron": "0 3 * * *", "task": {"type": "noop", "queue": "no:colons"}}
    reply = await api.post("/api/schedules", json=body)
    assert reply.status_code == 422
    [error] = reply.json()["detail"]
    assert error["loc"] == ["body", "task", "queue"] and "pattern" in error["msg"]
    assert await redis.hkeys(keys.queues) == []  # no queue created, nothing half-written


# --- notifier -----------------------------------------------------------------------------------
@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "webhook_secret": SecretStr(SECRET),
            "webhook_schedule": [0, 0.3, 0.3],
            "webhook_poll_s": 0.05,
            "webhook_timeout_s": 2,
            "webhook_lease_s": 4,
            "notifier_claim_idle_s": 0.5,
            "allow_private_networks": True,
        }
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving(Receiver()) as r:
        yield r


async def finished_with_webhook(redis: Redis, queue: Queue, url: str) -> str:
    """A task with a webhook, then its completion as finish.lua records it (status and event)."""
    [done] = await queue.submit([TaskCreate(type="noop", webhook=url)])
    task_id = done.task.id
    pipe = redis.pipeline(transaction=True)
    pipe.hset(queue.keys.task(task_id), mapping={"status": "completed", "completed_at": str(int(time.time() * 1000))})
    pipe.zrem(queue.keys.index_status("pending"), task_id)
    pipe.zadd(queue.keys.index_status("completed"), {task_id: 0})
    pipe.xadd(queue.keys.events, {"event": "completed", "task": task_id, "status": "completed"})
    await pipe.execute()
    return task_id


async def test_webhooks_of_two_queues_and_two_partitions_are_delivered(
    hook_settings: Settings, redis: Redis, keys: KeySchema, registry: QueueRegistry, receiver: Receiver
) -> None:
    await registry.configure("bulk", 2)
    await registry.configure("critical", 2)
    targets = [q for name in ("bulk", "critical") for q in partition_queues(redis, keys, name, 2)]
    async with running_notifier(hook_settings) as notifier:
        assert len(notifier.lanes.lanes) == 5  # default + 2 x 2 partitions
        sent = {q.keys: await finished_with_webhook(redis, q, receiver.url(f"/{q.keys.tag}")) for q in targets}
        await wait_until(lambda: len(receiver.requests) == 4, what="four webhooks")
        for part, task_id in sent.items():
            deadline = time.monotonic() + 5
            while await redis.hget(part.task(task_id), "webhook_status") != "delivered":
                assert time.monotonic() < deadline, f"{part.tag}: not recorded as delivered"
                await asyncio.sleep(0.02)
    for part, task_id in sent.items():
        [request] = receiver.at(f"/{part.tag}")
        assert orjson.loads(request.body)["data"]["id"] == task_id
        [attempt] = [orjson.loads(e) for e in await redis.lrange(part.deliveries(task_id), 0, -1)]
        assert attempt["outcome"] == "delivered"  # the log is in the task's own slot
        assert await redis.zcard(part.webhooks_due) == 0
        assert (await redis.xpending(part.events, NOTIFIER_GROUP))["pending"] == 0


async def test_notifier_recovers_events_a_dead_notifier_left_in_a_partition(
    hook_settings: Settings, redis: Redis, keys: KeySchema, registry: QueueRegistry, receiver: Receiver
) -> None:
    await registry.configure("bulk", 3)
    part = keys.for_queue("bulk", 2)
    from streamq.shared.streams import ensure_group

    await ensure_group(redis, [part.events], NOTIFIER_GROUP)
    task_id = await finished_with_webhook(redis, Queue(redis, part), receiver.url("/late"))
    read = await redis.xreadgroup(NOTIFIER_GROUP, "dead-host", {part.events: ">"})
    assert [f["task"] for _, f in read[0][1] if f["event"] == "completed"] == [task_id]
    async with running_notifier(hook_settings, consumer="alive-host"):
        await wait_until(lambda: len(receiver.at("/late")) == 1, what="the reclaimed event's webhook")
        deadline = time.monotonic() + 5
        while (await redis.xpending(part.events, NOTIFIER_GROUP))["pending"]:
            assert time.monotonic() < deadline, "the reclaimed entries were not acknowledged"
            await asyncio.sleep(0.02)
    assert await redis.hget(part.task(task_id), "webhook_status") == "delivered"


# --- metrics ------------------------------------------------------------------------------------
async def test_metrics_show_depth_and_paused_per_queue(
    api: httpx.AsyncClient, redis: Redis, keys: KeySchema, registry: QueueRegistry, settings: Settings
) -> None:
    await registry.configure("bulk", 3)
    for k, q in enumerate(partition_queues(redis, keys, "bulk", 3)):
        await q.submit([TaskCreate(type="noop", priority=5) for _ in range(k + 1)])  # 1 + 2 + 3
        await q.submit([TaskCreate(type="noop", scheduled_for=_in(3600))])
    await Queue(redis, keys).submit([TaskCreate(type="noop", priority=1)])
    await registry.set_paused("bulk", True)
    await asyncio.sleep(1.1)  # the api's registry cache (1 s) sees bulk
    text = (await api.get("/metrics")).text
    depth = samples(text, "streamq_queue_depth")
    assert depth[(("priority", "5"), ("queue", "bulk"))] == 6  # summed over the 3 partitions
    assert depth[(("priority", "1"), ("queue", "bulk"))] == 0
    assert depth[(("priority", "1"), ("queue", settings.queue))] == 1
    assert samples(text, "streamq_scheduled_tasks")[(("queue", "bulk"),)] == 3
    paused = samples(text, "streamq_queue_paused")
    assert paused[(("queue", "bulk"),)] == 1 and paused[(("queue", settings.queue),)] == 0


# --- dashboard ----------------------------------------------------------------------------------
async def test_dashboard_feeds_read_every_partition(redis: Redis, keys: KeySchema, registry: QueueRegistry) -> None:
    await registry.configure("bulk", 2)
    broadcaster = Broadcaster(redis, keys, registry)
    subscriber = broadcaster.subscribe()
    broadcaster.start()
    try:
        await wait_until(lambda: len(broadcaster.feeds) == 3, what="a feed per partition")
        await wait_until(lambda: all(f.last_id is not None for f in broadcaster.feeds.values()), what="reads")
        await redis.xadd(keys.for_queue("bulk", 1).events, {"event": "created", "task": "T1", "status": "pending"})
        await redis.xadd(keys.events, {"event": "created", "task": "T0", "status": "pending"})
        seen: list[dict[str, str]] = []
        while len(seen) < 2:
            batch = await asyncio.wait_for(subscriber.get(), 5)
            assert batch is not None
            seen += batch
        assert {(e["task"], e["queue"]) for e in seen} == {("T1", "bulk"), ("T0", keys.queue)}
    finally:
        await broadcaster.stop()


# --- the whole path with a worker of the named queue ----------------------------------------------
WORKER_READS_NAMED_QUEUES = importlib.util.find_spec("streamq.shared.broker") is not None


@pytest.mark.xfail(
    not WORKER_READS_NAMED_QUEUES, reason="needs the worker of the queues branch (STREAMQ_QUEUES)", strict=True
)
@pytest.mark.timeout(60)
async def test_delayed_and_retried_tasks_in_3_partitions_complete(
    settings: Settings, redis: Redis, keys: KeySchema, registry: QueueRegistry
) -> None:
    handlers = Registry()

    async def flaky(_payload: Any, ctx: TaskContext) -> str:
        if ctx.attempt == 1:
            raise RuntimeError("first run fails")
        return f"done on attempt {ctx.attempt}"

    handlers.register("flaky", flaky)
    handlers.register("noop", lambda _payload: None)
    await registry.configure("bulk", 3)
    queues = partition_queues(redis, keys, "bulk", 3)
    delayed, retried = [], []
    for q in queues:
        [d] = await q.submit([TaskCreate(type="noop", scheduled_for=_in(0.3))])
        [r] = await q.submit([TaskCreate(type="flaky", max_retries=2, retry_backoff_s=0.2)])
        delayed.append(d.task.id)
        retried.append(r.task.id)
    bulk_worker = settings.model_copy(update={"queues": "bulk"})
    async with running_worker(bulk_worker, handlers), running_scheduler(settings):
        for q, d, r in zip(queues, delayed, retried, strict=True):
            await wait_for_status(q, d, {"completed"}, timeout=20)
            await wait_for_status(q, r, {"completed"}, timeout=20)
    for part, d, r in zip(keys.for_queue("bulk").partitions(3), delayed, retried, strict=True):
        assert set(await redis.zrange(part.index_status("completed"), 0, -1)) == {d, r}
        assert await redis.zcard(part.scheduled) == 0
        raw = await redis.hgetall(part.task(r))
        assert raw["attempts"] == "2" and "first run fails" in raw["history"]
        events = [(f["event"], f["task"]) for _, f in await redis.xrange(part.events)]
        assert ("promoted", d) in events and ("retrying", r) in events and ("promoted", r) in events
