"""streamq.Client and streamq.AsyncClient against a real api process and a real worker: every method,
and every error type from a real answer."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

import streamq
from streamq.shared.auth import config_line, new_secret
from streamq.testing import free_port, wait_http
from tests.services import StartService

pytestmark = pytest.mark.e2e


def test_sync_client_every_method(stack: str) -> None:
    with streamq.Client(stack) as client:
        task = client.submit("echo", {"hello": "world"}, priority=5, max_retries=1)
        assert isinstance(task, streamq.Task) and task.priority == 5 and task.idempotency_key
        done = client.wait(task.id, timeout=30)
        assert done.status is streamq.TaskStatus.COMPLETED and done.result == {"hello": "world"} and done.done
        assert client.get(task.id).completed_at is not None

        failed = client.wait(client.submit("fail", "boom", max_retries=0).id, timeout=30)
        assert failed.status == "failed" and failed.error is not None and "boom" in failed.error
        assert client.retry(failed.id).id == failed.id  # back to pending (the worker may have failed it again)
        assert client.wait(failed.id, timeout=30).status == "failed"
        assert client.retry_failed() >= 1

        later = client.submit("noop", delay=timedelta(hours=1))
        assert later.status == "scheduled" and later.scheduled_for is not None
        assert later.scheduled_for > datetime.now(UTC) + timedelta(minutes=59)
        assert client.submit("noop", delay=3600).status == "scheduled"
        assert client.cancel(later.id).status == "cancelled"
        client.delete(later.id)
        with pytest.raises(streamq.NotFound):
            client.get(later.id)

        many = client.submit_many({"type": "echo", "payload": i, "queue": "bulk"} for i in range(1001))
        assert [t.payload for t in many] == list(range(1001))  # two batches, in order
        listed = list(client.list(queue="bulk"))  # follows the cursor over 11 pages
        assert sorted(t.payload for t in listed) == list(range(1001))
        assert len(list(client.list(queue="bulk", limit=150))) == 150
        assert all(t.type == "echo" for t in client.list(type="echo", limit=5))

        assert client.stats().total == 1004 and client.stats("bulk").queue == "bulk"
        [worker] = client.workers()
        assert "echo" in worker.handlers
        assert {q.name for q in client.queues.list()} >= {"default", "bulk"}
        assert client.queues.pause("bulk").paused is True
        assert client.queues.resume("bulk").paused is False

        schedule = client.schedules.create("nightly", "0 2 * * *", "echo", {"report": 1}, timezone="Europe/Paris")
        assert schedule.next_run_at is not None and schedule.task["type"] == "echo"
        assert [s.name for s in client.schedules.list()] == ["nightly"]
        assert client.schedules.pause("nightly").paused is True
        assert client.schedules.resume("nightly").paused is False
        assert client.schedules.get("nightly").timezone == "Europe/Paris"
        client.schedules.delete("nightly")
        with pytest.raises(streamq.NotFound):
            client.schedules.get("nightly")


async def test_async_client_every_method(stack: str) -> None:
    async with streamq.AsyncClient(stack) as client:
        tasks = await asyncio.gather(*(client.submit("echo", i) for i in range(20)))
        done = await asyncio.gather(*(client.wait(t.id, timeout=30) for t in tasks))
        assert [t.result for t in done] == list(range(20))
        assert (await client.get(tasks[0].id)).status == "completed"

        failed = await client.wait((await client.submit("fail", max_retries=0)).id, timeout=30)
        assert failed.status == "failed"
        assert (await client.retry(failed.id)).id == failed.id
        assert (await client.wait(failed.id, timeout=30)).status == "failed"
        assert await client.retry_failed(queue="default") >= 1

        later = await client.submit("noop", scheduled_for=datetime.now(UTC) + timedelta(hours=1))
        assert (await client.cancel(later.id)).status == "cancelled"
        await client.delete(later.id)

        many = await client.submit_many([{"type": "noop", "queue": "bulk", "priority": 1}] * 120)
        assert len(many) == 120 and all(t.priority == 1 for t in many)
        assert len([t async for t in client.list(queue="bulk", status="pending")]) == 120  # no worker reads "bulk"
        assert [t.id async for t in client.list(queue="bulk", limit=3)] == [t.id for t in many[::-1][:3]]

        assert (await client.stats()).total >= 22
        assert len(await client.workers()) == 1
        assert "bulk" in {q.name for q in await client.queues.list()}
        assert (await client.queues.pause("bulk")).paused and not (await client.queues.resume("bulk")).paused
        await client.schedules.create("hourly", "0 * * * *", "noop")
        assert (await client.schedules.get("hourly")).cron == "0 * * * *"
        assert [s.name for s in await client.schedules.list()] == ["hourly"]
        assert (await client.schedules.pause("hourly")).paused
        assert not (await client.schedules.resume("hourly")).paused
        await client.schedules.delete("hourly")


def test_errors_from_real_answers(stack: str) -> None:
    with streamq.Client(stack, timeout=5) as client:
        with pytest.raises(streamq.NotFound) as missing:
            client.get("01NOSUCHTASK0000000000000")
        assert missing.value.status_code == 404

        with pytest.raises(streamq.InvalidTask) as invalid:
            client.submit("echo", priority=9)
        assert invalid.value.errors[0]["loc"] == ["body", "priority"] and "priority" in str(invalid.value)

        task = client.wait(client.submit("noop").id)
        with pytest.raises(streamq.Conflict) as conflict:
            client.cancel(task.id)
        assert conflict.value.status == "completed"
        client.schedules.create("twice", "* * * * *", "noop")
        with pytest.raises(streamq.Conflict):
            client.schedules.create("twice", "* * * * *", "noop")

        sleeping = client.submit("sleep", 5)
        with pytest.raises(streamq.Timeout) as late:
            client.wait(sleeping.id, timeout=0.5)
        assert late.value.task is not None and late.value.task.status in ("pending", "processing")
        assert isinstance(late.value, TimeoutError)

    with pytest.raises(streamq.Unavailable), streamq.Client(f"http://127.0.0.1:{free_port()}", retries=1) as dead:
        dead.stats()


async def test_async_errors(stack: str) -> None:
    async with streamq.AsyncClient(stack, timeout=5) as client:
        with pytest.raises(streamq.NotFound):
            await client.delete("01NOSUCHTASK0000000000000")
        with pytest.raises(streamq.InvalidTask) as invalid:
            await client.submit("echo", webhook="ftp://example.com")
        assert invalid.value.errors[0]["loc"] == ["body", "webhook"]
        with pytest.raises(streamq.Timeout):
            await client.wait((await client.submit("sleep", 5)).id, timeout=0.3)
    async with streamq.AsyncClient(f"http://127.0.0.1:{free_port()}", retries=0) as dead:
        with pytest.raises(streamq.Unavailable):
            await dead.workers()


def test_keys_scopes_and_rate_limit(start_service: StartService, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unauthorized, Forbidden and RateLimited from an api with keys and a rate limit; the key is read
    from STREAMQ_API_KEY and the url from STREAMQ_URL."""
    reader, admin = new_secret(), new_secret()
    keys = f"{config_line('reader', ['read'], reader)} {config_line('ops', ['submit', 'read', 'admin'], admin)}"
    port = free_port()
    start_service(
        "streamq.services.api", STREAMQ_API_PORT=str(port), STREAMQ_API_KEYS=keys, STREAMQ_RATE_LIMIT="2/m burst 3"
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/api/health")
    monkeypatch.setenv("STREAMQ_URL", url)
    with pytest.raises(streamq.Unauthorized), streamq.Client() as anonymous:
        anonymous.stats()
    monkeypatch.setenv("STREAMQ_API_KEY", reader)
    with streamq.Client(retries=0) as client:
        assert client.config.url == url
        with pytest.raises(streamq.Forbidden) as forbidden:
            client.submit("noop")
        assert "submit" in str(forbidden.value)
        with pytest.raises(streamq.RateLimited) as limited:
            for _ in range(5):
                client.stats()
        assert limited.value.retry_after is not None and limited.value.retry_after > 0
    with streamq.Client(api_key=admin, retries=0) as ops:  # its own bucket: the limit is per key
        assert ops.submit("noop").status == "pending"


def running_with_progress(client: streamq.Client, task_type: str, payload: float) -> streamq.Task:
    """A task submitted and polled (bounded) until its handler's first progress report is on it."""
    task = client.submit(task_type, payload)
    deadline = time.monotonic() + 20
    while (task := client.get(task.id)).progress is None:
        assert time.monotonic() < deadline, task
        time.sleep(0.05)
    return task


def test_cancel_of_a_running_task_returns_it_asked_to_stop(control_stack: str) -> None:
    with streamq.Client(control_stack) as client:
        # an async handler reporting progress every 50 ms: typed fields, then a cancel that answers 202
        task = running_with_progress(client, "progress_forever", 60)
        assert task.status is streamq.TaskStatus.PROCESSING and isinstance(task.progress, float)
        assert isinstance(task.progress_message, str) and task.progress_message.startswith("tick ")
        assert task.cancel_requested is False and "cancel_requested" in streamq.Task.model_fields
        asked = client.cancel(task.id)
        assert asked.status is streamq.TaskStatus.PROCESSING and asked.cancel_requested is True and not asked.done
        done = client.wait(task.id, timeout=30)
        assert done.status is streamq.TaskStatus.CANCELLED and done.cancel_requested and done.attempts == 1
        assert done.error is not None and "cancelled while it ran" in done.error
        with pytest.raises(streamq.Conflict) as ended:  # a finished task cannot be cancelled
            client.cancel(task.id)
        assert ended.value.status == "cancelled"


async def test_async_cancel_of_a_running_task(control_stack: str) -> None:
    async with streamq.AsyncClient(control_stack) as client:
        task = await client.submit("cancel_sleep", 30)  # an async handler sleeping 30 s
        deadline = time.monotonic() + 20
        while (task := await client.get(task.id)).status != "processing":
            assert time.monotonic() < deadline, task
            await asyncio.sleep(0.05)
        asked = await client.cancel(task.id)
        assert asked.status == "processing" and asked.cancel_requested is True
        done = await client.wait(task.id, timeout=30)
        assert done.status == "cancelled" and done.result is None
