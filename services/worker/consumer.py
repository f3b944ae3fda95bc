"""Reading and dispatching: strict priority, never more work fetched than there are free slots.

Each round: the partitions the worker consumes are ordered (:mod:`services.worker.sources`: queues
by weight or strictly, partitions rotated) and fetch.lua reads up to ``free`` entries from them in
that order, highest priority first inside each partition (a paused partition yields nothing). When
nothing waits anywhere, one persistent watcher per partition (:mod:`services.worker.watchers`) blocks
in XREADGROUP on that partition's streams only (one hash slot each); an entry it gets wakes the
worker at once. A blocked read is never cancelled: what a watcher receives while every slot is
taken waits in ``backlog`` (its lease renewed) for the next free slot. start.lua then marks a batch
processing in one call per partition (one pipelined round trip), and each job runs in its own
asyncio task.

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
from services.worker.sources import Sources
from shared import metrics
from shared.keys import WORKER_GROUP, KeySchema
from shared.models import PRIORITIES
from shared.scripts import Scripts
from shared.streams import ensure_group

log = logging.getLogger("streamq.worker")


@functools.cache
def _child(family: Any, *labels: str) -> Any:
    """A metric's labelled child, looked up once (``labels()`` costs more than the observation)."""
    return family.labels(*labels)


