"""The worker's slots: one object decides when to take work, how much, and frees the slots.

Each round: the partitions the worker consumes are ordered (:mod:`streamq.services.worker.sources`: queues
by weight or strictly, partitions rotated) and take.lua reads up to ``free`` entries from them in
that order, highest priority first inside each partition (a paused partition yields nothing), and
starts them in the same call (marked processing on this worker; cancel, pause and duplicate delivery
checked): one round trip from read to dispatch. Each job runs in its own asyncio task. A round reads
at most ``FOLLOW_UP_CHUNK`` entries; when it gets that many and more slots are free, the rest are
taken by follow-up calls of the same size, each sent before the previous one's jobs are dispatched,
so the first jobs of a burst run while Redis starts the next.

When nothing waits anywhere, one persistent watcher per partition (:mod:`streamq.services.worker.watchers`)
blocks in XREADGROUP on that partition's streams only (one hash slot each), with take.lua right
behind the read, for as many entries as :meth:`Consumer.wake_call` allows; the reply comes back to
:meth:`Consumer.woken`, which dispatches it. A blocked read is never cancelled: jobs a watcher started
while every slot was taken wait in ``ready`` (their lease renewed) for the next free slot. start.lua
starts entries read otherwise (the reclaimer's).

Outcomes go to the finisher with this consumer as its sender (:meth:`Consumer.send`): each batch of
finish.lua calls goes out with take.lua for the slots the batch frees, in one pipeline, and what
that take started is dispatched at once; those slots count as taken (``reserved``) until then, so no
more is ever read than there are slots."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from streamq.services.worker.executor import Executor, cancelled
from streamq.services.worker.finisher import Call, Finisher
from streamq.services.worker.intake import (
    IntakeClock,
    WakeCall,
    jobs_of,
    recover_groups,
    staging_consumer,
    start_jobs,
    take_call,
    wait_either,
)
from streamq.services.worker.jobs import Delivery, Job
from streamq.services.worker.sources import Sources
from streamq.shared import metrics
from streamq.shared.keys import WORKER_GROUP, KeySchema
from streamq.shared.scripts import Scripts
from streamq.shared.streams import ensure_group

log = logging.getLogger("streamq.worker")
SETTLE_S = 0.02  # longest a finish batch waits for the run loop's take call (see Consumer.wait_turn)
FOLLOW_UP_CHUNK = 128  # most entries one follow-up take of a burst starts (see Consumer.woken)
TAKE_AT_WAKE = 32  # most entries started with a watcher's blocked read; the run loop takes the rest at once


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
        sources: Sources | None = None,
        cancel_grace_s: float = 10.0,
    ) -> None:
        self.redis = redis
        self.scripts = scripts
        self.keys = keys  # the worker's first queue, partition 0 (deliveries without keys belong here)
        self.sources = sources or Sources.single(keys)
        self.executor = executor
        self.control = executor.control
        self.finisher = finisher
        self.consumer = consumer
        self.concurrency = concurrency
        self.events_maxlen = events_maxlen
        self.block_ms = block_ms
        self.running: dict[str, asyncio.Task[None]] = {}  # Delivery.ref -> job task
        self.in_flight: dict[str, Delivery] = {}  # Delivery.ref -> delivery (for lease renewal)
        self.running_in: dict[str, int] = {}  # queue -> jobs running (the in-progress gauge)
        self.ready: list[Job] = []  # started by a watcher's read while no slot was free
        self.processed = 0
        self.idle = asyncio.Event()  # set while nothing waits anywhere: the watchers block meanwhile
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._taking = 0  # take calls in flight (not counting the watchers' blocked reads)
        self._taken = asyncio.Event()  # set while none is
        self._taken.set()
        self._follow_ups: set[asyncio.Task[None]] = set()
        self._chains = 0  # bursts being followed up (the run loop leaves their slots to them)
        self.refilled = 0  # entries taken with a finish batch or a follow-up (for tests and debugging)
        self.reserved = 0  # slots promised to a take in flight beside the run loop's (until its reply is dispatched)
        self._stop: asyncio.Event | None = None
        self.cancel_grace_s = cancel_grace_s  # STREAMQ_CANCEL_GRACE_S
        self.cancelling: dict[str, asyncio.TimerHandle] = {}  # ref -> the grace timer of a cancel request
        self.clock = IntakeClock()  # intake round trips in flight (takes, watchers' reads): /readyz
        self.abandoned: set[str] = set()  # refs recorded cancelled past the grace while their handler runs on

    def of(self, delivery: Delivery) -> KeySchema:
        return delivery.keys or self.keys

    # --- reading ---------------------------------------------------------------------------------
    def take_call(self, part: KeySchema, count: int, staging: str = "") -> tuple[list[str], list[Any]]:
        """take.lua's KEYS and ARGV for this worker (see :func:`~streamq.services.worker.intake.take_call`)."""
        return take_call(part, count, consumer=self.consumer, events_maxlen=self.events_maxlen, staging=staging)

    def jobs(self, part: KeySchema, reply: list[Any]) -> list[Job]:
        """The started jobs of a take.lua reply."""
        return jobs_of(part, reply)

    async def take(self, count: int) -> list[Job]:
        """Up to ``count`` entries from the partitions in this round's order, started."""
        out: list[Job] = []
        for part in self.sources.order():
            if count <= 0:
                break
            reply = await self._call_take(*self.take_call(part, count))
            got = self.jobs(part, reply)
            out += got
            count -= len(got)
        return out

    async def _call_take(self, keys: list[str], args: list[Any]) -> Any:
        self._taking_starts()
        ticket = self.clock.begin()
        try:
            return await self.scripts.call("take", keys, args)
        finally:
            self.clock.end(ticket)
            self._took()

    def _taking_starts(self) -> None:
        """A take (or a burst's chain of them) is in flight until the matching :meth:`_took`."""
        self._taking += 1
        self._taken.clear()

    def _took(self) -> None:
        self._taking -= 1
        if not self._taking:
            self._taken.set()

    def free(self) -> int:
        """Slots neither running nor promised to entries being read or waiting in ``ready``."""
        return self.concurrency - len(self.running) - self.reserved - len(self.ready)

    async def start(self, deliveries: list[Delivery]) -> list[Job]:
        """start.lua for entries read otherwise (the reclaimer's); the caller dispatches the jobs."""
        return await start_jobs(
            self.scripts, deliveries, default=self.keys, consumer=self.consumer, events_maxlen=self.events_maxlen
        )

    # --- a watcher's blocked read ------------------------------------------------------------------
    def wake_call(self, part: KeySchema) -> WakeCall:
        """A watcher's next blocked read of ``part`` and the take.lua call behind it: the read delivers
        one entry and take.lua starts it and up to ``TAKE_AT_WAKE`` in all, as free slots allow."""
        staging = staging_consumer(self.consumer)
        count = max(1, min(TAKE_AT_WAKE, self.free()))
        return WakeCall(part, staging, self.block_ms, count, *self.take_call(part, count, staging))

    def woken(self, call: WakeCall, reply: list[Any]) -> int:
        """What take.lua started behind a watcher's read (``call``): dispatched now as far as slots
        allow, the rest kept in ``ready`` (lease renewed) for the next free slot; the run loop wakes to
        read more. When the take got all it asked for (a burst), the next take call for that partition
        is sent before the jobs run, so Redis starts the rest while this process runs the first (see
        :meth:`_follow_up`). Returns how many jobs were started."""
        jobs = self.jobs(call.part, reply)
        if not jobs:
            return 0
        for job in jobs:
            self.in_flight[job.delivery.ref] = job.delivery
        free = max(0, self.free())
        if len(jobs) >= call.count:
            self._follow_up(call.part, free - len(jobs))
        self.dispatch(jobs[:free])
        self.ready += jobs[free:]
        self.idle.clear()  # watchers re-arm once a fetch finds nothing again
        self._wake.set()
        return len(jobs)

    # --- takes beside the run loop's: with a finish batch, a burst's follow-ups -------------------
    async def wait_turn(self, within_s: float = SETTLE_S) -> None:
        """The finisher's turn (:class:`~streamq.services.worker.finisher.Sender`): until the run loop's
        take call (if one is in flight) has answered, at most ``within_s``, so that in a burst starting
        what is due goes to Redis before finishing what already ran (a watcher's blocked read is not
        waited for)."""
        if not self._taken.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within_s):
                    await self._taken.wait()

    async def send(self, calls: list[Call], freeing: int) -> list[Any]:
        """The finisher's send (:class:`~streamq.services.worker.finisher.Sender`): a batch's finish.lua
        calls and take.lua for the ``freeing`` slots its outcomes free, in one pipeline (plain script
        calls, no MULTI: each stays one atomic call). What take.lua started is dispatched at once; the
        finish replies are returned. Once stopping, the finish calls go alone."""
        take = self._reserve(freeing)
        if take is None:
            return await self.finisher.plain.send(calls, freeing)
        part, keys, args = take
        try:
            *replies, started = await self.scripts.call_many([*calls, ("take", keys, args)])
        except BaseException as error:
            self._fetched(error, freeing, part)
            raise
        self._fetched(started, freeing, part)
        return replies

    def _reserve(self, slots: int, part: KeySchema | None = None) -> tuple[KeySchema, list[str], list[Any]] | None:
        """A take of ``slots`` entries of ``part`` (default: the first partition of a fresh round order)
        about to be sent beside the run loop's: those slots count as taken until :meth:`_fetched` (None
        once stopping: nothing new is read during shutdown)."""
        if self._stop is None or self._stop.is_set():
            return None
        self.reserved += slots
        part = part or self.sources.order()[0]
        return (part, *self.take_call(part, slots))

    def _fetched(self, reply: Any, slots: int, part: KeySchema) -> None:
        """What a reserved take of ``part`` started: dispatched at once. On an error nothing was started
        (a script is atomic) and the slots are released."""
        jobs = [] if isinstance(reply, BaseException) else self.jobs(part, reply)
        self.reserved -= slots
        if jobs:
            self.refilled += len(jobs)
            self.dispatch(jobs)
        self._slot_freed.set()

    def _follow_up(self, part: KeySchema, free: int) -> None:
        """Read and start up to ``FOLLOW_UP_CHUNK`` more entries of ``part`` (at most ``free``) in a task
        of its own, reserved (dispatched by :meth:`_fetched`); while the burst lasts (a reply fills every
        slot it asked for), each link sends the next before its own jobs are parsed and dispatched: the
        first jobs of a burst reach their handlers while Redis starts the next ones, and a worker
        running a chunk leaves Redis to the other workers' takes, instead of one call starting every
        slot at once. The chain counts as a take in flight for :meth:`wait_turn` from this call until
        its last reply."""
        slots = min(free, FOLLOW_UP_CHUNK)
        take = self._reserve(slots, part) if slots > 0 else None
        if take is None:
            return
        _part, keys, args = take
        self._chains += 1
        self._taking_starts()

        async def follow_up() -> None:
            reply: Any
            try:
                reply = await self._call_take(keys, args)
            except (RedisError, OSError) as error:  # nothing was started (a script is atomic)
                reply = error
            try:
                if not isinstance(reply, BaseException) and len(reply) >= slots:  # the burst goes on
                    # the next link is reserved and sent before this reply is parsed and dispatched
                    # (this link's slots are still counted as reserved, so free() leaves them out)
                    self._follow_up(part, self.free())
                    await asyncio.sleep(0)
                self._fetched(reply, slots, part)
            finally:
                self._chains -= 1
                self._took()

        task = asyncio.get_running_loop().create_task(follow_up())
        self._follow_ups.add(task)
        task.add_done_callback(self._follow_ups.discard)

    # --- running ---------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and dispatch until ``stop`` is set; in-flight jobs keep running (see :meth:`drain`)."""
        self._stop = stop
        while not stop.is_set():
            free = self.concurrency - len(self.running) - self.reserved
            if free <= 0 or self._chains:  # a burst's follow-ups fill the free slots chunk by chunk
                self._slot_freed.clear()
                await wait_either(stop, self._slot_freed)
                continue
            try:
                await self._round(stop, free)
            except (RedisError, OSError) as error:
                log.warning("redis unavailable; retrying", extra={"error": str(error)})
                await recover_groups(self.redis, self.sources.all(), error)
                await asyncio.sleep(0.5)
        self.idle.clear()

    async def _round(self, stop: asyncio.Event, free: int) -> None:
        if self.ready:
            taken, self.ready = self.ready[:free], self.ready[free:]
            self.dispatch(taken)
            await asyncio.sleep(0)  # the jobs just dispatched reach their handlers before the next fetch is sent
            return
        count = min(free, FOLLOW_UP_CHUNK)
        jobs = await self.take(count)
        if jobs:
            if len(jobs) >= count and free > count:  # more may wait: the rest is followed up as a burst
                self._follow_up(jobs[-1].delivery.keys or self.keys, free - count)
            self.dispatch(jobs)
            await asyncio.sleep(0)
            return
        self._wake.clear()  # nothing anywhere: the watchers block until an entry comes
        if self.ready:  # a watcher's earlier block delivered meanwhile
            return
        self.idle.set()
        await wait_either(stop, self._wake, within_s=self.block_ms / 1000)
        self.idle.clear()

    async def refresh(self) -> None:
        """Partitions added to a consumed queue: their groups exist before they are read (called by
        :class:`~streamq.services.worker.growth.Growth`, not by the run loop)."""
        for part in await self.sources.refresh():
            await ensure_group(self.redis, part.streams(), WORKER_GROUP)
            log.info("reading a new partition", extra={"queue": part.queue, "partition": part.partition})

    def dispatch(self, jobs: list[Job]) -> None:
        # unnamed tasks (a name per job was a tenth of dispatching); the ref is made once per job
        create_task = asyncio.get_running_loop().create_task
        in_flight, running = self.in_flight, self.running
        for job in jobs:
            ref = job.delivery.ref
            in_flight[ref] = job.delivery
            running[ref] = create_task(self._process(job, ref))

    async def _process(self, job: Job, ref: str) -> None:
        """Run the job; its outcome goes to the finisher, which frees the slot once it is recorded
        (:meth:`_recorded`: the task ends with the handler, without waiting for the finish call)."""
        queue = self.of(job.delivery).queue
        started = time.time()
        _child(metrics.TASK_WAIT_SECONDS, queue, str(job.priority)).observe(max(0.0, started - job.due_ms / 1000))
        self._gauge(queue)
        self.running_in[queue] += 1
        try:
            outcome = await self.executor.run(job, self.running.get(ref))
        except asyncio.CancelledError:
            if self._ended_after_grace(job, ref):
                return
            self._release(queue, ref)
            log.warning("task left pending at shutdown", extra={"task": job.delivery.task_id})
            raise
        except Exception:
            self._release(queue, ref)
            log.exception("could not run the job; the task will be reclaimed", extra={"task": job.delivery.task_id})
            return
        if self.abandoned and self._ended_after_grace(job, ref):
            return
        _child(metrics.TASK_RUN_SECONDS, queue, job.type).observe(time.time() - started)
        self.finisher.post(outcome, lambda status: self._recorded(job, ref, queue, status), self)

    def _recorded(self, job: Job, ref: str, queue: str, status: str | BaseException) -> None:
        if isinstance(status, BaseException):
            log.error(
                "could not record outcome; the task will be reclaimed",
                extra={"task": job.delivery.task_id, "error": str(status)},
            )
        else:
            self._count(job, queue, status)
        self._release(queue, ref)

    def _release(self, queue: str, ref: str) -> None:
        self.running_in[queue] -= 1
        delivery = self.in_flight.pop(ref, None)
        self.running.pop(ref, None)
        self._slot_freed.set()
        if self.cancelling:  # (empty unless a cancel was requested)
            timer = self.cancelling.pop(ref, None)
            if timer is not None:
                timer.cancel()
        if self.control.cancels and delivery is not None and ref not in self.abandoned:
            self.control.cancels.discard(delivery.task_id)

    # --- cancelling running jobs -------------------------------------------------------------------
    def cancel(self, ref: str, task_type: str) -> None:
        """A cancel of the job ``ref`` was requested (:class:`~streamq.services.worker.cancels.Canceller`): its
        ``ctx.cancelled`` turns true and an async handler gets ``CancelledError``; a sync one (a thread)
        is left to poll the flag. Past ``cancel_grace_s`` it is recorded cancelled all the same."""
        task, delivery = self.running.get(ref), self.in_flight.get(ref)
        if task is None or delivery is None or ref in self.cancelling:
            return
        self.control.cancels.add(delivery.task_id)
        handler = self.executor.registry.get(task_type)
        if handler is None or handler.is_async:
            task.cancel()
        self.cancelling[ref] = asyncio.get_running_loop().call_later(self.cancel_grace_s, self._grace_over, ref)
        log.info("cancel requested; stopping the task", extra={"task": delivery.task_id, "type": task_type})

    def _grace_over(self, ref: str) -> None:
        """The handler did not stop within the grace: recorded cancelled now (the slot is freed once it
        is) and its run, if it ever ends, is dropped (:meth:`_ended_after_grace`)."""
        self.cancelling.pop(ref, None)
        task, delivery = self.running.get(ref), self.in_flight.get(ref)
        if task is None or delivery is None:
            return
        log.warning(
            "the handler ignored the cancel request; the task is recorded cancelled",
            extra={"task": delivery.task_id, "grace_s": self.cancel_grace_s},
        )
        self.abandoned.add(ref)
        task.cancel()  # a sync handler's thread runs on, but its job no longer waits for it
        job, queue = Job.bare(delivery), self.of(delivery).queue
        why = f"cancelled while it ran; the handler did not stop within {self.cancel_grace_s:g} s"
        self.finisher.post(cancelled(job, why), lambda status: self._recorded(job, ref, queue, status), self)

    def _ended_after_grace(self, job: Job, ref: str) -> bool:
        """A run already recorded cancelled past the grace ended: nothing more to record or release."""
        if ref not in self.abandoned:
            return False
        self.abandoned.discard(ref)
        self.control.cancels.discard(job.delivery.task_id)
        return True

    def _gauge(self, queue: str) -> None:
        """``streamq_tasks_in_progress{queue}`` reads ``running_in`` when scraped (no lock per task)."""
        if queue not in self.running_in:
            self.running_in[queue] = 0
            _child(metrics.TASKS_IN_PROGRESS, queue).set_function(lambda: self.running_in[queue])

    def _count(self, job: Job, queue: str, status: str) -> None:
        if status in ("completed", "failed"):
            self.processed += 1
            _child(metrics.TASKS_FINISHED, queue, job.type, status).inc()
            if status == "failed":
                metrics.TASKS_DEAD_LETTERED.labels(queue).inc()
        elif status == "scheduled":
            self.processed += 1
            metrics.TASK_RETRIES.labels(queue, job.type).inc()
        elif status == "cancelled":
            self.processed += 1
            _child(metrics.TASKS_FINISHED, queue, job.type or "", status).inc()
        else:
            log.warning("outcome not recorded: lease lost", extra={"task": job.delivery.task_id, "status": status})

    async def drain(self, grace_s: float) -> int:
        """Wait up to ``grace_s`` for running jobs and for the outcomes they posted to be recorded;
        cancel the jobs still running (their entries stay pending for another worker to reclaim).
        Returns how many were left unfinished."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        if self._follow_ups:  # takes sent just before the stop: what they started is run too
            await asyncio.wait(set(self._follow_ups), timeout=grace_s)
        if self.ready:  # jobs a watcher's last blocking read started: run them too
            self.dispatch(self.ready)
            self.ready = []
        left: set[asyncio.Task[None]] = set()
        if self.running:
            _done, left = await asyncio.wait(set(self.running.values()), timeout=max(0.0, deadline - loop.time()))
            for task in left:
                task.cancel()
            if left:
                await asyncio.wait(left)
        with contextlib.suppress(TimeoutError):  # what finished is recorded, within the grace
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                await self.finisher.idle()
        return len(left)
