"""The client's direct Redis transport (``redis_url=...``) against a real Redis (or a real 3-master Cluster
with ``--redis-topology=cluster``) and real worker and api processes: every direct method, its typed
errors, the calls only the api makes, and the stored state of tasks submitted directly against the same
tasks submitted over HTTP."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

import streamq
from streamq import _core as streamq_core
from streamq.shared.keys import KeySchema
from streamq.shared.models import new_task_ids
from streamq.shared.redis import make_client
from streamq.shared.settings import Settings
from streamq.testing import SentinelServers
from tests.e2e.processes import wait_logged
from tests.services import StartService
from tests.support import task_ids

pytestmark = pytest.mark.e2e


@pytest.fixture
def worker(start_service: StartService) -> None:
    """A worker of the built-in handlers (noop, echo, sleep, fail) on the test's keys."""
    service = start_service("streamq.services.worker", STREAMQ_WORKER_CONCURRENCY="8")
    asyncio.run(wait_logged(service, "worker started"))


@pytest.fixture
def direct(settings: Settings, worker: None) -> Iterator[streamq.Client]:
    with streamq.Client(redis_url=settings.redis_url, settings=settings, timeout=10) as client:
        yield client


def test_sync_direct_every_method(direct: streamq.Client) -> None:
    task = direct.submit("echo", {"hello": "world"}, priority=5, max_retries=1)
    assert isinstance(task, streamq.Task) and task.status == "pending" and task.priority == 5 and task.idempotency_key
    done = direct.wait(task.id, timeout=30)
    assert done.status is streamq.TaskStatus.COMPLETED and done.result == {"hello": "world"}
    assert direct.get(task.id).completed_at is not None

    failed = direct.wait(direct.submit("fail", "boom", max_retries=0).id, timeout=30)
    assert failed.status == "failed" and failed.error is not None and "boom" in failed.error

    later = direct.submit("noop", delay=timedelta(hours=1))
    assert later.status == "scheduled" and later.scheduled_for is not None
    cancelled = direct.cancel(later.id)
    assert cancelled.status == "cancelled" and direct.get(later.id).status == "cancelled"

    again = direct.submit("noop", idempotency_key="once", delay=3600)
    assert direct.submit("noop", idempotency_key="once", delay=3600).id == again.id  # the first task answers

    many = direct.submit_many({"type": "echo", "payload": i, "queue": "bulk"} for i in range(1001))
    assert [t.payload for t in many] == list(range(1001)) and len({t.id for t in many}) == 1001
    assert sorted(t.payload for t in direct.list(queue="bulk")) == list(range(1001))  # follows the cursor
    assert [t.id for t in direct.list(queue="bulk", limit=3)] == [t.id for t in many[::-1][:3]]
    assert all(t.status == "cancelled" for t in direct.list(status="cancelled"))

    stats = direct.stats()
    assert stats.total == 1005 and stats.submitted_total == 1005 and set(stats.queues) == {"default", "bulk"}
    assert direct.stats("bulk").queue == "bulk" and direct.stats("bulk").total == 1001


def test_direct_errors_are_the_apis(direct: streamq.Client) -> None:
    with pytest.raises(streamq.NotFound) as missing:
        direct.get("01NOSUCHTASK0000000000000")
    assert missing.value.status_code == 404
    with pytest.raises(streamq.InvalidTask) as unknown:
        direct.submit("no-such-type")
    assert unknown.value.errors[0]["loc"] == ["body", "type"] and unknown.value.errors[0]["type"] == "unknown_task_type"
    with pytest.raises(streamq.InvalidTask) as bad:
        direct.submit("echo", webhook="ftp://example.com")
    assert bad.value.status_code == 422 and bad.value.errors[0]["loc"] == ["body", "webhook"]
    with pytest.raises(streamq.InvalidTask) as ssrf:  # the api's SSRF guard: a loopback webhook is refused
        direct.submit("echo", webhook="http://127.0.0.1:9/hook")
    assert ssrf.value.errors[0]["loc"] == ["body", "webhook"]
    with pytest.raises(streamq.InvalidTask) as unlisted:  # the api's model: unknown fields are refused
        direct.submit_many([{"type": "noop"}, {"type": "noop", "priority": 99}])
    assert unlisted.value.errors[0]["loc"] == ["body", "tasks", 1, "priority"]
    done = direct.wait(direct.submit("noop").id, timeout=30)
    with pytest.raises(streamq.Conflict) as conflict:
        direct.cancel(done.id)
    assert conflict.value.status == "completed" and conflict.value.status_code == 409
    with pytest.raises(streamq.Timeout) as slow:
        direct.wait(direct.submit("sleep", 5).id, timeout=0.3)
    assert slow.value.task is not None and slow.value.task.status in ("pending", "processing")
    assert not list(direct.list(type="no-such-type"))  # nothing half-written by the refused submits


