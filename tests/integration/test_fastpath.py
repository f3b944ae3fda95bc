"""``POST /api/tasks``'s fast path (services/api/fastpath.py) against the FastAPI route: the same
requests sent to an api with the fast path and to one without give the same status, headers, body
and stored Redis state; what the fast path does not handle reaches the route with its body intact."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis
from starlette.types import Receive, Scope, Send

from streamq.services.api.app import create_app
from streamq.services.api.fastpath import submit_route
from streamq.services.api.fastwait import wait_route
from streamq.shared.broker import Broker
from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Stored
from streamq.shared.settings import Settings
from tests.support import task_ids

JSON = {"content-type": "application/json"}
# (body, headers, handled by the fast path?)
REQUESTS: list[tuple[bytes, dict[str, str], bool]] = [
    (b'{"type":"noop"}', JSON, True),
    (b'{"type":"echo","payload":{"a":[1,2.5,"\xc3\xa9",null,true]},"priority":5,"max_retries":0}', JSON, True),
    (b'{"type":"noop","timeout_s":2.5,"retry_backoff_s":0,"payload":1e-7}', JSON, True),
    (b'{"type":"noop","scheduled_for":"2099-01-01T00:00:00+02:00"}', JSON, True),
    (b'{"type":"noop","scheduled_for":"2000-01-01T00:00:00Z"}', JSON, True),  # due already: pending
    (b'{"type":"noop","queue":"bulk","priority":1}', JSON, True),  # a named queue: stored in its own slot
    (b'{"type":"noop","idempotency_key":"k-1"}', JSON, True),
    (b'{"type":"noop","idempotency_key":"k-1"}', JSON, True),  # replay: 200, the first task
    (b'{"type":"noop","payload":' + b"[" * 101 + b"]" * 101 + b"}", JSON, True),  # 422 too deep, from the fast path
    (b'{"type":"noop"}', {**JSON, "Idempotency-Key": "k-2"}, False),
    (b'{"type":"noop"}', {**JSON, "Idempotency-Key": ""}, False),  # 422 from the header's rule
    (b'{"type":"noop"}', {"content-type": "application/json; charset=utf-8"}, False),
    (b'{"type":"noop"}', {"content-type": "text/plain"}, False),
    (b'{"type":"noop"}', {}, False),
    (b'{"type":"noop"', JSON, False),  # not JSON
    (b"[1]", JSON, False),
    (b"\xff", JSON, False),
    (b"", JSON, False),
    (b'{"type":"noop","extra":1}', JSON, False),
    (b'{"type":"noop","priority":true}', JSON, False),
    (b'{"type":"noop","payload":18446744073709551616}', JSON, False),  # over 64 bits: 422 on both
    (b'{"type":"nope"}', JSON, False),  # unknown type
    (b'{"type":"noop","webhook":"http://127.0.0.1/hook"}', JSON, False),  # refused by the SSRF guard
    (b'{"type":"email","payload":{"to":"not an address"}}', JSON, False),
    (b'{"type":"noop","scheduled_for":"2099-01-01T00:00:00"}', JSON, False),  # no time zone
    (b'{"type":"noop","priority":"\\ud800"}', JSON, False),  # a lone surrogate, echoed escaped in the 422
    (b'{"type":"noop","idempotency_key":"k-3"}', {**JSON, "Idempotency-Key": "k-4"}, False),  # they differ: 422
]
ID = re.compile(rb"[0-9A-HJKMNP-TV-Z]{26}")
VOLATILE = (b'"created_at":"[^"]*"', b'"scheduled_for":"20[0-9][0-9]-[^"]*"')


@dataclass
class Api:
    client: httpx.AsyncClient
    keys: KeySchema
    route_calls: list[str]


async def _open(settings: Settings, *, fast: bool) -> AsyncIterator[Api]:
    app = create_app(settings, fast_submit=fast)
    calls = ROUTE_CALLS.setdefault(id(app), [])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield Api(client, KeySchema(settings.key_prefix, settings.queue), calls)


ROUTE_CALLS: dict[int, list[str]] = {}  # id(app) -> each run of the FastAPI route POST /api/tasks


@pytest.fixture(autouse=True)
def count_route_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records each time the FastAPI route ``POST /api/tasks`` itself runs, per app (then runs it)."""
    route = submit_route()
    inner = route.handle

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        ROUTE_CALLS.setdefault(id(scope["app"]), []).append(scope["path"])
        await inner(scope, receive, send)

    monkeypatch.setattr(route, "handle", counted)


