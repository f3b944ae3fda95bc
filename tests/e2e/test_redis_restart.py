"""A Redis restart (AOF on) while a real worker process runs tasks: the outcomes computed while Redis
was away are kept by the worker's finisher and recorded once it answers again, so no task runs twice."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
from redis.asyncio import Redis

from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Queue
from streamq.shared.settings import Settings
from streamq.testing import RedisServer
from tests.e2e.handlers import read_runs
from tests.e2e.processes import service_env, start_workers, stop_all

pytestmark = [pytest.mark.e2e, pytest.mark.standalone_only(reason="restarts its own plain redis-server")]
AOF = ("--appendonly", "yes", "--appendfsync", "always")
DOWN_S = 8.0  # longer than the client's own retries of one command (about 5.5 s: shared/redis.py)


async def _statuses(queue: Queue, ids: list[str], want: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        tasks = await queue.get_many(ids)
        if all(t.status == want for t in tasks):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"not all {want} within {timeout} s: {[(t.id, t.status) for t in tasks]}")
        await asyncio.sleep(0.1)


@pytest.mark.timeout(120)
async def test_outcomes_computed_while_redis_restarts_are_recorded_and_nothing_runs_twice(
    settings: Settings, log_dir: Path
) -> None:
    server = RedisServer(*AOF)
    private = settings.model_copy(update={"redis_url": server.url})
    runs = log_dir / "runs.txt"
    # the lease outlasts the outage by far: no reclaim races the kept outcomes here (finish.lua is safe
    # either way: tests/integration/test_scripts.py, a consumer that lost the entry)
    env = service_env(private, runs, lease_s=30, worker_concurrency=8)
    client = Redis.from_url(server.url, decode_responses=True)
    queue = Queue(client, KeySchema(private.key_prefix, private.queue))
    workers = await start_workers(env, log_dir, 1)
    try:
        done = await queue.submit([TaskCreate(type="rel_sleep", payload=1.5) for _ in range(8)])
        ids = [d.task.id for d in done]
        await _statuses(queue, ids, "processing", timeout=15)
        await client.aclose()
        server.stop()  # SIGTERM: the AOF is complete; the handlers end while Redis is away
        await asyncio.sleep(DOWN_S)
        server.restart()  # same port, directory and append-only file: it reloads the AOF
        client = Redis.from_url(server.url, decode_responses=True)
        queue = Queue(client, KeySchema(private.key_prefix, private.queue))
        await _statuses(queue, ids, "completed", timeout=20)  # well before the 30 s lease runs out
        assert all(t.attempts == 1 for t in await queue.get_many(ids))
        assert Counter(task for task, _pid in read_runs(str(runs))) == dict.fromkeys(ids, 1)  # none ran twice
        log = workers[0].log()
        assert "could not record outcomes; kept, sending them again" in log
        assert "the task will be reclaimed" not in log
    finally:
        stop_all(workers)
        await client.aclose()
        server.stop()
