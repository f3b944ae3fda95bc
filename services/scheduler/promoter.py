"""Moving due scheduled tasks onto their streams (promote.lua), waking for the next due time.

Every partition of every known queue has its own scheduled zset; a pass reads the due candidates of
all partitions in one pipeline and then calls promote.lua once per partition (with that partition's
keys only: one hash slot per call) in a second pipeline. Queues and partitions created meanwhile are
picked up within the registry's cache period.

After each pass the loop sleeps until the earliest due time of any partition (capped at
``max_wait_s``), on this process's clock corrected by the server's (every reply carries the server
time: :class:`~streamq.services.scheduler.clock.ServerClock`); a newly scheduled task wakes it early
through :class:`~streamq.services.scheduler.watcher.Watcher`. The same pass serves the groups held back
by a rate until now (promote.lua; docs/groups-and-limits.md): their next time counts as a due time.
asyncio's timers wake up to a millisecond late (epoll waits whole milliseconds, rounded up), so the
sleep ends up to ``SPIN_MS`` early and the pass reads its candidates, then yields to the event loop
until the due time before it sends them to promote.lua: the call reaches Redis within a fraction
of a millisecond of the due time instead of 1-3 ms after it (a spin of at most ``SPIN_MS`` per due
instant). Several replicas may run: the script enqueues each task once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from streamq.services.scheduler.clock import ServerClock
from streamq.shared import metrics, tracing
from streamq.shared.keys import KeySchema
from streamq.shared.loops import PeriodicLoop
from streamq.shared.queue import Queue
from streamq.shared.queues import QueueRegistry

CLOCK_SLACK_MS = 5  # read a little past the estimated server time; the script decides what is due
SPIN_MS = 1.5  # the sleep before a due time ends this early; the rest is spent yielding (see above)
log = logging.getLogger("streamq.scheduler")


def promote_call(part: KeySchema, ids: list[str], events_maxlen: int) -> tuple[list[str], list[Any]]:
    """promote.lua's KEYS and ARGV for the candidate ``ids`` of one partition."""
    return [*part.common(), *(part.task(i) for i in ids)], [events_maxlen, *ids]


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
        self.clock = ServerClock()
        self.next_due_ms: int | None = None  # the earliest due time the last pass saw (server clock)
        self.promoted = 0

    def server_now_ms(self) -> float:
        """The server's clock, estimated from this process's."""
        return self.clock.now_ms()

    async def tick(self) -> None:
        self.interval_s = self.max_wait_s  # kept if this pass fails (Redis down): no busy loop
        parts = await self.registry.all_partitions(self.keys.queue)
        next_due: dict[KeySchema, int] = {}
        while parts:
            results = await self.promote_once(parts)
            full = []
            for part, (server_ms, next_due_ms, moved) in zip(parts, results, strict=True):
                next_due[part] = next_due_ms
                if moved >= self.batch and 0 <= next_due_ms <= server_ms:  # a full page, and more due
                    full.append(part)
            parts = full
        due = [ms for ms in next_due.values() if ms >= 0]
        self.next_due_ms = min(due) if due else None
        if self.next_due_ms is not None:
            ahead_ms = self.next_due_ms - self.server_now_ms() - SPIN_MS
            self.interval_s = min(self.max_wait_s, max(0.0, math.floor(ahead_ms) / 1000))

    async def until_due(self) -> None:
        """Yield to the event loop until the due time the last pass reported, if it is at most
        ``2 * SPIN_MS`` away (the end of a sleep that stopped short of it); otherwise return at once."""
        due = self.next_due_ms
        # a deliberate spin (no event marks a clock time), of at most 2 * SPIN_MS
        while due is not None and 0 < due - self.server_now_ms() <= 2 * SPIN_MS:  # noqa: ASYNC110
            await asyncio.sleep(0)

    async def promote_once(self, parts: list[KeySchema]) -> list[tuple[int, int, int]]:
        """One pass over ``parts``: for each, (server now, next due or -1, how many candidates were
        read); a partition whose script failed reports (0, -1, 0) and is logged. The candidates are
        read first (up to ``CLOCK_SLACK_MS`` past the estimated server time), then the pass waits for
        the due time (:meth:`until_due`) and promotes them."""
        estimate = int(self.server_now_ms()) + CLOCK_SLACK_MS
        pipe = self.queue.redis.pipeline(transaction=False)
        for part in parts:
            pipe.zrangebyscore(part.scheduled, "-inf", estimate, start=0, num=self.batch)
        candidates: list[list[str]] = await pipe.execute()
        traces = await self._traces(parts, candidates) if tracing.ENABLED else None
        await self.until_due()
        calls = [
            ("promote", *promote_call(part, ids, self.queue.events_maxlen))
            for part, ids in zip(parts, candidates, strict=True)
        ]
        sent = time.time() * 1000
        replies = await self.queue.scripts.call_many(calls)
        received = time.time() * 1000
        if traces is not None:
            self._trace(parts, candidates, replies, traces, sent, received)
        results = []
        for part, ids, reply in zip(parts, candidates, replies, strict=True):
            results.append(self._count(part, ids, reply, sent, received))
        return results

    async def _traces(self, parts: list[KeySchema], candidates: list[list[str]]) -> list[Any]:
        """Per candidate (tracing on only): its due time and its stored trace context, one pipeline."""
        pipe = self.queue.redis.pipeline(transaction=False)
        for part, ids in zip(parts, candidates, strict=True):
            for task_id in ids:
                pipe.zscore(part.scheduled, task_id)
                pipe.hmget(part.task(task_id), *tracing.FIELDS)
        return list(await pipe.execute())

    def _trace(
        self, parts: list[KeySchema], candidates: list[list[str]], replies: list[Any], traces: list[Any],
        sent_ms: float, received_ms: float,
    ) -> None:  # fmt: skip
        """A ``promote <queue>`` span per promoted task, a child of its submit span, over the script call:
        the candidates due by the script's clock (promote.lua moves exactly those still scheduled)."""
        found = iter(traces)
        for part, ids, reply in zip(parts, candidates, replies, strict=True):
            now_ms = -1 if isinstance(reply, Exception) else int(reply[0])
            for task_id in ids:
                due, stored = next(found), next(found)
                if due is not None and due <= now_ms:
                    tracing.promoted(stored, part.queue, task_id, int(sent_ms * 1e6), int(received_ms * 1e6))

    def _count(
        self, part: KeySchema, ids: list[str], reply: Any, sent_ms: float, received_ms: float
    ) -> tuple[int, int, int]:
        if isinstance(reply, Exception):
            where = {"queue": part.queue, "partition": part.partition, "error": str(reply)}
            log.warning("promotion failed in one partition; will try again", extra=where)
            return 0, -1, 0
        now_ms, next_due_ms = int(reply[0]), int(reply[1])
        self.clock.observe(now_ms, sent_ms, received_ms)
        lateness = metrics.SCHEDULER_LATENESS.labels(part.queue)
        for late_ms in reply[2:]:
            lateness.observe(int(late_ms) / 1000)
        self.promoted += len(reply) - 2
        return now_ms, next_due_ms, len(ids)
