"""Reading and dispatching: strict priority, never more work fetched than there are free slots.

Each round: fetch.lua reads up to ``free`` entries highest priority first; when nothing waits, one
blocking XREADGROUP over every stream wakes the worker within milliseconds of a new task. start.lua
then marks the batch processing in one call, and each job runs in its own asyncio task.

When jobs finish, the finisher reads entries for the slots they free in the same round trip as
their outcomes (:meth:`reserve`/:meth:`fetched`); those slots count as taken (``reserved``) until
what was read is started and dispatched, so no more is ever read than there are slots.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.worker.executor import Executor
from services.worker.finisher import Finisher
from services.worker.jobs import Delivery, Job
from shared import metrics
from shared.keys import WORKER_GROUP, KeySchema
from shared.models import PRIORITIES
from shared.scripts import Scripts

log = logging.getLogger("streamq.worker")


@functools.cache
def _child(family: Any, *labels: str) -> Any:
    """A metric's labelled child, looked up once (``labels()`` costs more than the observation)."""
    return family.labels(*labels)


class Consumer:
    def __init__(
        self,
        redis: Redis,
        scripts: Scripts,
        keys: KeySchema,
        executor: Executor,
        finisher: Finisher,
        *,
        consumer: str,
        concurrency: int,
        events_maxlen: int,
        block_ms: int = 1000,
    ) -> None:
        self.redis = redis
        self.scripts = scripts
        self.keys = keys
        self.executor = executor
        self.finisher = finisher
        self.consumer = consumer
        self.concurrency = concurrency
        self.events_maxlen = events_maxlen
        self.block_ms = block_ms
        self.streams = keys.streams()  # highest priority first
        self._common = keys.common()
        self.running: dict[str, asyncio.Task[None]] = {}  # entry id -> job task
        self.in_flight: dict[str, Delivery] = {}  # entry id -> delivery (for lease renewal)
        self.processed = 0
        self._slot_freed = asyncio.Event()
        self._labels = metrics.TASKS_IN_PROGRESS.labels(keys.queue)
        self.refilled = 0  # entries read in the finisher's round trip (for tests and debugging)
        self.reserved = 0  # slots promised to entries the finisher reads (until they are dispatched)
        self._starting: set[asyncio.Task[None]] = set()
        self._stop: asyncio.Event | None = None
        finisher.refill = self  # the finisher refills the slots it frees (see reserve/fetched)

    # --- reading ---------------------------------------------------------------------------------
    async def fetch(self, count: int) -> list[Delivery]:
        return self._deliveries(await self.scripts.call("fetch", self.streams, [WORKER_GROUP, self.consumer, count]))

    def _deliveries(self, reply: list[Any]) -> list[Delivery]:
        return [Delivery(PRIORITIES[int(reply[i]) - 1], reply[i + 1], reply[i + 2]) for i in range(0, len(reply), 3)]

    async def block_read(self) -> list[Delivery]:
        reply = await self.redis.xreadgroup(
            WORKER_GROUP, self.consumer, {s: ">" for s in self.streams}, count=1, block=self.block_ms
        )
        deliveries = []
        for stream, entries in reply or []:
            priority = PRIORITIES[self.streams.index(stream)]
            deliveries += [Delivery(priority, msg_id, fields.get("id", "")) for msg_id, fields in entries]
        return deliveries

    async def start(self, deliveries: list[Delivery]) -> list[Job]:
        keys = [*self._common, *(self.keys.task(d.task_id) for d in deliveries)]
        args: list[object] = [self.events_maxlen, WORKER_GROUP, self.consumer]
        for d in deliveries:
            args += [d.msg_id, d.task_id, d.priority]
        reply = await self.scripts.call("start", keys, args)
        return [Job.from_reply(d, r) for d, r in zip(deliveries, reply, strict=True) if r]

    # --- refill from the finisher's round trip ---------------------------------------------------
    def reserve(self, slots: int) -> tuple[list[str], list[Any]] | None:
        """``slots`` jobs are being finished: fetch.lua's KEYS and ARGV to read as many entries in the
        finisher's round trip (None once stopping: nothing new is read during shutdown)."""
        if self._stop is None or self._stop.is_set():
            return None
        self.reserved += slots
        return self.streams, [WORKER_GROUP, self.consumer, slots]

    def fetched(self, reply: Any, slots: int) -> None:
        """What the finisher's fetch.lua call delivered: started and dispatched in a task of its own.
        On an error nothing was delivered (a script is atomic) and the slots are released."""
        deliveries = [] if isinstance(reply, BaseException) else self._deliveries(reply)
        self.reserved -= slots - len(deliveries)
        if deliveries:
            self.refilled += len(deliveries)
            task = asyncio.get_running_loop().create_task(self._start_fetched(deliveries))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)
        self._slot_freed.set()

    async def _start_fetched(self, deliveries: list[Delivery]) -> None:
        jobs: list[Job] = []
        try:
            jobs = await self.start(deliveries)
        except (RedisError, OSError) as error:  # the entries stay pending: reclaimed after their lease
            log.warning("redis unavailable; retrying", extra={"error": str(error)})
        finally:
            self.reserved -= len(deliveries)
            self.dispatch(jobs)
            self._slot_freed.set()

    # --- running ---------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and dispatch until ``stop`` is set; in-flight jobs keep running (see :meth:`drain`)."""
        self._stop = stop
        while not stop.is_set():
            free = self.concurrency - len(self.running) - self.reserved
            if free <= 0:
                self._slot_freed.clear()
                await self._wait_slot(stop)
                continue
            try:
                deliveries = await self.fetch(free) or await self.block_read()
                if deliveries:
                    self.dispatch(await self.start(deliveries))
            except (RedisError, OSError) as error:
                log.warning("redis unavailable; retrying", extra={"error": str(error)})
                await asyncio.sleep(0.5)

    async def _wait_slot(self, stop: asyncio.Event) -> None:
        stopper = asyncio.ensure_future(stop.wait())
        slot = asyncio.ensure_future(self._slot_freed.wait())
        await asyncio.wait({stopper, slot}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        slot.cancel()

    def dispatch(self, jobs: list[Job]) -> None:
        for job in jobs:
            msg_id = job.delivery.msg_id
            self.in_flight[msg_id] = job.delivery
            self.running[msg_id] = asyncio.create_task(self._process(job), name=f"task-{job.delivery.task_id}")

    async def _process(self, job: Job) -> None:
        queue = self.keys.queue
        started = time.time()
        _child(metrics.TASK_WAIT_SECONDS, queue, str(job.priority)).observe(max(0.0, started - job.due_ms / 1000))
        self._labels.inc()
        try:
            outcome = await self.executor.run(job)
            _child(metrics.TASK_RUN_SECONDS, queue, job.type).observe(time.time() - started)
            status = await self.finisher.record(outcome)
            self._count(job, status)
        except asyncio.CancelledError:
            log.warning("task left pending at shutdown", extra={"task": job.delivery.task_id})
            raise
        except Exception:
            log.exception("could not record outcome; the task will be reclaimed", extra={"task": job.delivery.task_id})
        finally:
            self._labels.dec()
            self.in_flight.pop(job.delivery.msg_id, None)
            self.running.pop(job.delivery.msg_id, None)
            self._slot_freed.set()

    def _count(self, job: Job, status: str) -> None:
        queue = self.keys.queue
        if status in ("completed", "failed"):
            self.processed += 1
            _child(metrics.TASKS_FINISHED, queue, job.type, status).inc()
            if status == "failed":
                metrics.TASKS_DEAD_LETTERED.labels(queue).inc()
        elif status == "scheduled":
            self.processed += 1
            metrics.TASK_RETRIES.labels(queue, job.type).inc()
        else:
            log.warning("outcome not recorded: lease lost", extra={"task": job.delivery.task_id, "status": status})

    async def drain(self, grace_s: float) -> int:
        """Wait up to ``grace_s`` for running jobs; cancel the rest (their entries stay pending for
        another worker to reclaim). Returns how many were left unfinished."""
        if self._starting:  # entries the finisher read just before the stop: started and dispatched first
            await asyncio.wait(set(self._starting), timeout=grace_s)
        if self.running:
            _done, left = await asyncio.wait(set(self.running.values()), timeout=grace_s)
            for task in left:
                task.cancel()
            if left:
                await asyncio.wait(left)
            return len(left)
        return 0
