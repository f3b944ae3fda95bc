"""Lua scripts seeded and asserted on raw Redis state."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from redis.asyncio import Redis

from streamq.services.worker.consumer import Consumer
from streamq.services.worker.executor import Executor
from streamq.services.worker.finisher import Finisher
from streamq.services.worker.jobs import Delivery, Outcome
from streamq.services.worker.registry import Registry
from streamq.shared.keys import WORKER_GROUP, KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Queue
from streamq.shared.scripts import names, source
from streamq.shared.streams import ensure_group
from tests.support import task_ids, until_server_ms


def make_consumer(queue: Queue, name: str, concurrency: int = 10) -> Consumer:
    keys = queue.keys
    finisher = Finisher(
        queue.scripts, keys, group=WORKER_GROUP, consumer=name, result_ttl_ms=60_000, events_maxlen=1000
    )
    executor = Executor(Registry(), queue=keys.queue, default_timeout_s=5, retry_base_s=1, retry_max_s=10)
    return Consumer(
        queue.redis, queue.scripts, keys, executor, finisher, consumer=name, concurrency=concurrency, events_maxlen=1000
    )


async def test_take_reads_highest_priority_first_and_never_more_than_asked(
    queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    await ensure_group(redis, keys.streams(), WORKER_GROUP)
    await queue.submit([TaskCreate(type="noop", priority=p) for p in (1, 1, 3, 5, 2, 5)])
    consumer = make_consumer(queue, "c1")
    first = await consumer.take(3)
    assert [j.delivery.priority for j in first] == [5, 5, 3] == [j.priority for j in first]
    assert [j.delivery.priority for j in await consumer.take(10)] == [2, 1, 1]
    pending = sum([(await redis.xpending(keys.stream(p), WORKER_GROUP))["pending"] for p in range(1, 6)])
    assert pending == 6
    # taken = started, in the same call: processing on this consumer, one attempt, one started event each
    assert (
        await redis.zcard(keys.index_status("processing")) == 6 and await redis.zcard(keys.index_status("pending")) == 0
    )
    for job in first:
        raw = await redis.hgetall(keys.task(job.delivery.task_id))
        assert raw["status"] == "processing" and raw["worker"] == "c1" and raw["attempts"] == "1"
        assert raw["started_msg"] == job.delivery.msg_id == raw["msg_id"]
    events = [f["event"] for _id, f in await redis.xrange(keys.events)]
    assert events.count("started") == 6


async def test_start_skips_cancelled_and_counts_attempts_once_per_entry(
    queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    await ensure_group(redis, keys.streams(), WORKER_GROUP)
    done = await queue.submit([TaskCreate(type="noop"), TaskCreate(type="noop")])
    consumer = make_consumer(queue, "c1")
    # read by a worker but not started yet (as the reclaimer's XAUTOCLAIM leaves them for start.lua)
    read = await redis.xreadgroup(WORKER_GROUP, "c1", {keys.stream(3): ">"}, count=2)
    deliveries = [Delivery(3, msg_id, fields["id"], keys) for msg_id, fields in read[0][1]]
    await queue.cancel(done[1].task.id)
    jobs = await consumer.start(deliveries)
    assert [j.delivery.task_id for j in jobs] == [done[0].task.id] and jobs[0].attempt == 1
    # the cancelled one's entry was acknowledged, so nothing of it stays pending
    assert (await redis.xpending(keys.stream(3), WORKER_GROUP))["pending"] == 1
    again = await consumer.start(deliveries[:1])  # a redelivery of the same entry
    assert again[0].attempt == 1 and await redis.hget(keys.task(done[0].task.id), "attempts") == "1"


async def test_finish_refuses_a_consumer_that_lost_the_entry(queue: Queue, redis: Redis, keys: KeySchema) -> None:
    await ensure_group(redis, keys.streams(), WORKER_GROUP)
    [done] = await queue.submit([TaskCreate(type="noop")])
    slow = make_consumer(queue, "slow")
    [job] = await slow.take(1)
    # another worker takes the entry over (as the reclaimer does)
    await redis.xclaim(keys.stream(3), WORKER_GROUP, "other", 0, [job.delivery.msg_id], justid=True)
    status = await slow.finisher.record(Outcome(job, completed=True, value='"late"'))
    assert status == "lost"
    raw = await redis.hgetall(keys.task(done.task.id))
    assert raw["status"] == "processing" and "result" not in raw
    assert (await redis.xpending(keys.stream(3), WORKER_GROUP))["pending"] == 1


async def test_finisher_batches_many_outcomes(queue: Queue, redis: Redis, keys: KeySchema) -> None:
    import asyncio

    await ensure_group(redis, keys.streams(), WORKER_GROUP)
    await queue.submit([TaskCreate(type="noop") for _ in range(300)])
    consumer = make_consumer(queue, "c1", concurrency=300)
    jobs = await consumer.take(300)
    statuses = await asyncio.gather(
        *(consumer.finisher.record(Outcome(j, completed=True, value=str(i))) for i, j in enumerate(jobs))
    )
    assert statuses == ["completed"] * 300
    assert await redis.zcard(keys.index_status("completed")) == 300
    assert await redis.xlen(keys.stream(3)) == 0 and await redis.zcard(keys.index_status("processing")) == 0


async def test_revive_and_expiry(queue: Queue, redis: Redis, keys: KeySchema) -> None:
    await ensure_group(redis, keys.streams(), WORKER_GROUP)
    [done] = await queue.submit([TaskCreate(type="noop", max_retries=0)])
    consumer = make_consumer(queue, "c1")
    [job] = await consumer.take(1)
    await consumer.finisher.record(Outcome(job, completed=False, value="boom", delay_ms=0, history=""))
    assert await redis.xlen(keys.dead) == 1
    revived = await queue.revive(done.task.id)
    assert revived.status == "pending" and revived.attempts == 0 and await redis.xlen(keys.dead) == 0
    assert await redis.zscore(keys.retention, done.task.id) is None
    # finish it, then make its retention deadline pass: the janitor removes every trace
    [job] = await consumer.take(1)
    await consumer.finisher.record(Outcome(job, completed=True, value="1"))
    assert await queue.prune() == (0, 0)
    await redis.zadd(keys.retention, {done.task.id: 1})
    assert await queue.prune() == (1, 0)
    assert not await redis.exists(keys.task(done.task.id))
    for key in (*keys.status_indexes(), keys.index_type("noop"), keys.retention):
        assert await redis.zcard(key) == 0
    assert (await queue.stats()).total == 0


async def test_promote_moves_each_due_candidate_once(queue: Queue, redis: Redis, keys: KeySchema) -> None:
    from datetime import UTC, datetime, timedelta

    server_s, server_us = await redis.time()
    soon = datetime.fromtimestamp((server_s * 1000 + server_us // 1000 + 150) / 1000, UTC)
    later = soon + timedelta(hours=1)
    made = await queue.submit(
        [TaskCreate(type="noop", scheduled_for=soon, priority=p) for p in (5, 1, 3, 2)]
        + [TaskCreate(type="noop", scheduled_for=later)]
    )
    a, b, c, d, far = (m.task.id for m in made)
    await queue.cancel(c)  # leaves the scheduled zset
    await redis.hset(keys.task(d), "status", "odd")  # still in the zset, but no longer scheduled
    await asyncio.sleep(0.2)
    candidates = [b, a, b, far, c, d, "missing"]  # a duplicate, one not due, one gone, one not scheduled
    call = ("promote", [*keys.common(), *(keys.task(i) for i in candidates)], [1000, *candidates])
    reply = await queue.scripts.call(*call)
    assert len(reply) == 4 and all(0 <= int(late) < 5000 for late in reply[2:])  # b and a, once each
    assert int(reply[1]) == int(await redis.zscore(keys.scheduled, far))  # next due
    assert await redis.zrange(keys.scheduled, 0, -1) == [far]
    assert await redis.zrange(keys.index_status("scheduled"), 0, -1) == sorted([far, d])
    assert await redis.zrange(keys.index_status("pending"), 0, -1) == sorted([a, b])
    for task_id, priority in ((a, 5), (b, 1)):
        raw = await redis.hgetall(keys.task(task_id))
        [(entry, fields)] = await redis.xrange(keys.stream(priority))
        assert raw["status"] == "pending" and raw["msg_id"] == entry and fields == {"id": task_id}
    assert await redis.hget(keys.task(d), "status") == "odd" and not await redis.hget(keys.task(d), "msg_id")
    promoted = [(f["task"], f["status"]) for _, f in await redis.xrange(keys.events) if f["event"] == "promoted"]
    assert promoted == [(b, "pending"), (a, "pending")]  # one event per task, in candidate order
    again = await queue.scripts.call(*call)  # another replica with the same candidates: nothing left to move
    assert len(again) == 2 and sum([await redis.xlen(keys.stream(p)) for p in range(1, 6)]) == 2


async def test_finish_checks_ownership_over_a_wide_range_of_entries(
    queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    """finish.lua reads this consumer's pending entries over the batch's id range in pages of 1,000:
    outcomes far apart, with more than a page of this consumer's entries between them."""
    await ensure_group(redis, keys.streams(), WORKER_GROUP)
    await queue.submit([TaskCreate(type="noop", priority=3) for _ in range(1203)])
    await queue.submit([TaskCreate(type="noop", priority=1)])
    consumer = make_consumer(queue, "c1", concurrency=1204)
    jobs = await consumer.take(1204)
    assert len(jobs) == 1204
    first, middle, claimed, last, low = jobs[0], jobs[600], jobs[700], jobs[1202], jobs[1203]
    await redis.xclaim(keys.stream(3), WORKER_GROUP, "other", 0, [claimed.delivery.msg_id], justid=True)
    outcomes = [Outcome(j, completed=True, value="1") for j in (last, claimed, first, low, middle)]
    statuses = await asyncio.gather(*(consumer.finisher.record(o) for o in outcomes))
    assert statuses == ["completed", "lost", "completed", "completed", "completed"]
    assert await redis.zcard(keys.index_status("completed")) == 4
    assert await redis.hget(keys.task(claimed.delivery.task_id), "status") == "processing"
    assert (await redis.xpending(keys.stream(3), WORKER_GROUP))["pending"] == 1203 - 3
    assert await redis.xlen(keys.stream(1)) == 0


