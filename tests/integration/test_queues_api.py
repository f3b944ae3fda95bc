"""Named queues and partitions through the api and the Broker facade; raw Redis state asserted."""

from __future__ import annotations

import httpx
from redis.asyncio import Redis

from streamq.services.api.security import required_scope
from streamq.shared.auth import Scope
from streamq.shared.broker import Broker
from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queues import QueueConfig, partition_of
from tests.support import task_ids


async def test_task_names_its_queue_and_lives_in_its_slot(
    api: httpx.AsyncClient, redis: Redis, keys: KeySchema
) -> None:
    bulk = keys.for_queue("bulk")
    r = await api.post("/api/tasks", json={"type": "noop", "queue": "bulk", "priority": 2})
    assert r.status_code == 201 and r.json()["queue"] == "bulk"
    task_id = r.json()["id"]
    assert await redis.hget(bulk.task(task_id), "type") == "noop"  # the queue is the key's, not a field
    assert [f for _, f in await redis.xrange(bulk.stream(2))] == [{"id": task_id}]
    assert await redis.zrange(bulk.index_status("pending"), 0, -1) == [task_id]
    assert not await redis.exists(keys.task(task_id)) and await task_ids(redis, keys) == []
    assert QueueConfig.from_json("bulk", await redis.hget(keys.queues, "bulk")) == QueueConfig("bulk")
    default = (await api.post("/api/tasks", json={"type": "noop"})).json()
    assert default["queue"] == "default" and await redis.exists(keys.task(default["id"]))
    # found by id without naming the queue; naming the wrong queue is a 404
    assert (await api.get(f"/api/tasks/{task_id}")).json()["queue"] == "bulk"
    assert (await api.get(f"/api/tasks/{task_id}", params={"queue": "bulk"})).status_code == 200
    assert (await api.get(f"/api/tasks/{task_id}", params={"queue": "default"})).status_code == 404
    log = await api.get(f"/api/tasks/{task_id}/deliveries")  # the webhook log is found in its queue too
    assert log.status_code == 200 and log.json()["task"] == task_id and log.json()["deliveries"] == []
    cancelled = await api.post(f"/api/tasks/{task_id}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    assert await redis.zrange(bulk.index_status("cancelled"), 0, -1) == [task_id]
    assert (await api.delete(f"/api/tasks/{task_id}")).status_code == 204
    assert not await redis.exists(bulk.task(task_id))


async def test_bad_queue_names_are_422_naming_the_field(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/tasks", json={"type": "noop", "queue": "no:colons"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "queue"]
    r = await api.post("/api/tasks/batch", json={"tasks": [{"type": "noop"}, {"type": "noop", "queue": ""}]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "tasks", 1, "queue"]
    r = await api.get("/api/tasks", params={"queue": "x" * 65})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "queue"]
    r = await api.put("/api/queues/bad name", json={"partitions": 2})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "name"]


async def test_lists_and_stats_per_queue_and_summed(api: httpx.AsyncClient) -> None:
    batch = [{"type": "noop", "queue": q, "payload": i} for i, q in enumerate(["a", "b", "a", "default", "b", "a"])]
    created = (await api.post("/api/tasks/batch", json={"tasks": batch})).json()["tasks"]
    assert [t["queue"] for t in created] == [t["queue"] for t in batch]  # replies in request order
    assert [t["payload"] for t in created] == list(range(6))
    every = (await api.get("/api/tasks", params={"limit": 100})).json()["tasks"]
    assert sorted(t["id"] for t in every) == sorted(t["id"] for t in created)
    assert [t["id"] for t in every] == sorted((t["id"] for t in every), reverse=True)
    only_a = (await api.get("/api/tasks", params={"queue": "a"})).json()["tasks"]
    assert sorted(t["payload"] for t in only_a) == [0, 2, 5]
    assert (await api.get("/api/tasks", params={"queue": "nowhere"})).json() == {"tasks": [], "next_cursor": None}
    a = (await api.get("/api/stats", params={"queue": "a"})).json()
    assert a["queue"] == "a" and a["pending"] == 3 and a["submitted_total"] == 3 and a["queues"] == ["a"]
    total = (await api.get("/api/stats")).json()
    assert total["queue"] == "*" and total["pending"] == 6 and total["queues"] == ["a", "b", "default"]


async def test_queues_routes(api: httpx.AsyncClient, redis: Redis, keys: KeySchema) -> None:
    await api.post(
        "/api/tasks/batch", json={"tasks": [{"type": "noop", "queue": "mail", "priority": p} for p in (1, 5, 5)]}
    )
    listed = (await api.get("/api/queues")).json()
    assert [q["name"] for q in listed] == ["default", "mail"]
    mail = (await api.get("/api/queues/mail")).json()
    assert mail["partitions"] == 1 and mail["paused"] is False and mail["workers"] == []
    assert mail["stats"]["pending"] == 3 and mail["dead_letter"] == 0
    assert mail["depth"] == {"1": 1, "2": 0, "3": 0, "4": 0, "5": 2}
    assert (await api.get("/api/queues/nope")).status_code == 404
    assert (await api.post("/api/queues/nope/pause")).status_code == 404
    grown = await api.put("/api/queues/mail", json={"partitions": 3})
    assert grown.status_code == 200 and grown.json()["partitions"] == 3
    assert QueueConfig.from_json("mail", await redis.hget(keys.queues, "mail")).partitions == 3
    shrink = await api.put("/api/queues/mail", json={"partitions": 2})
    assert shrink.status_code == 422 and shrink.json()["detail"][0]["loc"] == ["body", "partitions"]
    assert "only grow" in shrink.json()["detail"][0]["msg"]
    for bad in (0, 65, "3"):
        r = await api.put("/api/queues/mail", json={"partitions": bad})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "partitions"], bad
    created = await api.put("/api/queues/fresh", json={"partitions": 2})
    assert created.json()["partitions"] == 2 and created.json()["stats"]["total"] == 0
    paused = (await api.post("/api/queues/mail/pause")).json()
    assert paused["paused"] is True
    flags = [p.paused for p in keys.for_queue("mail").partitions(3)]
    assert [await redis.exists(f) for f in flags] == [1, 1, 1]
    assert (await api.post("/api/tasks", json={"type": "noop", "queue": "mail"})).status_code == 201  # still accepted
    assert (await api.post("/api/queues/mail/resume")).json()["paused"] is False
    assert [await redis.exists(f) for f in flags] == [0, 0, 0]