def test_submit_many_answers_what_get_reads(settings: Settings) -> None:
    """The blocking client's answers are built from the records it holds (no JSON round trip): each equals
    the task as then read back, for plain tasks, a tuple payload (a list in JSON), a due time, unique
    and debounce keys, a group, an email task (its payload checked on the loop) and a replay of an
    earlier key in the same call (its earlier task read back)."""
    due = datetime(2099, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)
    specs: list[dict[str, Any]] = [
        {"type": "noop"},
        {"type": "echo", "payload": {"nested": (1, 2.5, "é", None)}, "priority": 5, "max_retries": 0},
        {"type": "noop", "timeout_s": 2, "retry_backoff_s": 0, "keep_s": 60, "queue": "bulk", "group": "tenant-1"},
        {"type": "noop", "scheduled_for": due, "idempotency_key": "later"},
        {"type": "noop", "unique": {"key": "only-one", "until": "started"}},
        {"type": "noop", "debounce": {"key": "settle", "window_s": 30}},
        {"type": "email", "payload": "ann@example.com", "queue": "mail"},
        {"type": "noop", "scheduled_for": due, "idempotency_key": "later"},  # the replay: the 4th task
    ]
    with streamq.Client(redis_url=settings.redis_url, settings=settings) as client:
        answered = client.submit_many(specs * 2)  # the second half: every key met again
        single = client.submit("echo", (1, 2), webhook=None)
        for task in [*answered, single]:
            stored = client.get(task.id)
            answer = task.model_dump(mode="json")
            assert answer.pop("debounced") is (task is answered[13])  # only in the answer that updated it
            assert answer == stored.model_dump(mode="json", exclude={"debounced"}), task.id
            assert task.model_fields_set == stored.model_fields_set and type(task.created_at) is datetime
        assert answered[7].id == answered[3].id and answered[11].id == answered[3].id  # keys met again
        assert answered[12].id == answered[4].id  # the unique key's holder
        assert answered[13].id == answered[5].id and answered[13].debounced  # the debounced task, updated
        assert [t.status for t in answered[:8]] == ["pending", "pending", "pending", "scheduled", "pending",
                                                    "scheduled", "pending", "scheduled"]  # fmt: skip
        assert answered[1].payload == {"nested": [1, 2.5, "é", None]} and single.payload == [1, 2]


