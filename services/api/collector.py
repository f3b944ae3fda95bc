"""Queue figures read from Redis at scrape time: ``streamq_queue_depth``, ``streamq_scheduled_tasks``,
``streamq_queue_paused`` and the groups' figures (``GROUP_FIGURES``: docs/groups-and-limits.md), for
every known queue (each the sum over the queue's partitions).

``/metrics`` awaits :meth:`QueueCollector.refresh` (one pipelined round trip over every partition of
every queue the registry knows, no scans) and then renders the registry, whose ``collect`` reports
what that refresh read. Depth per priority is the stream's length less the entries delivered and not
yet acknowledged (the group's pending count): the tasks waiting for a worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from streamq.shared.keys import WORKER_GROUP, KeySchema
from streamq.shared.metrics import GROUP_FIGURES, group_families, group_reads
from streamq.shared.models import PRIORITIES
from streamq.shared.queues import QueueRegistry


class QueueCollector(Collector):
    def __init__(self, redis: Redis, keys: KeySchema, registry: QueueRegistry | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.registry = registry or QueueRegistry(redis, keys)
        self.depth: dict[str, dict[int, int]] = {}  # queue -> priority -> tasks waiting
        self.scheduled: dict[str, int] = {}
        self.paused: dict[str, bool] = {}
        self.groups: dict[str, list[int]] = {}  # queue -> the GROUP_FIGURES, in order

    async def refresh(self) -> None:
        configs = dict(await self.registry.all())
        parts = await self.registry.all_partitions(self.keys.queue)
        pipe = self.redis.pipeline(transaction=False)
        for part in parts:
            for priority in PRIORITIES:
                pipe.xlen(part.stream(priority))
                pipe.xpending(part.stream(priority), WORKER_GROUP)
            pipe.zcard(part.scheduled)
            group_reads(pipe, part)
        reply = await pipe.execute(raise_on_error=False)
        step = 2 * len(PRIORITIES) + 1 + len(GROUP_FIGURES)
        depth: dict[str, dict[int, int]] = {}
        scheduled: dict[str, int] = {}
        groups: dict[str, list[int]] = {}
        for n, part in enumerate(parts):
            block = reply[n * step : (n + 1) * step]
            queue_depth = depth.setdefault(part.queue, dict.fromkeys(PRIORITIES, 0))
            for i, priority in enumerate(PRIORITIES):
                queue_depth[priority] += _waiting(block[2 * i], block[2 * i + 1])
            at = 2 * len(PRIORITIES)
            scheduled[part.queue] = scheduled.get(part.queue, 0) + (block[at] if isinstance(block[at], int) else 0)
            figures = groups.setdefault(part.queue, [0] * len(GROUP_FIGURES))
            for i, value in enumerate(block[at + 1 :]):
                figures[i] += int(value or 0) if not isinstance(value, Exception) else 0
        self.depth, self.scheduled, self.groups = depth, scheduled, groups
        self.paused = {name: configs[name].paused if name in configs else False for name in depth}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "streamq_queue_depth", "Tasks waiting on a priority stream for a worker", labels=["queue", "priority"]
        )
        for queue in sorted(self.depth):
            for priority in sorted(self.depth[queue]):
                depth.add_metric([queue, str(priority)], self.depth[queue][priority])
        scheduled = GaugeMetricFamily(
            "streamq_scheduled_tasks", "Tasks waiting for their due time (delayed or retrying)", labels=["queue"]
        )
        for queue in sorted(self.scheduled):
            scheduled.add_metric([queue], self.scheduled[queue])
        paused = GaugeMetricFamily(
            "streamq_queue_paused", "1 while the queue is paused (accepts tasks, starts none)", labels=["queue"]
        )
        for queue in sorted(self.paused):
            paused.add_metric([queue], 1 if self.paused[queue] else 0)
        yield depth
        yield scheduled
        yield paused
        yield from group_families(self.groups)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


def _waiting(length: Any, pending: Any) -> int:
    """Entries on a stream not yet delivered to a worker (a missing group: none delivered)."""
    if not isinstance(length, int):
        return 0
    delivered = pending["pending"] if isinstance(pending, dict) else 0  # NOGROUP: no worker yet
    return max(0, length - int(delivered))
