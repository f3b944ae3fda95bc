"""The standalone client's pool: an idle connection is handed out at once, and with none idle at the
limit a command still waits for one (it never fails with too many connections). Held connections
(streamq.shared.redisfast.HeldConnection): replies in step, a dropped or cancelled one replaced."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Queue
from streamq.shared.redis import make_client
from streamq.shared.redisfast import HeldConnection, HeldConnections, QuickBlockingPool
from streamq.shared.settings import Settings


@pytest.mark.standalone_only(reason="the standalone client's pool; a cluster client keeps one per node")
async def test_idle_connections_at_once_and_waiting_at_the_limit(settings: Settings) -> None:
    client = make_client(settings)
    try:
        pool = client.connection_pool
        assert isinstance(pool, QuickBlockingPool)
        await client.ping()
        pool.max_connections = 2
        first = await pool.get_connection()
        second = await pool.get_connection()  # made: one was idle, then none, under the limit
        waiter = asyncio.ensure_future(pool.get_connection())
        await asyncio.sleep(0.05)
        assert not waiter.done()  # at the limit: waits, as the blocking pool does
        await pool.release(first)
        assert await asyncio.wait_for(waiter, 2) is first
        await pool.release(second)
        await pool.release(first)
        # many commands at once on two connections: all served, none refused
        assert await asyncio.gather(*(client.ping() for _ in range(50))) == [True] * 50
    finally:
        await client.aclose()


@pytest.mark.standalone_only(reason="held connections are for standalone and Sentinel clients")
async def test_a_held_connection_keeps_its_replies_in_step_and_survives_a_kill(settings: Settings) -> None:
    client = make_client(settings)
    held = HeldConnection(client)
    try:
        assert HeldConnection.usable(client)
        await client.delete("held:k")
        # every reply in order, an error reply among them handed back, not raised
        ok, error, value = await held.exchange(("SET", "held:k", "1"), ("HGET", "held:k", "f"), ("GET", "held:k"))
        assert ok == "OK" and value == "1"  # raw replies: no response callbacks
        assert isinstance(error, ResponseError) and "WRONGTYPE" in str(error)
        first = held.conn
        assert first is not None and first not in pool_idle(client)  # held, not back in the pool
        [again] = await held.exchange(("GET", "held:k"))
        assert again == "1" and held.conn is first  # the same connection each time
        # the server drops it: the exchange fails as redis-py fails, and the next one takes a fresh one
        [client_id] = await held.exchange(("CLIENT", "ID"))
        await client.client_kill_filter(_id=client_id)
        with pytest.raises(RedisConnectionError):
            await held.exchange(("GET", "held:k"))
        assert held.conn is None and first in pool_idle(client)  # given back (disconnected)
        assert await held.exchange(("GET", "held:k")) == ["1"]
        # an exchange cancelled while waiting for its reply leaves no half-read connection behind
        blocked = asyncio.ensure_future(held.exchange(("BLPOP", "held:empty", 5)))
        await asyncio.sleep(0.1)
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
        assert held.conn is None
        assert await held.exchange(("GET", "held:k")) == ["1"]
        await held.release()
        assert held.conn is None and len(pool_idle(client)) >= 1
    finally:
        await held.release()
        await client.delete("held:k")
        await client.aclose()


@pytest.mark.standalone_only(reason="held connections are for standalone and Sentinel clients")
async def test_held_connections_shared_by_many_calls_keep_at_most_a_few(settings: Settings) -> None:
    client = make_client(settings)
    shared = HeldConnections(client, keep=2)
    try:
        replies = await asyncio.gather(*(shared.exchange(("ECHO", str(i))) for i in range(20)))
        assert replies == [[str(i)] for i in range(20)]
        assert len(shared.idle) == 2  # the rest went back to the pool
        assert all(h.conn is not None and h.conn not in pool_idle(client) for h in shared.idle)
    finally:
        for held in shared.idle:
            await held.release()
        await client.aclose()


def pool_idle(client: Redis) -> list[object]:
    return list(client.connection_pool._available_connections)


@pytest.mark.standalone_only(reason="held connections are for standalone and Sentinel clients")
async def test_every_queue_on_a_client_shares_its_few_held_connections(settings: Settings, keys: KeySchema) -> None:
    """A process may have a Queue (so a Scripts) per queue partition: they share one set of held
    connections, so at most a few stay out of the pool however many queues submit."""
    client = make_client(settings)
    try:
        queues = [Queue(client, keys.for_queue(f"q{i}", 0)) for i in range(12)]  # as the api's broker makes them
        assert len({id(q.scripts._held) for q in queues}) == 1
        submitted = await asyncio.gather(*(q.submit([TaskCreate(type="echo")]) for q in queues for _ in range(5)))
        assert len(submitted) == 60
        shared = HeldConnections.of(client)
        assert len(shared.idle) <= shared.keep
        pool = client.connection_pool
        assert len(pool._in_use_connections) == len(shared.idle)  # nothing else kept out of the pool
    finally:
        for held in HeldConnections.of(client).idle:
            await held.release()
        await client.aclose()
