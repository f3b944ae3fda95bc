"""The api's one submission service: ``POST /api/tasks``, its fast path (services/api/fastpath.py) and
``POST /api/tasks/batch`` check, store, trace and count tasks through :class:`Submission`; so does the
client's direct transport (streamq/direct.py), which imports this module without FastAPI (keep it so).

Every submit answers with submit.lua's records (:class:`streamq.shared.queue.Stored`, the one result
type): the batch route and the fast path serialise them straight to JSON (services/api/encoding.py),
the single route turns its one record into a ``TaskPublic`` for FastAPI to serialise.

A single submit goes through the :class:`Coalescer` (the single submits of one event-loop turn share
one script call), except under durable submission (``STREAMQ_DURABLE_SUBMIT``): there each request
makes its own call, so that the 503 it may get names only its own task. A batch is one call per queue
partition it touches (``Broker.submit_stored``). Errors are raised as they come (Redis out of reach or
refusing writes, :class:`streamq.shared.errors.NotDurable`); services/api/answers.py maps them to HTTP.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from streamq.services.api.coalesce import Coalescer
from streamq.services.api.types import TypeCatalog
from streamq.shared import metrics, tracing
from streamq.shared.broker import Broker
from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.payloads import check_tasks, needs_check
from streamq.shared.queue import DEBOUNCED, UNIQUE_HELD, Stored
from streamq.shared.settings import Settings
from streamq.shared.ssrf import SsrfGuard

Headers = Sequence[tuple[bytes, bytes]]


def broker_for(settings: Settings, redis: Redis) -> Broker:
    """The producers' broker as ``settings`` describe it: the api's, and the client's direct transport's
    (streamq/direct.py), so both place, store and keep tasks alike."""
    return Broker(
        redis,
        KeySchema(settings.key_prefix, settings.queue),
        events_maxlen=settings.events_maxlen,
        result_ttl_s=settings.result_ttl_s,
        idempotency_ttl_s=settings.idempotency_ttl_s,
        durable=settings.durable(),
    )


def count(done: Sequence[Stored]) -> None:
    """``streamq_tasks_submitted_total`` for the new tasks of ``done`` (an idempotent replay, a refused
    unique duplicate or a debounced submit created none), and the unique duplicates and debounced
    submits: one ``inc(n)`` per label set."""
    counts = Counter((s.queue, s.task.type, s.task.priority) for s in done if s.earlier is None)
    for (queue, task_type, priority), n in counts.items():
        metrics.TASKS_SUBMITTED.labels(queue, task_type, str(priority)).inc(n)
    if sum(counts.values()) < len(done):  # some created nothing
        _count_flow(done)


def _count_flow(done: Sequence[Stored]) -> None:
    kinds = Counter((s.queue, s.kind) for s in done if s.kind == UNIQUE_HELD or s.kind == DEBOUNCED)
    for (queue, kind), n in kinds.items():
        (metrics.UNIQUE_DUPLICATES if kind == UNIQUE_HELD else metrics.DEBOUNCED_SUBMITS).labels(queue).inc(n)


class Submission:
    """Checks and submits tasks for every submit route of the api (made in the app's lifespan)."""

    def __init__(self, broker: Broker, catalog: TypeCatalog, guard: SsrfGuard) -> None:
        self.broker = broker
        self.catalog = catalog
        self.guard = guard
        self._coalescer = Coalescer(broker, count)

    async def problems(self, tasks: Sequence[TaskCreate], *, batch: bool) -> list[dict[str, Any]]:
        """The 422 error items for these tasks (empty when they may be stored): each task whose type no
        worker handles; else each bad email/http payload or webhook URL the SSRF guard refuses."""
        unknown = await self.catalog.unknown({t.type for t in tasks})
        if unknown:
            return [
                {
                    "loc": ["body", "tasks", i, "type"] if batch else ["body", "type"],
                    "msg": str(unknown[t.type]),
                    "type": "unknown_task_type",
                    "input": t.type,
                }
                for i, t in enumerate(tasks)
                if t.type in unknown
            ]
        return await check_tasks(tasks, self.guard, batch=batch)

    def checked_now(self, tasks: Sequence[TaskCreate]) -> bool:
        """Whether :meth:`problems` would find none without any I/O: every type known from the catalog's
        cache and no task with a URL or payload to check (a webhook, an email or http task). False means
        :meth:`problems` must run (the blocking client then runs it on its loop, streamq/direct.py)."""
        return self.catalog.known_now({t.type for t in tasks}) and not any(needs_check(t) for t in tasks)

    async def submit_one(self, task: TaskCreate, headers: Headers) -> Stored:
        """One checked task, stored (coalesced with the other single submits of this loop turn unless
        submission is durable) and counted; inside the api's submit span when tracing is on."""
        if not tracing.ENABLED:
            return await self._one(task)
        with tracing.submitting(headers, [task], task.queue or self.broker.keys.queue) as ([traced], span):
            done = await self._one(traced)
            tracing.submitted(span, [done.id])
            return done

    async def submit_many(
        self, tasks: Sequence[TaskCreate], headers: Headers, ids: Sequence[str] | None = None
    ) -> list[Stored]:
        """Checked tasks, stored (one script call per queue partition, pipelined) and counted; inside the
        api's submit span when tracing is on. ``ids``: the new tasks' ids, when the caller made them."""
        if not tracing.ENABLED:
            done = await self.broker.submit_stored(tasks, ids)
        else:
            with tracing.submitting(headers, tasks, _one_queue(tasks) or self.broker.keys.queue) as (traced, span):
                done = await self.broker.submit_stored(traced, ids)
                tracing.submitted(span, [s.id for s in done])
        count(done)
        return done

    async def _one(self, task: TaskCreate) -> Stored:
        if self.broker.durable is None:
            return await self._coalescer.submit(task)  # counted by the coalescer, once per shared call
        [done] = await self.broker.submit_stored([task])
        count([done])
        return done


def _one_queue(tasks: Sequence[TaskCreate]) -> str | None:
    """The queue every task names, or None (the default queue, or several: the span names the default)."""
    names = {t.queue for t in tasks}
    return names.pop() if len(names) == 1 else None
