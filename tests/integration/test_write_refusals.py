"""Redis refusing writes (out of memory under noeviction, a read-only replica, a failed persistence
check): the api answers a JSON 503 naming the cause with Retry-After, on the routes, the submit fast
path and the rate limiter; reads keep working; nothing acknowledged is lost and nothing refused is
written. Each test starts its own plain redis-server (a small maxmemory, a replica role or a failed
save are server-wide)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from streamq.services.api.app import create_app
from streamq.shared.healthcheck import _redis_ok
from streamq.shared.keys import KeySchema
from streamq.shared.redis import connect
from streamq.shared.settings import Settings
from streamq.testing import RedisServer, free_port
from tests.support import task_ids

pytestmark = pytest.mark.standalone_only(reason="starts its own plain redis-server with server-wide settings")
BIG = "x" * 100_000


@asynccontextmanager
async def _own_redis(*extra: str) -> AsyncIterator[tuple[RedisServer, Redis]]:
    """A plain redis-server of the test's own (its refusals are server-wide) and a client of it."""
    server = RedisServer(*extra)
    redis = Redis.from_url(server.url, decode_responses=True)
    try:
        yield server, redis
    finally:
        await redis.config_set(
            "save", ""
        )  # after a failed save its shutdown save would fail too, and it would refuse to stop
        await redis.aclose()
        server.stop()


@asynccontextmanager
async def _api(
    settings: Settings, server: RedisServer, rate_limit: str = "10000/s burst 10000", memory_guard: float = 0.0
) -> AsyncIterator[httpx.AsyncClient]:
    """The api in-process on ``server``, with a rate limit (its bucket script must keep working too) and
    by default no memory guard (Redis's own refusals are what these tests see; test_memory_guard.py
    has the guard)."""
    update = {"redis_url": server.url, "rate_limit": rate_limit, "memory_guard_ratio": memory_guard}
    app = create_app(settings.model_copy(update=update))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # a 500 is answered, not raised
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://api") as api:
        yield api


def _acked(response: httpx.Response) -> list[str]:
    if response.status_code not in (200, 201):
        return []
    body = response.json()
    return [t["id"] for t in body["tasks"]] if "tasks" in body else [body["id"]]


async def _fill(api: httpx.AsyncClient) -> tuple[list[str], list[httpx.Response]]:
    """Submit until Redis is full: big singles (the fast path), then smaller and smaller batches, each
    kind until it is refused. Returns the acknowledged ids and the refusals (one per kind)."""
    acked: list[str] = []
    refused: list[httpx.Response] = []
    kinds: list[tuple[str, Any]] = [
        ("/api/tasks", {"type": "noop", "payload": BIG}),
        ("/api/tasks/batch", {"tasks": [{"type": "noop", "payload": "y" * 500}] * 20}),
        ("/api/tasks/batch", {"tasks": [{"type": "noop"}] * 2}),
    ]
    for path, body in kinds:
        for _ in range(2000):
            r = await api.post(path, json=body)
            if not _acked(r):
                refused.append(r)
                break
            acked += _acked(r)
    return acked, refused


def _assert_refused(r: httpx.Response, cause: str) -> None:
    assert r.status_code == 503, (r.request.url, r.status_code, r.text)
    assert r.headers["content-type"] == "application/json" and r.headers["retry-after"] == "5"
    body = r.json()
    assert body["cause"] == cause and "Redis refuses writes" in body["detail"], body


async def _submits(api: httpx.AsyncClient) -> list[httpx.Response]:
    """A submit of each kind: single (the fast path), single with an Idempotency-Key (the route), batch;
    refused alike, their heads are the same, in the same order (one mapping of errors to answers)."""
    answers = [
        await api.post("/api/tasks", json={"type": "noop"}),
        await api.post("/api/tasks", json={"type": "noop"}, headers={"Idempotency-Key": "again"}),
        await api.post("/api/tasks/batch", json={"tasks": [{"type": "noop"}, {"type": "noop", "priority": 5}]}),
    ]
    heads = [[(k, v) for k, v in r.headers.multi_items() if k != "content-length"] for r in answers]
    if all(r.status_code == 503 for r in answers):
        assert heads[0] == heads[1] == heads[2], heads
    return answers


async def _assert_reads_work(api: httpx.AsyncClient, some_id: str, writes: str) -> None:
    for path in ("/api/tasks", f"/api/tasks/{some_id}", "/api/stats", "/api/queues", "/metrics"):
        r = await api.get(path)
        assert r.status_code == 200, (path, r.text)
    health = (await api.get("/api/health")).json()
    assert health["status"] == "ok" and health["writes"] == writes


