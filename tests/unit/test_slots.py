"""Every key a script receives is in one hash slot (so every script runs on Redis Cluster).

Two checks: every per-queue key KeySchema builds lands in its tag's slot (a plain queue and a
``{q:k}`` partition), and, against a real Redis, every script call made by the queue, schedule,
delivery, recovery and worker code paths names keys of a single slot (a spy records the calls)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from streamq.services.worker import builtin  # noqa: F401  # registers echo / fail
from streamq.shared.deliveries import Deliveries
from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Queue
from streamq.shared.recovery import revive_failed
from streamq.shared.schedules import ScheduleCreate, Schedules
from streamq.shared.scripts import Scripts, names
from streamq.shared.settings import Settings
from streamq.shared.webhooks import WebhookStatus
from tests.integration.helpers import running_worker, wait_for_status

SCHEMAS = [KeySchema("sq", "default"), KeySchema("sq", "bulk", 3)]
# keys outside any queue's tag: read or written by plain commands, or by single-key scripts (ratelimit)
GLOBAL = {
    "types",
    "workers",
    "worker",
    "rate_limit",
    "services",
    "service",
    "dashboard_session",
    "dashboard_login",
    "queues",
    "schema",
}


def _keys_of(schema: KeySchema) -> Iterator[tuple[str, str]]:
    """(name, key) for every key-building member of KeySchema."""
    for name, member in inspect.getmembers(type(schema)):
        if name.startswith("_") or name in {"tag", "queue", "prefix", "partition"}:
            continue
        if isinstance(member, property):
            value = getattr(schema, name)
        elif inspect.isfunction(member) and name not in {"of_partition", "partitions", "for_queue"}:
            params = [p for p in inspect.signature(member).parameters.values() if p.name != "self"]
            args: list[Any] = [3 if "priority" in p.name else "pending" if p.name == "status" else "x" for p in params]
            value = member(schema, *args)
        else:
            continue
        for key in value if isinstance(value, list) else [value]:
            yield name, key


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.tag)
def test_every_queue_key_is_in_the_tag_slot(schema: KeySchema) -> None:
    slot = key_slot(schema.tag.encode())
    seen = set()
    for name, key in _keys_of(schema):
        seen.add(name)
        if name in GLOBAL:
            assert "{" not in key, key
            continue
        assert f"{{{schema.tag}}}" in key, f"{name}: {key} lacks the tag"
        assert key_slot(key.encode()) == slot, f"{name}: {key}"
    assert {"common", "task", "stream", "streams", "scheduled", "dead", "events", "paused"} <= seen
    assert seen >= GLOBAL


def test_partitions_of_one_queue_use_different_slots() -> None:
    slots = {key_slot(k.scheduled.encode()) for k in KeySchema("sq", "bulk").partitions(8)}
    assert len(slots) == 8


def touched(name: str, keys: list[str], args: list[Any]) -> list[str]:
    """The keys a call touches: its KEYS, and for take.lua the task hashes it names from ARGV[4]."""
    return [*keys, f"{args[3]}some-task-id"] if name == "take" else list(keys)


class Spy:
    """Records every script call's key list (then runs it as usual)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        call, many, wait, queued = Scripts.call, Scripts.call_many, Scripts.call_many_then_wait, Scripts.queue_call

        async def spy_call(scripts: Scripts, name: str, keys: list[str], args: list[Any], client: Any = None) -> Any:
            self.calls.append((name, touched(name, keys, args)))
            return await call(scripts, name, keys, args, client)

        async def spy_many(scripts: Scripts, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
            self.calls.extend((name, touched(name, keys, args)) for name, keys, args in calls)
            return await many(scripts, calls)

        async def spy_wait(scripts: Scripts, calls: list[tuple[str, list[str], list[Any]]], *rest: Any) -> Any:
            self.calls.extend((name, touched(name, keys, args)) for name, keys, args in calls)
            return await wait(scripts, calls, *rest)

        def spy_queued(scripts: Scripts, pipe: Any, name: str, keys: list[str], args: list[Any]) -> None:
            self.calls.append((name, touched(name, keys, args)))
            queued(scripts, pipe, name, keys, args)

        monkeypatch.setattr(Scripts, "call", spy_call)
        monkeypatch.setattr(Scripts, "call_many", spy_many)
        monkeypatch.setattr(Scripts, "call_many_then_wait", spy_wait)
        monkeypatch.setattr(Scripts, "queue_call", spy_queued)

    def assert_one_slot_each(self) -> set[str]:
        for name, keys in self.calls:
            slots = {key_slot(k.encode()) for k in keys}
            assert len(slots) == 1, f"{name} spans slots {slots}: {keys}"
        return {name for name, _ in self.calls}


async def _queue_paths(redis: Redis, keys: KeySchema) -> None:
    queue = Queue(redis, keys)
    created = await queue.submit(
        [
            TaskCreate(type="echo", payload=1, idempotency_key="k1"),
            TaskCreate(type="echo", payload=2, scheduled_for="2999-01-01T00:00:00Z"),  # type: ignore[arg-type]
        ]
    )
    pending, scheduled = (s.task.id for s in created)
    page, _ = await queue.list_tasks(limit=5)  # no filter: indexes.lua reads the six status indexes
    assert {t.id for t in page} == {pending, scheduled} and (await queue.stats()).total == 2
    await queue.cancel(scheduled)
    await queue.revive(scheduled)
    await queue.cancel(scheduled)
    await queue.delete(scheduled)
    await revive_failed(queue)
    schedules = Schedules(redis, keys)
    await schedules.create(ScheduleCreate(name="nightly", cron="0 3 * * *", task=TaskCreate(type="echo")))
    await schedules.pause("nightly")
    await schedules.resume("nightly")
    await schedules.fire("nightly", 1, 1)
    await schedules.delete("nightly")
    deliveries = Deliveries(queue.scripts, keys, events_maxlen=1000, keep_ms=60_000)
    body = b"{}"
    await deliveries.create(
        mode="event", delivery_id="d1", task_id=pending, event="completed", url="http://x", body=body
    )
    [claimed] = await deliveries.claim(["d1"], 30_000)
    await deliveries.record(claimed, WebhookStatus.DELIVERED, delay_ms=0, entry={}, error="")


@pytest.mark.parametrize("partition", [0, 3])
async def test_queue_schedule_delivery_scripts_name_one_slot(
    redis: Redis, prefix: str, partition: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(monkeypatch)
    await _queue_paths(redis, KeySchema(prefix, "bulk", partition))
    used = spy.assert_one_slot_each()
    expected = {"submit", "indexes", "cancel", "revive", "remove", "schedule_save", "schedule_pause", "fire"}
    expected |= {"schedule_remove", "webhook_enqueue", "webhook_claim", "webhook_record"}
    assert expected <= used


async def test_worker_scripts_name_one_slot(settings: Settings, queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(monkeypatch)
    done = await queue.submit([TaskCreate(type="echo", payload=1), TaskCreate(type="fail", payload="x", max_retries=0)])
    async with running_worker(settings):
        for submitted in done:
            await wait_for_status(queue, submitted.task.id, {"completed", "failed"})
    used = spy.assert_one_slot_each()
    assert {"take", "finish"} <= used
    assert used <= set(names())