def test_queue_changes_need_admin_and_reads_need_read() -> None:
    assert required_scope("GET", "/api/queues") == Scope.READ
    assert required_scope("GET", "/api/queues/mail") == Scope.READ
    assert required_scope("PUT", "/api/queues/mail") == Scope.ADMIN
    assert required_scope("POST", "/api/queues/mail/pause") == Scope.ADMIN
    assert required_scope("POST", "/api/queues/mail/resume") == Scope.ADMIN


async def test_partitions_spread_tasks_and_keep_idempotency(redis: Redis, keys: KeySchema) -> None:
    broker = Broker(redis, keys)
    await broker.registry.configure("wide", 4)
    done = await broker.submit([TaskCreate(type="noop", queue="wide", payload=i) for i in range(200)])
    assert [d.task.payload for d in done] == list(range(200))
    parts = keys.for_queue("wide").partitions(4)
    sizes = [len(await task_ids(redis, p)) for p in parts]
    assert sum(sizes) == 200 and all(s > 20 for s in sizes), sizes  # crc32 spreads ids evenly
    for d in done:
        assert await redis.exists(parts[partition_of(d.task.id, 4)].task(d.task.id))
    tags = {k.split("}")[0] + "}" async for k in redis.scan_iter(match=f"{keys.prefix}:{{wide*", count=1000)}
    assert tags == {f"{keys.prefix}:{{wide}}", *(f"{keys.prefix}:{{wide:{k}}}" for k in (1, 2, 3))}
    # an idempotency key lands in one partition and dedups there, in one batch and across calls
    same = [TaskCreate(type="noop", queue="wide", idempotency_key=f"k{i % 3}") for i in range(6)]
    first = await broker.submit(same)
    assert [d.duplicate for d in first] == [False] * 3 + [True] * 3
    assert [d.task.id for d in first[3:]] == [d.task.id for d in first[:3]]
    again = await broker.submit(same[:3])
    assert all(d.duplicate for d in again) and [d.task.id for d in again] == [d.task.id for d in first[:3]]
    for i in range(3):
        part = parts[partition_of(f"k{i}", 4)]
        assert await redis.get(part.idempotency(f"k{i}")) == first[i].task.id
        assert await redis.exists(part.task(first[i].task.id))
    assert (await broker.stats("wide")).total == 203