@pytest.fixture
async def fast(settings: Settings) -> AsyncIterator[Api]:
    async for api in _open(settings, fast=True):
        yield api


@pytest.fixture
async def slow(settings: Settings) -> AsyncIterator[Api]:
    other = settings.model_copy(update={"key_prefix": settings.key_prefix + "s"})
    async for api in _open(other, fast=False):
        yield api


def _normal(body: bytes) -> bytes:
    body = ID.sub(b"<id>", body)
    for pattern in VOLATILE:
        body = re.sub(pattern, pattern.split(b":")[0] + b':"<t>"', body)
    return body


def _headers(response: httpx.Response) -> list[tuple[str, str]]:
    return [(k, v) for k, v in response.headers.multi_items() if k != "content-length"]


async def _stored(redis: Redis, keys: KeySchema, body: bytes) -> dict[str, Any]:
    """The task hash the answer names, with its id, clock and stream entry id left out."""
    answer = orjson.loads(body)
    stored = await redis.hgetall(keys.for_queue(answer["queue"]).task(answer["id"]))
    assert stored, "the task the answer names is stored in its queue's slot"
    return {k: v for k, v in stored.items() if k not in ("id", "created_at", "msg_id")}


async def test_fast_and_slow_paths_answer_alike(fast: Api, slow: Api, redis: Redis) -> None:
    expected_fallbacks = 0
    for body, headers, handled in REQUESTS:
        a = await fast.client.post("/api/tasks", content=body, headers=headers)
        b = await slow.client.post("/api/tasks", content=body, headers=headers)
        case = (body, headers)
        assert a.status_code == b.status_code, (case, a.text, b.text)
        # content-length aside: a created_at on a whole second is written without its fraction (7 bytes
        # shorter), and the two answers' clocks differ; the bodies are compared with their clocks masked
        assert _headers(a) == _headers(b), case
        assert _normal(a.content) == _normal(b.content), (case, a.content, b.content)
        if a.status_code in (200, 201):
            assert await _stored(redis, fast.keys, a.content) == await _stored(redis, slow.keys, b.content), case
        expected_fallbacks += 0 if handled else 1
        assert len(fast.route_calls) == expected_fallbacks, (case, "fast path used" if handled else "fallback")
    assert len(slow.route_calls) == len(REQUESTS) - 1  # the body nested too deep: JsonDepth answers it
    # the same indexes, counters and events on both sides
    for key in ("scheduled", "stats"):
        fast_key, slow_key = getattr(fast.keys, key), getattr(slow.keys, key)
        assert await redis.type(fast_key) == await redis.type(slow_key)
    assert await redis.hgetall(fast.keys.stats) == await redis.hgetall(slow.keys.stats)
    assert len(await task_ids(redis, fast.keys)) == len(await task_ids(redis, slow.keys)) == 8
    assert await redis.zcard(fast.keys.scheduled) == await redis.zcard(slow.keys.scheduled) == 1
    events = [[(f["event"], f["status"]) for _, f in await redis.xrange(k.events)] for k in (fast.keys, slow.keys)]
    assert events[0] == events[1]
    for priority in (3, 5):
        assert await redis.xlen(fast.keys.stream(priority)) == await redis.xlen(slow.keys.stream(priority))


