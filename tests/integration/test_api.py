"""The api in-process (httpx ASGI transport) against a real Redis; raw state asserted where it matters."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import REGISTRY
from pydantic import TypeAdapter
from redis.asyncio import Redis

from streamq.services.api.app import create_app
from streamq.shared.broker import Broker
from streamq.shared.keys import KeySchema
from streamq.shared.models import BatchResult, TaskCreate
from streamq.shared.queue import Stored
from streamq.shared.settings import Settings
from tests.support import task_ids


async def count_keys(redis: Redis, prefix: str) -> int:
    """Task-related keys only (the api's own service registration lives outside the queue's tag)."""
    return len([k async for k in redis.scan_iter(match=f"{prefix}:{{default}}:*", count=1000)])


async def test_submit_seed_shape(api: httpx.AsyncClient, redis: Redis, keys: KeySchema) -> None:
    r = await api.post("/api/tasks", json={"type": "echo", "payload": "user@example.com"})
    assert r.status_code == 201
    body = r.json()
    assert body["status"] == "pending" and body["priority"] == 3 and body["payload"] == "user@example.com"
    # one stream entry carrying only the id; the task lives in its hash; indexes and counters set
    [(_, fields)] = await redis.xrange(keys.stream(3))
    assert fields == {"id": body["id"]}
    stored = await redis.hgetall(keys.task(body["id"]))
    assert stored["type"] == "echo" and stored["payload"] == '"user@example.com"' and stored["status"] == "pending"
    assert await redis.zrange(keys.index_status("pending"), 0, -1) == [body["id"]]
    assert await redis.zrange(keys.index_type("echo"), 0, -1) == [body["id"]]
    assert await redis.hget(keys.stats, "submitted_total") == "1"
    got = await api.get(f"/api/tasks/{body['id']}")
    assert got.status_code == 200 and got.json()["id"] == body["id"]


async def test_future_task_is_scheduled(api: httpx.AsyncClient, redis: Redis, keys: KeySchema) -> None:
    when = datetime.now(UTC) + timedelta(hours=1)
    r = await api.post("/api/tasks", json={"type": "noop", "scheduled_for": when.isoformat(), "priority": 5})
    assert r.status_code == 201 and r.json()["status"] == "scheduled"
    task_id = r.json()["id"]
    assert await redis.xlen(keys.stream(5)) == 0
    due = await redis.zscore(keys.scheduled, task_id)
    assert due is not None and abs(due - when.timestamp() * 1000) < 2
    stats = (await api.get("/api/stats")).json()
    assert stats["scheduled"] == 1 and stats["pending"] == 0 and stats["total"] == 1
    events = [(f["event"], f["status"]) for _, f in await redis.xrange(keys.events)]
    assert events == [("created", "scheduled"), ("scheduled", "scheduled")]


async def test_idempotency_header_and_field(api: httpx.AsyncClient, redis: Redis, keys: KeySchema) -> None:
    first = await api.post("/api/tasks", json={"type": "noop"}, headers={"Idempotency-Key": "order-1"})
    again = await api.post("/api/tasks", json={"type": "noop"}, headers={"Idempotency-Key": "order-1"})
    field = await api.post("/api/tasks", json={"type": "noop", "idempotency_key": "order-1"})
    assert first.status_code == 201 and again.status_code == 200 and field.status_code == 200
    assert first.json()["id"] == again.json()["id"] == field.json()["id"]
    assert len(await task_ids(redis, keys)) == 1 and await redis.xlen(keys.stream(3)) == 1
    assert 0 < await redis.ttl(keys.idempotency("order-1")) <= 24 * 3600


async def test_batch_one_round_trip_with_duplicates(api: httpx.AsyncClient, redis: Redis, keys: KeySchema) -> None:
    tasks = [{"type": "noop", "priority": 1 + i % 5} for i in range(1000)]
    r = await api.post("/api/tasks/batch", json={"tasks": tasks})
    assert r.status_code == 201 and r.json()["created"] == 1000
    assert sum([await redis.xlen(keys.stream(p)) for p in range(1, 6)]) == 1000
    dup = [{"type": "noop", "idempotency_key": "k1"}, {"type": "noop", "idempotency_key": "k1"}]
    r = await api.post("/api/tasks/batch", json={"tasks": dup})
    body = r.json()
    assert (body["created"], body["duplicates"]) == (1, 1)
    assert body["tasks"][0]["id"] == body["tasks"][1]["id"]


async def test_batch_body_and_state_as_the_batch_result_model_gave(
    api: httpx.AsyncClient, redis: Redis, keys: KeySchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch route writes its body with orjson from submit.lua's records (services/api/encoding.py),
    not through a TaskPublic per task: the bytes and head must be those of the BatchResult model FastAPI
    serialised, for a mixed batch (every field kind, scheduled and already-due, a named queue, a duplicate
    within the batch and one of an earlier task with history)."""
    earlier = (await api.post("/api/tasks", json={"type": "noop", "idempotency_key": "old"})).json()
    history = '[{"attempt":1,"error":"boom","at":1764331962123}]'
    await redis.hset(keys.task(earlier["id"]), mapping={"attempts": 1, "status": "failed", "history": history})
    captured: list[list[Stored]] = []
    submit_stored = Broker.submit_stored

    async def spy(self: Broker, tasks: list[TaskCreate], ids: list[str] | None = None) -> list[Stored]:
        captured.append(await submit_stored(self, tasks, ids))
        return captured[-1]

    monkeypatch.setattr(Broker, "submit_stored", spy)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    tasks: list[dict[str, object]] = [
        {"type": "noop"},
        {"type": "echo", "payload": {"a": [1, 2.5, -0.0, 1e-7, 1e16, 2**63, None, True, 'é\u2028"\\']}},
        {"type": "echo", "priority": 5, "max_retries": 0, "timeout_s": 5, "retry_backoff_s": 0.25},
        {"type": "noop", "webhook": "http://93.184.216.34/hook?q=é", "idempotency_key": 'k"é'},
        {"type": "noop", "idempotency_key": 'k"é'},
        {"type": "noop", "idempotency_key": "old"},
        {"type": "noop", "queue": "bulk", "scheduled_for": later, "priority": 1},
        {"type": "noop", "scheduled_for": "2000-01-01T00:00:00.5+02:00"},
    ]
    before = {k: _submitted(*k) for k in [("default", "noop", "3"), ("default", "echo", "3"), ("default", "echo", "5"),
                                          ("bulk", "noop", "1")]}  # fmt: skip
    r = await api.post("/api/tasks/batch", json={"tasks": tasks})
    [done] = captured
    model = BatchResult(tasks=[s.submitted().task for s in done], created=6, duplicates=2)
    expected = TypeAdapter(BatchResult).dump_json(model)  # what FastAPI sent for the response model
    assert r.status_code == 201 and r.content == expected
    assert r.headers.multi_items() == [("content-length", str(len(expected))), ("content-type", "application/json")]
    body = r.json()
    assert body["tasks"][3]["id"] == body["tasks"][4]["id"] and body["tasks"][5]["id"] == earlier["id"]
    assert [t["status"] for t in body["tasks"]][5:] == ["failed", "scheduled", "pending"]
    after = {labels: _submitted(*labels) for labels in before}
    assert {k: after[k] - v for k, v in before.items()} == {
        ("default", "noop", "3"): 3, ("default", "echo", "3"): 1, ("default", "echo", "5"): 1, ("bulk", "noop", "1"): 1
    }  # fmt: skip