async def test_submit_many_keeps_only_the_keys_given_and_a_batch_sent_again_answers_its_tasks(
    settings: Settings, redis: Redis
) -> None:
    """Over the direct transport ``submit_many`` makes no idempotency key per task (each one a key kept for
    a day): a batch sent again (the retry after Redis was out of reach) goes with the ids made for it, and
    submit.lua answers an id already stored with its task, from the blocking and the asyncio client."""
    keys = KeySchema(settings.key_prefix, settings.queue)

    def specs(key: str) -> list[dict[str, Any]]:
        return [{"type": "noop"}, {"type": "noop", "idempotency_key": key}, {"type": "noop", "delay": 3600}]

    def twice(send: Any, bodies: list[dict[str, Any]], ids: list[str]) -> Any:
        return send(bodies, ids), send(bodies, ids)

    with streamq.Client(redis_url=settings.redis_url, settings=settings) as client:
        done = await asyncio.to_thread(client.submit_many, specs("given-1"))
        assert [t.idempotency_key for t in done] == [None, "given-1", None]
        assert client._portal is not None
        [bodies] = streamq_core.batches(specs("given-2"), make_keys=False)
        ids = new_task_ids(3, int(time.time() * 1000))
        first, again = await asyncio.to_thread(twice, client._portal.lane.submit_batch, bodies, ids)
    async with streamq.AsyncClient(redis_url=settings.redis_url, settings=settings) as aclient:
        assert [t.idempotency_key for t in await aclient.submit_many(specs("given-3"))] == [None, "given-3", None]
        assert aclient._engine is not None
        [abodies] = streamq_core.batches(specs("given-4"), make_keys=False)
        aids = new_task_ids(3, int(time.time() * 1000))
        afirst = await aclient._engine.submit_batch(abodies, aids)
        aagain = await aclient._engine.submit_batch(abodies, aids)
    for one, two, made in ((first, again, ids), (afirst, aagain, aids)):
        assert (one.created, one.duplicates, two.created, two.duplicates) == (3, 0, 0, 3)
        assert [t.id for t in one.tasks] == [t.id for t in two.tasks] == made
        assert [t.status for t in two.tasks] == ["pending", "pending", "scheduled"]
    assert len(await task_ids(redis, keys)) == 12  # four calls of three tasks: nothing made twice
    kept = [k async for k in redis.scan_iter(match=keys.idempotency("*"))]
    assert sorted(kept) == sorted(keys.idempotency(f"given-{i}") for i in range(1, 5))


def test_blocking_submits_from_many_threads(settings: Settings) -> None:
    """A web app's request threads share one client: every submit (each on its own thread, over one
    connection pool) makes its own task, with its own id, and is stored."""
    with streamq.Client(redis_url=settings.redis_url, settings=settings) as client:

        def submit_some(n: int) -> list[str]:
            return [client.submit("echo", n).id for _ in range(40)] + [t.id for t in client.submit_many(
                [{"type": "echo", "payload": n}] * 30)]  # fmt: skip

        with ThreadPoolExecutor(8) as pool:
            ids = [i for batch in pool.map(submit_some, range(8)) for i in batch]
        assert len(ids) == len(set(ids)) == 8 * 70
        assert client.stats().total == 8 * 70 and client.stats().submitted_total == 8 * 70


def test_a_bad_task_stops_submit_many_at_its_batch(settings: Settings) -> None:
    """The blocking client builds each batch as it sends the ones before: a task it cannot build (an
    unknown keyword) raises there, and nothing of its batch or after is stored."""
    specs: list[dict[str, Any]] = [{"type": "noop"}] * 1000 + [{"type": "noop", "bogus": 1}] + [{"type": "noop"}] * 5
    with streamq.Client(redis_url=settings.redis_url, settings=settings) as client:
        with pytest.raises(TypeError, match="bogus"):
            client.submit_many(specs)
        assert client.stats().total in (0, 1000)  # the first batch, if it went out before the error


def test_submit_many_after_the_scripts_are_flushed(settings: Settings) -> None:
    """A Redis that forgot the scripts (a restart, a failover, SCRIPT FLUSH) answers NOSCRIPT to every
    batch already on its way: each is sent again whole, once, and every task is made once."""
    with streamq.Client(redis_url=settings.redis_url, settings=settings) as client:
        client.submit("noop")
        asyncio.run(_flush_scripts(settings))
        many = client.submit_many({"type": "echo", "payload": i} for i in range(3500))
        assert [t.payload for t in many] == list(range(3500)) and len({t.id for t in many}) == 3500
        assert client.stats().total == 3501 and client.get(many[-1].id).payload == 3499


async def _flush_scripts(settings: Settings) -> None:
    client = make_client(settings)
    try:
        if isinstance(client, RedisCluster):  # every master forgets them
            await client.execute_command("SCRIPT FLUSH", target_nodes=RedisCluster.PRIMARIES)
        else:
            await client.script_flush()
    finally:
        await client.aclose()


