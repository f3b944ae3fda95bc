"""Groups end to end: the api, scheduler and worker processes over HTTP (docs/groups-and-limits.md).
Delayed and retried tasks come back through their group's limits (promote.lua), a waiting task can be
cancelled, and a queue of several partitions keeps each group's limit (its tasks share one partition)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.processes import wait_logged
from tests.integration.groups_support import most_at_once, notes
from tests.services import StartService

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def statuses(client: httpx.AsyncClient, ids: list[str]) -> list[str]:
    return [(await client.get(f"/api/tasks/{i}")).json()["status"] for i in ids]


async def until_ended(client: httpx.AsyncClient, ids: list[str], timeout: float = 90) -> list[str]:
    """Every task's final status (a deadline only against hanging forever)."""
    async with asyncio.timeout(timeout):
        while True:
            now = await statuses(client, ids)
            if all(s in ("completed", "failed", "cancelled") for s in now):
                return now
            await asyncio.sleep(0.1)


async def test_groups_end_to_end(api_url: str, start_service: StartService, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    env = {"STREAMQ_HANDLERS": "tests.e2e.handlers_groups", "STREAMQ_TEST_RUNS": str(runs),
           "STREAMQ_WORKER_CONCURRENCY": "20", "STREAMQ_QUEUES": "wide:3,default:1"}  # fmt: skip
    workers = [start_service("streamq.services.worker", f"worker{i}", **env) for i in range(2)]
    scheduler = start_service("streamq.services.scheduler")
    for service in (*workers, scheduler):
        await wait_logged(service, "started")
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        assert (await client.put("/api/queues/wide", json={"partitions": 3, "group_concurrency": 1})).is_success
        assert (await client.get("/api/queues/wide")).json()["group_concurrency"] == 1
        soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        tasks: list[dict[str, Any]] = [
            {"type": "grp_flaky" if i % 4 == 0 else "grp_run", "queue": "wide", "group": f"acct-{i % 6}",
             "payload": {"g": f"acct-{i % 6}", "s": 0.05}, "retry_backoff_s": 0.1,
             **({"scheduled_for": soon} if i % 3 == 0 else {})}
            for i in range(60)
        ]  # fmt: skip
        reply = await client.post("/api/tasks/batch", json={"tasks": tasks})
        assert reply.status_code == 201, reply.text
        ids = [t["id"] for t in reply.json()["tasks"]]
        assert {t["group"] for t in reply.json()["tasks"]} == {f"acct-{k}" for k in range(6)}
        # one more, held behind its group's running task, cancelled while it waits
        await client.put("/api/queues/wide/groups/solo", json={"concurrency": 1})
        blocker = {"type": "grp_run", "queue": "wide", "group": "solo", "payload": {"g": "solo", "s": 3}}
        first = (await client.post("/api/tasks", json=blocker)).json()["id"]
        waiting = (await client.post("/api/tasks", json=blocker)).json()["id"]
        assert (await client.get(f"/api/tasks/{waiting}")).json()["status"] == "pending"
        assert (await client.post(f"/api/tasks/{waiting}/cancel")).json()["status"] == "cancelled"
        assert await until_ended(client, ids) == ["completed"] * 60
        assert await until_ended(client, [first]) == ["completed"]
        for k in range(6):
            assert most_at_once(str(runs), f"acct-{k}") == 1
        assert waiting not in {n[1] for n in notes(str(runs))}  # the cancelled one never ran
        retried = [t for t in ids if (await client.get(f"/api/tasks/{t}")).json()["attempts"] == 2]
        assert len(retried) == 15
        groups = {g["group"]: g for g in (await client.get("/api/queues/wide/groups")).json()["groups"]}
        assert groups["solo"]["concurrency"] == 1 and groups["solo"]["running"] == 0
        assert all(g["pending"] == 0 and g["running"] == 0 for g in groups.values())
    for service in (*workers, scheduler):
        assert service.stop() == 0
