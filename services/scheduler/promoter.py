"""Moving due scheduled tasks onto their streams (promote.lua), waking for the next due time.

Every partition of every known queue has its own scheduled zset; a pass reads the due candidates of
all partitions in one pipeline and then calls promote.lua once per partition (with that partition's
keys only: one hash slot per call) in a second pipeline. Queues and partitions created meanwhile are
picked up within the registry's cache period.

After each pass the loop sleeps exactly until the earliest due time of any partition (capped at
``max_wait_s``), on this process's clock corrected by the server's (every reply carries the server
time); a newly scheduled task wakes it early through :class:`~services.scheduler.watcher.Watcher`.
Several replicas may run: the script enqueues each task once.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from shared import metrics
from shared.keys import KeySchema
from shared.loops import PeriodicLoop
from shared.queue import Queue
from shared.queues import QueueRegistry

CLOCK_SLACK_MS = 5  # read a little past the estimated server time; the script decides what is due
log = logging.getLogger("streamq.scheduler")


class Promoter(PeriodicLoop):
    name = "promoter"

    def __init__(
        self, queue: Queue, *, registry: QueueRegistry | None = None, batch: int = 500, max_wait_s: float = 1.0
    ) -> None:
        super().__init__(0.0)
        self.queue = queue
        self.keys = queue.keys
        self.registry = registry or QueueRegistry(queue.redis, queue.keys)
        self.batch = batch
        self.max_wait_s = max_wait_s
        self.offset_ms = 0  # server clock minus local clock
        self.promoted = 0

    async def tick(self) -> None:
        self.interval_s = self.max_wait_s  # kept if this pass fails (Redis down): no busy loop
        parts = await self.registry.all_partitions(self.keys.queue)
        next_due: dict[KeySchema, int] = {}
        now_ms = 0
        while parts:
            results = await self.promote_once(parts)
            full = []
            for part, (server_ms, next_due_ms, moved) in zip(parts, results, strict=True):
                now_ms = max(now_ms, server_ms)
                next_due[part] = next_due_ms
                if moved >= self.batch:
                    full.append(part)
            parts = full
        due = [ms for ms in next_due.values() if ms >= 0]
        if due and now_ms:
            self.interval_s = min(self.max_wait_s, max(0.001, (min(due) - now_ms) / 1000))

    async def promote_once(self, parts: list[KeySchema]) -> list[tuple[int, int, int]]:
        """One pass over ``parts``: for each, (server now, next due or -1, how many candidates were
        read); a partition whose script failed reports (0, -1, 0) and is logged."""
        estimate = int(time.time() * 1000) + self.offset_ms + CLOCK_SLACK_MS
        pipe = self.queue.redis.pipeline(transaction=False)
        for part in parts:
            pipe.zrangebyscore(part.scheduled, "-inf", estimate, start=0, num=self.batch)
        candidates: list[list[str]] = await pipe.execute()
        calls = [
            ("promote", [*part.common(), *(part.task(i) for i in ids)], [self.queue.events_maxlen, *ids])
            for part, ids in zip(parts, candidates, strict=True)
        ]
        sent = time.time() * 1000
        replies = await self.queue.scripts.call_many(calls)
        received = time.time() * 1000
        results = []
        for part, ids, reply in zip(parts, candidates, replies, strict=True):
            results.append(self._count(part, ids, reply, (sent + received) / 2))
        return results

    def _count(self, part: KeySchema, ids: list[str], reply: Any, midpoint_ms: float) -> tuple[int, int, int]:
        if isinstance(reply, Exception):
            where = {"queue": part.queue, "partition": part.partition, "error": str(reply)}
            log.warning("promotion failed in one partition; will try again", extra=where)
            return 0, -1, 0
        now_ms, next_due_ms = int(reply[0]), int(reply[1])
        self.offset_ms = int(now_ms - midpoint_ms)
        lateness = metrics.SCHEDULER_LATENESS.labels(part.queue)
        for late_ms in reply[2:]:
            lateness.observe(int(late_ms) / 1000)
        self.promoted += len(reply) - 2
        return now_ms, next_due_ms, len(ids)
