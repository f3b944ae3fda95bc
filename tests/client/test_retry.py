"""A submit whose first answer is lost (the api wrote the task, the caller got a 503) is retried with
the same idempotency key: exactly one task. The proxy is a real HTTP server in front of the real api."""

from __future__ import annotations

import pytest

import streamq
from tests.client.proxy import FlakyProxy

pytestmark = pytest.mark.e2e


def test_sync_submit_retried_after_503_makes_one_task(flaky: FlakyProxy, api_url: str) -> None:
    with streamq.Client(flaky.url) as client:
        task = client.submit("noop", {"n": 1})
    assert flaky.forwarded == [("POST", "/api/tasks"), ("POST", "/api/tasks")]  # the api got it twice
    with streamq.Client(api_url) as direct:
        assert [t.id for t in direct.list()] == [task.id]


async def test_async_batch_retried_after_503_makes_each_task_once(flaky: FlakyProxy, api_url: str) -> None:
    async with streamq.AsyncClient(flaky.url) as client:
        tasks = await client.submit_many([{"type": "noop", "payload": i} for i in range(10)])
    assert [m for m, _ in flaky.forwarded] == ["POST", "POST"]
    async with streamq.AsyncClient(api_url) as direct:
        stored = [t async for t in direct.list()]
    assert sorted(t.id for t in stored) == sorted(t.id for t in tasks) and len(stored) == 10


def test_503_after_the_retries_is_unavailable(api_url: str) -> None:
    proxy = FlakyProxy(api_url, fail_first=3)
    try:
        with pytest.raises(streamq.Unavailable) as error, streamq.Client(proxy.url, retries=2) as client:
            client.stats()
        assert error.value.status_code == 503 and error.value.retry_after == 0
        assert len(proxy.forwarded) == 3
    finally:
        proxy.stop()
