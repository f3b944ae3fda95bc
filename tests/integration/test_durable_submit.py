"""STREAMQ_DURABLE_SUBMIT against a real Redis with no replica (standalone, or each cluster master):
WAIT confirms nothing, so the api answers 503 naming the setting, and the tasks exist anyway (documented).
Also: script calls recover from NOSCRIPT (a flushed script cache), alone, pipelined and before WAIT,
and from a dropped connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import ValidationError
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from streamq.services.api.app import create_app
from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Queue
from streamq.shared.settings import Settings
from streamq.testing import RedisServer


async def _api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://api") as api:
        yield api


async def test_unconfirmed_submit_is_503_naming_the_setting(settings: Settings, redis: Redis, keys: KeySchema) -> None:
    durable = settings.model_copy(update={"durable_submit": "replicas:1,50"})
    async for api in _api(durable):
        r = await api.post("/api/tasks/batch", json={"tasks": [{"type": "echo", "payload": 1}, {"type": "echo"}]})
        assert r.status_code == 503
        body = r.json()
        assert "STREAMQ_DURABLE_SUBMIT=replicas:1,50" in body["detail"] and "only 0 did" in body["detail"]
        assert len(body["tasks"]) == 2
        # written to the master all the same (WAIT does not roll back): the docs say so
        for task_id in body["tasks"]:
            assert await redis.hget(keys.task(task_id), "status") == "pending"
        single = await api.post("/api/tasks", json={"type": "echo"})
        assert single.status_code == 503 and len(single.json()["tasks"]) == 1


async def test_batch_over_partitions_waits_on_every_node(settings: Settings, redis: Redis, keys: KeySchema) -> None:
    durable = settings.model_copy(update={"durable_submit": "replicas:1,50"})
    async for api in _api(durable):
        assert (await api.put("/api/queues/bulk", json={"partitions": 3})).status_code == 200
        tasks = [{"type": "echo", "queue": "bulk", "payload": i} for i in range(12)]
        r = await api.post("/api/tasks/batch", json={"tasks": tasks})
        assert r.status_code == 503 and len(r.json()["tasks"]) == 12
        found = 0
        for part in keys.for_queue("bulk").partitions(3):
            found += sum([await redis.exists(part.task(task_id)) for task_id in r.json()["tasks"]])
        assert found == 12


@pytest.mark.standalone_only(reason="adds a replica to the session's plain redis-server")
async def test_confirmed_submit_is_201(settings: Settings, redis_server: RedisServer, keys: KeySchema) -> None:
    replica = RedisServer("--replicaof", "127.0.0.1", str(redis_server.port))
    try:
        # the replica's first sync copies the session's whole dataset: WAIT counts it only once it is done
        with SyncRedis(port=replica.port, decode_responses=True) as client:
            for _ in range(600):
                if client.info("replication").get("master_link_status") == "up":
                    break
                await asyncio.sleep(0.1)
        durable = settings.model_copy(update={"durable_submit": "replicas:1,5000"})
        async for api in _api(durable):
            r = await api.post("/api/tasks", json={"type": "echo"})
            assert r.status_code == 201, r.text
            # WAIT returned 1: the replica has the task (read it there, not on the master)
            with SyncRedis(port=replica.port, decode_responses=True) as client:
                assert client.hget(keys.task(r.json()["id"]), "status") == "pending"
    finally:
        replica.stop()


async def test_zero_replicas_wanted_is_not_a_valid_setting() -> None:
    with pytest.raises(ValidationError, match="at least 1"):
        Settings(durable_submit="replicas:0", _env_file=None)  # type: ignore[call-arg]


async def test_scripts_reload_after_the_script_cache_is_flushed(redis: Redis, keys: KeySchema) -> None:
    queue = Queue(redis, keys)
    await redis.script_flush()  # on a cluster: every primary
    [first] = await queue.submit([TaskCreate(type="echo")])
    await redis.script_flush()
    replies = await queue.scripts.call_many(
        [("cancel", [*keys.common(), keys.task(first.task.id)], [1000, first.task.id, 1000])]
    )
    assert [list(r) for r in replies] == [[1, "cancelled"]]
    await redis.script_flush()
    reply, acked = await queue.scripts.call_then_wait(
        "revive", [*keys.common(), keys.task(first.task.id)], [1000, first.task.id], 0, 10
    )
    assert reply[0] == 1 and acked == 0
    assert await redis.hget(keys.task(first.task.id), "status") == "pending"


@pytest.mark.standalone_only(reason="script calls go over held connections on standalone and Sentinel clients only")
async def test_a_script_call_whose_held_connection_was_dropped_runs_once_on_a_new_one(
    redis: Redis, keys: KeySchema
) -> None:
    queue = Queue(redis, keys)
    await queue.submit([TaskCreate(type="echo")])  # the call's connection is now held by queue.scripts
    held = queue.scripts._held
    assert held is not None and held.idle and held.idle[0].conn is not None
    [client_id] = await held.exchange(("CLIENT", "ID"))
    await redis.client_kill_filter(_id=client_id)
    [second] = await queue.submit([TaskCreate(type="echo")])  # held connection fails: redis-py's path
    assert (await queue.get(second.task.id)).status == "pending"
    assert await redis.zcard(keys.common()[0]) == 2  # each submit ran once
    # the same for calls sent together (call_many: the worker's finishes, the scheduler's promotions)
    [client_id] = await held.exchange(("CLIENT", "ID"))
    await redis.client_kill_filter(_id=client_id)
    cancel = [*keys.common(), keys.task(second.task.id)], [1000, second.task.id, 1000]
    replies = await queue.scripts.call_many([("cancel", *cancel), ("cancel", *cancel)])
    assert [list(r) for r in replies] == [[1, "cancelled"], [0, "cancelled"]]  # the second finds it done
