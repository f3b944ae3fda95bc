"""Retention (README: Retention): remove.lua's prune mode on real Redis state, the api's PUT of a
queue's bounds, the worker's janitor pruning to them, and the settling of queues stored before them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from redis.asyncio import Redis

from streamq.services.worker.janitor import Janitor
from streamq.services.worker.jobs import Outcome
from streamq.services.worker.registry import Registry, TaskContext
from streamq.shared import retention
from streamq.shared.keys import STATUS_ORDER, WORKER_GROUP, KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Queue
from streamq.shared.queues import Bound, QueueRegistry
from streamq.shared.settings import Settings
from streamq.shared.streams import ensure_group
from tests.integration.helpers import running_worker
from tests.integration.test_scripts import make_consumer

pytestmark = pytest.mark.timeout(90)
HOUR_MS = 3600 * 1000


def in_an_hour() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).isoformat()


def bounds(**kinds: tuple[int, int]) -> list[int]:
    """Prune bounds with ``kind=(age_ms, count)`` for the kinds named, none for the others."""
    out: list[int] = []
    for kind in ("completed", "failed", "cancelled", "dead_letter"):
        out += kinds.get(kind, (-1, -1))
    return out


async def finished_state(queue: Queue) -> tuple[list[str], list[str]]:
    """(completed ids, failed ids), submitted in that order: 8 completed, then 4 failed with dead letters;
    plus one task left processing, one pending and one scheduled an hour ahead."""
    await ensure_group(queue.redis, queue.keys.streams(), WORKER_GROUP)
    consumer = make_consumer(queue, "c1")
    done = await queue.submit([TaskCreate(type="noop", max_retries=0) for _ in range(13)])
    jobs = await consumer.take(13)
    assert [j.delivery.task_id for j in jobs] == [d.task.id for d in done]  # one priority: submit order
    for job in jobs[:8]:
        await consumer.finisher.record(Outcome(job, completed=True, value="1"))
    for job in jobs[8:12]:
        await consumer.finisher.record(Outcome(job, completed=False, value="boom", delay_ms=-1, history=""))
    later = TaskCreate(type="noop", scheduled_for=in_an_hour())
    await queue.submit([TaskCreate(type="noop"), later])
    return [d.task.id for d in done[:8]], [d.task.id for d in done[8:12]]


async def assert_consistent(queue: Queue, redis: Redis, keys: KeySchema) -> dict[str, int]:
    """The six statuses add up to the total; every indexed id has its hash and the type index holds
    exactly the indexed ids; nothing else is left. Returns the counts per status."""
    stats = await queue.stats()
    counts = {s.value: getattr(stats, s.value) for s in STATUS_ORDER}
    assert sum(counts.values()) == stats.total
    indexed = set()
    for status in STATUS_ORDER:
        for task_id in await redis.zrange(keys.index_status(status), 0, -1):
            assert await redis.hget(keys.task(task_id), "status") == status.value
            indexed.add(task_id)
    assert set(await redis.zrange(keys.index_type("noop"), 0, -1)) == indexed
    retained = set(await redis.zrange(keys.retention, 0, -1))
    finished = set()
    for status in ("completed", "failed", "cancelled"):
        finished |= set(await redis.zrange(keys.index_status(status), 0, -1))
    assert retained == finished
    dead = {fields["id"] for _id, fields in await redis.xrange(keys.dead)}
    assert dead <= set(await redis.zrange(keys.index_status("failed"), 0, -1))
    return counts


async def test_prune_by_count_removes_exactly_the_oldest_finished(queue: Queue, redis: Redis, keys: KeySchema) -> None:
    completed, failed = await finished_state(queue)
    before = await queue.stats()
    removed = await queue.prune(bounds(completed=(-1, 3), failed=(-1, 1), dead_letter=(-1, 0)))
    assert removed == (5 + 3, 1)  # 5 completed and 3 failed tasks; the one dead letter left
    assert await redis.zrange(keys.index_status("completed"), 0, -1) == completed[5:]
    assert await redis.zrange(keys.index_status("failed"), 0, -1) == failed[3:]
    for task_id in completed[:5] + failed[:3]:
        assert not await redis.exists(keys.task(task_id))
    counts = await assert_consistent(queue, redis, keys)
    assert counts == {"pending": 1, "scheduled": 1, "processing": 1, "completed": 3, "failed": 1, "cancelled": 0}
    after = await queue.stats()
    assert after.dead_letter == 0 and after.completed_total == before.completed_total  # lifetime counters kept
    assert await queue.prune(bounds(completed=(-1, 3), failed=(-1, 1))) == (0, 0)  # nothing more to do
    deleted = [f["task"] for _id, f in await redis.xrange(keys.events) if f["event"] == "deleted"]
    assert sorted(deleted) == sorted(completed[:5] + failed[:3])


async def test_prune_by_age_removes_those_finished_before_the_bound(
    queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    completed, failed = await finished_state(queue)
    now_ms = int((await redis.time())[0]) * 1000
    # finished two hours ago: completed[0], completed[2] and completed[3]; completed[1] just now
    for task_id in (completed[0], completed[2], completed[3]):
        await redis.hset(keys.task(task_id), "completed_at", str(now_ms - 2 * HOUR_MS))
    removed = await queue.prune(bounds(completed=(HOUR_MS, -1), failed=(HOUR_MS, -1), dead_letter=(HOUR_MS, -1)))
    assert removed == (3, 0)
    kept = [completed[1], *completed[4:]]
    assert await redis.zrange(keys.index_status("completed"), 0, -1) == kept
    assert len(await redis.zrange(keys.index_status("failed"), 0, -1)) == len(failed)
    await assert_consistent(queue, redis, keys)
    # a bound of 0: every finished task goes, never an unfinished one
    assert await queue.prune(bounds(completed=(0, -1), failed=(0, -1), dead_letter=(0, -1))) == (5 + 4, 0)
    counts = await assert_consistent(queue, redis, keys)
    assert counts == {"pending": 1, "scheduled": 1, "processing": 1, "completed": 0, "failed": 0, "cancelled": 0}


async def test_prune_works_in_bounded_batches(queue: Queue, redis: Redis, keys: KeySchema) -> None:
    completed, _failed = await finished_state(queue)
    assert await queue.prune(bounds(completed=(-1, 0)), batch=3) == (3, 0)
    assert await redis.zrange(keys.index_status("completed"), 0, -1) == completed[3:]
    assert await queue.prune(bounds(completed=(-1, 0)), batch=3) == (3, 0)
    assert await queue.prune(bounds(completed=(-1, 0)), batch=3) == (2, 0)
    await assert_consistent(queue, redis, keys)


async def test_dead_letters_trimmed_by_age_and_count_keep_their_failed_tasks(
    queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    _completed, failed = await finished_state(queue)
    assert await queue.prune(bounds(dead_letter=(-1, 3))) == (0, 1)
    assert [f["id"] for _id, f in await redis.xrange(keys.dead)] == failed[1:]
    assert await queue.prune(bounds(dead_letter=(0, -1))) == (0, 3)
    assert await redis.xlen(keys.dead) == 0 and await redis.zcard(keys.index_status("failed")) == len(failed)
    await assert_consistent(queue, redis, keys)


async def test_api_sets_retention_and_the_worker_prunes_to_it(
    api: httpx.AsyncClient, settings: Settings, redis: Redis, keys: KeySchema, queue: Queue
) -> None:
    shown = (await api.get("/api/queues/default")).json()["retention"]
    assert shown["completed"] == {"age_s": 86400, "count": 100_000}  # the settings' defaults
    reply = await api.put("/api/queues/default", json={"retention": {"completed": {"count": 3}}})
    assert reply.status_code == 200, reply.text
    assert reply.json()["retention"]["completed"] == {"age_s": 86400, "count": 3}
    reply = await api.put("/api/queues/default", json={"retention": {"completed": {"age_s": None}}})
    assert reply.json()["retention"]["completed"] == {"age_s": None, "count": 3}  # count kept
    assert reply.json()["partitions"] == 1
    registry = Registry()

    async def ok(_payload: object, _ctx: TaskContext) -> str:
        return "ok"

    registry.register("ok", ok)
    done = await queue.submit([TaskCreate(type="ok") for _ in range(10)])
    later = await queue.submit([TaskCreate(type="ok", scheduled_for=in_an_hour())])
    async with running_worker(settings, registry):
        async with asyncio.timeout(30):
            while (await queue.stats()).completed != 3 or (await queue.stats()).pending:
                await asyncio.sleep(0.05)
    assert await redis.zrange(keys.index_status("completed"), 0, -1) == [d.task.id for d in done[7:]]
    assert (await queue.get(later[0].task.id)).status == "scheduled"
    stats = await queue.stats()
    assert stats.total == 4 and stats.completed_total == 10


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"retention": {"completed": {"age_s": 8 * 24 * 3600}}}, ["body", "retention", "completed", "age_s"]),
        ({"retention": {"failed": {"count": -1}}}, ["body", "retention", "failed", "count"]),
        ({"retention": {"done": {"count": 1}}}, ["body", "retention", "done"]),
        ({"retention": {"dead_letter": {"count": "5"}}}, ["body", "retention", "dead_letter", "count"]),
        ({"retention": {"cancelled": {"keep": 1}}}, ["body", "retention", "cancelled", "keep"]),
    ],
)
async def test_bad_retention_is_a_422_naming_the_field_and_writes_nothing(
    api: httpx.AsyncClient, body: dict[str, object], loc: list[str]
) -> None:
    before = (await api.get("/api/queues/default")).json()["retention"]
    reply = await api.put("/api/queues/default", json=body)
    assert reply.status_code == 422, reply.text
    assert reply.json()["detail"][0]["loc"] == loc
    assert (await api.get("/api/queues/default")).json()["retention"] == before


async def test_a_queue_stored_before_retention_keeps_what_it_kept(
    settings: Settings, redis: Redis, keys: KeySchema, queue: Queue
) -> None:
    completed, _failed = await finished_state(queue)
    quiet = queue.keys.for_queue("quiet")
    await redis.hset(keys.queues, mapping={"default": '{"partitions": 1, "paused": false}'})  # as stored before
    await redis.hset(keys.queues, mapping={"quiet": '{"partitions": 1, "paused": false}'})
    registry = QueueRegistry(redis, keys)
    janitor = Janitor(
        queue,
        partitions=lambda: [queue, Queue(redis, quiet)],
        registry=registry,
        defaults={kind: Bound(0, 0) for kind in ("completed", "failed", "cancelled", "dead_letter")},
        result_ttl_s=settings.result_ttl_s,
    )
    await janitor.tick()
    configs = await registry.all(fresh=True)
    assert configs["default"].retention == retention.legacy(settings.result_ttl_s)
    assert configs["quiet"].retention == {}  # nothing kept: the defaults apply
    assert await redis.zrange(keys.index_status("completed"), 0, -1) == completed  # nothing pruned
