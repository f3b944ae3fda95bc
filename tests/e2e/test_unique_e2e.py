"""Unique tasks and debounce with real api, worker and scheduler processes: a SIGKILLed worker does not
leak a unique key; 50 debounced submits over 2 s run the task once, with the last payload."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from streamq.shared.keys import KeySchema
from streamq.shared.settings import Settings
from streamq.testing import Service, free_port, wait_http
from tests.e2e.processes import service_env, start_schedulers, start_workers, stop_all
from tests.e2e.unique_handlers import read_runs

pytestmark = pytest.mark.e2e


def _api(env: dict[str, str], log_dir: Path) -> tuple[Service, str]:
    port = free_port()
    api = Service("streamq.services.api", {**env, "STREAMQ_API_PORT": str(port)}, log_dir, name="api")
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/api/health")
    return api, url


async def _status(client: httpx.AsyncClient, task_id: str, want: str, timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        task: dict[str, object] = (await client.get(f"/api/tasks/{task_id}")).json()
        if task["status"] == want:
            return task
        assert time.monotonic() < deadline, f"{task_id} is {task['status']} after {timeout} s, expected {want}"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(120)
async def test_a_sigkilled_holder_is_reclaimed_finishes_and_frees_its_key(
    settings: Settings, redis: Redis, keys: KeySchema, log_dir: Path
) -> None:
    runs = log_dir / "runs.txt"
    env = {
        **service_env(settings, runs, lease_s=2, worker_concurrency=2),
        "STREAMQ_HANDLERS": "tests.e2e.unique_handlers",
    }
    services = await start_workers(env, log_dir, 1, name="victim")
    api, url = _api(env, log_dir)
    services.append(api)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            body = {"type": "uq_record", "payload": {"sleep": 3}, "unique": {"key": "acct-1"}}
            holder = (await client.post("/api/tasks", json=body)).json()
            await _status(client, holder["id"], "processing", 20)
            services[0].signal(signal.SIGKILL)  # the worker dies mid-run
            services[0].wait(10)
            refused = await client.post("/api/tasks", json=body)
            assert refused.status_code == 409 and refused.json()["task_id"] == holder["id"]  # still held
            services += await start_workers(env, log_dir, 1, name="rescuer")
            done = (await client.get(f"/api/tasks/{holder['id']}", params={"wait": 60})).json()
            assert done["status"] == "completed" and done["attempts"] == 1  # reclaimed, not a new attempt
            assert await redis.get(keys.unique("acct-1")) is None  # released by the script that ended it
            again = await client.post("/api/tasks", json={**body, "payload": {"sleep": 0}})
            assert again.status_code == 201
            assert (await client.get(f"/api/tasks/{again.json()['id']}", params={"wait": 30})).json()["status"] == (
                "completed"
            )
        ran = [task for task, _payload in read_runs(str(runs))]
        assert ran.count(holder["id"]) == 2 and ran.count(again.json()["id"]) == 1  # the killed run and the reclaim
    finally:
        stop_all(services)


@pytest.mark.timeout(120)
async def test_fifty_debounced_submits_over_two_seconds_run_once_with_the_last_payload(
    settings: Settings, log_dir: Path
) -> None:
    runs = log_dir / "runs.txt"
    env = {**service_env(settings, runs), "STREAMQ_HANDLERS": "tests.e2e.unique_handlers"}
    services = await start_workers(env, log_dir, 2)
    services += await start_schedulers(env, log_dir, 1)
    api, url = _api(env, log_dir)
    services.append(api)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            body = {"type": "uq_record", "debounce": {"key": "reindex:doc-7", "window_s": 1}}
            loop = asyncio.get_running_loop()
            start = loop.time()
            answers = []
            for i in range(50):  # one submit every 40 ms: each lands within the window of the one before
                await asyncio.sleep(max(0.0, start + i * 0.04 - loop.time()))
                answers.append(await client.post("/api/tasks", json={**body, "payload": {"n": i}}))
            assert [a.status_code for a in answers] == [201] + [200] * 49
            task_id = answers[0].json()["id"]
            assert {a.json()["id"] for a in answers} == {task_id}
            assert all(a.json()["debounced"] for a in answers[1:])
            done = (await client.get(f"/api/tasks/{task_id}", params={"wait": 30})).json()
            assert done["status"] == "completed" and done["result"] == {"n": 49}
            await asyncio.sleep(1.5)  # a second run, if there were one, would have started by now
        assert read_runs(str(runs)) == [(task_id, {"n": 49})]
    finally:
        stop_all(services)
