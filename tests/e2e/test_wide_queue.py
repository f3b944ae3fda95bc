"""A worker on a queue of 64 partitions (the most a queue may have) stays ready and recovers a crashed
peer's tasks. Each partition's blocking reader holds a connection for its whole block: when those came
from the worker's capped pool, 64 of them took every connection, and the heartbeat, registration, lease
renewal, reclaim and the finisher's records waited for one that never came back (hardening issue, item 2)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis, RedisCluster

from streamq.testing import free_port
from tests.e2e.handlers import read_runs
from tests.e2e.test_health import probe
from tests.services import StartService

pytestmark = pytest.mark.e2e

PARTITIONS = 64


async def blocked_readers(redis: Redis) -> int:
    """Connections blocked in XREADGROUP, on every node."""
    if isinstance(redis, RedisCluster):  # CLIENT LIST goes to one node unless sent to each
        await redis.ping()  # the client knows its nodes once it has sent a command
        clients = [c for node in redis.get_primaries() for c in await redis.client_list(target_nodes=node)]
    else:
        clients = await redis.client_list()
    return sum(1 for c in clients if c.get("cmd") == "xreadgroup" and "b" in c.get("flags", ""))


async def wait_for(what: str, check: Callable[[], Awaitable[bool]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.1)


@pytest.mark.timeout(150)
async def test_a_worker_on_64_partitions_stays_ready_and_recovers_a_crashed_peer(
    api_url: str, start_service: StartService, redis: Redis, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.txt"
    env = {
        "STREAMQ_QUEUES": "wide",
        "STREAMQ_HANDLERS": "tests.e2e.handlers",
        "STREAMQ_TEST_RUNS": str(runs),
        "STREAMQ_WORKER_CONCURRENCY": "4",  # its pool: max(64, 2 x 4) = 64 connections, one per partition
        "STREAMQ_LEASE_S": "2",
    }
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as api:
        assert (await api.put("/api/queues/wide", json={"partitions": PARTITIONS})).json()["partitions"] == PARTITIONS
        metrics_port = free_port()
        survivor = start_service(
            "streamq.services.worker", name="survivor", STREAMQ_METRICS_PORT=str(metrics_port), **env
        )
        peer = start_service("streamq.services.worker", name="peer", **env)

        # both idle: every partition of each has a reader blocked on it
        async def all_blocked() -> bool:
            return await blocked_readers(redis) >= 2 * PARTITIONS

        await wait_for("every partition's reader blocked", all_blocked)

        tasks = [{"type": "rel_sleep", "queue": "wide", "payload": 0.5} for _ in range(128)]
        created = await api.post("/api/tasks/batch", json={"tasks": tasks})
        ids = {t["id"] for t in created.json()["tasks"]}
        assert len(ids) == 128

        async def peer_running() -> bool:
            return any(pid == peer.pid for _task, pid in read_runs(str(runs)))

        await wait_for("the peer runs a task", peer_running)
        peer.signal(signal.SIGKILL)
        peer.wait(10)
        killed_with = {task for task, pid in read_runs(str(runs)) if pid == peer.pid}

        async def all_completed() -> bool:
            stats = (await api.get("/api/stats", params={"queue": "wide"})).json()
            return bool(stats["completed"] == 128)

        await wait_for("every task completed by the survivor", all_completed, timeout=90)
        stats = (await api.get("/api/stats", params={"queue": "wide"})).json()
        assert (stats["failed"], stats["processing"], stats["pending"]) == (0, 0, 0)
        per_task = Counter(task for task, _pid in read_runs(str(runs)))
        assert set(per_task) == ids
        assert {task for task, n in per_task.items() if n > 1} <= killed_with  # only the crashed peer's ran twice

        # the survivor is ready and registered: its heartbeat never starved behind the readers
        code, body = probe(metrics_port, "/readyz")
        assert (code, body.get("status")) == (200, "ok"), body
        live = (await api.get("/api/workers")).json()
        assert [w["pid"] for w in live] == [survivor.pid]
        assert "No connection available" not in survivor.log()