def _refused_total(metrics_text: str, cause: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith(f'streamq_redis_writes_refused_total{{cause="{cause}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_a_full_redis_refuses_submits_with_503_keeps_reads_and_loses_nothing(settings: Settings) -> None:
    keys = KeySchema(settings.key_prefix, settings.queue)
    async with _own_redis("--maxmemory", "4mb") as (server, redis):
        async with _api(settings, server) as api:
            acked, refused = await _fill(api)
            assert len(refused) == 3 and len(acked) > 20  # each kind ran until Redis was full
            for r in refused:
                _assert_refused(r, "out_of_memory")
            # full it stays: right at the limit a small write can pass again once a refused request's
            # buffers are freed, so the limit is set just under what is used now
            used = int((await redis.info("memory"))["used_memory"])
            await redis.config_set("maxmemory", str(used - 200_000))
            for r in await _submits(api):
                _assert_refused(r, "out_of_memory")
            await _assert_reads_work(api, acked[0], writes="out_of_memory")
            assert _refused_total((await api.get("/metrics")).text, "out_of_memory") >= 5
            # nothing refused was written: Redis holds exactly the acknowledged tasks
            assert await task_ids(redis, keys) == sorted(acked)

            await redis.config_set("maxmemory", "0")  # room again: the same submits pass
            for r in await _submits(api):
                assert r.status_code == 201, r.text
                acked += _acked(r)
            assert (await api.get("/api/health")).json()["writes"] == "ok"
        assert await task_ids(redis, keys) == sorted(acked)  # each acknowledged task once, none other
        assert len(set(acked)) == len(acked)


async def test_a_read_only_replica_refuses_submits_with_503_and_keeps_reads(settings: Settings) -> None:
    async with _own_redis() as (server, redis), _api(settings, server) as api:
        [before] = _acked(await api.post("/api/tasks", json={"type": "noop"}))
        # a replica of a master that does not answer: it keeps its data and refuses writes
        await redis.execute_command("CONFIG", "SET", "replica-serve-stale-data", "yes")
        await redis.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        for r in await _submits(api):
            _assert_refused(r, "read_only")
        await _assert_reads_work(api, before, writes="read_only")
        assert _refused_total((await api.get("/metrics")).text, "read_only") >= 3
        await redis.execute_command("REPLICAOF", "NO", "ONE")
        assert (await api.post("/api/tasks", json={"type": "noop"})).status_code == 201


async def _fail_saves(redis: Redis, server: RedisServer) -> None:
    """Make ``server`` refuse writes after a failed RDB save (MISCONF), as a full or broken disk would."""
    await redis.config_set("save", "3600 1")  # MISCONF needs save points (the default config has them)
    shutil.rmtree(server.dir)  # the next save cannot write its file: MISCONF from then on
    await redis.bgsave()
    for _ in range(200):
        if (await redis.info("persistence"))["rdb_last_bgsave_status"] == "err":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the save did not fail")


async def test_services_start_and_probe_while_a_failed_save_refuses_writes(settings: Settings) -> None:
    """MISCONF refuses PING too: a service starting (connect) or probed (the healthcheck's PING) then
    must take it as Redis answering, not wait for an answer that never comes or fail its start."""
    server = RedisServer()
    redis = Redis.from_url(server.url, decode_responses=True)
    on_server = settings.model_copy(update={"redis_url": server.url})
    try:
        await _fail_saves(redis, server)
        client = await connect(on_server, attempts=2)
        try:
            assert await client.get("anything") is None  # reads are served
        finally:
            await client.aclose()
        assert await _redis_ok(on_server)
    finally:
        await redis.config_set("save", "")  # else its shutdown save fails too, and it refuses to stop
        await redis.aclose()
        server.stop()


async def test_a_failed_save_refuses_submits_with_503_and_keeps_reads(settings: Settings) -> None:
    async with _own_redis() as (server, redis), _api(settings, server) as api:
        [before] = _acked(await api.post("/api/tasks", json={"type": "noop"}))
        await _fail_saves(redis, server)
        for r in await _submits(api):
            _assert_refused(r, "persistence_failed")
        await _assert_reads_work(api, before, writes="persistence_failed")
        await redis.config_set("stop-writes-on-bgsave-error", "no")
        assert (await api.post("/api/tasks", json={"type": "noop"})).status_code == 201


async def test_a_full_redis_still_rate_limits(settings: Settings) -> None:
    """ratelimit.lua may write past maxmemory (allow-oom: one small bucket per caller, expiring within
    seconds), so the limit holds while Redis is full; without the flag Redis would refuse the bucket's
    write and the api could only let every request through."""
    async with _own_redis() as (server, redis), _api(settings, server, rate_limit="1/h burst 4") as api:
        await redis.config_set("maxmemory", "1")  # full: every write refused
        statuses = [(await api.get("/api/stats")).status_code for _ in range(3)]
        _assert_refused(await api.post("/api/tasks", json={"type": "noop"}), "out_of_memory")  # the 4th
        statuses.append((await api.get("/api/stats")).status_code)
        assert statuses == [200, 200, 200, 429]