async def test_finish_writes_each_outcome_and_counts_once_per_call(queue: Queue, redis: Redis, keys: KeySchema) -> None:
    await ensure_group(redis, keys.streams(), WORKER_GROUP)
    made = await queue.submit([TaskCreate(type="noop", max_retries=1) for _ in range(3)])
    ok, retry, dead = (m.task.id for m in made)
    await redis.hset(keys.task(retry), "history", '[{"attempt":0,"error":"x","at":1}]')
    consumer = make_consumer(queue, "c1")
    jobs = {j.delivery.task_id: j for j in await consumer.take(3)}
    entry = '{"attempt":1,"error":"e","at":2}'
    outcomes = [
        Outcome(jobs[ok], completed=True, value='{"r":1}'),
        Outcome(jobs[retry], completed=False, value="e", delay_ms=60_000, history=entry),
        Outcome(jobs[dead], completed=False, value="e", delay_ms=-1, history=entry),
        Outcome(jobs[ok], completed=True, value='"twice"'),  # the same run again in the same call
    ]
    statuses = await asyncio.gather(*(consumer.finisher.record(o) for o in outcomes))
    assert statuses == ["completed", "scheduled", "failed", "stale"]
    done, retried, failed = [await redis.hgetall(keys.task(i)) for i in (ok, retry, dead)]
    assert done["status"] == "completed" and done["result"] == '{"r":1}' and done["error"] == ""
    assert done["msg_id"] == "" and "history" not in done
    assert retried["status"] == "scheduled" and retried["error"] == "e" and retried["msg_id"] == ""
    assert retried["history"] == '[{"attempt":0,"error":"x","at":1},' + entry + "]"
    assert int(await redis.zscore(keys.scheduled, retry)) == int(retried["scheduled_for"])
    assert failed["status"] == "failed" and failed["history"] == "[" + entry + "]"
    [(dead_id, fields)] = await redis.xrange(keys.dead)
    assert failed["dead_id"] == dead_id and fields == {"id": dead, "error": "e"}
    for status, ids in (("completed", [ok]), ("scheduled", [retry]), ("failed", [dead]), ("processing", [])):
        assert await redis.zrange(keys.index_status(status), 0, -1) == ids
    ttl_ms = 60_000
    for task_id, raw in ((ok, done), (dead, failed)):
        assert int(await redis.zscore(keys.retention, task_id)) == int(raw["completed_at"]) + ttl_ms
    assert await redis.zscore(keys.retention, retry) is None
    stats = await redis.hgetall(keys.stats)
    assert (stats["completed_total"], stats["retried_total"], stats["failed_total"]) == ("1", "1", "1")
    events = [(f["event"], f["task"]) for _, f in await redis.xrange(keys.events) if f["event"] not in ("created",)]
    assert [e for e in events if e[0] != "started"] == [
        ("completed", ok), ("retrying", retry), ("failed", dead), ("dead_lettered", dead)
    ]  # fmt: skip
    assert sum([await redis.xlen(keys.stream(p)) for p in range(1, 6)]) == 0


