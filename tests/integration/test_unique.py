"""Unique tasks and debounce (docs/unique-and-debounce.md) through the api, on a real Redis (and, with
``--redis-topology=cluster``, a real 3-master Cluster: every script stays in its partition's slot).
Runs use an in-process worker and scheduler; tests/e2e/test_unique_e2e.py uses worker processes."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from redis.asyncio import Redis

from streamq.services.scheduler.main import Scheduler
from streamq.shared.keys import KeySchema
from streamq.shared.models import default_unique_key
from streamq.shared.queues import partition_of
from streamq.shared.settings import Settings
from tests.integration.helpers import running, running_worker
from tests.support import in_process_api, task_ids

Json = dict[str, Any]


async def _post(api: httpx.AsyncClient, body: Json) -> httpx.Response:
    return await api.post("/api/tasks", json=body)


async def _wait_status(api: httpx.AsyncClient, task_id: str, statuses: set[str], timeout: float = 20) -> Json:
    """The task once its status is one of ``statuses`` (polled; the api's long-poll covers only ends)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        task: Json = (await api.get(f"/api/tasks/{task_id}")).json()
        if task["status"] in statuses:
            return task
        assert loop.time() < deadline, f"{task_id} is {task['status']}, expected one of {statuses}"
        await asyncio.sleep(0.02)


async def _concurrent_unique_submits(api: httpx.AsyncClient) -> list[httpx.Response]:
    assert (await api.put("/api/queues/uq", json={"partitions": 4})).status_code == 200
    body = {
        "type": "noop",
        "queue": "uq",
        "unique": {"key": "sync:account-42"},
        "scheduled_for": "2099-01-01T00:00:00Z",
    }
    return list(await asyncio.gather(*(_post(api, {**body, "payload": i}) for i in range(1000))))


async def test_concurrent_submits_of_one_key_make_one_task_in_one_partition(
    settings: Settings, redis: Redis, keys: KeySchema
) -> None:
    # 1,000 requests at once to one slot: on a Cluster the api's pool per node (4 x max(64, 2 x
    # STREAMQ_WORKER_CONCURRENCY) connections; the cluster client fails past it) must hold them all
    async with in_process_api(settings.model_copy(update={"worker_concurrency": 200})) as api:
        answers = await _concurrent_unique_submits(api)
    created = [a for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code == 409]
    assert len(created) == 1 and len(refused) == 999, {a.status_code for a in answers}
    holder = created[0].json()
    assert holder["unique"] == {"key": "sync:account-42", "until": "finished", "ttl_s": 86400}
    assert {a.json()["task_id"] for a in refused} == {holder["id"]}
    assert "sync:account-42" in refused[0].json()["detail"]
    part = keys.for_queue("uq").of_partition(partition_of("sync:account-42", 4))
    everywhere = [i for k in range(4) for i in await task_ids(redis, keys.for_queue("uq", k))]
    assert everywhere == [holder["id"]] == await task_ids(redis, part)
    lock = part.unique("sync:account-42")
    assert await redis.get(lock) == holder["id"]
    assert 0 < await redis.ttl(lock) <= 86400  # bounded


async def test_key_is_free_the_moment_its_task_finishes(api: httpx.AsyncClient, settings: Settings) -> None:
    body = {"type": "echo", "payload": "x", "unique": {"key": "k1"}}
    async with running_worker(settings):
        first = (await _post(api, body)).json()
        done = (await api.get(f"/api/tasks/{first['id']}", params={"wait": 20})).json()
        assert done["status"] == "completed"
        again = await _post(api, body)  # right after wait returned
        assert again.status_code == 201 and again.json()["id"] != first["id"]
        assert (await api.get(f"/api/tasks/{again.json()['id']}", params={"wait": 20})).json()["status"] == "completed"


async def test_until_started_frees_the_key_at_start_finished_holds_it_while_running(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    async with running_worker(settings):
        started = (
            await _post(api, {"type": "sleep", "payload": 1.5, "unique": {"key": "s", "until": "started"}})
        ).json()
        held = (await _post(api, {"type": "sleep", "payload": 1.5, "unique": {"key": "f"}})).json()
        await _wait_status(api, started["id"], {"processing"})
        await _wait_status(api, held["id"], {"processing"})
        second = await _post(api, {"type": "noop", "unique": {"key": "s", "until": "started"}})
        assert second.status_code == 201  # released when its holder started
        refused = await _post(api, {"type": "noop", "unique": {"key": "f"}})
        assert refused.status_code == 409 and refused.json()["task_id"] == held["id"]  # held while it runs
        assert (await api.get(f"/api/tasks/{held['id']}", params={"wait": 20})).json()["status"] == "completed"
        assert (await _post(api, {"type": "noop", "unique": {"key": "f"}})).status_code == 201


async def test_cancel_and_failure_after_the_last_retry_release_the_key(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    later = {"type": "noop", "unique": {"key": "c"}, "scheduled_for": "2099-01-01T00:00:00Z"}
    first = (await _post(api, later)).json()
    assert (await _post(api, later)).status_code == 409
    assert (await api.post(f"/api/tasks/{first['id']}/cancel")).json()["status"] == "cancelled"
    assert (await _post(api, later)).status_code == 201
    async with running_worker(settings), running(Scheduler(settings)):  # the scheduler brings the retry back
        failing = (await _post(api, {"type": "fail", "max_retries": 1, "unique": {"key": "f"}})).json()
        done = (await api.get(f"/api/tasks/{failing['id']}", params={"wait": 20})).json()
        assert done["status"] == "failed" and done["attempts"] == 2
        assert (await _post(api, {"type": "noop", "unique": {"key": "f"}})).status_code == 201


async def test_default_key_is_type_and_canonical_payload(api: httpx.AsyncClient) -> None:
    later = "2099-01-01T00:00:00Z"
    first = await _post(api, {"type": "noop", "payload": {"a": 1, "b": [1, 2]}, "unique": {}, "scheduled_for": later})
    assert first.status_code == 201
    assert first.json()["unique"]["key"] == default_unique_key("noop", {"b": [1, 2], "a": 1})
    same = await _post(api, {"type": "noop", "payload": {"b": [1, 2], "a": 1}, "unique": {}, "scheduled_for": later})
    assert same.status_code == 409 and same.json()["task_id"] == first.json()["id"]
    other = await _post(api, {"type": "noop", "payload": {"a": 2, "b": [1, 2]}, "unique": {}, "scheduled_for": later})
    assert other.status_code == 201
    read = (await api.get(f"/api/tasks/{first.json()['id']}")).json()
    assert read["unique"] == first.json()["unique"] and read["debounce"] is None


async def test_batch_reports_unique_duplicates_and_writes_the_rest(api: httpx.AsyncClient) -> None:
    later = "2099-01-01T00:00:00Z"
    earlier = (await _post(api, {"type": "noop", "unique": {"key": "b0"}, "scheduled_for": later})).json()
    tasks = [
        {"type": "noop", "unique": {"key": "b1"}, "scheduled_for": later},
        {"type": "noop", "unique": {"key": "b1"}, "scheduled_for": later},
        {"type": "noop", "unique": {"key": "b0"}},
        {"type": "noop", "idempotency_key": "i1"},
        {"type": "noop", "idempotency_key": "i1"},
        {"type": "noop"},
    ]
    reply = await api.post("/api/tasks/batch", json={"tasks": tasks})
    assert reply.status_code == 201
    out = reply.json()
    assert out["created"] == 3 and out["duplicates"] == 3 and out["unique_duplicates"] == [1, 2]
    ids = [t["id"] for t in out["tasks"]]
    assert ids[1] == ids[0] and ids[2] == earlier["id"] and ids[4] == ids[3] and len(set(ids)) == 4


async def test_a_lock_that_outlived_its_task_is_taken_over(
    api: httpx.AsyncClient, redis: Redis, keys: KeySchema
) -> None:
    await redis.set(keys.unique("gone"), "01NOSUCHTASK0000000000000", ex=60)
    answer = await _post(api, {"type": "noop", "unique": {"key": "gone"}, "scheduled_for": "2099-01-01T00:00:00Z"})
    assert answer.status_code == 201
    assert await redis.get(keys.unique("gone")) == answer.json()["id"]


async def test_debounce_keeps_one_task_with_the_last_payload_and_runs_it_once(
    api: httpx.AsyncClient, settings: Settings, redis: Redis, keys: KeySchema
) -> None:
    body = {"type": "echo", "debounce": {"key": "reindex:doc-7", "window_s": 1}}
    first = await _post(api, {**body, "payload": 0})
    assert first.status_code == 201 and first.json()["status"] == "scheduled" and first.json()["debounced"] is False
    task_id = first.json()["id"]
    for i in range(1, 5):
        again = await _post(api, {**body, "payload": i})
        assert again.status_code == 200 and again.json()["debounced"] is True and again.json()["id"] == task_id
        assert again.json()["payload"] == i
    due = await redis.zscore(keys.scheduled, task_id)
    assert due is not None and int(due) == int(
        (await redis.hget(keys.task(task_id), "scheduled_for")) or 0
    )  # the scheduled set and the hash agree on the moved due time
    assert await redis.get(keys.debounce("echo", "reindex:doc-7")) == task_id
    assert await redis.ttl(keys.debounce("echo", "reindex:doc-7")) > 0
    async with running_worker(settings), running(Scheduler(settings)):
        done = (await api.get(f"/api/tasks/{task_id}", params={"wait": 20})).json()
        assert done["status"] == "completed" and done["result"] == 4 and done["attempts"] == 1
        assert await redis.get(keys.debounce("echo", "reindex:doc-7")) is None  # released when it started
        fresh = await _post(api, {**body, "payload": 5})  # a new window
        assert fresh.status_code == 201 and fresh.json()["id"] != task_id
    assert await task_ids(redis, keys) == sorted([task_id, fresh.json()["id"]])


async def test_debounce_in_one_batch_and_after_a_cancel(api: httpx.AsyncClient, redis: Redis, keys: KeySchema) -> None:
    body = {"type": "echo", "debounce": {"key": "d", "window_s": 60}}
    reply = await api.post("/api/tasks/batch", json={"tasks": [{**body, "payload": i} for i in range(3)]})
    out = reply.json()
    assert out["created"] == 1 and out["duplicates"] == 2 and out["unique_duplicates"] == []
    assert [t["debounced"] for t in out["tasks"]] == [False, True, True]
    task_id = out["tasks"][0]["id"]
    assert {t["id"] for t in out["tasks"]} == {task_id}
    stored = (await api.get(f"/api/tasks/{task_id}")).json()
    assert stored["payload"] == 2 and stored["debounce"] == {"key": "d", "window_s": 60.0}
    assert await redis.zscore(keys.scheduled, task_id) == int(
        await redis.hget(keys.task(task_id), "scheduled_for") or 0
    )
    assert (await api.post(f"/api/tasks/{task_id}/cancel")).json()["status"] == "cancelled"
    assert await redis.get(keys.debounce("echo", "d")) is None
    after = await _post(api, {**body, "payload": 9})
    assert after.status_code == 201 and after.json()["id"] != task_id


async def test_idempotency_key_with_unique_and_debounce(api: httpx.AsyncClient) -> None:
    later = "2099-01-01T00:00:00Z"
    first = await _post(api, {"type": "noop", "unique": {"key": "iu"}, "idempotency_key": "r1", "scheduled_for": later})
    replay = await _post(
        api, {"type": "noop", "unique": {"key": "iu"}, "idempotency_key": "r1", "scheduled_for": later}
    )
    assert first.status_code == 201 and replay.status_code == 200 and replay.json()["id"] == first.json()["id"]
    refused = await _post(
        api, {"type": "noop", "unique": {"key": "iu"}, "idempotency_key": "r2", "scheduled_for": later}
    )
    assert refused.status_code == 409
    body = {"type": "noop", "debounce": {"key": "id", "window_s": 60}}
    created = await _post(api, {**body, "idempotency_key": "r3"})
    joined = await _post(api, {**body, "idempotency_key": "r4"})
    replayed = await _post(api, {**body, "idempotency_key": "r4"})
    assert created.status_code == 201 and joined.status_code == 200 and replayed.status_code == 200
    assert created.json()["id"] == joined.json()["id"] == replayed.json()["id"]


def _locs(answer: httpx.Response) -> list[list[Any]]:
    assert answer.status_code == 422, answer.text
    return [e["loc"] for e in answer.json()["detail"]]


async def test_bad_input_is_422_naming_the_field(api: httpx.AsyncClient, redis: Redis, keys: KeySchema) -> None:
    cases: list[tuple[Json, list[Any]]] = [
        ({"unique": {"key": "k", "color": "red"}}, ["body", "unique", "color"]),
        ({"debounce": {"key": "k", "window_s": 1, "extra": 1}}, ["body", "debounce", "extra"]),
        ({"unique": {"ttl_s": 0}}, ["body", "unique", "ttl_s"]),
        ({"unique": {"ttl_s": -5}}, ["body", "unique", "ttl_s"]),
        ({"unique": {"ttl_s": 10**9}}, ["body", "unique", "ttl_s"]),
        ({"unique": {"until": "never"}}, ["body", "unique", "until"]),
        ({"unique": {"key": "x" * 10_000}}, ["body", "unique", "key"]),
        ({"unique": {"key": ""}}, ["body", "unique", "key"]),
        ({"debounce": {"key": "k", "window_s": 0}}, ["body", "debounce", "window_s"]),
        ({"debounce": {"key": "k", "window_s": -1}}, ["body", "debounce", "window_s"]),
        ({"debounce": {"window_s": 1}}, ["body", "debounce", "key"]),
        ({"debounce": {"key": "x" * 10_000, "window_s": 1}}, ["body", "debounce", "key"]),
        ({"unique": {"key": "a"}, "debounce": {"key": "a", "window_s": 1}}, ["body", "debounce"]),
        ({"scheduled_for": "2099-01-01T00:00:00Z", "debounce": {"key": "a", "window_s": 1}}, ["body", "debounce"]),
    ]
    for extra, loc in cases:
        assert loc in _locs(await _post(api, {"type": "noop", **extra})), extra
    batch = await api.post("/api/tasks/batch", json={"tasks": [{"type": "noop"}, {"type": "noop", "unique": {"x": 1}}]})
    assert ["body", "tasks", 1, "unique", "x"] in _locs(batch)
    assert await task_ids(redis, keys) == []  # nothing half-written
