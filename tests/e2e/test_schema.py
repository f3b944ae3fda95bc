"""The Redis layout's version: a Redis written by the layout before versions (with the index of all
tasks that builds before 4494f02 kept) migrated by ``streamq migrate`` and served as before; a newer
layout stops every service with exit 2; a migration that crashed half way finishes when run again."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from streamq.shared import schema
from streamq.shared.keys import KeySchema
from streamq.shared.queues import QueueRegistry
from streamq.shared.settings import Settings
from streamq.testing import Service, free_port, wait_http
from tests.services import StartService
from tests.support import ROOT, task_ids

pytestmark = pytest.mark.e2e

STREAMQ = str(Path(sys.executable).parent / "streamq")
TOO_NEW = f"Redis holds schema {schema.CURRENT + 5}, this streamq knows up to {schema.CURRENT}: upgrade streamq"


async def wait_for(client: httpx.AsyncClient, done: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        stats: dict[str, Any] = (await client.get("/api/stats")).json()
        if done(stats):
            return stats
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached: {stats}")
        await asyncio.sleep(0.1)


def start_api(start_service: StartService) -> tuple[Service, str]:
    port = free_port()
    api = start_service("streamq.services.api", STREAMQ_API_PORT=str(port))
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/api/health")
    return api, url


async def snapshot(client: httpx.AsyncClient) -> dict[str, Any]:
    """What users read: every task (one by one and listed), the counts, the schedules."""
    listed = (await client.get("/api/tasks", params={"limit": 100})).json()["tasks"]
    stats = (await client.get("/api/stats")).json()
    return {
        "listed": [t["id"] for t in listed],
        "tasks": {t["id"]: (await client.get(f"/api/tasks/{t['id']}")).json() for t in listed},
        "stats": stats,
        "schedules": (await client.get("/api/schedules")).json(),
    }


async def make_legacy(redis: Redis, keys: KeySchema) -> int:
    """Turn the Redis into what the layout before versions left: no schema key, every task in
    ``idx:all`` and its hash with ``id``, ``queue`` and ``attempts`` (0 until its first start)."""
    await redis.delete(keys.schema)
    ids = await task_ids(redis, keys)
    for task_id in ids:
        await redis.zadd(keys.legacy_index_all, {task_id: 0})
        await redis.hset(keys.task(task_id), mapping={"id": f'"{task_id}"', "queue": f'"{keys.queue}"'})
        await redis.hsetnx(keys.task(task_id), "attempts", "0")
    return len(ids)


def migrate_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STREAMQ_REDIS_URL": settings.redis_url, "STREAMQ_KEY_PREFIX": settings.key_prefix}
    return subprocess.run(
        [STREAMQ, "migrate", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


async def test_a_redis_of_the_previous_layout_is_migrated_and_served_as_before(
    start_service: StartService, settings: Settings, redis: Redis, keys: KeySchema
) -> None:
    api, url = start_api(start_service)
    worker = start_service("streamq.services.worker", name="worker-old")
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for i in range(3):
            assert (await client.post("/api/tasks", json={"type": "echo", "payload": i})).status_code == 201
        for i in range(2):
            body = {"type": "fail", "payload": f"boom {i}", "max_retries": 0}
            assert (await client.post("/api/tasks", json=body)).status_code == 201
        later = {"type": "echo", "payload": "later", "scheduled_for": "2030-01-01T00:00:00Z"}
        for _ in range(2):
            assert (await client.post("/api/tasks", json=later)).status_code == 201
        cancelled = (await client.post("/api/tasks", json=later)).json()["id"]
        assert (await client.post(f"/api/tasks/{cancelled}/cancel")).status_code == 200
        nightly = {"name": "nightly", "cron": "0 3 * * *", "task": {"type": "echo", "payload": "nightly"}}
        assert (await client.post("/api/schedules", json=nightly)).status_code == 201
        await wait_for(client, lambda s: s["completed"] == 3 and s["failed"] == 2)
        assert worker.stop() == 0
        for i in range(3):  # pending: no worker runs them before the upgrade
            assert (await client.post("/api/tasks", json={"type": "echo", "payload": f"p{i}"})).status_code == 201
        before = await snapshot(client)
    assert before["stats"]["dead_letter"] == 2 and before["stats"]["total"] == 11
    assert before["stats"]["pending"] == 3 and before["stats"]["cancelled"] == 1
    assert len(before["listed"]) == 11
    assert api.stop() == 0

    assert await make_legacy(redis, keys) == 11
    dry = migrate_cli(settings, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would run migration 1" in dry.stdout and "no rolling upgrade" in dry.stdout
    assert await redis.exists(keys.legacy_index_all) == 1
    ran = migrate_cli(settings)
    assert ran.returncode == 0, ran.stderr
    assert "ran migration 1" in ran.stdout and f"schema 0 -> {schema.CURRENT}" in ran.stdout
    assert await redis.exists(keys.legacy_index_all) == 0
    assert await schema.read_version(redis, keys) == schema.CURRENT
    again = migrate_cli(settings)
    assert again.returncode == 0 and "up to date" in again.stdout

    _api, url = start_api(start_service)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        after = await snapshot(client)
        assert after == before  # readable, listable and counted as before
        start_service("streamq.services.worker", name="worker-new")
        stats = await wait_for(client, lambda s: s["completed"] == 6)
        assert stats["pending"] == 0 and stats["completed_total"] == 6
        failed = before["listed"][-4]  # a dead-lettered task is retried and runs again
        assert before["tasks"][failed]["status"] == "failed"
        assert (await client.post(f"/api/tasks/{failed}/retry")).status_code == 200
        await wait_for(client, lambda s: s["failed_total"] == 3)


@pytest.mark.parametrize("module", ["worker", "scheduler", "notifier", "api"])
async def test_a_newer_schema_stops_the_service_with_exit_2(
    start_service: StartService, settings: Settings, redis: Redis, keys: KeySchema, module: str
) -> None:
    await redis.hset(keys.schema, "version", schema.CURRENT + 5)
    service = start_service(
        f"streamq.services.{module}",
        STREAMQ_API_PORT=str(free_port()),
        STREAMQ_WEBHOOK_SECRET="whsec_ZGV2ZWxvcG1lbnQgb25seSwgc2V0IHlvdXIgb3du",
    )
    assert service.wait(timeout=60) == 2
    assert f"streamq: {TOO_NEW}" in service.log().splitlines()
    ran = migrate_cli(settings)
    assert ran.returncode == 2 and TOO_NEW in ran.stderr
    assert await schema.read_version(redis, keys) == schema.CURRENT + 5


async def test_a_fresh_redis_is_stamped_and_an_older_one_migrated_by_the_api_at_start(
    start_service: StartService, redis: Redis, keys: KeySchema
) -> None:
    worker = start_service("streamq.services.worker")  # a fresh Redis: nothing under the prefix
    deadline = time.monotonic() + 30
    while "worker started" not in worker.log():
        assert worker.proc.poll() is None and time.monotonic() < deadline, worker.log()
        await asyncio.sleep(0.1)
    assert await schema.read_version(redis, keys) == schema.CURRENT
    assert worker.stop() == 0
    await redis.delete(keys.schema)  # streamq data without a version: the layout before versions
    await redis.zadd(keys.legacy_index_all, {"01ABC": 0})
    start_api(start_service)  # migrates at start (STREAMQ_AUTO_MIGRATE defaults to true)
    assert await schema.read_version(redis, keys) == schema.CURRENT
    assert await redis.exists(keys.legacy_index_all) == 0


async def test_services_that_do_not_migrate_wait_for_a_blocking_migration(redis: Redis, keys: KeySchema) -> None:
    await redis.hset(keys.queues, "default", '{"partitions":1}')  # data without a version: schema 0
    blocking = [schema.Migration(1, "", rolling=False, blocking=True, step=schema.MIGRATIONS[0].step)]
    stop = asyncio.Event()
    waiting = asyncio.create_task(schema.wait_current(redis, keys, keys.queue, stop, blocking))
    await asyncio.sleep(1.5)  # a poll or two: it keeps waiting while the version is 0
    assert not waiting.done()
    await schema.migrate(redis, keys, keys.queue, blocking)
    assert await asyncio.wait_for(waiting, 10) is True
    cleanup_only = [schema.Migration(2, "", rolling=True, blocking=False, step=schema.MIGRATIONS[0].step)]
    assert await schema.wait_current(redis, keys, keys.queue, stop, cleanup_only) is True  # no wait


async def test_a_migration_that_crashed_half_way_finishes_when_run_again(redis: Redis, keys: KeySchema) -> None:
    await QueueRegistry(redis, keys).configure("wide", 4)
    parts = await QueueRegistry(redis, keys, cache_s=0).all_partitions(keys.queue)
    assert len(parts) == 5  # default, and wide's 4 partitions: each its own hash slot
    for part in parts:
        await redis.zadd(part.legacy_index_all, {"01ABC": 0})
    real = schema.MIGRATIONS[0]
    ran: list[str] = []

    async def crashing(client: Redis, part: KeySchema) -> None:
        if len(ran) == 3:
            raise ConnectionError("the migrator died")
        await real.step(client, part)
        ran.append(part.tag)

    with pytest.raises(ConnectionError):
        await schema.migrate(redis, keys, keys.queue, [schema.Migration(1, "", False, False, crashing)])
    assert await schema.read_version(redis, keys) is None  # not advanced: 0, with data
    assert await schema.current_version(redis, keys, keys.queue) == 0
    assert [await redis.exists(p.legacy_index_all) for p in parts] == [0, 0, 0, 1, 1]

    async def resumed(client: Redis, part: KeySchema) -> None:
        await real.step(client, part)
        ran.append(part.tag)

    await schema.migrate(redis, keys, keys.queue, [schema.Migration(1, "", False, False, resumed)])
    assert ran == [p.tag for p in parts]  # each partition ran once: the second run resumed
    assert [await redis.exists(p.legacy_index_all) for p in parts] == [0] * 5
    assert await redis.hgetall(keys.schema) == {"version": str(schema.CURRENT)}  # progress dropped
    assert await schema.migrate(redis, keys, keys.queue) == []  # idempotent