def test_durable_submit_over_the_blocking_client(settings: Settings) -> None:
    """``STREAMQ_DURABLE_SUBMIT`` asks replicas this Redis does not have: the submit answers as the api
    does (503, the task written), after the script call and its WAIT."""
    durable = settings.model_copy(update={"durable_submit": "replicas:1,50"})
    with (
        streamq.Client(redis_url=settings.redis_url, settings=durable, retries=0) as client,
        pytest.raises(streamq.Unavailable) as refused,
    ):
        client.submit("noop", idempotency_key="durable-1")
    assert refused.value.status_code == 503 and "replica" in str(refused.value)
    with streamq.Client(redis_url=settings.redis_url, settings=settings) as plain:
        assert plain.submit("noop", idempotency_key="durable-1").idempotency_key == "durable-1"
        assert plain.stats().total == 1  # the refused submit's task, answered to its replay


def test_flow_options_reach_the_task_body() -> None:
    """``unique``, ``debounce`` and ``group`` go to the api's task model as given (both transports send
    this body); left out when None."""
    body = streamq_core.task_body("noop", unique={"key": "k"}, debounce={"s": 2}, group="tenant-1")
    assert (body["unique"], body["debounce"], body["group"]) == ({"key": "k"}, {"s": 2}, "tenant-1")
    assert not {"unique", "debounce", "group"} & set(streamq_core.task_body("noop"))


def test_calls_only_the_api_makes_name_the_api_transport(settings: Settings) -> None:
    with streamq.Client(redis_url=settings.redis_url, settings=settings) as client:
        for call in (
            client.workers,
            client.queues.list,
            lambda: client.queues.pause("default"),
            lambda: client.retry("01NOSUCHTASK0000000000000"),
            lambda: client.delete("01NOSUCHTASK0000000000000"),
            client.retry_failed,
            client.schedules.list,
        ):
            with pytest.raises(streamq.ApiOnly, match="needs the api") as refused:
                call()
            assert "url=" in str(refused.value) and isinstance(refused.value, streamq.StreamqError)


def test_which_transport_a_client_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMQ_URL", raising=False)
    monkeypatch.setenv("STREAMQ_REDIS_URL", "redis://127.0.0.1:1/0")  # never connected: no call is made
    assert streamq.Client()._portal is not None  # STREAMQ_REDIS_URL alone: direct
    assert streamq.Client("http://api:8080")._portal is None  # an explicit url wins
    monkeypatch.setenv("STREAMQ_URL", "http://api:8080")
    client = streamq.Client()
    assert client._portal is None and client.config.url == "http://api:8080"  # both variables: the api
    assert streamq.Client(redis_url="redis://127.0.0.1:1/0")._portal is not None  # explicit redis_url wins
    with pytest.raises(ValueError, match="not both"):
        streamq.Client("http://api:8080", redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(ValueError, match="redis"):  # the services' URL rules
        streamq.Client(redis_url="http://not-redis")


def test_unreachable_redis_is_unavailable(settings: Settings) -> None:
    dead = "redis://127.0.0.1:1/0"
    with (
        streamq.Client(redis_url=dead, settings=settings, retries=0) as client,
        pytest.raises(streamq.Unavailable) as error,
    ):
        client.submit("noop")
    assert "127.0.0.1:1" in str(error.value)


async def test_async_direct(settings: Settings, worker: None) -> None:
    async with streamq.AsyncClient(redis_url=settings.redis_url, settings=settings) as client:
        tasks = await asyncio.gather(*(client.submit("echo", i) for i in range(20)))  # coalesced as in the api
        assert len({t.id for t in tasks}) == 20
        done = await asyncio.gather(*(client.wait(t.id, timeout=30) for t in tasks))
        assert [t.result for t in done] == list(range(20))
        later = await client.submit("noop", scheduled_for=datetime.now(UTC) + timedelta(hours=1))
        assert (await client.cancel(later.id)).status == "cancelled"
        many = await client.submit_many([{"type": "noop", "queue": "bulk", "priority": 1}] * 120)
        assert len(many) == 120 and all(t.priority == 1 for t in many)
        assert len([t async for t in client.list(queue="bulk", limit=50)]) == 50
        assert (await client.stats()).submitted_total == 141
        with pytest.raises(streamq.ApiOnly):
            await client.workers()
        with pytest.raises(streamq.NotFound):
            await client.wait("01NOSUCHTASK0000000000000", timeout=1)


@pytest.mark.standalone_only(reason="counts one redis-server's EVALSHA calls; a cluster spreads them over its masters")
async def test_async_single_submits_alone_and_together(settings: Settings, redis: Redis) -> None:
    """A lone submit is one script call of its own; submits made together still share calls (the first
    goes at once, the others of its loop turn in one coalesced call), each answered with its own task."""

    async def script_calls() -> int:
        stats = await redis.info("commandstats")
        return sum(int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))

    async with streamq.AsyncClient(redis_url=settings.redis_url, settings=settings) as client:
        await client.submit("noop")  # the engine started, the script known
        before = await script_calls()
        alone = await client.submit("echo", "alone")
        assert await script_calls() - before == 1
        before = await script_calls()
        together = await asyncio.gather(*(client.submit("echo", i) for i in range(20)))
        assert await script_calls() - before == 2
        assert [t.payload for t in together] == list(range(20))
        assert len({t.id for t in [alone, *together]}) == 21
        for task in [alone, *together]:
            assert await client.get(task.id) == task