def _submitted(queue: str, task_type: str, priority: str) -> float:
    labels = {"queue": queue, "type": task_type, "priority": priority}
    return REGISTRY.get_sample_value("streamq_tasks_submitted_total", labels) or 0.0


@pytest.mark.parametrize(
    ("body", "loc", "fragment"),
    [
        ({"type": "echo", "priority": 7}, ["body", "priority"], "less than or equal to 5"),
        ({"type": "echo", "max_retries": 500}, ["body", "max_retries"], "less than or equal to 100"),
        ({"type": "echo", "scheduled_for": "tomorrow"}, ["body", "scheduled_for"], "datetime"),
        ({"type": "echo", "scheduled_for": "2030-01-01T00:00:00"}, ["body", "scheduled_for"], "time zone"),
        ({"type": "echo", "webhook": "not a url"}, ["body", "webhook"], "http"),
        ({"payload": 1}, ["body", "type"], "Field required"),
        ({"type": "no_such_type"}, ["body", "type"], "unknown task type 'no_such_type'; known types: echo, email"),
        ({"type": "echo", "payload": "x" * 300_000}, ["body", "payload"], "256 KiB"),
    ],
)
async def test_bad_input_is_422_naming_field_and_writes_nothing(
    api: httpx.AsyncClient, redis: Redis, prefix: str, body: dict[str, object], loc: list[str], fragment: str
) -> None:
    r = await api.post("/api/tasks", json=body)
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["loc"] == loc and fragment in error["msg"]
    assert await count_keys(redis, prefix) == 0


