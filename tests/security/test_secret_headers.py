"""``secret_headers`` of the ``http`` task type: sent by a real worker to a real receiver, on every
attempt, and never shown: not in submit responses, reads, the list, the dashboard, the webhook body
or the stored result; gone from Redis with the task. Bad ones are refused at submission."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from streamq.shared.keys import KeySchema
from streamq.shared.schedules import Schedules
from streamq.testing import RedisServer, Stack
from tests.integration.receivers import Answer, Receiver, serving, wait_until

TOKEN = "tok-5ecret-0123456789abcdef"
API_KEY = "key-5ecret-fedcba9876543210"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"secret-headers-test-key-01234567").decode()
MASKED = {"Authorization": "***", "X-Api-Key": "***"}


def leaked(text: str | bytes) -> list[str]:
    shown = text.decode(errors="replace") if isinstance(text, bytes) else text
    return [s for s in (TOKEN, API_KEY) if s in shown]


async def stored_anywhere(redis: Redis, prefix: str) -> list[str]:
    """The keys under ``prefix`` whose contents hold either secret."""
    found = []
    async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
        kind = await redis.type(key)
        if kind == "hash":
            content: Any = await redis.hgetall(key)
        elif kind == "stream":
            content = await redis.xrange(key)
        elif kind == "zset":
            content = await redis.zrange(key, 0, -1)
        elif kind == "list":
            content = await redis.lrange(key, 0, -1)
        elif kind == "set":
            content = await redis.smembers(key)
        else:
            content = await redis.get(key)
        if leaked(repr(content)):
            found.append(key)
    return found


def http_task(receiver: Receiver, path: str, **extra: Any) -> dict[str, Any]:
    secret = {"Authorization": f"Bearer {TOKEN}", "X-Api-Key": API_KEY}
    payload = {"method": "POST", "url": receiver.url(path), "headers": {"X-Trace": "t1"},
               "secret_headers": secret, "json": {"n": 1}}  # fmt: skip
    return {"type": "http", "payload": payload, "webhook": receiver.url("/hook"), **extra}


@pytest.mark.e2e
async def test_secret_headers_are_sent_and_never_shown(redis_server: RedisServer, tmp_path: Path) -> None:
    stack = Stack(
        redis_server, tmp_path, STREAMQ_WEBHOOK_SECRET=WEBHOOK_SECRET, STREAMQ_ALLOW_PRIVATE_NETWORKS="true",
        STREAMQ_WEBHOOK_POLL_S="0.05", STREAMQ_RETRY_BASE_S="0.05",
    )  # fmt: skip
    receiver = Receiver()
    # the first attempt fails (the retry must send them again); the second echoes the token back
    receiver.on(
        "/target", Answer(503), Answer(200, {"content-type": "application/json"}, b'{"saw":"%s"}' % TOKEN.encode())
    )
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        async with serving(receiver), httpx.AsyncClient(base_url=stack.api_url, timeout=10) as api:
            stack.start("api", "worker", "scheduler", "notifier", "dashboard")  # the scheduler runs the retry
            single = await api.post("/api/tasks", json=http_task(receiver, "/target", retry_backoff_s=0.05))
            batch = await api.post("/api/tasks/batch", json={"tasks": [http_task(receiver, "/once", max_retries=0)]})
            assert (single.status_code, batch.status_code) == (201, 201), (single.text, batch.text)
            task_id = single.json()["id"]
            responses = [single.text, batch.text]

            await wait_until(lambda: len(receiver.at("/hook")) >= 2, 30, "both tasks' webhooks")
            task = (await api.get(f"/api/tasks/{task_id}")).json()
            listed = await api.get("/api/tasks", params={"type": "http"})
            async with httpx.AsyncClient(base_url=stack.dashboard_url, timeout=10) as dashboard:
                through_dashboard = await dashboard.get(f"/api/tasks/{task_id}")
            responses += [str(task), listed.text, through_dashboard.text, *(r.body for r in receiver.at("/hook"))]
            assert [leaked(r) for r in responses] == [[]] * len(responses), responses

            assert task["status"] == "completed" and task["attempts"] == 2, task
            assert task["payload"]["secret_headers"] == MASKED and task["payload"]["headers"] == {"X-Trace": "t1"}
            assert task["result"]["body"] == '{"saw":"***"}'  # the receiver's echo of the token, masked
            hook = orjson.loads(receiver.at("/hook")[0].body)
            assert hook["data"]["payload"]["secret_headers"] == MASKED
            sent = [*receiver.at("/target"), *receiver.at("/once")]
            assert len(sent) == 3  # two attempts of the single task, one of the batch's
            assert all(
                r.headers["authorization"] == f"Bearer {TOKEN}" and r.headers["x-api-key"] == API_KEY for r in sent
            )
            assert all(r.headers["x-trace"] == "t1" for r in sent)

            assert await stored_anywhere(redis, stack.prefix) != []  # in the task hashes, for the worker
            for created in [single.json(), *batch.json()["tasks"]]:
                assert (await api.delete(f"/api/tasks/{created['id']}")).status_code == 204
            assert await stored_anywhere(redis, stack.prefix) == []  # gone with the tasks
    finally:
        stack.close()
        await redis.aclose()


@pytest.mark.parametrize(
    ("secret_headers", "fragment"),
    [
        ({"X-Trace": "x"}, "in both headers and secret_headers"),
        ({"Authorization": "Bearer a\r\nInjected: 1"}, "String should match pattern"),
        ({"Bad Name": "v"}, "String should match pattern"),
        ({"Authorization": ""}, "at least 1 character"),
        ({"Authorization": "x" * 8193}, "at most 8192 characters"),
        ({f"X-{i}": "v" for i in range(33)}, "at most 32 items"),
        ("Bearer abc", "valid dictionary"),
    ],
)
async def test_bad_secret_headers_are_refused_without_echoing_them(
    api: httpx.AsyncClient, secret_headers: Any, fragment: str
) -> None:
    payload = {"url": "https://example.com/", "headers": {"x-trace": "t"}, "secret_headers": secret_headers}
    response = await api.post("/api/tasks", json={"type": "http", "payload": payload})
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(fragment in e["msg"] for e in errors), errors
    assert any(e["loc"][:3] == ["body", "payload", "secret_headers"] or "secret_headers" in e["msg"] for e in errors)
    assert "Bearer a" not in response.text and "xxxxxxxx" not in response.text  # the values are not echoed
    assert (await api.get("/api/tasks")).json()["tasks"] == []  # nothing written


async def test_a_schedule_shows_its_template_masked_and_fires_it_whole(
    api: httpx.AsyncClient, redis: Redis, keys: KeySchema
) -> None:
    secret = {"Authorization": f"Bearer {TOKEN}"}
    task = {"type": "http", "payload": {"url": "https://example.com/", "secret_headers": secret}}
    created = await api.post("/api/schedules", json={"name": "with-secret", "cron": "* * * * *", "task": task})
    assert created.status_code == 201, created.text
    shown = [created.text, (await api.get("/api/schedules")).text, (await api.get("/api/schedules/with-secret")).text]
    assert [leaked(s) for s in shown] == [[], [], []], shown
    assert created.json()["task"]["payload"]["secret_headers"] == {"Authorization": "***"}
    schedules = Schedules(redis, keys)
    [(name, tick)] = await schedules.due(now_ms=2**53)
    task_id = await schedules.fire(name, tick, tick)
    assert task_id is not None
    stored = orjson.loads(await redis.hget(schedules.keys.task(task_id), "payload"))
    assert stored["secret_headers"] == secret  # what the worker reads
    fired = (await api.get(f"/api/tasks/{task_id}")).json()
    assert fired["payload"]["secret_headers"] == {"Authorization": "***"} and not leaked(str(fired))