async def test_take_skips_a_stream_whose_group_is_gone_without_half_writing(
    queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    await ensure_group(redis, keys.streams(), WORKER_GROUP)
    done = await queue.submit([TaskCreate(type="noop", priority=p) for p in (5, 3, 1)])
    await redis.xgroup_destroy(keys.stream(1), WORKER_GROUP)  # lost in a failover, say
    jobs = await make_consumer(queue, "c1").take(10)
    high, mid, low = (d.task.id for d in done)
    assert [j.delivery.task_id for j in jobs] == [high, mid]
    # the started ones are fully started (index moves included); the unread one is untouched
    assert set(await redis.zrange(keys.index_status("processing"), 0, -1)) == {high, mid}
    assert await redis.zrange(keys.index_status("pending"), 0, -1) == [low]
    assert await redis.hget(keys.task(low), "status") == "pending"


async def test_take_writes_attempts_and_start_time_as_decimal_integers(
    queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    """take.lua writes a one-digit attempts count and started_at as strings it builds itself (not Lua
    numbers formatted by redis.call): the same text either way, across the one- to two-digit edge."""
    await ensure_group(redis, keys.streams(), WORKER_GROUP)
    made = await queue.submit([TaskCreate(type="noop") for _ in range(3)])
    for m, attempts in zip(made, ("0", "8", "9"), strict=True):
        await redis.hset(keys.task(m.task.id), "attempts", attempts)
    before_ms = int((await redis.time())[0]) * 1000
    jobs = await make_consumer(queue, "c1").take(3)
    assert [j.attempt for j in jobs] == [1, 9, 10]
    for job, written in zip(jobs, ("1", "9", "10"), strict=True):
        raw = await redis.hgetall(keys.task(job.delivery.task_id))
        assert raw["attempts"] == written
        assert raw["started_at"].isdigit() and 0 <= int(raw["started_at"]) - before_ms < 60_000


async def test_batch_scripts_trim_the_events_stream_as_each_xadd_would(
    queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    """take.lua, promote.lua, start.lua and finish.lua add their events untrimmed and trim the stream
    once at the end of the call (lib.lua's emit_batched): the stream must end as trimming with every
    XADD (MAXLEN ~) leaves it, replayed here on another key with the same entry ids and fields (so the
    same stream nodes)."""
    from datetime import UTC, datetime

    await ensure_group(redis, keys.streams(), WORKER_GROUP)
    reference = keys.events + ":reference"

    async def check(call: tuple[str, list[str], list[Any]], maxlen: int, added: int) -> None:
        before = await redis.xrange(keys.events)
        await queue.scripts.call(*call)
        after = await redis.xrange(keys.events)

        def order(entry_id: str) -> tuple[int, ...]:
            return tuple(int(part) for part in entry_id.split("-"))

        new = [e for e in after if not before or order(e[0]) > order(before[-1][0])]
        assert len(new) == added  # all the call's events are still there (maxlen >= added)
        await redis.delete(reference)
        for entry_id, fields in before:
            await redis.xadd(reference, fields, id=entry_id)
        for entry_id, fields in new:
            await redis.xadd(reference, fields, id=entry_id, maxlen=maxlen, approximate=True)
        assert len(after) < len(before) + added  # the call did trim
        assert after == await redis.xrange(reference)

    server_s, server_us = await redis.time()
    soon = datetime.fromtimestamp((server_s * 1000 + server_us // 1000 + 150) / 1000, UTC)
    ids = [m.task.id for m in await queue.submit([TaskCreate(type="noop", scheduled_for=soon) for _ in range(250)])]
    await queue.submit([TaskCreate(type="noop") for _ in range(400)])  # 900 events, not trimmed (maxlen 100,000)
    await asyncio.sleep(0.2)
    await until_server_ms(redis, soon.timestamp() * 1000)
    await check(("promote", [*keys.common(), *(keys.task(i) for i in ids)], [700, *ids]), 700, 250)
    take = ("take", [*keys.common(), keys.paused], [620, WORKER_GROUP, "c1", keys.task(""), 600, ""])
    await check(take, 620, 600)
    # start.lua (the reclaimer's entries) starts through the same start_entry
    ids = [m.task.id for m in await queue.submit([TaskCreate(type="noop", priority=2) for _ in range(300)])]
    [(_, entries)] = await redis.xreadgroup(WORKER_GROUP, "c2", {keys.stream(2): ">"}, count=300)
    args: list[Any] = [620, WORKER_GROUP, "c2"]
    for entry_id, fields in entries:
        args += [entry_id, fields["id"], 2]
    start_keys = [*keys.common(), *(keys.task(f["id"]) for _, f in entries), keys.paused]
    assert [f["id"] for _, f in entries] == ids
    await check(("start", start_keys, args), 620, 300)
    # finish.lua too: those 300 completed
    args = [620, WORKER_GROUP, "c2", 60_000]
    for entry_id, fields in entries:
        args += [fields["id"], entry_id, "completed", "null", -1, ""]
    await check(("finish", [*keys.common(), *(keys.task(f["id"]) for _, f in entries)], args), 620, 300)


async def test_submit_stores_the_fields_encode_describes(queue: Queue, redis: Redis, keys: KeySchema) -> None:
    """submit.lua writes id, queue, type and priority from its own arguments (sent once per task) and
    the rest from the caller's fields: the hash holds exactly ``_encode``'s fields (what fire.lua
    stores for a cron task), plus the state fields."""
    from datetime import UTC, datetime, timedelta

    from streamq.shared.queue import _encode

    later = datetime.now(UTC) + timedelta(hours=1)
    tasks = [
        TaskCreate.model_validate(
            {
                "type": "echo",
                "payload": {"a": [1, 2.5]},
                "webhook": "http://h/x",
                "timeout_s": 5,
                "retry_backoff_s": 0.5,
                "idempotency_key": "k",
                "priority": 5,
                "max_retries": 0,
            }
        ),
        TaskCreate(type="noop", scheduled_for=later),
    ]
    done = await queue.submit(tasks)
    for task, made in zip(tasks, done, strict=True):
        raw = await redis.hgetall(keys.task(made.task.id))
        fields = _encode(task)
        state = {k: raw.pop(k) for k in ("created_at", "status", "msg_id", "scheduled_for") if k in raw}
        assert raw == dict(zip(fields[::2], fields[1::2], strict=True))  # no id, queue or attempts: see _encode
        assert set(state) == {"created_at", "status", "msg_id" if task.scheduled_for is None else "scheduled_for"}
        got = await queue.get(made.task.id)  # id and queue from the key, attempts absent: 0
        assert (got.id, got.queue, got.attempts, got.type) == (made.task.id, keys.queue, 0, task.type)


async def test_submit_answers_only_duplicates_and_the_records_match_the_hashes(
    queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    """submit.lua answers the call's time and, per duplicate, its position and the earlier task's id;
    nothing per new task. The records built from that (``Queue.stored``: scheduled when due after the
    call's time, else pending) hold the status and created_at each hash holds, and a duplicate (within
    the call or of an earlier call) the earlier task."""
    from datetime import UTC, datetime, timedelta

    from streamq.shared.queue import submit_ids

    [first] = await queue.submit([TaskCreate(type="noop", idempotency_key="a")])
    now = datetime.now(UTC)
    tasks = [
        TaskCreate(type="noop", scheduled_for=now + timedelta(hours=1)),
        TaskCreate(type="noop", scheduled_for=now - timedelta(seconds=1)),  # already due: enqueued now
        TaskCreate(type="noop", idempotency_key="b"),
        TaskCreate(type="noop", idempotency_key="a"),  # of the earlier call
        TaskCreate(type="noop", idempotency_key="b"),  # of the third task of this call
        TaskCreate(type="echo", payload=[1]),
    ]
    ids = [f"01TESTSUBMIT{i:014d}" for i in range(len(tasks))]
    keys_, args = queue.submit_call(tasks, ids)
    assert keys_ == keys.common()  # no per-task KEYS: submit.lua builds them from the prefixes
    reply = await queue.scripts.call("submit", keys_, args)
    assert [str(v) for v in reply[1:]] == ["4", first.task.id, "5", ids[2]]
    assert submit_ids(ids, reply) == [ids[0], ids[1], ids[2], first.task.id, ids[2], ids[5]]
    records = await queue.stored(tasks, ids, reply)
    assert [r.status for r in records] == ["scheduled", "pending", "pending", "", "", "pending"]
    assert [r.id for r in records] == submit_ids(ids, reply)
    assert records[3].earlier is not None and records[3].earlier.id == first.task.id
    assert records[4].earlier is not None and records[4].earlier.id == ids[2]
    for record in records:
        raw = await redis.hgetall(keys.task(record.id))
        assert raw["status"] == (record.status or "pending")
        if record.earlier is None:
            assert int(raw["created_at"]) == record.created_ms == int(reply[0])
    assert len(await task_ids(redis, keys)) == 5  # the earlier task and four new ones
    assert await redis.zscore(keys.index_type("echo"), ids[5]) == 0
    assert await redis.get(keys.idempotency("b")) == ids[2]
    # the same call sent again, guarded (a retry after a lost reply with the ids made for the call): the
    # keys, and for tasks without a key their ids, name the tasks the first one stored; nothing is written twice
    events = await redis.xlen(keys.events)
    _, guarded = queue.submit_call(tasks, ids, guarded=True)  # as the direct client's submit_many sends it
    again = await queue.scripts.call("submit", keys_, guarded)
    assert submit_ids(ids, again) == submit_ids(ids, reply)
    assert [int(v) for v in again[1::2]] == [1, 2, 3, 4, 5, 6]
    assert len(await task_ids(redis, keys)) == 5 and await redis.xlen(keys.events) == events


async def test_drain_returns_once_what_the_jobs_posted_is_recorded(queue: Queue, redis: Redis, keys: KeySchema) -> None:
    """A job's task ends with its handler and posts the outcome to the finisher, which frees the slot
    once it is recorded: a drain waits for those records too (within the grace), not only the tasks."""
    await ensure_group(redis, keys.streams(), WORKER_GROUP)
    await queue.submit([TaskCreate(type="noop") for _ in range(20)])
    consumer = make_consumer(queue, "c1", concurrency=20)
    jobs = await consumer.take(20)
    consumer.dispatch(jobs)
    assert await consumer.drain(5.0) == 0
    statuses = [await redis.hget(keys.task(j.delivery.task_id), "status") for j in jobs]
    assert statuses == ["scheduled"] * 20  # (no handler registered here: given back) recorded before the drain returned
    assert consumer.running == {} and consumer.in_flight == {} and consumer.free() == 20


async def test_every_script_compiles_and_its_sha_is_its_sources(redis: Redis) -> None:
    """SCRIPT LOAD compiles each assembled source (a definition missing or out of order in what a script
    got is a runtime error, caught by the tests that run it; a syntax error is caught here)."""
    for name in names():
        text = source(name)
        assert await redis.script_load(text) == hashlib.sha1(text.encode()).hexdigest(), name