async def test_chunked_body_and_other_routes_reach_the_right_handler(fast: Api, redis: Redis) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"type":'
        yield b'"echo","payload":"in two parts"}'

    r = await fast.client.post("/api/tasks", content=chunks(), headers=JSON)
    assert r.status_code == 201 and r.json()["payload"] == "in two parts" and fast.route_calls == []
    assert await redis.hget(fast.keys.task(r.json()["id"]), "payload") == '"in two parts"'

    # a fallback after a chunked read: the route gets the whole body back
    async def bad() -> AsyncIterator[bytes]:
        yield b'{"type":"noop",'
        yield b'"extra":1}'

    r = await fast.client.post("/api/tasks", content=bad(), headers=JSON)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "extra"]
    assert fast.route_calls == ["/api/tasks"]
    assert (await fast.client.post("/api/tasks/batch", json={"tasks": [{"type": "noop"}]})).status_code == 201
    assert (await fast.client.get("/api/tasks")).status_code == 200
    assert fast.route_calls == ["/api/tasks"]
    assert (await fast.client.put("/api/tasks", json={"type": "noop"})).status_code == 405


async def test_fast_path_is_behind_the_guard(settings: Settings, redis: Redis) -> None:
    digest = {s: hashlib.sha256(s.encode()).hexdigest() for s in ("sk-ci-secret", "sk-r-secret")}
    keys = f"ci:submit:{digest['sk-ci-secret']} r:read:{digest['sk-r-secret']}"
    guarded = settings.model_copy(update={"api_keys": keys})
    async for api in _open(guarded, fast=True):
        r = await api.client.post("/api/tasks", json={"type": "noop"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="streamq"'
        bearer = {"authorization": "Bearer sk-r-secret"}
        r = await api.client.post("/api/tasks", json={"type": "noop"}, headers=bearer)
        assert r.status_code == 403
        bearer = {"authorization": "Bearer sk-ci-secret"}
        r = await api.client.post("/api/tasks", json={"type": "noop"}, headers=bearer)
        assert r.status_code == 201 and api.route_calls == []
        assert len(await task_ids(redis, api.keys)) == 1


async def test_concurrent_submits_share_calls_and_each_gets_its_own_answer(
    fast: Api, slow: Api, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Submits that arrive together go to Redis in one call (services/api/coalesce.py); each request
    still gets the answer it would get alone: its own task, 201, or 200 with the first task when its
    idempotency key was seen, also earlier in the same call."""
    calls: list[int] = []
    submit_each = Broker.submit_each

    async def spy(self: Broker, tasks: list[TaskCreate], ids: list[str] | None = None) -> list[Stored | BaseException]:
        calls.append(len(tasks))
        return await submit_each(self, tasks, ids)

    monkeypatch.setattr(Broker, "submit_each", spy)
    bodies = [
        *[{"type": "noop", "payload": i} for i in range(6)],
        {"type": "echo", "payload": {"a": [1, 2.5]}, "priority": 5},
        {"type": "noop", "queue": "bulk", "priority": 1},
        {"type": "noop", "scheduled_for": "2099-01-01T00:00:00Z"},
        {"type": "noop", "idempotency_key": "same"},
        {"type": "noop", "idempotency_key": "same"},
    ]
    answers = await asyncio.gather(*(fast.client.post("/api/tasks", json=b) for b in bodies))
    assert max(calls) > 1 and sum(calls) == len(bodies)  # shared calls, every task in exactly one
    by_key = [a for a, b in zip(answers, bodies, strict=True) if b.get("idempotency_key")]
    assert sorted(a.status_code for a in by_key) == [200, 201]
    assert by_key[0].json() == by_key[1].json()
    for answer, body in zip(answers, bodies, strict=True):
        alone = await slow.client.post("/api/tasks", json=body)
        if body.get("idempotency_key"):
            continue
        assert answer.status_code == alone.status_code == 201
        assert _headers(answer) == _headers(alone)
        assert _normal(answer.content) == _normal(alone.content), (body, answer.content, alone.content)
        assert await _stored(redis, fast.keys, answer.content) == await _stored(redis, slow.keys, alone.content)
    ids = [a.json()["id"] for a in answers]
    assert len(set(ids)) == len(bodies) - 1
    assert len(await task_ids(redis, fast.keys)) == len(bodies) - 2  # bulk has its own partition 0 keys
    assert await redis.hget(fast.keys.stats, "submitted_total") == str(len(bodies) - 2)
    assert fast.route_calls == []


async def test_durable_submits_are_not_coalesced(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """With STREAMQ_DURABLE_SUBMIT each request's 503 names its own task: one call per request."""
    calls: list[int] = []
    submit_stored = Broker.submit_stored

    async def spy(self: Broker, tasks: list[TaskCreate], ids: list[str] | None = None) -> list[Stored]:
        calls.append(len(tasks))
        return await submit_stored(self, tasks, ids)

    monkeypatch.setattr(Broker, "submit_stored", spy)
    durable = settings.model_copy(update={"durable_submit": "replicas:1,50"})
    async for api in _open(durable, fast=True):
        answers = await asyncio.gather(*(api.client.post("/api/tasks", json={"type": "noop"}) for _ in range(3)))
        assert [a.status_code for a in answers] == [503] * 3  # no replica here
        assert calls == [1, 1, 1]
        assert all(len(a.json()["tasks"]) == 1 for a in answers), [a.json() for a in answers]
        assert api.route_calls == []


WAITS: list[tuple[str, bool]] = [  # (query, taken by the long-poll fast path?)
    ("wait=0.05", True),
    ("wait=60", True),
    ("wait=0", False),  # 422 from the route's rule
    ("wait=60.5", False),
    ("wait=-1", False),
    ("wait=abc", False),
    ("wait=nan", False),
    ("wait=", False),
    ("wait=0.05&queue=default", False),
    ("wait=0.05&wait=1", False),
    ("queue=default&wait=0.05", False),
]


async def test_long_poll_fast_path_answers_as_the_route(
    fast: Api, slow: Api, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``GET /api/tasks/{id}?wait=S`` (services/api/fastwait.py) against the route: same status, headers
    and body for a task still pending when the wait runs out, a cancelled one, a missing one, and every
    query the fast path leaves to the route (which then runs)."""
    route = wait_route()
    inner = route.handle
    waits: dict[int, int] = {}

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        waits[id(scope["app"])] = waits.get(id(scope["app"]), 0) + 1
        await inner(scope, receive, send)

    monkeypatch.setattr(route, "handle", counted)
    apps = (fast, slow)
    pending = [
        (await api.client.post("/api/tasks", json={"type": "noop", "payload": [1, "é"]})).json()["id"] for api in apps
    ]
    ended = [(await api.client.post("/api/tasks", json={"type": "noop"})).json()["id"] for api in apps]
    for api, task_id in zip(apps, ended, strict=True):
        assert (await api.client.post(f"/api/tasks/{task_id}/cancel")).status_code == 200
    fallbacks = 0
    for query, taken in WAITS:
        for ids in (pending, ended, ["01JUNKNOWNTASK000000000000"] * 2):
            if ids is pending and query == "wait=60":
                continue  # would wait the whole minute
            a, b = [
                await api.client.get(f"/api/tasks/{task_id}?{query}") for api, task_id in zip(apps, ids, strict=True)
            ]
            case = (query, ids)
            assert a.status_code == b.status_code, (case, a.text, b.text)
            assert _headers(a) == _headers(b), case
            ended_at = re.compile(rb'"completed_at":"[^"]*"')
            assert ended_at.sub(b"", _normal(a.content)) == ended_at.sub(b"", _normal(b.content)), case
            fallbacks += 0 if taken else 1
            assert waits.get(id(fast.client._transport.app), 0) == fallbacks, case  # type: ignore[attr-defined]
    assert (await fast.client.get(f"/api/tasks/{pending[0]}?wait=0.05")).json()["status"] == "pending"


async def test_long_poll_fast_path_wakes_on_the_end(fast: Api) -> None:
    """A waiter parked in the fast path answers when its task ends, with the ended task."""
    task_id = (await fast.client.post("/api/tasks", json={"type": "noop"})).json()["id"]
    waiter = asyncio.ensure_future(fast.client.get(f"/api/tasks/{task_id}?wait=30"))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    assert (await fast.client.post(f"/api/tasks/{task_id}/cancel")).status_code == 200
    answer = await asyncio.wait_for(waiter, 20)
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
