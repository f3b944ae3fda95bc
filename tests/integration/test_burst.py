"""A burst of simultaneous requests on one api: every one is answered, none with a 5xx, whatever the
topology (a Cluster client's per-node connection cap makes callers wait, as the standalone pool does)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from redis.asyncio.cluster import ClusterNode

from streamq.shared.redis import WaitingCluster, parse_topology
from streamq.shared.settings import Settings

pytestmark = pytest.mark.timeout(120)

BURST = 1000


async def test_a_thousand_simultaneous_submits_and_reads_are_all_answered(api: httpx.AsyncClient) -> None:
    answers = await asyncio.gather(*(api.post("/api/tasks", json={"type": "noop", "payload": i}) for i in range(BURST)))
    assert sorted({a.status_code for a in answers}) == [201]
    ids = [a.json()["id"] for a in answers]
    assert len(set(ids)) == BURST
    reads = await asyncio.gather(*(api.get(f"/api/tasks/{task_id}") for task_id in ids))
    assert sorted({r.status_code for r in reads}) == [200]
    assert sorted(r.json()["payload"] for r in reads) == list(range(BURST))


async def test_a_cluster_client_of_one_connection_per_node_serves_many_callers(settings: Settings) -> None:
    """Commands, pipelines spanning every master and scripts, 60 callers at once through one
    connection per node: each waits its turn (none fails), and a pipeline's command redirected
    by a stale slot map is re-sent under the permit its pipeline holds (no wait on itself)."""
    topology = parse_topology(settings.redis_url, settings.redis_mode)
    if topology.mode != "cluster":
        pytest.skip("the Cluster client's cap: run with --redis-topology=cluster")
    client = WaitingCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in topology.hosts],
        max_connections=1,
        decode_responses=True,
    )
    try:
        await client.initialize()
        script = client.register_script("return redis.call('INCR', KEYS[1])")
        keys = [f"burst:{settings.key_prefix}:{i}" for i in range(30)]  # spread over the masters' slots

        async def pipeline(i: int) -> list[object]:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.set(f"{key}:p{i}", i)
            return list(await pipe.execute())

        calls = [*(script(keys=[k]) for k in keys), *(client.get(k) for k in keys), *(pipeline(i) for i in range(10))]
        answers = await asyncio.gather(*calls)
        assert sorted(int(a) for a in answers[:30]) == [1] * 30  # each script ran once
        assert all(a in (None, "1") for a in answers[30:60])
        assert answers[60:] == [[True] * 30] * 10
        for node in client.get_nodes():
            assert len(node._connections) <= 1  # the cap held
        # a stale slot map: every slot points at one master, so most of a pipeline's commands come back
        # MOVED and are re-sent one by one inside the pipeline's permit
        wrong = client.get_nodes()[0]
        for slot in range(16384):
            client.nodes_manager.slots_cache[slot] = [wrong]
        assert await pipeline(99) == [True] * 30
    finally:
        await client.aclose()
