"""A task's own retention, ``keep_s`` (README: Retention): the deadline finish.lua, cancel.lua and
poison.lua give it, the janitor's count walk passing over kept tasks without stalling, and the api's
checks of the field; on a real Redis."""

from __future__ import annotations

import httpx
import pytest
from redis.asyncio import Redis

from streamq.services.worker.janitor import Janitor
from streamq.services.worker.jobs import Outcome
from streamq.shared import retention
from streamq.shared.keys import WORKER_GROUP, KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queue import NO_BOUNDS, Queue
from streamq.shared.queues import Bound, QueueRegistry
from streamq.shared.settings import Settings
from streamq.shared.streams import ensure_group
from tests.integration.test_reliability import _deliver, _start_as
from tests.integration.test_retention import HOUR_MS, assert_consistent, bounds
from tests.integration.test_scripts import make_consumer

pytestmark = pytest.mark.timeout(90)
TTL_MS = 60_000  # make_consumer's result TTL


async def complete(queue: Queue, tasks: list[TaskCreate]) -> list[str]:
    """Submit ``tasks`` and record each completed, in submit order; returns their ids."""
    await ensure_group(queue.redis, queue.keys.streams(), WORKER_GROUP)
    consumer = make_consumer(queue, "c1", concurrency=len(tasks))
    done = await queue.submit(tasks)
    jobs = await consumer.take(len(tasks))
    assert [j.delivery.task_id for j in jobs] == [d.task.id for d in done]
    for job in jobs:
        await consumer.finisher.record(Outcome(job, completed=True, value="1"))
    return [d.task.id for d in done]


async def deadline_after_finish(redis: Redis, keys: KeySchema, task_id: str) -> int:
    """The task's retention deadline less its finish time (ms)."""
    score = await redis.zscore(keys.retention, task_id)
    finished = await redis.hget(keys.task(task_id), "completed_at")
    assert score is not None and finished is not None
    return int(score) - int(finished)


async def test_finish_sets_the_deadline_from_keep_s_at_most_the_result_ttl(
    queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    ids = await complete(
        queue, [TaskCreate(type="noop", keep_s=0), TaskCreate(type="noop", keep_s=5), TaskCreate(type="noop"),
                TaskCreate(type="noop", keep_s=3600)]
    )  # fmt: skip
    deadlines = [await deadline_after_finish(redis, keys, task_id) for task_id in ids]
    assert deadlines == [0, 5000, TTL_MS, TTL_MS]  # the result TTL caps keep_s
    assert (await queue.get(ids[1])).keep_s == 5
    # keep_s 0: gone at the janitor's next pass, the others stay
    assert await queue.prune(NO_BOUNDS) == (1, 0)
    assert not await redis.exists(keys.task(ids[0]))
    await assert_consistent(queue, redis, keys)


async def test_cancel_and_poison_set_the_deadline_from_keep_s(queue: Queue, redis: Redis, keys: KeySchema) -> None:
    await ensure_group(redis, keys.streams(), WORKER_GROUP)
    [poisoned] = await queue.submit([TaskCreate(type="noop", keep_s=7)])
    [(msg, _)] = await _deliver(redis, keys, "w0")
    await _start_as(queue.scripts, keys, "w0", [(msg, poisoned.task.id)])
    args = [1000, WORKER_GROUP, "w0", TTL_MS, poisoned.task.id, msg, 3, 6, "Poison: delivered 6 times"]
    assert await queue.scripts.call("poison", [*keys.common(), keys.task(poisoned.task.id)], args) == ["failed"]
    [cancelled] = await queue.submit([TaskCreate(type="noop", keep_s=9)])
    assert (await queue.cancel(cancelled.task.id)).status == "cancelled"
    assert await deadline_after_finish(redis, keys, poisoned.task.id) == 7000
    assert await deadline_after_finish(redis, keys, cancelled.task.id) == 9000


async def test_kept_tasks_are_spared_by_the_count_bound_until_their_keep_s_runs_out(
    queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    ids = await complete(queue, [TaskCreate(type="noop", keep_s=3600), *(TaskCreate(type="noop") for _ in range(4))])
    # a count of 2: the kept task is one of them, the newest other the second
    assert await queue.prune(bounds(completed=(-1, 2))) == (3, 0)
    assert await redis.zrange(keys.index_status("completed"), 0, -1) == [ids[0], ids[4]]
    # finished two hours ago: its hour is over, the count bound removes it as the oldest
    now_ms = int((await redis.time())[0]) * 1000
    await redis.hset(keys.task(ids[0]), "completed_at", str(now_ms - 2 * HOUR_MS))
    assert await queue.prune(bounds(completed=(-1, 1))) == (1, 0)
    assert await redis.zrange(keys.index_status("completed"), 0, -1) == [ids[4]]
    await assert_consistent(queue, redis, keys)


async def test_the_age_bound_removes_a_kept_task(queue: Queue, redis: Redis, keys: KeySchema) -> None:
    [kept, other] = await complete(queue, [TaskCreate(type="noop", keep_s=3600), TaskCreate(type="noop")])
    now_ms = int((await redis.time())[0]) * 1000
    await redis.hset(keys.task(kept), "completed_at", str(now_ms - 1000))
    assert await queue.prune(bounds(completed=(500, -1))) == (1, 0)  # the queue's age bound caps keep_s
    assert await redis.zrange(keys.index_status("completed"), 0, -1) == [other]


async def test_many_kept_tasks_never_stall_the_count_bound(
    settings: Settings, queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    # 8 kept tasks with the lowest ids, then 6 others; a count of 10 in calls of 3: each call's walk
    # examines 3 ids, so without its cursor every call would see only kept tasks
    ids = await complete(
        queue, [*(TaskCreate(type="noop", keep_s=3600) for _ in range(8)), *(TaskCreate(type="noop") for _ in range(6))]
    )
    assert await queue.prune(bounds(completed=(-1, 10)), batch=3) == (0, 0)  # one call: kept tasks only
    registry = QueueRegistry(redis, keys)
    await registry.set_retention("default", {"completed": Bound(None, 10)})
    janitor = Janitor(
        queue, batch=3, registry=registry, defaults=retention.defaults(settings), result_ttl_s=settings.result_ttl_s
    )
    await janitor.tick()
    assert await redis.zrange(keys.index_status("completed"), 0, -1) == ids[:8] + ids[12:]
    # kept tasks alone beyond the count: every other finished task goes, the kept ones stay
    await registry.set_retention("default", {"completed": Bound(None, 5)})
    await janitor.tick()
    assert await redis.zrange(keys.index_status("completed"), 0, -1) == ids[:8]
    counts = await assert_consistent(queue, redis, keys)
    assert counts["completed"] == 8 and (await queue.stats()).completed_total == 14


async def test_api_takes_keep_s_and_refuses_a_bad_one(api: httpx.AsyncClient) -> None:
    reply = await api.post("/api/tasks", json={"type": "noop", "keep_s": 60})
    assert reply.status_code == 201, reply.text
    assert reply.json()["keep_s"] == 60
    assert (await api.get(f"/api/tasks/{reply.json()['id']}")).json()["keep_s"] == 60
    for bad in (-1, "60", 1.5, 367 * 24 * 3600, True):
        reply = await api.post("/api/tasks", json={"type": "noop", "keep_s": bad})
        assert reply.status_code == 422, reply.text
        assert reply.json()["detail"][0]["loc"] == ["body", "keep_s"]
    assert (await api.get("/api/stats")).json()["total"] == 1  # nothing written
