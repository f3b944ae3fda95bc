"""Scheduler replicas as real processes: 1,000 tasks due at once, and an every-second schedule."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Queue
from streamq.shared.settings import Settings
from tests.e2e.processes import service_env, start_schedulers, start_workers, stop_all
from tests.integration.helpers import wait_for_status
from tests.integration.scheduling import entry_ms
from tests.support import task_ids

pytestmark = pytest.mark.e2e


def _percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@pytest.mark.timeout(60)
async def test_three_replicas_enqueue_each_due_task_once(
    settings: Settings, queue: Queue, redis: Redis, keys: KeySchema, log_dir: Path
) -> None:
    schedulers = await start_schedulers(service_env(settings), log_dir, 3)
    try:
        due = datetime.now(UTC) + timedelta(seconds=2)
        submitted = await queue.submit([TaskCreate(type="noop", scheduled_for=due) for _ in range(1000)])
        ids = {s.task.id for s in submitted}
        deadline = time.monotonic() + 15
        while await redis.zcard(keys.scheduled) > 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        entries = await redis.xrange(keys.stream(3))
        assert len(entries) == 1000 and {f["id"] for _, f in entries} == ids  # each enqueued exactly once
        events = Counter(f["event"] for _, f in await redis.xrange(keys.events))
        assert events["promoted"] == 1000
        pipe = redis.pipeline(transaction=False)
        for task_id in sorted(ids):
            pipe.hmget(keys.task(task_id), ["status", "msg_id", "scheduled_for"])
        rows = await pipe.execute()
        assert {status for status, _, _ in rows} == {"pending"}
        lateness = [entry_ms(msg) - int(due_ms) for _, msg, due_ms in rows]
        assert min(lateness) >= 0  # never early
        print(
            f"\n1000 tasks due at once, 3 replicas: lateness p50 {_percentile(lateness, 0.5)} ms, "
            f"p99 {_percentile(lateness, 0.99)} ms, max {max(lateness)} ms, mean {statistics.mean(lateness):.1f} ms"
        )
    finally:
        stop_all(schedulers)
    promoted = [_logged(s.log(), "scheduler stopped", "promoted") for s in schedulers]
    print(f"promoted per replica: {promoted}")
    assert sum(promoted) == 1000


@pytest.mark.timeout(60)
async def test_every_second_schedule_with_three_replicas(
    settings: Settings, api: httpx.AsyncClient, redis: Redis, keys: KeySchema, log_dir: Path
) -> None:
    schedulers = await start_schedulers(service_env(settings), log_dir, 3)
    try:
        body = {"name": "heartbeat", "cron": "* * * * * *", "task": {"type": "noop", "payload": "tick"}}
        assert (await api.post("/api/schedules", json=body)).status_code == 201
        await asyncio.sleep(5)
        assert (await api.post("/api/schedules/heartbeat/pause")).status_code == 200
        await asyncio.sleep(0.3)
        ids = await task_ids(redis, keys)
        pipe = redis.pipeline(transaction=False)
        for task_id in ids:
            pipe.hmget(keys.task(task_id), ["scheduled_for", "schedule"])
        rows = await pipe.execute()
        ticks = sorted(int(tick) for tick, _ in rows)
        print(f"\nevery-second schedule over 5 s, 3 replicas: fired {len(ticks)} times")
        assert 4 <= len(ticks) <= 6
        assert len(set(ticks)) == len(ticks)  # never twice for one tick
        assert {name for _, name in rows} == {"heartbeat"}
        fired = [_logged(s.log(), "schedule fired") for s in schedulers]
        print(f"fired per replica: {fired}")
        assert sum(fired) == len(ticks)
        state = (await api.get("/api/schedules/heartbeat")).json()
        assert state["fired_total"] == len(ticks) and state["paused"]
    finally:
        stop_all(schedulers)


@pytest.mark.timeout(60)
async def test_lateness_of_tasks_due_one_by_one(
    settings: Settings, queue: Queue, redis: Redis, keys: KeySchema, log_dir: Path
) -> None:
    schedulers = await start_schedulers(service_env(settings), log_dir, 1)
    try:
        # 2 s ahead: on a loaded host (load 10) the submit ran after the first due times once, and a task
        # due before its submit is queued at once (no scheduled_for: nothing to measure)
        start = datetime.now(UTC) + timedelta(seconds=2)
        spread = [TaskCreate(type="noop", scheduled_for=start + timedelta(milliseconds=7 * i)) for i in range(300)]
        submitted = await queue.submit(spread)
        assert {s.task.status for s in submitted} == {"scheduled"}
        deadline = time.monotonic() + 15
        while await redis.zcard(keys.scheduled) > 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        pipe = redis.pipeline(transaction=False)
        for s in submitted:
            pipe.hmget(keys.task(s.task.id), ["msg_id", "scheduled_for"])
        lateness = [entry_ms(msg) - int(due_ms) for msg, due_ms in await pipe.execute()]
        assert min(lateness) >= 0 and len(lateness) == 300
        print(
            f"\n300 tasks due 7 ms apart, 1 scheduler: lateness p50 {_percentile(lateness, 0.5)} ms, "
            f"p99 {_percentile(lateness, 0.99)} ms, max {max(lateness)} ms"
        )
    finally:
        stop_all(schedulers)


def _logged(log: str, message: str, field: str | None = None) -> int:
    """How many JSON log lines carry ``message`` or, with ``field``, that field of the last one."""
    lines = [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]
    matching = [line for line in lines if line.get("msg") == message]
    if field is None:
        return len(matching)
    return int(matching[-1][field]) if matching else 0


@pytest.mark.timeout(60)
async def test_retries_through_worker_and_scheduler_processes(
    settings: Settings, queue: Queue, redis: Redis, keys: KeySchema, log_dir: Path
) -> None:
    env = service_env(settings)
    services = await start_schedulers(env, log_dir, 1)
    try:
        services += await start_workers(env, log_dir, 1)
        [failing] = await queue.submit([TaskCreate(type="fail", payload="boom", max_retries=2, retry_backoff_s=0.05)])
        [later] = await queue.submit(
            [TaskCreate(type="echo", payload="later", scheduled_for=datetime.now(UTC) + timedelta(seconds=0.5))]
        )
        await wait_for_status(queue, failing.task.id, {"failed"}, timeout=15)
        await wait_for_status(queue, later.task.id, {"completed"}, timeout=15)
        task = await queue.get(failing.task.id)
        assert task.attempts == 3 and [h.attempt for h in task.history] == [1, 2, 3]
        assert [f["id"] for _, f in await redis.xrange(keys.dead)] == [failing.task.id]
        assert (await queue.get(later.task.id)).result == "later"
    finally:
        stop_all(services)
