"""A burst of simultaneous requests on one api: every one is answered, none with a 5xx, whatever the
topology (a Cluster client's per-node connection cap makes callers wait, as the standalone pool does)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

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
