"""A task's webhook records go with the task (remove.lua, webhook_record.lua): a real worker, the
notifier in-process, the api in-process and a real HTTP receiver on loopback. Deleting a task or the
janitor's retention removes its attempt log and its ended messages in the same call; a message still
due runs to its end and is then deleted, its attempts no longer logged."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest
from redis.asyncio import Redis

from streamq.services.worker.janitor import Janitor
from streamq.shared import retention
from streamq.shared.keys import KeySchema
from streamq.shared.queue import Queue
from streamq.shared.queues import Bound, QueueRegistry
from streamq.shared.settings import Settings
from tests.integration import test_notifier as notifier_tests
from tests.integration.helpers import running_worker
from tests.integration.receivers import Answer, Receiver, running_notifier
from tests.integration.test_notifier import submit, wait_webhook_status, webhook_settings

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return webhook_settings(settings, webhook_timeout_s=5, webhook_lease_s=8)


receiver = notifier_tests.receiver  # the same receiver fixture


async def messages(redis: Redis, keys: KeySchema, task_id: str) -> list[str]:
    """The ids of the task's webhook messages its hash names, oldest first."""
    earlier, latest = await redis.hmget(keys.task(task_id), ["webhook_earlier", "webhook_delivery"])
    return [*str(earlier or "").split(), *([latest] if latest else [])]


async def records(redis: Redis, keys: KeySchema, task_id: str, ids: list[str]) -> list[str]:
    """Which of the task's webhook records exist: its attempt log and each message hash."""
    names = [keys.deliveries(task_id), *(keys.webhook(d) for d in ids)]
    return [name for name in names if await redis.exists(name)]


async def until(predicate: Callable[[], Awaitable[bool]], what: str, timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.05)


async def test_deleting_a_task_removes_its_log_and_every_ended_message(
    settings: Settings, api: httpx.AsyncClient, redis: Redis, keys: KeySchema, receiver: Receiver
) -> None:
    # a failed task retried and failed again: two terminal events, two messages, one log
    task_id = await submit(api, receiver.url(), type="fail", payload="x", max_retries=0)
    async with running_worker(settings), running_notifier(settings):
        await wait_webhook_status(api, task_id, "delivered")
        [first] = await messages(redis, keys, task_id)
        assert (await api.post(f"/api/tasks/{task_id}/retry")).status_code == 200

        async def second_delivered() -> bool:
            ids = await messages(redis, keys, task_id)
            return len(ids) == 2 and await redis.hget(keys.webhook(ids[1]), "status") == "delivered"

        await until(second_delivered, "the second message delivered")
    ids = await messages(redis, keys, task_id)
    assert ids[0] == first and len(set(ids)) == 2 and len(receiver.requests) == 2
    assert len(await records(redis, keys, task_id, ids)) == 3  # the log and both messages
    assert (await api.delete(f"/api/tasks/{task_id}")).status_code == 204
    assert await records(redis, keys, task_id, ids) == []
    assert not await redis.exists(keys.task(task_id))
    assert (await api.get(f"/api/tasks/{task_id}/deliveries")).status_code == 404


async def test_retention_removes_the_webhook_records_of_the_tasks_it_prunes(
    settings: Settings, api: httpx.AsyncClient, redis: Redis, keys: KeySchema, queue: Queue, receiver: Receiver
) -> None:
    # one message of each ended status: delivered, failed (400), gone (410)
    receiver.on("/bad", Answer(400))
    receiver.on("/gone", Answer(410))
    ended = {"/hook": "delivered", "/bad": "failed", "/gone": "gone"}
    tasks = {path: await submit(api, receiver.url(path)) for path in ended}
    kept = await submit(api, receiver.url())
    async with running_worker(settings), running_notifier(settings):
        for path, status in ended.items():
            await wait_webhook_status(api, tasks[path], status)
        await wait_webhook_status(api, kept, "delivered")
    ids = {task_id: await messages(redis, keys, task_id) for task_id in [*tasks.values(), kept]}
    for task_id, listed in ids.items():
        assert len(listed) == 1 and len(await records(redis, keys, task_id, listed)) == 2
    registry = QueueRegistry(redis, keys)
    await registry.set_retention("default", {"completed": Bound(None, 1)})  # keeps the newest: `kept`
    janitor = Janitor(
        queue, registry=registry, defaults=retention.defaults(settings), result_ttl_s=settings.result_ttl_s
    )
    await janitor.tick()
    assert await redis.zrange(keys.index_status("completed"), 0, -1) == [kept]
    for task_id in tasks.values():
        assert await records(redis, keys, task_id, ids[task_id]) == []
    assert len(await records(redis, keys, kept, ids[kept])) == 2
    assert await redis.zcard(keys.webhooks_due) == 0


async def test_a_task_removed_while_its_webhook_retries_lets_it_run_to_its_end(
    settings: Settings, api: httpx.AsyncClient, redis: Redis, keys: KeySchema, receiver: Receiver
) -> None:
    receiver.on("/flaky", Answer(503), Answer(200))
    task_id = await submit(api, receiver.url("/flaky"))
    async with running_worker(settings), running_notifier(settings):
        await wait_webhook_status(api, task_id, "retrying")
    # the notifier is stopped: the delivery waits in webhooks:due for its next attempt
    [message] = await messages(redis, keys, task_id)
    assert await redis.zscore(keys.webhooks_due, message) is not None
    assert (await api.delete(f"/api/tasks/{task_id}")).status_code == 204
    assert await records(redis, keys, task_id, [message]) == [keys.webhook(message)]  # the log went, not it
    assert await redis.hget(keys.webhook(message), "status") == "retrying"
    async with running_notifier(settings):

        async def gone() -> bool:
            return not await redis.exists(keys.webhook(message))

        await until(gone, "the message deleted once delivered")
    assert len(receiver.at("/flaky")) == 2  # the retry was sent
    assert await records(redis, keys, task_id, [message]) == []  # and its attempt was not logged
    assert await redis.zscore(keys.webhooks_due, message) is None


async def test_a_task_pruned_while_its_webhook_is_in_flight_leaves_nothing(
    settings: Settings, api: httpx.AsyncClient, redis: Redis, keys: KeySchema, queue: Queue, receiver: Receiver
) -> None:
    receiver.on("/slow", Answer(200, delay_s=2.0))
    task_id = await submit(api, receiver.url("/slow"))
    janitor = Janitor(queue, registry=QueueRegistry(redis, keys), defaults=retention.defaults(settings), result_ttl_s=1)
    async with running_worker(settings), running_notifier(settings):

        async def in_flight() -> bool:
            return receiver.in_flight == 1

        await until(in_flight, "the webhook in flight")
        [message] = await messages(redis, keys, task_id)
        await redis.zadd(keys.retention, {task_id: 0})  # past its retention deadline
        await janitor.tick()
        assert not await redis.exists(keys.task(task_id))

        async def gone() -> bool:
            return not await redis.exists(keys.webhook(message))

        await until(gone, "the message deleted once delivered")
    assert len(receiver.at("/slow")) == 1
    assert await records(redis, keys, task_id, [message]) == []
    assert await redis.zcard(keys.webhooks_due) == 0
