"""Every ``STREAMQ_HISTORY_INTERVAL_S`` (2 s): read the api's stats and every service's ``/metrics``,
and append one sample to the history stream (trimmed to ``STREAMQ_HISTORY_RETENTION_S``, 24 h).

A sample holds counters (rates are differences between samples, so they survive restarts), queue
depth per priority, and wait/run p50/p95 over the last ``WINDOW`` samples' observations.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from typing import Any

import httpx
import orjson
from redis.asyncio import Redis

from streamq.dashboard import scrape
from streamq.dashboard.upstream import Upstream, UpstreamError
from streamq.shared.keys import KeySchema
from streamq.shared.loops import STOP_WITHIN_S, PeriodicLoop

log = logging.getLogger("streamq.dashboard.sampler")
WINDOW = 15  # samples (30 s at 2 s) over which the quantiles are computed
# the dashboard may start before the api listens (make run starts them together): until the api first
# answers, a refused connection is logged at debug for this long, then as a warning
QUIET_START_S = 15.0
STATUS_FIELDS = ("pending", "scheduled", "processing", "completed", "failed", "cancelled", "dead_letter")


class Sampler(PeriodicLoop):
    name = "history-sampler"

    def __init__(
        self, redis: Redis, keys: KeySchema, upstream: Upstream, *, interval_s: float, retention_s: int
    ) -> None:
        super().__init__(interval_s)
        self.redis = redis
        self.keys = keys
        self.upstream = upstream
        self.retention_ms = retention_s * 1000
        self.last: dict[str, dict[str, dict[float, float]]] = {}  # service -> histogram -> buckets
        self.window: dict[str, deque[dict[float, float]]] = {h: deque(maxlen=WINDOW) for h in scrape.HISTOGRAMS}
        self.latest: list[scrape.Scrape] = []
        self.owner = uuid.uuid4().hex  # several dashboards may run: only the lock holder writes samples
        self.first_tick: float | None = None  # monotonic time of the first sample attempt
        self.answered = False  # the api has answered once since the start

    async def tick(self) -> None:
        if self.first_tick is None:
            self.first_tick = time.monotonic()
        try:
            stats = await self.upstream.json("GET", "/api/stats")
            services = await self.upstream.json("GET", "/api/services")
        except UpstreamError as error:  # the api is starting or down: no sample this time (a gap in the charts)
            refused = isinstance(error.__cause__, httpx.ConnectError)
            starting = refused and not self.answered and time.monotonic() - self.first_tick < QUIET_START_S
            log.log(logging.DEBUG if starting else logging.WARNING, "no sample: %s", error)
            return
        self.answered = True
        scrapes = await scrape.scrape_all(self.upstream.client, ((s["id"], s["metrics_url"]) for s in services))
        self.latest = scrapes
        sample = self.build(stats, services, scrapes)
        if not await self.is_writer():
            return
        now_ms = int(time.time() * 1000)
        await self.redis.xadd(
            self.keys.history,
            {"s": orjson.dumps(sample)},
            minid=str(now_ms - self.retention_ms),
            approximate=False,  # exact: each add removes at most the one or two samples that aged out
        )

    def build(
        self, stats: dict[str, Any], services: list[dict[str, Any]], scrapes: list[scrape.Scrape]
    ) -> dict[str, Any]:
        kinds = {s["id"]: s["kind"] for s in services}
        depth: dict[str, float] = {}
        for result in scrapes:
            if kinds.get(result.service_id) == "api" and result.up:
                depth = result.by_label("streamq_queue_depth", "priority")
                break
        sample: dict[str, Any] = {
            "t": int(time.time() * 1000),
            **{name: stats.get(name, 0) for name in STATUS_FIELDS},
            "completed_total": stats.get("completed_total", 0),
            "failed_total": stats.get("failed_total", 0),
            "depth": {p: int(v) for p, v in sorted(depth.items())},
            "in_progress": sum(r.total("streamq_tasks_in_progress") for r in scrapes),
            "up": sum(1 for r in scrapes if r.up),
        }
        window_s = WINDOW * self.interval_s
        young = {s["id"] for s in services if float(s.get("uptime_s", window_s)) < window_s}
        for histogram in scrape.HISTOGRAMS:
            short = histogram.removeprefix("streamq_task_").removesuffix("_seconds")
            p50, p95 = self.quantiles(histogram, scrapes, young)
            sample[f"{short}_p50"], sample[f"{short}_p95"] = p50, p95
        return sample

    def quantiles(
        self, histogram: str, scrapes: list[scrape.Scrape], young: set[str]
    ) -> tuple[float | None, float | None]:
        """p50 and p95 of the observations made during the last ``WINDOW`` samples, over every process.
        A process seen for the first time counts in full when it is younger than the window (all its
        observations fall inside it); an older one is a baseline for the next sample."""
        step: dict[float, float] = {}
        for result in scrapes:
            if not result.up:
                continue
            now = result.buckets(histogram)
            previous = self.last.setdefault(result.service_id, {}).get(histogram)
            if previous is None and result.service_id in young:
                previous = {}
            scrape.add(step, scrape.delta(now, previous))
            self.last[result.service_id][histogram] = now
        live = {r.service_id for r in scrapes}
        for gone in set(self.last) - live:
            del self.last[gone]
        self.window[histogram].append(step)
        total: dict[float, float] = {}
        for part in self.window[histogram]:
            scrape.add(total, part)
        return scrape.quantile(0.5, total), scrape.quantile(0.95, total)

    async def is_writer(self) -> bool:
        """Take or keep the writer lock (three intervals long). A lost race at expiry costs at most
        one duplicate sample, so no script is needed."""
        ttl_ms = int(self.interval_s * 3000)
        if await self.redis.set(self.keys.history_lock, self.owner, nx=True, px=ttl_ms):
            return True
        if await self.redis.get(self.keys.history_lock) == self.owner:
            await self.redis.pexpire(self.keys.history_lock, ttl_ms)
            return True
        return False

    async def stop(self) -> None:
        await super().stop()
        try:
            async with asyncio.timeout(STOP_WITHIN_S):  # Redis gone: its retries would hold the shutdown up
                if await self.redis.get(self.keys.history_lock) == self.owner:
                    await self.redis.delete(self.keys.history_lock)  # a restarted dashboard samples at once
        except Exception:  # Redis gone at shutdown: the lock expires by itself
            log.warning("could not release the history lock; it expires by itself")
