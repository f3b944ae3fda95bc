"""The scheduler in-process against a real Redis: promotion, replicas, reschedule, periodic schedules."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from streamq.services.scheduler.clock import ServerClock
from streamq.services.scheduler.promoter import SPIN_MS, Promoter
from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Queue
from streamq.shared.redis import make_client
from streamq.shared.redisfast import raw_stream_reads
from streamq.shared.schedules import ScheduleCreate, Schedules
from streamq.shared.settings import Settings
from streamq.testing import RedisServer
from tests.integration.helpers import wait_for_status
from tests.integration.scheduling import entry_ms, running_scheduler
from tests.support import task_ids, until_server_ms


def _in(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def test_due_task_is_promoted_when_due(settings: Settings, queue: Queue, redis: Redis, keys: KeySchema) -> None:
    observed = REGISTRY.get_sample_value("streamq_scheduler_lateness_seconds_count", {"queue": "default"}) or 0
    async with running_scheduler(settings):
        await asyncio.sleep(0.2)  # the promoter is idle, waiting up to max_wait_s
        [done] = await queue.submit([TaskCreate(type="noop", scheduled_for=_in(0.4))])
        assert done.task.status == "scheduled"
        await wait_for_status(queue, done.task.id, {"pending"}, timeout=5)
    raw = await redis.hgetall(keys.task(done.task.id))
    lateness = entry_ms(raw["msg_id"]) - int(raw["scheduled_for"])
    print(f"\nlateness of one due task: {lateness} ms")
    assert lateness >= 0  # never early
    after = REGISTRY.get_sample_value("streamq_scheduler_lateness_seconds_count", {"queue": "default"})
    assert after == observed + 1  # the lateness histogram saw it
    assert await redis.zcard(keys.scheduled) == 0
    assert [f["event"] for _, f in await redis.xrange(keys.events)] == ["created", "scheduled", "promoted"]
    [(entry, fields)] = await redis.xrange(keys.stream(3))
    assert entry == raw["msg_id"] and fields == {"id": done.task.id}


async def test_replicas_promote_each_task_once(queue: Queue, redis: Redis, keys: KeySchema) -> None:
    due = _in(2.0)  # ahead of the submit's end even on a loaded host (a task already due is queued at once)
    submitted = await queue.submit([TaskCreate(type="noop", scheduled_for=due, priority=1 + i % 5) for i in range(600)])
    assert {s.task.status for s in submitted} == {"scheduled"}
    promoters = [Promoter(queue, batch=150) for _ in range(3)]
    await until_server_ms(redis, due.timestamp() * 1000)
    for _ in range(6):
        await asyncio.gather(*(p.tick() for p in promoters))
    assert sum(p.promoted for p in promoters) == 600
    assert sum([await redis.xlen(keys.stream(p)) for p in range(1, 6)]) == 600
    ids = {s.task.id for s in submitted}
    on_streams = [f["id"] for p in range(1, 6) for _, f in await redis.xrange(keys.stream(p))]
    assert sorted(on_streams) == sorted(ids)
    assert await redis.zcard(keys.index_status("pending")) == 600


async def test_cancelled_scheduled_task_is_never_promoted(settings: Settings, queue: Queue, redis: Redis) -> None:
    [done] = await queue.submit([TaskCreate(type="noop", scheduled_for=_in(0.3))])
    await queue.cancel(done.task.id)
    async with running_scheduler(settings):
        await asyncio.sleep(0.5)
    assert (await queue.get(done.task.id)).status == "cancelled"
    assert sum([await redis.xlen(queue.keys.stream(p)) for p in range(1, 6)]) == 0


async def test_reschedule(settings: Settings, api: httpx.AsyncClient, queue: Queue) -> None:
    [later] = await queue.submit([TaskCreate(type="noop", scheduled_for=_in(3600))])
    [now] = await queue.submit([TaskCreate(type="noop")])
    url = f"/api/tasks/{later.task.id}/reschedule"
    moved = await api.post(url, json={"scheduled_for": (_in(7200)).isoformat()})
    assert moved.status_code == 200 and moved.json()["status"] == "scheduled"
    assert abs(datetime.fromisoformat(moved.json()["scheduled_for"]) - _in(7200)) < timedelta(seconds=5)
    naive = await api.post(url, json={"scheduled_for": "2030-01-01T00:00:00"})
    assert naive.status_code == 422 and naive.json()["detail"][0]["loc"] == ["body", "scheduled_for"]
    missing = await api.post(url, json={})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "scheduled_for"]
    not_scheduled = await api.post(f"/api/tasks/{now.task.id}/reschedule", json={"scheduled_for": _in(9).isoformat()})
    assert not_scheduled.status_code == 409 and "only scheduled tasks" in not_scheduled.json()["detail"]
    unknown = await api.post("/api/tasks/NOPE/reschedule", json={"scheduled_for": _in(9).isoformat()})
    assert unknown.status_code == 404
    async with running_scheduler(settings):
        past = await api.post(url, json={"scheduled_for": _in(-60).isoformat()})
        assert past.status_code == 200
        await wait_for_status(queue, later.task.id, {"pending"}, timeout=3)


async def test_schedule_api(api: httpx.AsyncClient, redis: Redis, keys: KeySchema) -> None:
    body = {"name": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Paris", "task": {"type": "echo", "payload": 1}}
    created = await api.post("/api/schedules", json=body)
    assert created.status_code == 201, created.text
    s = created.json()
    assert s["name"] == "nightly" and not s["paused"] and s["fired_total"] == 0 and s["task"]["type"] == "echo"
    next_run = datetime.fromisoformat(s["next_run_at"])
    paris = next_run.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    assert (paris.hour, paris.minute) == (3, 0) and next_run > datetime.now(UTC)
    assert (await api.post("/api/schedules", json=body)).status_code == 409
    assert [x["name"] for x in (await api.get("/api/schedules")).json()] == ["nightly"]

    paused = await api.post("/api/schedules/nightly/pause")
    assert paused.status_code == 200 and paused.json()["paused"] and paused.json()["next_run_at"] is None
    assert await redis.zcard(keys.schedules_due) == 0
    resumed = await api.post("/api/schedules/nightly/resume")
    assert resumed.status_code == 200 and not resumed.json()["paused"]
    assert resumed.json()["next_run_at"] == s["next_run_at"]
    assert (await api.delete("/api/schedules/nightly")).status_code == 204
    assert (await api.get("/api/schedules/nightly")).status_code == 404
    assert (await api.delete("/api/schedules/nightly")).status_code == 404
    assert (await api.post("/api/schedules/nightly/pause")).status_code == 404
    assert await redis.zcard(keys.schedules) == 0 and await redis.zcard(keys.schedules_due) == 0


async def test_schedule_validation(api: httpx.AsyncClient, redis: Redis, keys: KeySchema) -> None:
    good = {"name": "s1", "cron": "*/5 * * * *", "task": {"type": "noop"}}
    cases = [
        ({**good, "cron": "61 * * * *"}, ["body", "cron"], "not a valid cron"),
        ({**good, "timezone": "Mars/Olympus"}, ["body", "timezone"], "time zone"),
        ({**good, "name": "has space"}, ["body", "name"], "pattern"),
        (
            {**good, "task": {"type": "noop", "scheduled_for": "2030-01-01T00:00:00Z"}},
            ["body", "task"],
            "scheduled_for",
        ),
        ({**good, "task": {"type": "noop", "priority": 9}}, ["body", "task", "priority"], "less than or equal"),
        ({**good, "task": {"type": "nosuchtype"}}, ["body", "task", "type"], "unknown task type"),
    ]
    for body, loc, words in cases:
        reply = await api.post("/api/schedules", json=body)
        assert reply.status_code == 422, body
        [error] = reply.json()["detail"]
        assert error["loc"] == loc and words in error["msg"], error
    assert await redis.zcard(keys.schedules) == 0  # nothing half-written


async def test_every_second_schedule_fires_each_tick_once(settings: Settings, redis: Redis, keys: KeySchema) -> None:
    schedules = Schedules(redis, keys)
    created = time.time()
    await schedules.create(ScheduleCreate(name="tick", cron="* * * * * *", task=TaskCreate(type="noop", priority=4)))
    async with running_scheduler(settings), running_scheduler(settings):
        await asyncio.sleep(2.6)
    stopped = time.time()
    ticks = await _fired_ticks(redis, keys)
    expected = int(stopped) - int(created)  # whole seconds that began in between
    assert expected - 1 <= len(ticks) <= expected, (ticks, created, stopped)
    assert len(set(ticks)) == len(ticks) and all(t % 1000 == 0 for t in ticks)  # never twice for one tick
    state = await schedules.get("tick")
    assert state.fired_total == len(ticks) and state.last_task_id is not None


async def test_missed_ticks_fire_once_on_start(settings: Settings, redis: Redis, keys: KeySchema) -> None:
    schedules = Schedules(redis, keys)
    await schedules.create(ScheduleCreate(name="m", cron="* * * * * */2", task=TaskCreate(type="noop")))
    missed_since = (int(time.time()) - 60) * 1000
    await redis.zadd(keys.schedules_due, {"m": missed_since})  # as if no scheduler ran for a minute
    started = time.time() * 1000
    async with running_scheduler(settings):
        await asyncio.sleep(0.3)
    stopped = time.time() * 1000
    ticks = await _fired_ticks(redis, keys)
    assert [t for t in ticks if t < started] == [missed_since]  # one catch-up fire, not 30
    assert all(t % 2000 == 0 for t in ticks[1:])  # then the regular ticks from now on
    # the next tick after the scheduler's last pass (which ran while it was up: on a loaded machine the
    # check here can come later than that tick)
    following = await schedules.next_due_ms()
    assert following is not None and started < following <= stopped + 2000 and following % 2000 == 0


async def test_paused_schedule_does_not_fire(settings: Settings, redis: Redis, keys: KeySchema) -> None:
    schedules = Schedules(redis, keys)
    await schedules.create(ScheduleCreate(name="p", cron="* * * * * *", task=TaskCreate(type="noop")))
    await schedules.pause("p")
    async with running_scheduler(settings):
        await asyncio.sleep(1.2)
    assert await _fired_ticks(redis, keys) == []


async def _fired_ticks(redis: Redis, keys: KeySchema) -> list[int]:
    ids = await task_ids(redis, keys)
    pipe = redis.pipeline(transaction=False)
    for task_id in ids:
        pipe.hget(keys.task(task_id), "scheduled_for")
    return sorted(int(t) for t in await pipe.execute())


async def test_watcher_wakes_only_for_calls_that_schedule_and_skips_ahead_when_busy(
    settings: Settings, queue: Queue, redis: Redis, keys: KeySchema
) -> None:
    from streamq.services.scheduler.watcher import Watcher

    woken: list[int] = []
    reader = raw_stream_reads(make_client(settings))
    watcher = Watcher(reader, keys, lambda: woken.append(1), block_ms=50, page=100, busy_at=20)
    await watcher.tick()  # nothing yet: times out
    assert woken == [] and watcher.last_id == "0-0"
    # a task that runs at once: its events do not wake the scheduler (nothing on the wake-up stream)
    await queue.submit([TaskCreate(type="noop")])
    await watcher.tick()
    assert woken == [] and await redis.xlen(keys.wakeups) == 0
    # one submit call scheduling three tasks: one wake-up
    await queue.submit([TaskCreate(type="noop", scheduled_for=_in(60 + i)) for i in range(3)])
    assert await redis.xlen(keys.wakeups) == 1
    await watcher.tick()
    assert woken == [1] and watcher.interval_s == 0
    # a busy stream is read in pages: a full page skips to the newest entry; the stream is capped
    await _scheduling_calls(queue, 250)
    assert 100 <= await redis.xlen(keys.wakeups) < 250
    await watcher.tick()
    [(newest, _)] = await redis.xrevrange(keys.wakeups, count=1)
    assert woken == [1, 1] and watcher.last_id == newest and watcher.interval_s > 0
    await _scheduling_calls(queue, 30)  # a page of busy_at or more: woken once, the next read paced
    await watcher.tick()
    assert woken == [1, 1, 1] and watcher.interval_s == watcher.busy_pause_s
    await queue.submit([TaskCreate(type="noop", scheduled_for=_in(60))])
    await watcher.tick()
    assert woken == [1, 1, 1, 1] and watcher.interval_s == 0
    await reader.aclose()


async def _scheduling_calls(queue: Queue, n: int) -> None:
    """``n`` submit calls, each scheduling one task a minute ahead."""
    await asyncio.gather(*(queue.submit([TaskCreate(type="noop", scheduled_for=_in(60))]) for _ in range(n)))


@pytest.mark.standalone_only(reason="starts its own plain redis-server: the cluster would add nothing")
async def test_scheduler_rides_out_a_redis_restart(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer()
    private = settings.model_copy(update={"redis_url": server.url})
    client = Redis.from_url(server.url, decode_responses=True)
    try:
        async with running_scheduler(private):
            server.stop()
            await asyncio.sleep(1.0)  # every loop fails meanwhile
            failures = [r for r in caplog.records if r.getMessage().startswith("background loop failed")]
            assert len(failures) < 20  # each loop pauses after a failure: no busy loop
            server.restart()
            queue = Queue(client, KeySchema(private.key_prefix, private.queue))
            [done] = await queue.submit([TaskCreate(type="noop", scheduled_for=_in(0.3))])
            await wait_for_status(queue, done.task.id, {"pending"}, timeout=10)
    finally:
        await client.aclose()
        server.stop()


class LocalClock(ServerClock):
    """The test's servers share this machine's clock: no estimate from round trips (a slow one on a
    loaded cluster puts the estimate milliseconds off, and the bounds below are on the real clock)."""

    def __init__(self) -> None:
        super().__init__()
        self.offset_ms, self.width_ms = 0.0, 0.0

    def observe(self, server_ms: int, sent_ms: float, received_ms: float) -> None:
        pass


async def test_pass_waits_for_the_due_time_it_stopped_short_of(queue: Queue, redis: Redis) -> None:
    """The sleep before a due time ends up to SPIN_MS early (asyncio's timers wake whole milliseconds
    late); the next pass yields until the due time instead of promoting nothing and sleeping again."""
    promoter = Promoter(queue, max_wait_s=5)
    promoter.clock = LocalClock()
    # 2 s ahead: the first pass must see it not yet due even when a loaded machine makes that pass slow
    [done] = await queue.submit([TaskCreate(type="noop", scheduled_for=_in(2))])
    before_ms = promoter.server_now_ms()
    await promoter.tick()  # nothing due yet: the next due time and the sleep before it
    after_ms = promoter.server_now_ms()
    due_ms = int(await redis.zscore(queue.keys.scheduled, done.task.id) or 0)
    assert promoter.next_due_ms == due_ms and promoter.promoted == 0
    # the sleep ends SPIN_MS short of the due time (in whole ms, rounded down), counted from the moment
    # in the pass it was computed: between before_ms and after_ms, however slow the pass was
    assert round(promoter.interval_s * 1000) <= due_ms - before_ms - SPIN_MS
    assert round(promoter.interval_s * 1000) > due_ms - after_ms - SPIN_MS - 1
    ahead_ms = due_ms - promoter.server_now_ms()
    await asyncio.sleep(max(0.0, (ahead_ms - 2 * SPIN_MS) / 1000))  # as that sleep would end
    await promoter.tick()
    assert promoter.promoted == 1  # promoted in this pass, not after another sleep
    raw = await redis.hgetall(queue.keys.task(done.task.id))
    assert entry_ms(raw["msg_id"]) >= int(raw["scheduled_for"])  # and never early
    assert promoter.next_due_ms is None and promoter.interval_s == 5


async def test_far_due_time_is_not_waited_for_in_a_pass(queue: Queue) -> None:
    promoter = Promoter(queue)
    promoter.next_due_ms = int(promoter.server_now_ms()) + 60_000
    await promoter.until_due()  # returns at once: the sleep, not the pass, waits for far due times
    assert promoter.server_now_ms() < promoter.next_due_ms
