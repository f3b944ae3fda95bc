"""Groups and type limits with real Redis and real worker processes (docs/groups-and-limits.md):
concurrency across workers and a SIGKILL, rates, fairness, type limits, limits changed at runtime, bad
input. Concurrency is read from the handlers' own start/end notes (tests/e2e/handlers_groups.py)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamq.testing import Service
from tests.e2e.processes import wait_logged
from tests.integration.groups_support import mark, most_at_once, notes
from tests.services import StartService

pytestmark = pytest.mark.timeout(240)


async def start_workers(start_service: StartService, runs: Path, n: int = 3, **env: str) -> list[Service]:
    """``n`` worker processes of concurrency 50 running the groups handlers."""
    env = {"STREAMQ_HANDLERS": "tests.e2e.handlers_groups", "STREAMQ_TEST_RUNS": str(runs),
           "STREAMQ_WORKER_CONCURRENCY": "50", **env}  # fmt: skip
    workers = [start_service("streamq.services.worker", f"worker{i}", **env) for i in range(n)]
    for worker in workers:
        await wait_logged(worker, "worker started")
    return workers


async def submit(api: httpx.AsyncClient, tasks: list[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    for i in range(0, len(tasks), 1000):
        reply = await api.post("/api/tasks/batch", json={"tasks": tasks[i : i + 1000]})
        assert reply.status_code == 201, reply.text
        ids += [t["id"] for t in reply.json()["tasks"]]
    return ids


async def until_done(api: httpx.AsyncClient, ids: list[str], timeout: float = 120) -> None:
    """Every task of ``ids`` completed (a deadline only against hanging forever)."""
    async with asyncio.timeout(timeout):
        left = set(ids)
        while left:
            for task_id in list(left)[:200]:
                if (await api.get(f"/api/tasks/{task_id}")).json()["status"] == "completed":
                    left.discard(task_id)
            await asyncio.sleep(0.05)


def task(group: str | None, s: float = 0.0, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "grp_run", "payload": {"g": group or "-", "s": s}, **extra}
    if group is not None:
        out["group"] = group
    return out


async def test_group_concurrency_holds_across_workers(
    api: httpx.AsyncClient, start_service: StartService, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    await start_workers(start_service, runs)
    assert (await api.put("/api/queues/default/groups/acct-1", json={"concurrency": 2})).status_code == 200
    ids = await submit(api, [task("acct-1", 0.05) for _ in range(40)] + [task("acct-2", 0.05) for _ in range(40)])
    await until_done(api, ids)
    assert most_at_once(str(runs), "acct-1") == 2  # reached, never passed
    assert most_at_once(str(runs), "acct-2") > 2  # no limit of its own, none by default
    listed = (await api.get("/api/queues/default/groups")).json()
    row = next(g for g in listed["groups"] if g["group"] == "acct-1")
    assert row["concurrency"] == 2 and row["pending"] == 0 and row["running"] == 0 and not row["held_back"]
