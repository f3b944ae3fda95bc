"""Long-poll: GET /api/tasks/{id}?wait=S against a real api process, its range, and 1,000 concurrent
waiters on a bounded number of Redis connections."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from redis.asyncio import Redis

import streamq
from tests.e2e.processes import wait_logged
from tests.services import StartService

pytestmark = pytest.mark.e2e


async def test_wait_range_and_answers(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        task = (await http.post("/api/tasks", json={"type": "noop"})).json()
        for bad in ("0", "-1", "60.5", "nan", "inf", "soon"):
            answer = await http.get(f"/api/tasks/{task['id']}", params={"wait": bad})
            assert answer.status_code == 422, bad
            assert answer.json()["detail"][0]["loc"] == ["query", "wait"]
        # no worker: after the wait, 200 with the task as it stands
        still = await http.get(f"/api/tasks/{task['id']}", params={"wait": "0.3"})
        assert still.status_code == 200 and still.json()["status"] == "pending"
        assert (await http.get("/api/tasks/01NOSUCHTASK0000000000000", params={"wait": "1"})).status_code == 404
        # a finished task answers at once; a cancel or a delete wakes its waiter
        waiting = asyncio.create_task(http.get(f"/api/tasks/{task['id']}", params={"wait": "60"}))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        assert (await http.post(f"/api/tasks/{task['id']}/cancel")).status_code == 200
        woken = await asyncio.wait_for(waiting, 30)  # well before its 60 s
        assert woken.json()["status"] == "cancelled"
        assert (await http.get(f"/api/tasks/{task['id']}", params={"wait": "60"})).json()["status"] == "cancelled"


@pytest.mark.standalone_only(reason="counts one redis-server's CLIENT LIST; a cluster spreads them over its masters")
async def test_thousand_waiters_share_the_partition_readers(
    api_url: str, start_service: StartService, redis: Redis
) -> None:
    """1,000 requests wait at once; the api's Redis connections stay bounded (its capped pool plus one
    reader per partition, not one per waiter); a worker then finishes every task and every waiter hears."""
    async with httpx.AsyncClient(base_url=api_url, timeout=120, limits=httpx.Limits(max_connections=1100)) as http:
        assert (await http.put("/api/queues/default", json={"partitions": 4})).status_code == 200
        tasks = [{"type": "noop", "payload": i} for i in range(1000)]
        ids = [t["id"] for t in (await http.post("/api/tasks/batch", json={"tasks": tasks})).json()["tasks"]]
        before = await _connections(redis)
        waiters = [asyncio.create_task(http.get(f"/api/tasks/{i}", params={"wait": "60"})) for i in ids]
        while (readers := await _blocked_reads(redis)) < 4:  # every waiter has looked its task up by now
            await asyncio.sleep(0.05)
        await asyncio.sleep(1)
        during = await _connections(redis)
        assert not any(w.done() for w in waiters)
        print(f"connections: {before} before, {during} with 1,000 waiters ({readers} blocked reads)")
        assert during - before <= 64 + 4  # the api's capped pool and one reader per partition
        worker = start_service("streamq.services.worker", STREAMQ_WORKER_CONCURRENCY="50")
        await wait_logged(worker, "worker started")
        answers = await asyncio.wait_for(asyncio.gather(*waiters), 120)
        assert all(a.status_code == 200 and a.json()["status"] == "completed" for a in answers)


async def test_client_wait_loops_over_long_polls(stack: str) -> None:
    async with streamq.AsyncClient(stack) as client:
        task = await client.submit("sleep", 1.5)
        done = await client.wait(task.id, timeout=30)
        assert done.status == "completed" and done.completed_at is not None


async def _connections(redis: Redis) -> int:
    return sum(1 for c in await _clients(redis) if c.get("cmd") not in ("client|list", "client"))


async def _blocked_reads(redis: Redis) -> int:
    return sum(1 for c in await _clients(redis) if c.get("cmd") == "xread" and "b" in str(c.get("flags", "")))


async def _clients(redis: Redis) -> list[dict[str, str]]:
    nodes = await redis.client_list()
    return list(nodes)
