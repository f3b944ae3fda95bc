"""The standalone client's pool: an idle connection is handed out at once, and with none idle at the
limit a command still waits for one (it never fails with too many connections)."""

from __future__ import annotations

import asyncio

import pytest

from shared.redis import QuickBlockingPool, make_client
from shared.settings import Settings


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
