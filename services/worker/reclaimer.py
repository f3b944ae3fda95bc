"""Taking over entries of stalled or dead workers: XAUTOCLAIM of entries idle longer than the lease.

Each round walks every consumed partition's priority streams (highest first in each partition),
following the XAUTOCLAIM cursor (not just the first page) and claiming at most ``concurrency``
entries, so a worker never takes more than it can start at once. A claimed entry is:
  - started and run like a fresh delivery (start.lua does not count it as a new attempt), or
  - dead-lettered as poison when it was delivered more than ``STREAMQ_MAX_DELIVERIES`` times
    (the delivery count, from XPENDING, is kept apart from retry attempts: a crash uses no retry), or
  - recorded cancelled when its cancel was requested while it ran (its worker died before ending it):
    never run again (start.lua also refuses to start it, should the request come after this check).
Ids whose entry was deleted or trimmed while pending (the third element of the reply) get a fresh
entry when their task still waits on them.
"""

from __future__ import annotations

import asyncio
import logging

from streamq.services.worker.consumer import Consumer
from streamq.services.worker.executor import cancelled
from streamq.services.worker.jobs import Delivery, Job
from streamq.shared import metrics, tracing
from streamq.shared.keys import WORKER_GROUP, KeySchema
from streamq.shared.loops import PeriodicLoop
from streamq.shared.models import PRIORITIES, TaskStatus
from streamq.shared.streams import claim_stale, delivery_counts

log = logging.getLogger("streamq.worker")


class Reclaimer(PeriodicLoop):
    name = "reclaimer"

    def __init__(
        self,
        consumer: Consumer,
        *,
        lease_s: float,
        max_deliveries: int,
        result_ttl_ms: int,
        stop: asyncio.Event,
        interval_s: float | None = None,
    ) -> None:
        super().__init__(interval_s if interval_s is not None else lease_s / 2)
        self.consumer = consumer
        self.redis = consumer.redis
        self.min_idle_ms = int(lease_s * 1000)
        self.max_deliveries = max_deliveries
        self.result_ttl_ms = result_ttl_ms
        self.stop_event = stop
        self.reclaimed = 0
        self.poisoned = 0

    async def tick(self) -> None:
        budget = self.consumer.concurrency
        for part in self.consumer.sources.all():
            for priority in PRIORITIES:
                if budget <= 0 or self.stop_event.is_set():
                    return
                budget -= await self.reclaim(part, priority, budget)

    async def reclaim(self, part: KeySchema, priority: int, budget: int) -> int:
        """Claim up to ``budget`` stale entries of one stream; returns how many were claimed."""
        claimed = await claim_stale(
            self.redis, part.stream(priority), WORKER_GROUP, self.consumer.consumer,
            min_idle_ms=self.min_idle_ms, limit=budget,
        )  # fmt: skip
        if claimed.deleted:
            await self.requeue_deleted(part, claimed.deleted)
        if claimed.entries:
            await self.take_over(part, priority, claimed.entries)
        return len(claimed.entries)

    async def take_over(self, part: KeySchema, priority: int, entries: list[tuple[str, dict[str, str]]]) -> None:
        stream = part.stream(priority)
        counts = await delivery_counts(
            self.redis, stream, WORKER_GROUP, self.consumer.consumer, [e[0] for e in entries]
        )
        runnable: list[Delivery] = []
        poison: list[tuple[Delivery, int]] = []
        for msg_id, fields in entries:
            delivery = Delivery(priority, msg_id, fields.get("id", ""), part)
            if delivery.ref in self.consumer.running:
                continue  # our own run whose renewal came late: it is ours again and keeps running
            count = counts.get(msg_id, 1)
            if count > self.max_deliveries:
                poison.append((delivery, count))
            else:
                runnable.append(delivery)
        if poison:
            await self.dead_letter(part, poison)
        runnable = await self.end_cancelled(part, runnable)
        if runnable and not self.stop_event.is_set():
            jobs = await self.consumer.start(runnable)
            if tracing.ENABLED:  # their process spans link to the submit as re-runs
                self.consumer.executor.reclaimed.update(job.delivery.ref for job in jobs)
            self.consumer.dispatch(jobs)
            self.reclaimed += len(jobs)
            metrics.TASKS_RECLAIMED.labels(part.queue).inc(len(jobs))
            log.info("reclaimed stalled tasks", extra={"count": len(jobs), "priority": priority, "queue": part.queue})

    async def end_cancelled(self, part: KeySchema, claimed: list[Delivery]) -> list[Delivery]:
        """Record cancelled the claimed runs whose cancel was requested; returns the others."""
        if not claimed:
            return claimed
        pipe = self.redis.pipeline(transaction=False)
        for d in claimed:
            pipe.hget(part.task(d.task_id), "cancel_requested")
        requested = await pipe.execute()
        ending = [d for d, flag in zip(claimed, requested, strict=True) if flag]
        if ending:
            why = "cancelled while it ran; its worker stopped before ending it"
            reply = await self.consumer.scripts.call(
                *self.consumer.finisher.finish_call(part, [cancelled(Job.bare(d), why) for d in ending])
            )
            log.info(
                "reclaimed runs recorded cancelled",
                extra={"count": reply.count("cancelled"), "task": ending[0].task_id},
            )
        return [d for d, flag in zip(claimed, requested, strict=True) if not flag]

    async def dead_letter(self, part: KeySchema, poison: list[tuple[Delivery, int]]) -> None:
        keys = [*part.common(), *(part.task(d.task_id) for d, _ in poison)]
        args: list[object] = [self.consumer.events_maxlen, WORKER_GROUP, self.consumer.consumer, self.result_ttl_ms]
        for d, count in poison:
            error = (
                f"Poison: delivered {count} times without finishing (the worker died each time); "
                f"STREAMQ_MAX_DELIVERIES is {self.max_deliveries}"
            )
            args += [d.task_id, d.msg_id, d.priority, count - 1, error]
        reply = await self.consumer.scripts.call("poison", keys, args)
        for (d, count), status in zip(poison, reply, strict=True):
            if status == "failed":
                self.poisoned += 1
                metrics.TASKS_DEAD_LETTERED.labels(part.queue).inc()
                log.warning("poison task dead-lettered", extra={"task": d.task_id, "deliveries": count - 1})

    async def requeue_deleted(self, part: KeySchema, deleted: list[str]) -> None:
        """Give a fresh entry to each running task whose pending entry was deleted or trimmed.
        Only the processing index is read (its size is the number of tasks in flight)."""
        running: list[str] = await self.redis.zrange(part.index_status(TaskStatus.PROCESSING), 0, -1)
        if not running:
            return
        pipe = self.redis.pipeline(transaction=False)
        for task_id in running:
            pipe.hget(part.task(task_id), "msg_id")
        wanted = set(deleted)
        for task_id, msg_id in zip(running, await pipe.execute(), strict=True):
            if msg_id in wanted:
                fresh = await self.consumer.scripts.call(
                    "requeue",
                    [*part.common(), part.task(task_id)],
                    [self.consumer.events_maxlen, task_id, msg_id],
                )
                log.warning("stream entry was lost; task requeued", extra={"task": task_id, "entry": fresh})
