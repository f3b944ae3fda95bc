"""A worker stopped (SIGTERM) while its Redis is unreachable: the process ends within its grace plus the
documented shutdown bound, and the outcomes it could not record are not lost (the lease recovery runs
those tasks again once Redis is back, and every task ends in a terminal state)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from streamq.services.worker.main import SHUTDOWN_BOUND_S
from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Queue
from streamq.shared.settings import Settings
from streamq.testing import RedisServer
from tests.e2e.handlers import read_runs
from tests.e2e.processes import group_state, service_env, start_workers, stop_all
from tests.integration.helpers import wait_for_status

pytestmark = [pytest.mark.e2e, pytest.mark.standalone_only(reason="freezes its own plain redis-server")]
AOF = ("--appendonly", "yes", "--appendfsync", "always")
GRACE_S = 2.0
SLACK_S = 10.0  # a loaded machine's process start-up and scheduling: not part of the bound under test


async def _until_running(runs: Path, n: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while len(read_runs(str(runs))) < n:
        assert time.monotonic() < deadline, f"{len(read_runs(str(runs)))} of {n} tasks started"
        await asyncio.sleep(0.02)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("outage", ["frozen", "killed"])
async def test_sigterm_while_redis_is_down_exits_within_the_bound_and_loses_nothing(
    settings: Settings, log_dir: Path, outage: str
) -> None:
    server = RedisServer(*AOF)
    private = settings.model_copy(update={"redis_url": server.url})
    runs = log_dir / "runs.txt"
    env = service_env(private, runs, worker_concurrency=16, shutdown_grace_s=GRACE_S, lease_s=3)
    client = Redis.from_url(server.url, decode_responses=True)
    keys = KeySchema(private.key_prefix, private.queue)
    queue = Queue(client, keys)
    workers = await start_workers(env, log_dir, 1)
    [worker] = workers
    try:
        # four finish while Redis is away (outcomes the worker cannot record), four outlast the grace; free
        # slots keep the intake reading (a blocking read and a take in flight when Redis goes)
        short = await queue.submit([TaskCreate(type="rel_sleep", payload=0.5) for _ in range(4)])
        long = await queue.submit([TaskCreate(type="rel_sleep", payload=GRACE_S + 2) for _ in range(4)])
        ids = [s.task.id for s in short + long]
        await _until_running(runs, 8)
        if outage == "frozen":  # connections open, nothing answers: every command waits for its timeout
            server.proc.send_signal(signal.SIGSTOP)
        else:  # connections refused
            server.stop()
        await asyncio.sleep(1.0)  # the short tasks end and their outcomes wait in the finisher
        worker.signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.wait, GRACE_S + SHUTDOWN_BOUND_S + SLACK_S)
        assert code == 0, worker.log()
        assert "worker stopped" in worker.log()
        if outage == "frozen":
            server.proc.send_signal(signal.SIGCONT)
        else:
            server.restart()  # same port, directory and arguments: it reloads the append-only file
            await client.aclose()  # its connections died with the server
            client = Redis.from_url(server.url, decode_responses=True)
            queue = Queue(client, keys)
        # a successor reclaims every entry the stopped worker held (after the lease) and ends each task
        workers += await start_workers(env, log_dir, 1, name="successor")
        for task_id in ids:
            await wait_for_status(queue, task_id, {"completed"}, timeout=40)
        assert {t for t, _ in read_runs(str(runs))} == set(ids)
        assert await group_state(client, keys) == (0, 0)
    finally:
        stop_all(workers)
        await client.aclose()
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGCONT)
        server.close()
