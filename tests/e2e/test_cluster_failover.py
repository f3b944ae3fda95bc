"""Redis Cluster failover under load, with real processes: api + 2 workers through a ``redis+cluster://``
URL on 3 masters with a replica each; the master serving the queue's hash slot is SIGKILLed mid-run
and its replica takes over (cluster-node-timeout 1 s). The services follow the new slot map on their
own (no restart); the old master comes back as the new master's replica. Asserted: with
``STREAMQ_DURABLE_SUBMIT=replicas:1`` no acknowledged task is lost, every one reaches a terminal state
(none stuck pending or processing, consumer group PEL empty), and every service is still running."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.cluster import RedisCluster

from streamq.shared.keys import KeySchema
from streamq.testing import ClusterServers, wait_http
from tests.e2e.failover import Submissions, assert_settled, start_services, submit, task_statuses, wait_terminal
from tests.e2e.processes import wait_logged

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.standalone_only(reason="starts its own cluster; runs once, in the standalone pass"),
]

TOTAL = 3000
KILL_AFTER = 1000  # acknowledged submissions before the master is killed


@pytest.fixture
def cluster() -> Iterator[ClusterServers]:
    servers = ClusterServers(masters=3, replicas=1, node_timeout_ms=1000)
    yield servers
    servers.stop()


@pytest.mark.timeout(300)
async def test_cluster_master_killed_mid_run(cluster: ClusterServers, log_dir: Path) -> None:
    prefix = f"cf{int(time.time() * 1000) % 10**8}"
    keys = KeySchema(prefix, "default")
    url, services = start_services(cluster.url, log_dir, prefix, "replicas:1,1000")
    out, stop = Submissions(), asyncio.Event()
    try:
        wait_http(f"{url}/api/health", timeout=30)
        for worker in services[1:]:
            await wait_logged(worker, "worker started")
        async with httpx.AsyncClient(timeout=30) as http:
            submitters = [asyncio.create_task(submit(http, url, out, stop, TOTAL)) for _ in range(2)]
            while len(out.acked) < KILL_AFTER:
                await asyncio.sleep(0.01)
            old = cluster.master_of(keys.stream(3))
            cluster.kill(old)
            out.kill_ms = int(time.time() * 1000)
            killed = time.monotonic()
            while cluster.master_of(keys.stream(3)) == old:  # its replica takes the slots over
                assert time.monotonic() < killed + 60, "no failover within 60 s"
                await asyncio.sleep(0.1)
            out.failover_s = time.monotonic() - killed
            cluster.restart(old)  # back empty, as the new master's replica (durable submit needs one)
            await asyncio.wait_for(asyncio.gather(*submitters), timeout=180)
        client = RedisCluster(host="127.0.0.1", port=cluster.master_of(keys.stream(3)), decode_responses=True)
        try:
            statuses = task_statuses(client, keys, out.acked)
            lost = [i for i, s in zip(out.acked, statuses, strict=True) if s is None]
            counts = await wait_terminal(client, keys, out.acked, timeout=120)
            print(
                f"\ncluster failover: {len(out.acked)} acknowledged, {len(lost)} lost; not acknowledged: "
                f"{dict(out.refused)}; the replica took over {out.failover_s:.1f} s after the kill"
            )
            assert len(out.acked) >= TOTAL and lost == []
            assert_settled(client, keys, counts, services)
        finally:
            client.close()
    finally:
        stop.set()
        for service in services:
            service.stop()
