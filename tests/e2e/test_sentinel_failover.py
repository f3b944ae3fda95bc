"""Sentinel failover under load, with real processes: api + 2 workers through a ``redis+sentinel://``
URL; 5,000 tasks submitted (batches and singles, every acknowledged id recorded); the master is
SIGKILLed mid-run, half a second after its replica lost the link. The services follow the new
master on their own (no restart). Reported: how many acknowledged submissions were lost
(replication is asynchronous); asserted: every acknowledged task that survived reaches a terminal
state (none stuck pending or processing, consumer group PEL empty), and with
``STREAMQ_DURABLE_SUBMIT=replicas:1`` none is lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from streamq.shared.keys import KeySchema
from streamq.testing import SentinelServers, wait_http
from tests.e2e.failover import (
    TOTAL,
    Submissions,
    assert_settled,
    id_ms,
    start_services,
    submit,
    task_statuses,
    wait_terminal,
)
from tests.e2e.processes import wait_logged

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.standalone_only(reason="starts its own Sentinel setup; runs once, in the standalone pass"),
]

KILL_AFTER = 2000  # acknowledged submissions before the master is killed
LAG_S = 0.5  # how long the master runs without its replica just before it is killed


@pytest.fixture
def sentinel() -> Iterator[SentinelServers]:
    # 3 s without an answer before a master counts as down: a master starved of CPU for a second on a
    # loaded machine is not failed over before the test kills it
    servers = SentinelServers(down_after_ms=3000)
    yield servers
    servers.stop()


async def _failover_run(sentinel: SentinelServers, log_dir: Path, durable: str) -> tuple[int, Submissions]:
    prefix = f"fo{int(time.time() * 1000) % 10**8}"
    keys = KeySchema(prefix, "default")
    url, services = start_services(sentinel.url, log_dir, prefix, durable)
    out = Submissions()
    stop = asyncio.Event()
    try:
        wait_http(f"{url}/api/health", timeout=30)
        for worker in services[1:]:
            await wait_logged(worker, "worker started")
        async with httpx.AsyncClient(timeout=30) as http:
            submitters = [asyncio.create_task(submit(http, url, out, stop)) for _ in range(2)]
            while len(out.acked) < KILL_AFTER:
                await asyncio.sleep(0.01)
            old = sentinel.master_port
            assert sentinel.masters_named() == {old}, "a failover before the kill"
            # the replica lags for LAG_S before the master dies: what the master acknowledged in that
            # window never reached the replica that is about to be promoted (the async-replication window)
            sentinel.cut_replica()
            out.cut_ms = int(time.time() * 1000)
            await asyncio.sleep(LAG_S)
            sentinel.kill(old)
            out.kill_ms = int(time.time() * 1000)
            sentinel.resume(sentinel.replica_port)
            killed = time.monotonic()
            while sentinel.masters_named() != {sentinel.replica_port}:  # every sentinel names the new master
                assert time.monotonic() < killed + 60, "no failover within 60 s"
                await asyncio.sleep(0.1)
            out.failover_s = time.monotonic() - killed
            # the old master comes back empty and the sentinels make it the new master's replica. (Restarted
            # while a sentinel still names it, it takes writes until demoted, and they are lost: README.)
            sentinel.restart(old)
            await asyncio.wait_for(asyncio.gather(*submitters), timeout=180)
        with redis.Redis(port=sentinel.replica_port, decode_responses=True) as client:
            statuses = task_statuses(client, keys, out.acked)
            lost_ids = [i for i, s in zip(out.acked, statuses, strict=True) if s is None]
            lost = len(lost_ids)
            if lost_ids:  # a task id starts with its creation time (ms)
                created = [id_ms(i) - out.cut_ms for i in lost_ids]
                out.lost_window_ms = (min(created), max(created))
            survived = [i for i, s in zip(out.acked, statuses, strict=True) if s is not None]
            counts = await wait_terminal(client, keys, survived, timeout=120)
            assert_settled(client, keys, counts, services)
        return lost, out
    finally:
        stop.set()
        for service in services:
            service.stop()


@pytest.mark.timeout(400)
@pytest.mark.parametrize("durable", ["", "replicas:1,1000"], ids=["async", "durable"])
async def test_sentinel_failover_mid_run(sentinel: SentinelServers, log_dir: Path, durable: str) -> None:
    lost, out = await _failover_run(sentinel, log_dir, durable)
    print(
        f"\nsentinel failover ({durable or 'durable submit off'}): {len(out.acked)} acknowledged, "
        f"{lost} acknowledged submissions lost; not acknowledged: {dict(out.refused)}; "
        f"failover took {out.failover_s:.1f} s; kill {out.kill_ms - out.cut_ms} ms after the cut; "
        f"lost tasks created {out.lost_window_ms[0]}..{out.lost_window_ms[1]} ms after the cut"
    )
    assert len(out.acked) >= TOTAL
    if durable:
        assert lost == 0
