"""The api's memory guard against a real redis-server with a small maxmemory: new tasks are refused
(JSON 503 naming the cause, Retry-After) while used memory is above the threshold, reads keep working,
a worker keeps finishing and its janitor prunes, and the refusal ends by itself once memory falls;
no acknowledged task is lost and nothing refused is written."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from streamq.services.worker.registry import Registry, TaskContext
from streamq.shared.keys import KeySchema
from streamq.shared.settings import Settings
from streamq.testing import RedisServer
from tests.integration.helpers import running_worker
from tests.integration.test_write_refusals import _acked, _api
from tests.support import task_ids

pytestmark = [
    pytest.mark.standalone_only(reason="starts its own plain redis-server with a small maxmemory"),
    pytest.mark.timeout(120),
]
PAYLOAD = "x" * 50_000
GUARD = 0.6


def _ratio(metrics_text: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith("streamq_redis_memory_ratio "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no streamq_redis_memory_ratio")


async def test_guard_refuses_new_tasks_until_pruning_frees_memory(settings: Settings) -> None:
    server = RedisServer()
    redis = Redis.from_url(server.url, decode_responses=True)
    keys = KeySchema(settings.key_prefix, settings.queue)
    s = settings.model_copy(update={"redis_url": server.url, "memory_guard_ratio": GUARD, "task_types": ["work"]})
    try:
        async with _api(s, server, memory_guard=GUARD) as api:
            reply = await api.put("/api/queues/default", json={"retention": {"completed": {"count": 0}}})
            assert reply.status_code == 200
            acked: list[str] = []
            for _ in range(40):
                acked += _acked(await api.post("/api/tasks", json={"type": "work", "payload": PAYLOAD}))
            assert len(acked) == 40
            used = int((await redis.info("memory"))["used_memory"])
            await redis.config_set("maxmemory", str(int(used / (GUARD + 0.15))))
            async with asyncio.timeout(15):  # the guard samples about once a second
                while (r := await api.post("/api/tasks", json={"type": "work"})).status_code != 503:
                    acked += _acked(r)
                    await asyncio.sleep(0.05)
            body = r.json()
            assert body["cause"] == "memory_guard" and "STREAMQ_MEMORY_GUARD_RATIO" in body["detail"], body
            assert r.headers["retry-after"] == "5" and r.headers["content-type"] == "application/json"
            batch = await api.post("/api/tasks/batch", json={"tasks": [{"type": "work"}] * 3})
            assert batch.status_code == 503 and batch.json()["cause"] == "memory_guard"
            keyed = await api.post("/api/tasks", json={"type": "work"}, headers={"Idempotency-Key": "k1"})
            assert keyed.status_code == 503
            for path in ("/api/tasks", f"/api/tasks/{acked[0]}", "/api/stats", "/api/queues"):
                assert (await api.get(path)).status_code == 200, path
            assert _ratio((await api.get("/metrics")).text) >= GUARD
            health = (await api.get("/api/health")).json()
            assert health["writes"] == "memory_guard" and health["memory_ratio"] >= GUARD, health
            assert await task_ids(redis, keys) == sorted(acked)  # nothing refused was written

            registry = Registry()

            async def work(_payload: object, _ctx: TaskContext) -> None:
                return None

            registry.register("work", work)
            async with running_worker(s, registry):  # finishes the backlog; its janitor prunes it
                async with asyncio.timeout(60):
                    while (r := await api.post("/api/tasks", json={"type": "work"})).status_code == 503:
                        await asyncio.sleep(0.1)
                assert r.status_code == 201, r.text
                acked += _acked(r)
                async with asyncio.timeout(30):
                    while (await api.get("/api/stats")).json()["completed_total"] < len(acked):
                        await asyncio.sleep(0.05)
            assert (await api.get("/api/health")).json()["writes"] == "ok"
            stats = (await api.get("/api/stats")).json()
            assert stats["completed_total"] == stats["submitted_total"] == len(acked)  # every acknowledged task ran
    finally:
        await redis.aclose()
        server.stop()