async def wait_either(stop: asyncio.Event, event: asyncio.Event, within_s: float | None = None) -> None:
    """Until ``stop`` or ``event`` is set (or ``within_s`` seconds pass)."""
    stopper = asyncio.ensure_future(stop.wait())
    other = asyncio.ensure_future(event.wait())
    await asyncio.wait({stopper, other}, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    other.cancel()


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
        sources: Sources | None = None,
    ) -> None:
        self.redis = redis
        self.scripts = scripts
        self.keys = keys  # the worker's first queue, partition 0 (deliveries without keys belong here)
        self.sources = sources or Sources.single(keys)
        self.executor = executor
        self.finisher = finisher
        self.consumer = consumer
        self.concurrency = concurrency
        self.events_maxlen = events_maxlen
        self.block_ms = block_ms
        self.running: dict[str, asyncio.Task[None]] = {}  # Delivery.ref -> job task
        self.in_flight: dict[str, Delivery] = {}  # Delivery.ref -> delivery (for lease renewal)
        self.backlog: list[Delivery] = []  # delivered by a watcher while no slot was free
        self.processed = 0
        self.idle = asyncio.Event()  # set while nothing waits anywhere: the watchers block meanwhile
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self.refilled = 0  # entries read in the finisher's round trip (for tests and debugging)
        self.reserved = 0  # slots promised to entries the finisher reads (until they are dispatched)
        self._starting: set[asyncio.Task[None]] = set()
        self._stop: asyncio.Event | None = None
        finisher.refill = self  # the finisher refills the slots it frees (see reserve/fetched)

    def of(self, delivery: Delivery) -> KeySchema:
        return delivery.keys or self.keys

    # --- reading ---------------------------------------------------------------------------------
    @staticmethod
    def fetch_call(part: KeySchema) -> list[str]:
        """fetch.lua's KEYS for one partition: its streams (highest priority first) and pause flag."""
        return [*part.streams(), part.paused]

    async def fetch(self, count: int) -> list[Delivery]:
        """Up to ``count`` entries from the partitions in this round's order."""
        out: list[Delivery] = []
        for part in self.sources.order():
            if count <= 0:
                break
            reply = await self.scripts.call("fetch", self.fetch_call(part), [WORKER_GROUP, self.consumer, count])
            got = self._deliveries(part, reply)
            out += got
            count -= len(got)
        return out

    def _deliveries(self, part: KeySchema, reply: list[Any]) -> list[Delivery]:
        return [
            Delivery(PRIORITIES[int(reply[i]) - 1], reply[i + 1], reply[i + 2], part) for i in range(0, len(reply), 3)
        ]

    def deliver(self, deliveries: list[Delivery]) -> None:
        """Entries a watcher's blocking read received: started by the run loop as soon as slots allow
        (meanwhile their lease is renewed like running ones)."""
        for d in deliveries:
            self.in_flight[d.ref] = d
        self.backlog += deliveries
        self.idle.clear()  # watchers re-arm once a fetch finds nothing again, not while this is started
        self._wake.set()

    async def start(self, deliveries: list[Delivery]) -> list[Job]:
        """start.lua for each partition's deliveries, all in one round trip; jobs in delivery order."""
        groups: dict[KeySchema, list[Delivery]] = {}
        for d in deliveries:
            groups.setdefault(self.of(d), []).append(d)
        calls: list[tuple[str, list[str], list[Any]]] = []
        for part, members in groups.items():
            keys = [*part.common(), *(part.task(d.task_id) for d in members), part.paused]
            args: list[Any] = [self.events_maxlen, WORKER_GROUP, self.consumer]
            for d in members:
                args += [d.msg_id, d.task_id, d.priority]
            calls.append(("start", keys, args))
        if len(calls) == 1:
            replies = [await self.scripts.call(*calls[0])]
        else:
            replies = await self.scripts.call_many(calls)
        started: dict[str, Job] = {}
        for members, reply in zip(groups.values(), replies, strict=True):
            if isinstance(reply, BaseException):
                raise reply
            for d, r in zip(members, reply, strict=True):
                if r:
                    started[d.ref] = Job.from_reply(d, r)
        return [started[d.ref] for d in deliveries if d.ref in started]

    # --- refill from the finisher's round trip ---------------------------------------------------
    def reserve(self, slots: int) -> tuple[list[str], list[Any]] | None:
        """``slots`` jobs are being finished: fetch.lua's KEYS and ARGV to read as many entries in the
        finisher's round trip, from the first partition of a fresh round order (None once stopping:
        nothing new is read during shutdown)."""
        if self._stop is None or self._stop.is_set():
            return None
        self.reserved += slots
        return self.fetch_call(self.sources.order()[0]), [WORKER_GROUP, self.consumer, slots]

    def fetched(self, reply: Any, slots: int, keys: list[str] | None = None) -> None:
        """What the finisher's fetch.lua call (``keys``, as :meth:`reserve` gave them) delivered:
        started and dispatched in a task of its own. On an error nothing was delivered (a script is
        atomic) and the slots are released."""
        part = self._partition_of(keys)
        deliveries = [] if isinstance(reply, BaseException) or part is None else self._deliveries(part, reply)
        self.reserved -= slots - len(deliveries)
        if deliveries:
            self.refilled += len(deliveries)
            task = asyncio.get_running_loop().create_task(self._start_fetched(deliveries))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)
        self._slot_freed.set()

    def _partition_of(self, keys: list[str] | None) -> KeySchema | None:
        if not keys:
            return self.keys
        for part in self.sources.all():
            if part.paused == keys[-1]:
                return part
        return None

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
                await wait_either(stop, self._slot_freed)
                continue
            try:
                await self._round(stop, free)
            except (RedisError, OSError) as error:
                log.warning("redis unavailable; retrying", extra={"error": str(error)})
                await asyncio.sleep(0.5)
        self.idle.clear()

    async def _round(self, stop: asyncio.Event, free: int) -> None:
        if self.backlog:
            await self.start_backlog(free)
            await asyncio.sleep(0)  # the jobs just dispatched reach their handlers before the next fetch is sent
            return
        await self.refresh()
        deliveries = await self.fetch(free)
        if deliveries:
            self.dispatch(await self.start(deliveries))
            await asyncio.sleep(0)
            return
        self._wake.clear()  # nothing anywhere: the watchers block until an entry comes
        if self.backlog:  # a watcher's earlier block delivered meanwhile
            return
        self.idle.set()
        await wait_either(stop, self._wake, within_s=self.block_ms / 1000)
        self.idle.clear()

    async def start_backlog(self, free: int) -> None:
        """Start what the watchers delivered (at most ``free``; the rest keeps waiting)."""
        taken, self.backlog = self.backlog[:free], self.backlog[free:]
        try:
            jobs = await self.start(taken)
        except BaseException:
            self.backlog = taken + self.backlog  # still ours (pending, lease renewed): tried again
            raise
        started = {j.delivery.ref for j in jobs}
        for d in taken:
            if d.ref not in started:
                self.in_flight.pop(d.ref, None)  # skipped (cancelled, or put back while paused)
        self.dispatch(jobs)

    async def refresh(self) -> None:
        """Partitions added to a consumed queue: their groups exist before they are read."""
        for part in await self.sources.refresh():
            await ensure_group(self.redis, part.streams(), WORKER_GROUP)
            log.info("reading a new partition", extra={"queue": part.queue, "partition": part.partition})

    def dispatch(self, jobs: list[Job]) -> None:
        for job in jobs:
            ref = job.delivery.ref
            self.in_flight[ref] = job.delivery
            self.running[ref] = asyncio.create_task(self._process(job), name=f"task-{job.delivery.task_id}")

    async def _process(self, job: Job) -> None:
        queue = self.of(job.delivery).queue
        started = time.time()
        _child(metrics.TASK_WAIT_SECONDS, queue, str(job.priority)).observe(max(0.0, started - job.due_ms / 1000))
        in_progress = _child(metrics.TASKS_IN_PROGRESS, queue)
        in_progress.inc()
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
            in_progress.dec()
            self.in_flight.pop(job.delivery.ref, None)
            self.running.pop(job.delivery.ref, None)
            self._slot_freed.set()

    def _count(self, job: Job, status: str) -> None:
        queue = self.of(job.delivery).queue
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
        if self.backlog:  # entries a watcher's last blocking read received: run them too
            try:
                await self.start_backlog(len(self.backlog))
            except (RedisError, OSError) as error:  # they stay pending: reclaimed after their lease
                log.warning("redis unavailable; backlog left pending", extra={"error": str(error)})
        if self.running:
            _done, left = await asyncio.wait(set(self.running.values()), timeout=grace_s)
            for task in left:
                task.cancel()
            if left:
                await asyncio.wait(left)
            return len(left)
        return 0