async def test_lists_page_across_partitions_without_gaps(redis: Redis, keys: KeySchema) -> None:
    broker = Broker(redis, keys)
    await broker.registry.configure("wide", 4)
    ids = []
    for i in range(31):  # one at a time: ids grow with time
        [d] = await broker.submit([TaskCreate(type="echo" if i % 3 else "noop", queue="wide", payload=i)])
        ids.append(d.task.id)
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = await broker.list_tasks(queue="wide", limit=7, cursor=cursor)
        seen += [t.id for t in page]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)
    noop, _ = await broker.list_tasks(queue="wide", task_type="noop", limit=100)
    assert sorted(t.payload for t in noop) == [i for i in range(31) if i % 3 == 0]
    # state changes find the partition: cancel, revive, delete
    target = ids[5]
    assert (await broker.cancel(target)).status == "cancelled"
    assert (await broker.revive(target)).status == "pending"
    assert (await broker.locate(target)).keys.partition == partition_of(target, 4)


async def test_filtered_pages_across_partitions_stop_at_the_least_certain_point(redis: Redis, keys: KeySchema) -> None:
    """A page with two filters reads at most 20 x limit index entries per partition; a partition that
    stops early bounds the merged page, so no matching task is skipped between pages."""
    broker = Broker(redis, keys)
    await broker.registry.configure("two", 2)
    idem = {k: [f"key{i}" for i in range(400) if partition_of(f"key{i}", 2) == k] for k in (0, 1)}
    echo = []
    for i in range(6):  # older: matching tasks in both partitions, the newest in partition 0
        [d] = await broker.submit([TaskCreate(type="echo", queue="two", idempotency_key=idem[(i + 1) % 2][i])])
        echo.append(d.task.id)
    for i in range(60):  # newer: non-matching tasks in partition 0 only, more than one page's budget
        await broker.submit([TaskCreate(type="noop", queue="two", idempotency_key=idem[0][100 + i])])
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        page, cursor = await broker.list_tasks(queue="two", status="pending", task_type="echo", limit=1, cursor=cursor)
        seen += [t.id for t in page]
        if cursor is None:
            break
    assert seen == sorted(echo, reverse=True)


async def test_a_failed_partition_fails_only_its_own_tasks(redis: Redis, keys: KeySchema) -> None:
    """Broker.submit_each (the api's coalesced single submits): one script call per partition; a call
    that fails fails its tasks only, the others are written and get their records."""
    broker = Broker(redis, keys)
    await broker.registry.configure("split", 2)
    parts = keys.for_queue("split").partitions(2)
    tasks = [TaskCreate(type="noop", queue="split", idempotency_key=f"k{i}") for i in range(40)]
    first = next(f"k{i}" for i in range(40) if partition_of(f"k{i}", 2) == 1)
    # partition 1's submit.lua fails on its first command (GET of that key): WRONGTYPE, nothing written
    await redis.hset(parts[1].idempotency(first), "not", "a string")
    done = await broker.submit_each(tasks)
    failed = [i for i, d in enumerate(done) if isinstance(d, BaseException)]
    assert failed == [i for i in range(40) if partition_of(f"k{i}", 2) == 1] and 0 < len(failed) < 40
    assert all("WRONGTYPE" in str(done[i]) for i in failed)
    for i, d in enumerate(done):
        if i not in failed:
            assert not isinstance(d, BaseException) and d.task.idempotency_key == f"k{i}"
            assert await redis.hget(parts[0].task(d.id), "status") == "pending"
    assert len(await task_ids(redis, parts[0])) == 40 - len(failed) and await task_ids(redis, parts[1]) == []
    try:
        await broker.submit_stored([*tasks[:1], tasks[failed[0]]])
    except Exception as error:  # the batch path still refuses the whole request
        assert "WRONGTYPE" in str(error)
    else:
        raise AssertionError("submit_stored returned despite a failed call")