@pytest.mark.parametrize("raw", [b'{"type":"echo","payload":NaN}', b'{"type":"echo","payload":[1,-Infinity]}'])
async def test_non_finite_payload_is_422_not_500(api: httpx.AsyncClient, redis: Redis, prefix: str, raw: bytes) -> None:
    r = await api.post("/api/tasks", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["loc"][:2] == ["body", "payload"] and "plain JSON" in error["msg"]
    assert await count_keys(redis, prefix) == 0


async def test_bad_task_in_batch_rejects_the_whole_batch(api: httpx.AsyncClient, redis: Redis, prefix: str) -> None:
    r = await api.post("/api/tasks/batch", json={"tasks": [{"type": "noop"}, {"type": "nope"}, {"type": "noop"}]})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "tasks", 1, "type"]
    r = await api.post("/api/tasks/batch", json={"tasks": [{"type": "noop"}] * 1001})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "tasks"]
    assert await count_keys(redis, prefix) == 0


async def test_body_over_1_mib_is_413(api: httpx.AsyncClient, redis: Redis, prefix: str) -> None:
    big = b'{"type":"noop","payload":"' + b"x" * (1024 * 1024) + b'"}'
    r = await api.post("/api/tasks", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than 1048576 bytes" in r.json()["detail"][0]["msg"]

    async def chunks():  # no Content-Length: the limit is enforced while the body streams in
        for _ in range(20):
            yield b"x" * 100_000

    r = await api.post("/api/tasks", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert await count_keys(redis, prefix) == 0


async def test_types_advertised_and_lenient_mode(settings: Settings, redis: Redis, keys: KeySchema) -> None:
    await redis.sadd(keys.types, "resize")
    lenient = settings.model_copy(update={"strict_types": False})
    configured = settings.model_copy(update={"task_types": ["report"]})
    for s, task_type in [(settings, "resize"), (lenient, "anything"), (configured, "report")]:
        app = create_app(s)
        async with app.router.lifespan_context(app):
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
            async with client:
                r = await client.post("/api/tasks", json={"type": task_type})
                assert r.status_code == 201, r.text


async def test_list_filters_and_cursor(api: httpx.AsyncClient) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    ids = []
    for i in range(25):
        body: dict[str, object] = {"type": "echo" if i % 2 else "noop", "priority": 1 + i % 5}
        if i % 3 == 1:
            body["scheduled_for"] = later
        r = await api.post("/api/tasks", json=body)
        ids.append(r.json()["id"])
    for i in range(0, 25, 7):
        assert (await api.post(f"/api/tasks/{ids[i]}/cancel")).status_code == 200
    # unfiltered: the status indexes merged (no index of all tasks), newest first, no gaps or repeats
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/api/tasks", params=params)).json()
        seen += [t["id"] for t in page["tasks"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    stats = (await api.get("/api/stats")).json()
    assert (stats["total"], stats["pending"], stats["scheduled"], stats["cancelled"]) == (
        25,
        14,
        7,
        4,
    )  # 7 was scheduled, then cancelled
    echo = (await api.get("/api/tasks", params={"type": "echo", "limit": 100})).json()["tasks"]
    assert [t["id"] for t in echo] == [i for n, i in enumerate(reversed(ids)) if (24 - n) % 2]
    both = (await api.get("/api/tasks", params={"type": "noop", "status": "pending", "priority": 1})).json()
    assert {t["id"] for t in both["tasks"]} == {ids[20]}  # 0 cancelled, 10 scheduled
    bad = await api.get("/api/tasks", params={"status": "weird", "limit": 0})
    assert bad.status_code == 422 and {e["loc"][-1] for e in bad.json()["detail"]} == {"status", "limit"}


async def test_cancel_retry_delete_and_conflicts(api: httpx.AsyncClient, redis: Redis, keys: KeySchema) -> None:
    task_id = (await api.post("/api/tasks", json={"type": "noop"})).json()["id"]
    assert (await api.post(f"/api/tasks/{task_id}/retry")).status_code == 409
    assert (await api.delete(f"/api/tasks/{task_id}")).status_code == 409
    r = await api.post(f"/api/tasks/{task_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert await redis.xlen(keys.stream(3)) == 0  # its entry is gone: it never runs
    again = await api.post(f"/api/tasks/{task_id}/cancel")
    assert again.status_code == 409 and "only pending, scheduled or processing" in again.json()["detail"]
    r = await api.post(f"/api/tasks/{task_id}/retry")
    assert r.status_code == 200 and r.json()["status"] == "pending" and r.json()["attempts"] == 0
    assert await redis.xlen(keys.stream(3)) == 1
    assert (await api.post(f"/api/tasks/{task_id}/cancel")).status_code == 200
    assert (await api.delete(f"/api/tasks/{task_id}")).status_code == 204
    assert (await api.get(f"/api/tasks/{task_id}")).status_code == 404
    assert await task_ids(redis, keys) == [] and await redis.zcard(keys.retention) == 0
    for path in ("", "/retry", "/cancel"):
        method = api.get if not path else api.post
        assert (await method(f"/api/tasks/01NOSUCHTASK{path}")).status_code == 404
    assert (await api.delete("/api/tasks/01NOSUCHTASK")).status_code == 404


async def test_health_ready_metrics_docs(api: httpx.AsyncClient) -> None:
    assert (await api.get("/api/health")).json()["status"] == "ok"
    assert (await api.get("/api/ready")).json()["ready"] is True
    await api.post("/api/tasks", json={"type": "noop"})
    text = (await api.get("/metrics")).text
    assert "streamq_tasks_submitted_total" in text and 'route="/api/tasks"' in text
    assert (await api.get("/openapi.json")).json()["info"]["title"] == "streamq"
    assert (await api.get("/docs")).status_code == 200


@pytest.mark.standalone_only(reason="starts its own plain redis-server: the cluster would add nothing")
async def test_health_is_503_when_redis_is_gone(settings: Settings) -> None:
    from streamq.testing import RedisServer

    server = RedisServer()
    app = create_app(settings.model_copy(update={"redis_url": server.url}))
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://api")
    async with app.router.lifespan_context(app), client:
        assert (await client.get("/api/health")).status_code == 200
        server.stop()
        r = await client.get("/api/health")
        assert r.status_code == 503 and r.json()["status"] == "unavailable"


@pytest.mark.standalone_only(reason="starts its own plain redis-server: the cluster would add nothing")
async def test_every_route_is_503_with_retry_after_while_redis_is_gone(settings: Settings) -> None:
    """Redis down (or failing over): 503 and Retry-After from the routes and the submit fast path, not
    500 (tests/e2e/test_cluster_failover.py sees these during a failover)."""
    from streamq.testing import RedisServer

    server = RedisServer()
    app = create_app(settings.model_copy(update={"redis_url": server.url}))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
    async with app.router.lifespan_context(app), client:
        assert (await client.post("/api/tasks", json={"type": "noop"})).status_code == 201  # the fast path
        server.stop()
        requests = [
            client.post("/api/tasks", json={"type": "noop"}),  # the fast path
            client.post("/api/tasks", json={"type": "noop"}, headers={"Idempotency-Key": "k"}),  # the route
            client.post("/api/tasks/batch", json={"tasks": [{"type": "noop"}]}),
            client.get("/api/tasks"),
            client.get("/api/stats"),
        ]
        for r in await asyncio.gather(*requests):  # together: each waits out the client's retries
            assert r.status_code == 503, (r.request.url, r.text)
            assert r.headers["retry-after"] == "1" and "Redis is unavailable" in r.json()["detail"]
