"""The dashboard's sampler and history on a real Redis, reading a real api app in-process."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from streamq.dashboard import history, scrape
from streamq.dashboard.sampler import Sampler
from streamq.dashboard.upstream import Upstream
from streamq.services.api.app import create_app
from streamq.shared.keys import KeySchema
from streamq.shared.settings import Settings


@pytest.fixture
async def upstream(settings: Settings) -> AsyncIterator[Upstream]:
    """The api app in-process: the sampler's REST calls and its scrape of the api's /metrics reach it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
        yield Upstream("http://api", client)
        await client.aclose()


async def test_sample_has_counts_and_depth_and_old_samples_are_trimmed(
    redis: Redis, keys: KeySchema, upstream: Upstream
) -> None:
    old = int(time.time() * 1000) - 7_200_000
    await redis.xadd(keys.history, {"s": orjson.dumps({"t": old})}, id=f"{old}-0")
    body = {
        "tasks": [{"type": "noop", "priority": 5}] * 2 + [{"type": "noop", "scheduled_for": "2099-01-01T00:00:00Z"}]
    }
    assert (await upstream.client.post("http://api/api/tasks/batch", json=body)).status_code == 201
    sampler = Sampler(redis, keys, upstream, interval_s=2, retention_s=3600)
    await sampler.tick()
    entries = await redis.xrange(keys.history)
    assert len(entries) == 1, "the sample older than the retention was trimmed"
    sample = orjson.loads(entries[0][1]["s"])
    assert (sample["pending"], sample["scheduled"], sample["completed_total"]) == (2, 1, 0)
    assert sample["depth"] == {"1": 0, "2": 0, "3": 0, "4": 0, "5": 2}
    assert sample["up"] == 1  # the api's /metrics (the only registered service) answered


async def test_history_rates_and_downsampling(redis: Redis, keys: KeySchema) -> None:
    now = int(time.time() * 1000)
    totals = [0, 10, 30, 5]  # the last is lower: counters were reset (a Redis flush), no rate there
    for i, total in enumerate(totals):
        t = now - (len(totals) - i) * 2000
        sample = {"t": t, "completed_total": total, "failed_total": 0, "depth": {}, "run_p50": 0.1}
        await redis.xadd(keys.history, {"s": orjson.dumps(sample)}, id=f"{t}-0")
    got = await history.from_redis(redis, keys, 300, 2.0)
    assert [p["completed_rate"] for p in got["points"]] == [None, 5.0, 10.0, None]
    assert got["step_s"] == 2.0
    # over 24 h, one sample per step at most (600 points), read in one pipelined round trip
    day = await history.from_redis(redis, keys, 86400, 2.0)
    assert day["step_s"] == 144.0 and len(day["points"]) == 1


def test_quantile_and_deltas() -> None:
    buckets = {0.1: 50.0, 0.5: 90.0, 1.0: 100.0, float("inf"): 100.0}
    assert scrape.quantile(0.5, buckets) == pytest.approx(0.1)
    assert scrape.quantile(0.95, buckets) == pytest.approx(0.75)
    assert scrape.quantile(0.5, {}) is None
    assert scrape.delta({0.1: 5.0, float("inf"): 7.0}, {0.1: 2.0, float("inf"): 3.0}) == {0.1: 3.0, float("inf"): 4.0}
    assert scrape.delta({0.1: 1.0}, {0.1: 4.0}) == {0.1: 1.0}  # process restarted: counts from zero
    assert scrape.delta({0.1: 1.0}, None) == {}


async def test_only_one_dashboard_writes_samples(redis: Redis, keys: KeySchema, upstream: Upstream) -> None:
    first = Sampler(redis, keys, upstream, interval_s=2, retention_s=3600)
    second = Sampler(redis, keys, upstream, interval_s=2, retention_s=3600)
    for _ in range(2):
        await first.tick()
        await second.tick()
    assert await redis.xlen(keys.history) == 2  # the second one still scrapes (for its pages) but never writes
    assert second.latest and second.latest[0].up
    await first.stop()  # a clean stop hands the lock over at once
    await second.tick()
    assert await redis.xlen(keys.history) == 3
