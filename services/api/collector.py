"""Queue figures read from Redis at scrape time: ``streamq_queue_depth`` and ``streamq_scheduled_tasks``.

``/metrics`` awaits :meth:`QueueCollector.refresh` (one pipelined round trip, no scans) and then
renders the registry, whose ``collect`` reports what that refresh read. Depth per priority is the
stream's length less the entries delivered and not yet acknowledged (the group's pending count):
the tasks waiting for a worker.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from shared.keys import WORKER_GROUP, KeySchema
from shared.models import PRIORITIES


class QueueCollector(Collector):
    def __init__(self, redis: Redis, keys: KeySchema) -> None:
        self.redis = redis
        self.keys = keys
        self.depth: dict[int, int] = {}
        self.scheduled = 0

    async def refresh(self) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for priority in PRIORITIES:
            pipe.xlen(self.keys.stream(priority))
            pipe.xpending(self.keys.stream(priority), WORKER_GROUP)
        pipe.zcard(self.keys.scheduled)
        reply = await pipe.execute(raise_on_error=False)
        depth = {}
        for i, priority in enumerate(PRIORITIES):
            length, pending = reply[2 * i], reply[2 * i + 1]
            delivered = pending["pending"] if isinstance(pending, dict) else 0  # NOGROUP: no worker yet
            depth[priority] = max(0, int(length) - int(delivered)) if isinstance(length, int) else 0
        self.depth = depth
        self.scheduled = reply[-1] if isinstance(reply[-1], int) else 0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "streamq_queue_depth", "Tasks waiting on a priority stream for a worker", labels=["queue", "priority"]
        )
        for priority in sorted(self.depth):
            depth.add_metric([self.keys.queue, str(priority)], self.depth[priority])
        scheduled = GaugeMetricFamily(
            "streamq_scheduled_tasks", "Tasks waiting for their due time (delayed or retrying)", labels=["queue"]
        )
        scheduled.add_metric([self.keys.queue], self.scheduled)
        yield depth
        yield scheduled

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())
