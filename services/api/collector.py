"""Queue figures read from Redis at scrape time: ``streamq_queue_depth``, ``streamq_scheduled_tasks``,
``streamq_queue_paused``, the groups' figures (``GROUP_FIGURES``: docs/groups-and-limits.md) and the
workflow figures (``streamq_workflow_steps_waiting``, ``streamq_workflows_started_total``,
``streamq_workflows_finished_total``), for every known queue (each the sum over the queue's partitions).

``/metrics`` awaits :meth:`QueueCollector.refresh` (one pipelined round trip over every partition of
every queue the registry knows, no scans) and then renders the registry, whose ``collect`` reports
what that refresh read. Depth per priority is the stream's length less the entries delivered and not
yet acknowledged (the group's pending count): the tasks waiting for a worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from streamq.shared.keys import WORKER_GROUP, KeySchema
from streamq.shared.metrics import GROUP_FIGURES, group_families, group_reads
from streamq.shared.models import PRIORITIES
from streamq.shared.queues import QueueRegistry

WORKFLOW_OUTCOMES = ("completed", "failed", "cancelled")
# the stats hash's workflow counters (lua/lib.lua wf_end, workflow_submit.lua)
WORKFLOW_COUNTERS = ("workflows_started_total", *(f"workflows_{o}_total" for o in WORKFLOW_OUTCOMES))


class QueueCollector(Collector):
    def __init__(self, redis: Redis, keys: KeySchema, registry: QueueRegistry | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.registry = registry or QueueRegistry(redis, keys)
        self.depth: dict[str, dict[int, int]] = {}  # queue -> priority -> tasks waiting
        self.scheduled: dict[str, int] = {}
        self.paused: dict[str, bool] = {}
        self.groups: dict[str, list[int]] = {}  # queue -> the GROUP_FIGURES, in order
        self.steps_waiting: dict[str, int] = {}  # queue -> workflow steps waiting on parents
        self.workflow_counters: dict[str, list[int]] = {}  # queue -> WORKFLOW_COUNTERS' values

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
        for part in parts:  # workflows (docs/workflows.md): steps waiting on parents, lifetime counters
            pipe.zcard(part.index_status("waiting"))
            pipe.hmget(part.stats, WORKFLOW_COUNTERS)
        reply = await pipe.execute(raise_on_error=False)
        step = 2 * len(PRIORITIES) + 1 + len(GROUP_FIGURES)
        self._workflow_figures(parts, reply[len(parts) * step :])
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

    def _workflow_figures(self, parts: list[KeySchema], reply: list[Any]) -> None:
        waiting: dict[str, int] = {}
        counters: dict[str, list[int]] = {}
        for n, part in enumerate(parts):
            count, values = reply[2 * n], reply[2 * n + 1]
            waiting[part.queue] = waiting.get(part.queue, 0) + (count if isinstance(count, int) else 0)
            sums = counters.setdefault(part.queue, [0] * len(WORKFLOW_COUNTERS))
            for i, value in enumerate(values if isinstance(values, list) else []):
                sums[i] += int(value or 0)
        self.steps_waiting, self.workflow_counters = waiting, counters

    def _workflow_metrics(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        waiting = GaugeMetricFamily(
            "streamq_workflow_steps_waiting", "Workflow steps waiting on their parents", labels=["queue"]
        )
        for queue in sorted(self.steps_waiting):
            waiting.add_metric([queue], self.steps_waiting[queue])
        started = CounterMetricFamily("streamq_workflows_started", "Workflows started", labels=["queue"])
        finished = CounterMetricFamily(
            "streamq_workflows_finished", "Workflows ended, by outcome", labels=["queue", "outcome"]
        )
        for queue in sorted(self.workflow_counters):
            values = self.workflow_counters[queue]
            started.add_metric([queue], values[0])
            for outcome, value in zip(WORKFLOW_OUTCOMES, values[1:], strict=True):
                finished.add_metric([queue, outcome], value)
        yield waiting
        yield started
        yield finished

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
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
        yield from self._workflow_metrics()

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


def _waiting(length: Any, pending: Any) -> int:
    """Entries on a stream not yet delivered to a worker (a missing group: none delivered)."""
    if not isinstance(length, int):
        return 0
    delivered = pending["pending"] if isinstance(pending, dict) else 0  # NOGROUP: no worker yet
    return max(0, length - int(delivered))
