"""Running one job: the handler with its timeout, and the one place a run becomes an outcome
(result, retry with back-off, or permanent failure)."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from streamq.services.worker.control import Control
from streamq.services.worker.jobs import Job, Outcome
from streamq.services.worker.registry import Handler, Registry, TaskContext
from streamq.shared import tracing
from streamq.shared.errors import Permanent, Retry

log = logging.getLogger("streamq.worker")
MAX_ERROR_CHARS = 4000
GIVE_BACK_SOON_MS = 500  # a task given back while a live worker advertises its type is due again this soon


def backoff_ms(attempt: int, base_s: float, cap_s: float) -> int:
    """Exponential back-off with full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]."""
    ceiling = min(cap_s, base_s * (2 ** max(attempt - 1, 0)))
    return int(random.uniform(0, ceiling) * 1000)


def http_with_parents(payload: Any, parents_json: str) -> Any:
    """An http workflow step's payload with its parents' results in the request body: its ``json`` object
    (``{}`` when none) gets a ``parents`` key. A payload with a text ``body`` or a non-object ``json`` is
    sent as given."""
    if not isinstance(payload, dict) or payload.get("body") is not None:
        return payload
    body = payload.get("json")
    if body is None:
        body = {}
    if not isinstance(body, dict):
        return payload
    return {**payload, "json": {**body, "parents": orjson.loads(parents_json)}}


class Deadlines:
    """Handler timeouts without a timer per run: runs whose deadlines fall in the same ``resolution_s``
    slot share one timer (``asyncio.timeout`` schedules and cancels one per run, a tenth of a busy
    worker's CPU). A run is cancelled at most ``resolution_s`` after its deadline."""

    def __init__(self, resolution_s: float = 0.05) -> None:
        self.resolution_s = resolution_s
        self.slots: dict[int, set[asyncio.Task[Any]]] = {}
        self.expired: set[asyncio.Task[Any]] = set()

    def add(self, task: asyncio.Task[Any], timeout_s: float) -> int:
        loop = asyncio.get_running_loop()
        slot = math.ceil((loop.time() + timeout_s) / self.resolution_s)
        members = self.slots.get(slot)
        if members is None:
            members = self.slots[slot] = set()
            loop.call_at(slot * self.resolution_s, self._expire, slot)
        members.add(task)
        return slot

    def remove(self, slot: int, task: asyncio.Task[Any]) -> None:
        members = self.slots.get(slot)
        if members is not None:
            members.discard(task)

    def _expire(self, slot: int) -> None:
        for task in self.slots.pop(slot, ()):
            self.expired.add(task)
            task.cancel()


class Executor:
    def __init__(
        self,
        registry: Registry,
        *,
        queue: str,
        default_timeout_s: float,
        retry_base_s: float,
        retry_max_s: float,
        unhandled_timeout_s: float = 3600.0,
    ) -> None:
        self.registry = registry
        self.reclaimed: set[str] = set()  # refs of reclaimed deliveries not yet run (tracing on only)
        self.unhandled_timeout_ms = int(unhandled_timeout_s * 1000)
        self.handled_elsewhere: frozenset[str] = frozenset()  # types live workers advertise (the heartbeat's)
        self.control = Control()  # cancel requests in, progress out (every TaskContext shares it)
        self.queue = queue
        self.default_timeout_s = default_timeout_s
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.deadlines = Deadlines()

    async def run(self, job: Job, task: asyncio.Task[Any] | None = None) -> Outcome:
        """Run ``job`` in ``task`` (the current task: given by a caller that has it at hand)."""
        handler = self.registry.get(job.type)
        if handler is None:
            return self._give_back(job)
        ctx = self._context(job) if handler.wants_context else None
        timeout = job.timeout_s or self.default_timeout_s
        task = task or asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        slot = self.deadlines.add(task, timeout)
        try:
            payload = orjson.loads(job.payload_json)
            if job.parents_json and job.type == "http":
                payload = http_with_parents(payload, job.parents_json)
            if tracing.ENABLED:
                result = await self._traced(job, handler, payload, ctx)
            else:
                result = await handler(payload, ctx)
        except asyncio.CancelledError:
            # the deadline's own cancel request is withdrawn; a timeout only if nothing else (a shutdown) asked too
            if task in self.deadlines.expired and task.uncancel() <= cancelling:
                return self._failure(job, TimeoutError(f"timed out after {timeout:g} s"))
            if job.delivery.task_id in self.control.cancels and task.uncancel() <= cancelling:
                return cancelled(job)  # the cancel request's own (see Consumer.cancel)
            raise
        except Exception as error:
            return self._failure(job, error)
        finally:
            self.deadlines.remove(slot, task)
            self.deadlines.expired.discard(task)
        if self.control.cancels and job.delivery.task_id in self.control.cancels:
            return cancelled(job)  # a sync handler that saw ctx.cancelled and returned
        try:
            return Outcome(job, completed=True, value=orjson.dumps(result).decode())
        except TypeError as error:
            return self._failure(job, Permanent(f"result is not JSON serialisable: {error}"))

    async def _traced(self, job: Job, handler: Handler, payload: Any, ctx: TaskContext | None) -> Any:
        """The handler inside its ``process <type>`` span (shared/tracing.py), a child of the task's
        submit span; an exception (a timeout's cancel too) is recorded on the span and raised on."""
        keys = job.delivery.keys
        rerun = job.attempt > 1 or job.delivery.ref in self.reclaimed
        self.reclaimed.discard(job.delivery.ref)
        with tracing.processing(
            job.traceparent, job.tracestate, task_type=job.type, queue=keys.queue if keys else self.queue,
            task_id=job.delivery.task_id, attempt=job.attempt, rerun=rerun,
        ):  # fmt: skip
            return await handler(payload, ctx)

    def _context(self, job: Job) -> TaskContext:
        return TaskContext(
            task_id=job.delivery.task_id,
            type=job.type,
            queue=job.delivery.keys.queue if job.delivery.keys else self.queue,
            attempt=job.attempt,
            max_retries=job.max_retries,
            priority=job.priority,
            enqueued_at=datetime.fromtimestamp(job.due_ms / 1000, UTC),
            parents=orjson.loads(job.parents_json) if job.parents_json else {},
            _control=self.control,
            _delivery=job.delivery,
        )

    def _give_back(self, job: Job) -> Outcome:
        """A task this worker has no handler for goes back to wait for one that has (finish.lua's
        ``unhandled``: not an attempt). Due again in ``GIVE_BACK_SOON_MS`` while a live worker advertises
        the type, else after a back-off finish.lua doubles per give-back; failed once it has waited
        ``STREAMQ_UNHANDLED_TIMEOUT_S`` (sent in the history slot)."""
        elsewhere = job.type in self.handled_elsewhere
        text = (
            f"waiting for a worker with a handler for task type {job.type!r}"
            f" ({'a live worker advertises it' if elsewhere else 'no live worker advertises it'})"
        )
        log.info("no handler for this task type; given back", extra={"task": job.delivery.task_id, "type": job.type})
        delay = GIVE_BACK_SOON_MS if elsewhere else -1
        return Outcome(job, completed=False, value=text, delay_ms=delay, history=str(self.unhandled_timeout_ms),
                       kind="unhandled")  # fmt: skip

    def _failure(self, job: Job, error: BaseException) -> Outcome:
        text = f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]
        if isinstance(error, Permanent):
            delay = -1
        elif isinstance(error, Retry) and error.after is not None:
            delay = int(error.after * 1000)
        else:
            base = job.retry_backoff_s if job.retry_backoff_s is not None else self.retry_base_s
            delay = backoff_ms(job.attempt, base, self.retry_max_s)
        history = orjson.dumps({"attempt": job.attempt, "error": text, "at": int(time.time() * 1000)}).decode()
        log.info(
            "task failed",
            extra={"task": job.delivery.task_id, "type": job.type, "attempt": job.attempt, "error": text},
        )
        return Outcome(job, completed=False, value=text, delay_ms=delay, history=history)


def cancelled(job: Job, why: str = "cancelled while it ran (POST /api/tasks/{id}/cancel)") -> Outcome:
    """The outcome of a run stopped on a cancel request (finish.lua records it cancelled, no retry)."""
    return Outcome(job, completed=False, value=why, kind="cancelled")