# the same submits over HTTP and directly (explicit keys and times: the client makes them otherwise)
SUBMITS: list[dict[str, Any]] = [
    {"type": "noop", "idempotency_key": "a"},
    {"type": "echo", "payload": {"a": [1, 2.5, "é", None, True]}, "priority": 5, "max_retries": 0,
     "idempotency_key": "b"},
    {"type": "noop", "timeout_s": 2.5, "retry_backoff_s": 0, "payload": 1e-7, "keep_s": 60, "idempotency_key": "c"},
    {"type": "noop", "scheduled_for": datetime(2099, 1, 1, tzinfo=UTC), "idempotency_key": "d"},
    {"type": "noop", "scheduled_for": datetime(2000, 1, 1, tzinfo=UTC), "idempotency_key": "e"},  # due: pending
    {"type": "noop", "queue": "bulk", "priority": 1, "idempotency_key": "f"},
    {"type": "noop", "idempotency_key": "a"},  # a replay: the first task
]  # fmt: skip
BATCH: list[dict[str, Any]] = [
    {"type": "echo", "payload": i, "queue": "bulk", "idempotency_key": f"m{i}"} for i in range(5)
]
VOLATILE = ("id", "created_at", "msg_id")


async def _stored(redis: Redis, keys: KeySchema, task: streamq.Task) -> dict[str, str]:
    stored = await redis.hgetall(keys.for_queue(task.queue).task(task.id))
    assert stored, "the answer's task is stored in its queue's slot"
    return {k: v for k, v in stored.items() if k not in VOLATILE}


def _answer(task: streamq.Task) -> dict[str, Any]:
    return task.model_dump(mode="json", exclude={"id", "created_at"})


