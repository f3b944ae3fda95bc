"""Named queues and partitions end to end: the api and two worker processes as users run them, over HTTP."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.e2e.processes import wait_logged
from tests.services import StartService

pytestmark = pytest.mark.e2e


async def wait_queue(client: httpx.AsyncClient, name: str, done: int, timeout: float = 60) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        stats: dict[str, int] = (await client.get("/api/stats", params={"queue": name})).json()
        if stats["completed"] >= done:
            return stats
        if time.monotonic() > deadline:
            raise TimeoutError(f"queue {name} not finished: {stats}")
        await asyncio.sleep(0.1)


async def test_queues_partitions_and_pause_across_processes(api_url: str, start_service: StartService) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        assert (await client.put("/api/queues/wide", json={"partitions": 3})).json()["partitions"] == 3
        assert (await client.post("/api/queues/slow/pause")).status_code == 404  # unknown yet
        await client.put("/api/queues/slow", json={"partitions": 2})
        assert (await client.post("/api/queues/slow/pause")).json()["paused"] is True
        env = {"STREAMQ_QUEUES": "wide:3,slow:1,default:1", "STREAMQ_WORKER_CONCURRENCY": "4"}
        workers = [start_service("streamq.services.worker", **env) for _ in range(2)]
        for worker in workers:
            await wait_logged(worker, "worker started")
        slow = [{"type": "echo", "queue": "slow", "payload": i} for i in range(30)]
        wide = [{"type": "echo", "queue": "wide", "payload": i, "priority": 1 + i % 5} for i in range(300)]
        assert (await client.post("/api/tasks/batch", json={"tasks": slow})).json()["created"] == 30
        assert (await client.post("/api/tasks/batch", json={"tasks": wide})).json()["created"] == 300
        single = await client.post("/api/tasks", json={"type": "echo", "payload": "one"})
        assert single.json()["queue"] == "default"
        # the window: every other task completes while the paused queue starts none
        assert (await wait_queue(client, "wide", 300))["total"] == 300
        await wait_queue(client, "default", 1)
        held = (await client.get("/api/queues/slow")).json()
        assert held["stats"]["pending"] == 30 and held["stats"]["processing"] == held["stats"]["completed"] == 0
        assert held["depth"]["3"] == 30 and held["paused"] is True
        listed = {q["name"]: q for q in (await client.get("/api/queues")).json()}
        assert listed["wide"]["partitions"] == 3 and listed["wide"]["stats"]["completed"] == 300
        live = (await client.get("/api/workers")).json()
        assert len(live) == 2 and all(w["queues"] == ["wide", "slow", "default"] for w in live)
        assert sorted(listed["wide"]["workers"]) == sorted(w["id"] for w in live)
        assert (await client.post("/api/queues/slow/resume")).json()["paused"] is False
        stats = await wait_queue(client, "slow", 30)
        assert stats["pending"] == stats["processing"] == 0
        everything = (await client.get("/api/stats")).json()
        assert everything["completed"] == everything["total"] == 331
        echo = (await client.get("/api/tasks", params={"queue": "slow", "limit": 100})).json()["tasks"]
        assert sorted(t["result"] for t in echo) == list(range(30))
    for worker in workers:
        assert worker.stop() == 0
