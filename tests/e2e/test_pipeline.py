"""End to end with real processes: api and workers as users run them, over HTTP."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from datetime import datetime

import httpx
import pytest

from streamq.testing import free_port, wait_http
from tests.e2e.processes import wait_logged
from tests.services import StartService
from tests.support import ROOT

pytestmark = pytest.mark.e2e


async def wait_all_finished(client: httpx.AsyncClient, total: int, timeout: float = 60) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        stats: dict[str, int] = (await client.get("/api/stats")).json()
        if stats["completed"] + stats["failed"] + stats["cancelled"] >= total:
            return stats
        if time.monotonic() > deadline:
            raise TimeoutError(f"not finished: {stats}")
        await asyncio.sleep(0.1)


async def listed_workers(client: httpx.AsyncClient, expected: list[int], timeout: float = 10) -> list[int]:
    """The pids /api/workers lists, once they are ``expected`` or after ``timeout``: a registration
    lives three heartbeats, and a worker whose loop a loaded machine stalls longer renews it late."""
    deadline = time.monotonic() + timeout
    while True:
        pids = sorted(w["pid"] for w in (await client.get("/api/workers")).json())
        if pids == expected or time.monotonic() > deadline:
            return pids
        await asyncio.sleep(0.1)


async def test_500_mixed_priority_tasks_all_complete(api_url: str, start_service: StartService) -> None:
    workers = [start_service("streamq.services.worker", STREAMQ_WORKER_CONCURRENCY="8") for _ in range(2)]
    for worker in workers:  # both registered before the work arrives: one alone can finish it all on a busy machine
        await wait_logged(worker, "worker started")
    rng = random.Random(7)
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        singles = [
            {"type": rng.choice(["noop", "echo"]), "payload": i, "priority": rng.randint(1, 5)} for i in range(250)
        ]
        sem = asyncio.Semaphore(20)

        async def post(body: dict[str, object]) -> int:
            async with sem:
                return (await client.post("/api/tasks", json=body)).status_code

        codes = await asyncio.gather(*(post(b) for b in singles))
        assert set(codes) == {201}
        batch = [{"type": "echo", "payload": i, "priority": 1 + i % 5} for i in range(250)]
        assert (await client.post("/api/tasks/batch", json={"tasks": batch})).json()["created"] == 250
        stats = await wait_all_finished(client, 500)
        assert stats["total"] == stats["completed"] == stats["submitted_total"] == stats["completed_total"] == 500
        assert stats["pending"] == stats["processing"] == stats["failed"] == stats["scheduled"] == 0
        echo = (await client.get("/api/tasks", params={"type": "echo", "limit": 5})).json()["tasks"]
        assert all(t["result"] == t["payload"] for t in echo)
        assert await listed_workers(client, sorted(w.pid for w in workers)) == sorted(w.pid for w in workers)
    for worker in workers:
        assert worker.stop() == 0


async def test_priority_jumps_a_backlog(api_url: str, start_service: StartService) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        start_service("streamq.services.worker", STREAMQ_WORKER_CONCURRENCY="1")
        backlog = [{"type": "sleep", "payload": 0.01, "priority": 1} for _ in range(200)]
        await client.post("/api/tasks/batch", json={"tasks": backlog})
        await asyncio.sleep(0.3)  # the worker is busy with the backlog
        high_at = time.time()
        high = [{"type": "sleep", "payload": 0.01, "priority": 5} for _ in range(5)]
        high_ids = [t["id"] for t in (await client.post("/api/tasks/batch", json={"tasks": high})).json()["tasks"]]
        await wait_all_finished(client, 205)
        starts: list[tuple[float, int]] = []
        cursor = None
        while True:
            page = (
                await client.get("/api/tasks", params={"limit": 500, **({"cursor": cursor} if cursor else {})})
            ).json()
            starts += [(datetime.fromisoformat(t["started_at"]).timestamp(), t["priority"]) for t in page["tasks"]]
            if not (cursor := page["next_cursor"]):
                break
        last_high = max(s for s, p in starts if p == 5)
        overtaken = sum(1 for s, p in starts if p == 1 and high_at <= s < last_high)
        print(f"low-priority tasks started after the high ones arrived and before they finished: {overtaken}")
        assert len(high_ids) == 5 and overtaken <= 2


async def test_idempotency_and_error_paths_over_http(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
        a = await client.post("/api/tasks", json={"type": "noop"}, headers={"Idempotency-Key": "e2e"})
        b = await client.post("/api/tasks", json={"type": "noop"}, headers={"Idempotency-Key": "e2e"})
        assert (a.status_code, b.status_code) == (201, 200) and a.json()["id"] == b.json()["id"]
        r = await client.post("/api/tasks", json={"type": "noop", "priority": 0})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "priority"]
        r = await client.post("/api/tasks", json={"type": "mystery"})
        assert r.status_code == 422 and "known types" in r.json()["detail"][0]["msg"]
        r = await client.post("/api/tasks", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422
        big = b'{"type":"noop","payload":"' + b"x" * (1024 * 1024 + 10) + b'"}'
        r = await client.post("/api/tasks", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert (await client.get("/api/tasks/01UNKNOWN")).status_code == 404
        r = await client.post(f"/api/tasks/{a.json()['id']}/retry")
        assert r.status_code == 409 and r.json()["status"] == "pending"
        assert (await client.get("/api/stats")).json()["total"] == 1


async def test_failed_task_is_retried_by_hand(api_url: str, start_service: StartService) -> None:
    start_service("streamq.services.worker")
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
        task_id = (await client.post("/api/tasks", json={"type": "fail", "payload": "nope", "max_retries": 0})).json()[
            "id"
        ]
        await wait_all_finished(client, 1)
        task = (await client.get(f"/api/tasks/{task_id}")).json()
        assert task["status"] == "failed" and task["error"] == "RuntimeError: nope"
        assert (await client.get("/api/stats")).json()["dead_letter"] == 1
        revived = (await client.post(f"/api/tasks/{task_id}/retry")).json()
        assert revived["status"] in ("pending", "processing", "failed") and revived["attempts"] in (0, 1)
        deadline = time.monotonic() + 10
        while (await client.get("/api/stats")).json()["failed_total"] < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        task = (await client.get(f"/api/tasks/{task_id}")).json()
        assert task["status"] == "failed" and [h["attempt"] for h in task["history"]] == [1, 1]
        assert (await client.get("/api/stats")).json()["dead_letter"] == 1  # the first dead letter was removed


def test_sigterm_exits_zero(start_service: StartService) -> None:
    port = free_port()
    api = start_service("streamq.services.api", STREAMQ_API_PORT=str(port))
    worker = start_service("streamq.services.worker")
    wait_http(f"http://127.0.0.1:{port}/api/health")
    while '"worker started"' not in worker.log():
        time.sleep(0.05)
    for service in (worker, api):
        service.signal(signal.SIGTERM)
        assert service.wait(15) == 0
    assert '"worker stopped"' in worker.log() and "Application shutdown complete" in api.log()


def test_bad_setting_stops_with_one_clear_line() -> None:
    env = {"STREAMQ_WORKER_CONCURRENCY": "zero", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "streamq.services.worker"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "streamq: invalid setting STREAMQ_WORKER_CONCURRENCY: Input should be a valid integer, "
        "unable to parse string as an integer"
    ]