async def test_direct_and_http_submits_store_the_same_state(settings: Settings, api_url: str, redis: Redis) -> None:
    """The api process writes under the test's prefix; the asyncio direct client (its calls on its loop)
    and the blocking one (its calls on the caller's thread) each under another one, so the keyspaces
    (tasks, streams, indexes, counters, events) can be compared whole."""
    other = settings.model_copy(update={"key_prefix": settings.key_prefix + "d"})
    third = settings.model_copy(update={"key_prefix": settings.key_prefix + "b"})
    keys = {
        name: KeySchema(s.key_prefix, s.queue)
        for name, s in (("http", settings), ("direct", other), ("blocking", third))
    }
    async with (
        streamq.AsyncClient(api_url) as http,
        streamq.AsyncClient(redis_url=other.redis_url, settings=other) as direct,
    ):
        with streamq.Client(redis_url=third.redis_url, settings=third) as blocking:
            for spec in SUBMITS:
                a, b = await http.submit(**spec), await direct.submit(**spec)
                c = await asyncio.to_thread(functools.partial(blocking.submit, **spec))
                assert _answer(a) == _answer(b) == _answer(c), spec
                stored = await _stored(redis, keys["http"], a)
                assert stored == await _stored(redis, keys["direct"], b) == await _stored(redis, keys["blocking"], c)
            a_many, b_many = await http.submit_many(BATCH), await direct.submit_many(BATCH)
            c_many = await asyncio.to_thread(blocking.submit_many, BATCH)
            assert [_answer(t) for t in a_many] == [_answer(t) for t in b_many] == [_answer(t) for t in c_many]
            for a, b, c in zip(a_many, b_many, c_many, strict=True):
                stored = await _stored(redis, keys["http"], a)
                assert stored == await _stored(redis, keys["direct"], b) == await _stored(redis, keys["blocking"], c)
            a_stats, b_stats = await http.stats(), await direct.stats()
            c_stats = await asyncio.to_thread(blocking.stats)
            assert a_stats.model_dump() == b_stats.model_dump() == c_stats.model_dump()
    for queue in ("default", "bulk"):
        http_keys = keys["http"].for_queue(queue)
        for name in ("direct", "blocking"):
            direct_keys = keys[name].for_queue(queue)
            assert await redis.hgetall(http_keys.stats) == await redis.hgetall(direct_keys.stats)
            assert len(await task_ids(redis, http_keys)) == len(await task_ids(redis, direct_keys))
            assert await redis.zcard(http_keys.scheduled) == await redis.zcard(direct_keys.scheduled)
            events = [
                [(f["event"], f["status"]) for _, f in await redis.xrange(k.events)] for k in (http_keys, direct_keys)
            ]
            assert events[0] == events[1] and events[0]
            for priority in (1, 3, 5):
                assert await redis.xlen(http_keys.stream(priority)) == await redis.xlen(direct_keys.stream(priority))
            idem = [await redis.exists(k.idempotency("a")) for k in (http_keys, direct_keys)]
            assert idem[0] == idem[1]


CLIENT_ONLY = """
import json, sys
import streamq
with streamq.Client(redis_url=sys.argv[1]) as client:
    task = client.submit("noop")
    client.get(task.id)
stack = {"fastapi", "starlette", "uvicorn", "croniter", "aiosmtplib", "uvloop"}
server = sorted({m.split(".")[0] for m in sys.modules} & stack)
print(json.dumps({"status": task.status.value, "server": server}))
"""


def test_direct_transport_loads_no_server_stack(settings: Settings) -> None:
    env = {"STREAMQ_KEY_PREFIX": settings.key_prefix, "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", CLIENT_ONLY, settings.redis_url], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen == {"status": "pending", "server": []}


@pytest.mark.standalone_only(reason="starts its own Sentinel servers")
def test_direct_over_sentinel(settings: Settings, start_service: StartService) -> None:
    """A ``redis+sentinel://`` URL works as for the services: the client finds the master, and a worker
    reading through the same sentinels runs what it submitted."""
    servers = SentinelServers()
    try:
        service = start_service("streamq.services.worker", STREAMQ_REDIS_URL=servers.url)
        asyncio.run(wait_logged(service, "worker started"))
        over = settings.model_copy(update={"redis_url": servers.url})
        with streamq.Client(redis_url=servers.url, settings=over) as client:
            task = client.submit("echo", {"via": "sentinel"})
            assert client.wait(task.id, timeout=30).result == {"via": "sentinel"}
            assert client.stats().completed == 1
    finally:
        servers.stop()


@pytest.mark.timeout(60)
def test_a_forked_child_gets_its_own_connections(settings: Settings) -> None:
    """A web server's pre-forked workers: a client used before the fork works in the child (the portal's
    thread and sockets are made again there), and the parent's keeps working."""
    with streamq.Client(redis_url=settings.redis_url, settings=settings) as client:
        first = client.submit("noop")
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report the task it made, or nothing
            code = 1
            try:
                os.write(write, client.submit("noop", {"from": "child"}).id.encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        child_id = os.read(read, 100).decode()
        os.close(read)
        assert os.waitstatus_to_exitcode(status) == 0
        assert client.get(child_id).payload == {"from": "child"}
        assert client.get(first.id).id == first.id and client.submit("noop").status == "pending"
