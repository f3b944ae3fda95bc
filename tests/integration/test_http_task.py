"""The http task type in a real worker against a real HTTP server on loopback, and its guard."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from streamq.shared.models import TaskCreate
from streamq.shared.queue import Queue
from streamq.shared.settings import Settings
from tests.integration.helpers import running_worker, wait_for_status
from tests.integration.receivers import Answer, Receiver, serving


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving(Receiver()) as r:
        yield r


def open_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"allow_private_networks": True})


async def test_post_json_and_store_the_answer(settings: Settings, queue: Queue, receiver: Receiver) -> None:
    receiver.on(
        "/api", Answer(201, {"content-type": "application/json", "etag": '"v1"', "x-secret": "no"}, b'{"ok":1}')
    )
    payload = {"method": "POST", "url": receiver.url("/api"), "headers": {"X-Token": "t"}, "json": {"a": [1, 2]},
               "expect_status": [200, 201]}  # fmt: skip
    [done] = await queue.submit([TaskCreate(type="http", payload=payload)])
    async with running_worker(open_settings(settings)):
        await wait_for_status(queue, done.task.id, {"completed", "failed"})
    task = await queue.get(done.task.id)
    assert task.status == "completed", task.error
    result = task.result
    assert (result["status"], result["body"], result["truncated"]) == (201, '{"ok":1}', False)
    assert result["headers"]["content-type"] == "application/json" and result["headers"]["etag"] == '"v1"'
    assert "x-secret" not in result["headers"]  # only a known subset of headers is kept
    [request] = receiver.requests
    assert request.method == "POST" and orjson.loads(request.body) == {"a": [1, 2]}
    assert request.headers["x-token"] == "t"


async def test_large_bodies_are_cut(settings: Settings, queue: Queue, receiver: Receiver) -> None:
    receiver.on("/big", Answer(200, {}, b"x" * 200_000))
    [done] = await queue.submit([TaskCreate(type="http", payload={"url": receiver.url("/big")})])
    async with running_worker(open_settings(settings)):
        await wait_for_status(queue, done.task.id, {"completed"})
    result = (await queue.get(done.task.id)).result
    assert result["truncated"] is True and len(result["body"]) == 64 * 1024


async def test_unexpected_status_fails_and_retries(settings: Settings, queue: Queue, receiver: Receiver) -> None:
    receiver.on("/err", Answer(503))
    [done] = await queue.submit(
        [TaskCreate(type="http", payload={"url": receiver.url("/err")}, max_retries=2, retry_backoff_s=60)]
    )
    async with running_worker(open_settings(settings)):
        await wait_for_status(queue, done.task.id, {"scheduled"})
    task = await queue.get(done.task.id)
    assert task.error == f"UnexpectedStatus: HTTP 503 from GET {receiver.url('/err')} (expected 2xx)"


async def test_guard_refuses_at_submission_and_in_the_worker(
    settings: Settings, queue: Queue, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    response = await api.post("/api/tasks", json={"type": "http", "payload": {"url": receiver.url("/x")}})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "payload", "url"] and "loopback" in error["msg"]
    # written straight to the queue (no api check): the worker refuses it too, without retrying
    [done] = await queue.submit([TaskCreate(type="http", payload={"url": receiver.url("/x")}, max_retries=3)])
    async with running_worker(settings):
        await wait_for_status(queue, done.task.id, {"failed"})
    task = await queue.get(done.task.id)
    assert task.attempts == 1 and task.error is not None and "URL refused" in task.error
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("payload", "loc", "fragment"),
    [
        ({}, ["body", "payload", "url"], "required"),
        ("https://example.com", ["body", "payload"], "must be an object"),
        ({"url": "https://example.com", "json": {}, "body": "x"}, ["body", "payload"], "not both"),
        ({"url": "https://example.com", "method": "BREW"}, ["body", "payload", "method"], "GET"),
        ({"url": "https://example.com", "timeout_s": 0}, ["body", "payload", "timeout_s"], "greater than 0"),
        ({"url": "https://example.com", "expect_status": 99}, ["body", "payload", "expect_status"], "100"),
        ({"url": "ftp://example.com/"}, ["body", "payload", "url"], "scheme 'ftp'"),
        ({"url": "https://example.com", "headers": {"A": "b\r\nc: d"}}, ["body", "payload", "headers", "A"], "line"),
    ],
)
async def test_bad_payloads_get_422(api: httpx.AsyncClient, payload: object, loc: list[object], fragment: str) -> None:
    response = await api.post("/api/tasks", json={"type": "http", "payload": payload})
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["loc"][: len(loc)] == loc and fragment in e["msg"] for e in errors), errors


async def test_a_slow_answer_times_out_and_retries(settings: Settings, queue: Queue, receiver: Receiver) -> None:
    receiver.on("/slow", Answer(200, delay_s=2))
    payload = {"url": receiver.url("/slow"), "timeout_s": 0.3}
    [done] = await queue.submit([TaskCreate(type="http", payload=payload, max_retries=1, retry_backoff_s=60)])
    async with running_worker(open_settings(settings)):
        await wait_for_status(queue, done.task.id, {"scheduled"})
    task = await queue.get(done.task.id)
    assert task.error == f"HttpTimeout: no complete answer from GET {receiver.url('/slow')} within 0.3 s"
