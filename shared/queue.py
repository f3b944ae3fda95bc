"""The operations every service shares: submit, get, list, stats, cancel, revive, delete, prune.

One ``Queue`` per process and queue name; every state change is one script call (one round trip).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from redis.asyncio import Redis

from streamq.shared import tracing
from streamq.shared.errors import Conflict, NotFound
from streamq.shared.keys import STATUS_ORDER, KeySchema
from streamq.shared.models import (
    EPOCH,
    AttemptError,
    DebounceSpec,
    Stats,
    TaskCreate,
    TaskPublic,
    TaskStatus,
    UniqueSpec,
    WorkerInfo,
    dt_to_ms,
    ms_to_dt,
    new_task_id,
)
from streamq.shared.scripts import Scripts

LIST_SCAN_FACTOR = 20  # a filtered page reads at most limit * this many index entries
NO_BOUNDS = (-1,) * 8  # prune only what is past its retention deadline
WALK_FROM_START = ("-", "-", "-")  # remove.lua's count walks from each index's lowest id


class Pruned(NamedTuple):
    """One remove.lua 'prune' call's outcome."""

    tasks: int  # finished tasks removed
    dead: int  # dead letters removed
    more: bool  # a count walk stopped at the call's limit with tasks still beyond its bound
    cursors: tuple[str, ...]  # where the count walks stopped: the next call's ``cursors``


# why a submitted task created nothing (Stored.kind); "" = a new task
IDEMPOTENT, UNIQUE_HELD, DEBOUNCED = "idempotent", "unique", "debounced"
_MARKS = {"u:": UNIQUE_HELD, "d:": DEBOUNCED}  # submit.lua's mark before an earlier task's id


@dataclass(frozen=True, slots=True)
class Submitted:
    task: TaskPublic
    duplicate: bool  # an earlier task returned instead of a new one (see ``kind``)
    kind: str = ""  # why: IDEMPOTENT, UNIQUE_HELD (the holder of its unique key) or DEBOUNCED (the updated task)


class Stored(NamedTuple):
    """One task of a submit call as submit.lua answered it, before any ``TaskPublic`` is built (the
    batch route serialises these straight to JSON: a model per task was most of its CPU)."""

    task: TaskCreate
    id: str
    queue: str
    status: str  # pending or scheduled; "" for a duplicate
    created_ms: int
    earlier: TaskPublic | None  # a duplicate: the earlier task of the same idempotency, unique or debounce key
    kind: str = ""  # a duplicate's cause: IDEMPOTENT, UNIQUE_HELD or DEBOUNCED

    def submitted(self) -> Submitted:
        if self.earlier is not None:
            return Submitted(self.earlier, True, self.kind)
        return Submitted(_public(self.task, self.id, self.queue, self.status, self.created_ms), False)


def submit_duplicates(reply: list[Any]) -> dict[int, str]:
    """submit.lua's reply (``now_ms``, then a position and an earlier id per duplicate) as {position
    in the call (0-based): the earlier task's id}."""
    return {i: earlier for i, (earlier, _kind) in submit_outcomes(reply).items()}


def submit_outcomes(reply: list[Any]) -> dict[int, tuple[str, str]]:
    """submit.lua's reply as {position in the call (0-based): (the earlier task's id, why: IDEMPOTENT,
    UNIQUE_HELD or DEBOUNCED)} for every task that created nothing."""
    values = iter(reply[1:])
    out = {}
    for i, earlier in zip(values, values, strict=True):
        text = str(earlier)
        kind = _MARKS.get(text[:2], IDEMPOTENT)  # a task id has no ':'
        out[int(i) - 1] = (text, kind) if kind == IDEMPOTENT else (text[2:], kind)
    return out


def submit_ids(ids: Sequence[str], reply: list[Any]) -> list[str]:
    """The id each task of a submit call has: its own, or a duplicate's earlier task's."""
    duplicates = submit_duplicates(reply)
    return [duplicates.get(i, task_id) for i, task_id in enumerate(ids)] if duplicates else list(ids)


def _encode(task: TaskCreate) -> list[str]:
    """A new task's hash fields (field, value, ...). Its id and queue are in the hash's key, not in
    the hash; attempts is written at its first start (absent: 0)."""
    return [
        "type", task.type, "priority", str(task.priority), "payload", _payload(task),
        "max_retries", str(task.max_retries), *_extras(task),
    ]  # fmt: skip


def _payload(task: TaskCreate) -> str:
    payload = task.payload
    return "null" if payload is None else orjson.dumps(payload).decode()


def flow_fields(task: TaskCreate, keys: KeySchema) -> list[str]:
    """A task's flow fields (field, value, ...), first among its extras: ``flow`` (its letters: g group,
    u unique, d debounce), then its ``group`` (second: submit.lua looks there for it), then what lib.lua's
    flow_submit and hooks read (the lock's key name, from ``keys``, the task's partition); empty for a
    task that uses none of it."""
    fields: list[str] = []
    letters = ""
    if task.group is not None:
        letters += "g"
        fields += ["group", task.group]
    unique, debounce = task.unique, task.debounce
    if unique is not None and unique.key is not None:  # the key is always filled in by TaskCreate
        letters += "u"
        fields += ["unique_lock", keys.unique(unique.key), "unique_key", unique.key, "unique_until", unique.until,
                   "unique_ttl_s", str(unique.ttl_s)]  # fmt: skip
    if debounce is not None:
        letters += "d"
        fields += ["debounce_lock", keys.debounce(task.type, debounce.key), "debounce_key", debounce.key,
                   "debounce_window_s", repr(float(debounce.window_s))]  # fmt: skip
    return ["flow", letters, *fields] if letters else []


def _extras(task: TaskCreate) -> list[str]:
    """The optional hash fields (field, value, ...): submit.lua writes every other field from its
    fixed per-task arguments (sent once each, without field names)."""
    # once per task of a batch: no dict of the optional fields (half the time of the loop it replaced)
    fields: list[str] = []
    if task.webhook is not None:
        fields += ["webhook", str(task.webhook)]
    if task.timeout_s is not None:
        fields += ["timeout_s", str(task.timeout_s)]
    if task.retry_backoff_s is not None:
        fields += ["retry_backoff_s", str(task.retry_backoff_s)]
    if task.idempotency_key is not None:
        fields += ["idempotency_key", str(task.idempotency_key)]
    if task.keep_s is not None:  # read by finish.lua, cancel.lua and poison.lua for the retention deadline
        fields += ["keep_s", str(task.keep_s)]
    if tracing.ENABLED:  # traceparent and tracestate of the api's submit span (shared/tracing.py)
        fields += tracing.carried(task)
    return fields


def _public(task: TaskCreate, task_id: str, queue: str, status: str, created_ms: int) -> TaskPublic:
    return TaskPublic(
        id=task_id,
        queue=queue,
        status=TaskStatus(status),
        created_at=ms_to_dt(created_ms),  # type: ignore[arg-type]  # never None here
        **task.model_dump(exclude={"scheduled_for", "queue"}),
        scheduled_for=task.scheduled_for if status == TaskStatus.SCHEDULED else None,
    )


def _history(value: str) -> list[AttemptError]:
    return [
        AttemptError(attempt=h["attempt"], error=h["error"], at=ms_to_dt(str(h["at"])))  # type: ignore[arg-type]
        for h in orjson.loads(value)
    ]


# what reading a stored field can raise: a record written by hand, cut short or by another version
# orjson.JSONDecodeError and pydantic.ValidationError are ValueErrors
_UNREADABLE = (ValueError, TypeError, KeyError, OverflowError)


_REQUIRED = ("type", "priority", "max_retries", "status", "created_at")  # every task hash has these


def _unique(key: str, raw: dict[str, str]) -> UniqueSpec:
    return UniqueSpec(key=key, until=raw["unique_until"], ttl_s=int(raw["unique_ttl_s"]))  # type: ignore[arg-type]


class _Fields:
    """Reads a task hash's fields one by one; a field that cannot be read is left at its default and
    remembered, so decoding a record never raises."""

    __slots__ = ("bad", "raw")

    def __init__(self, raw: dict[str, str]) -> None:
        self.raw = raw
        self.bad: list[str] = []

    def get(self, name: str, parse: Any, default: Any = None) -> Any:
        value = self.raw.get(name)
        if value is None or value == "":
            return default
        try:
            return parse(value)
        except _UNREADABLE:
            self.bad.append(name)
            return default


def decode_task(raw: dict[str, str], task_id: str, queue: str) -> TaskPublic:
    """A task hash (as stored by the scripts) to its public form; its id and queue come from its key.
    Total: a field that cannot be read keeps its default and is named in ``error``, so one bad record
    never fails a page, a count or another task's route (nor a state change already applied to it)."""
    f = _Fields(raw)
    error = raw.get("error") or None
    task = TaskPublic(
        id=task_id,
        queue=queue,
        group=raw.get("group") or None,
        type=raw.get("type") or "",
        payload=f.get("payload", orjson.loads),
        priority=f.get("priority", int, 0),
        max_retries=f.get("max_retries", int, 0),
        status=f.get("status", TaskStatus, TaskStatus.FAILED),
        attempts=f.get("attempts", int, 0),
        scheduled_for=f.get("scheduled_for", ms_to_dt),
        webhook=raw.get("webhook") or None,
        timeout_s=f.get("timeout_s", float),
        retry_backoff_s=f.get("retry_backoff_s", float),
        idempotency_key=raw.get("idempotency_key") or None,
        unique=f.get("unique_key", lambda key: _unique(key, raw)),
        debounce=f.get("debounce_key", lambda key: DebounceSpec(key=key, window_s=float(raw["debounce_window_s"]))),
        keep_s=f.get("keep_s", int),
        created_at=f.get("created_at", ms_to_dt, EPOCH),
        started_at=f.get("started_at", ms_to_dt),
        completed_at=f.get("completed_at", ms_to_dt),
        result=f.get("result", orjson.loads),
        error=error,
        worker=raw.get("worker") or None,
        history=f.get("history", _history, []),
        webhook_status=raw.get("webhook_status") or None,
        cancel_requested=bool(raw.get("cancel_requested")),
        progress=f.get("progress", float),
        progress_message=raw.get("progress_message") or None,
        workflow=raw.get("workflow") or None,
        step=raw.get("step") or None,
    )
    unread = f.bad + [name for name in _REQUIRED if not raw.get(name)]
    if unread:
        note = f"stored record unreadable: {', '.join(unread)}"
        task.error = f"{error}; {note}" if error else note
    return task


class Queue:
    """Client-side operations on one named queue."""

    def __init__(
        self,
        redis: Redis,
        keys: KeySchema,
        *,
        events_maxlen: int = 100_000,
        result_ttl_s: int = 7 * 24 * 3600,
        idempotency_ttl_s: int = 24 * 3600,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.scripts = Scripts(redis)
        self.events_maxlen = events_maxlen
        self.result_ttl_ms = result_ttl_s * 1000
        self.idempotency_ttl_s = idempotency_ttl_s
        self._common = keys.common()
        # submit.lua builds each task's keys from these (no KEYS per task to build, send and parse)
        self._prefixes = [keys.task(""), keys.index_type(""), keys.idempotency("")]

    # --- submit ----------------------------------------------------------------------------------
    async def submit(self, tasks: Sequence[TaskCreate]) -> list[Submitted]:
        """Store, index and enqueue (or schedule) every task in one script call. New tasks are
        returned as built here (no read back); duplicates are read in one more round trip."""
        now_ms = int(time.time() * 1000)
        ids = [new_task_id(now_ms) for _ in tasks]
        keys, args = self.submit_call(tasks, ids)
        return [s.submitted() for s in await self.stored(tasks, ids, await self.scripts.call("submit", keys, args))]

    def submit_call(
        self, tasks: Sequence[TaskCreate], ids: Sequence[str], *, guarded: bool = False
    ) -> tuple[list[str], list[Any]]:
        """submit.lua's KEYS and ARGV for ``tasks`` with the given new ids (for a caller that pipelines
        several partitions' calls). ``guarded``: the ids were made before the call's first attempt (a
        task without an idempotency key whose id is already stored is answered with it, see submit.lua)."""
        args: list[Any] = [self.events_maxlen, self.idempotency_ttl_s, len(tasks), *self._prefixes, 1 if guarded else 0]
        for task, task_id in zip(tasks, ids, strict=True):
            due = dt_to_ms(task.scheduled_for) if task.scheduled_for else 0
            extras = _extras(task)
            if task.group is not None or task.unique is not None or task.debounce is not None:
                extras = flow_fields(task, self.keys) + extras
            args += [
                task_id, task.type, task.priority, due, task.idempotency_key or "", _payload(task), task.max_retries,
                len(extras) // 2, *extras,
            ]  # fmt: skip
        return list(self._common), args  # a copy: a caller may add to its keys

    async def stored(self, tasks: Sequence[TaskCreate], ids: Sequence[str], reply: list[Any]) -> list[Stored]:
        """submit.lua's reply for ``tasks`` (sent with ``ids``) as Stored records: a new task is
        scheduled when due after the call's time, else pending; duplicates are read back in one round
        trip."""
        duplicates = submit_outcomes(reply)
        found = await self.get_many(sorted({e for e, _ in duplicates.values()})) if duplicates else []
        return self.records(tasks, ids, reply, {t.id: t for t in found})

    def records(
        self, tasks: Sequence[TaskCreate], ids: Sequence[str], reply: list[Any], earlier: dict[str, TaskPublic]
    ) -> list[Stored]:
        """:meth:`stored` once the duplicates' earlier tasks are read (``earlier``: by id; empty when the
        reply names none, see :func:`submit_outcomes`): no I/O, so a caller on another thread (the
        blocking client's, streamq/direct.py) makes the same records."""
        now_ms = int(reply[0])
        duplicates = submit_outcomes(reply)
        queue = self.keys.queue
        new = tuple.__new__  # Stored(...) runs NamedTuple's Python-level __new__: 4% of a batch's api CPU
        out = []
        for i, (task, task_id) in enumerate(zip(tasks, ids, strict=True)):
            if i in duplicates:
                earlier_id, kind = duplicates[i]
                before = earlier[earlier_id]
                if kind == DEBOUNCED:
                    before = before.model_copy(update={"debounced": True})
                out.append(new(Stored, (task, earlier_id, queue, "", 0, before, kind)))
                continue
            if task.debounce is not None:  # due window_s after this submit, on the script's clock
                due_ms = now_ms + math.ceil(task.debounce.window_s * 1000)
                task = task.model_copy(update={"scheduled_for": ms_to_dt(due_ms)})
                out.append(new(Stored, (task, task_id, queue, "scheduled", now_ms, None, "")))
                continue
            due = task.scheduled_for
            status = "scheduled" if due is not None and dt_to_ms(due) > now_ms else "pending"
            out.append(new(Stored, (task, task_id, queue, status, now_ms, None, "")))
        return out

    # --- read ------------------------------------------------------------------------------------
    async def get(self, task_id: str) -> TaskPublic:
        raw = await self.redis.hgetall(self.keys.task(task_id))
        if not raw:
            raise NotFound(task_id)
        return decode_task(raw, task_id, self.keys.queue)

    async def get_many(self, task_ids: Sequence[str]) -> list[TaskPublic]:
        """Tasks in the given order, skipping ids whose hash is gone; one round trip."""
        if not task_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for task_id in task_ids:
            pipe.hgetall(self.keys.task(task_id))
        raws = await pipe.execute()
        queue = self.keys.queue
        return [decode_task(raw, task_id, queue) for task_id, raw in zip(task_ids, raws, strict=True) if raw]

    async def list_tasks(
        self,
        *,
        status: TaskStatus | None = None,
        task_type: str | None = None,
        priority: int | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[TaskPublic], str | None]:
        """Newest first. The narrowest index (with no status or type, the six status indexes merged) is
        read in id order; other filters are checked on the tasks, checking at most ``limit *
        LIST_SCAN_FACTOR`` tasks per page (a short page still carries a cursor to continue from)."""
        indexes = self._pick_indexes(status, task_type)
        upper = f"({cursor}" if cursor else "+"
        found: list[TaskPublic] = []
        budget = limit * LIST_SCAN_FACTOR
        last: str | None = None
        while len(found) < limit and budget > 0:
            chunk = min(budget, max(limit * 2, 100)) if (status and task_type) or priority else limit
            ids = await self._ids_below(indexes, upper, chunk)
            if not ids:
                return found, None
            budget -= len(ids)
            for task in await self.get_many(ids):
                if self._matches(task, status, task_type, priority):
                    found.append(task)
                    if len(found) == limit:
                        return found, task.id
            last = ids[-1]
            upper = f"({last}"
            if len(ids) < chunk:
                return found, None
        return found, last

    def _pick_indexes(self, status: TaskStatus | None, task_type: str | None) -> list[str]:
        """The narrowest index; with no status or type, every status index (a task is in exactly one
        of them: there is no index of all tasks, which would cost every submit an index write)."""
        if status is not None:
            return [self.keys.index_status(status)]
        if task_type is not None:
            return [self.keys.index_type(task_type)]
        return self.keys.status_indexes()

    async def _ids_below(self, indexes: list[str], upper: str, count: int) -> list[str]:
        """The ``count`` greatest ids below ``upper`` in the union of ``indexes``, greatest first. Several
        indexes are read in one indexes.lua call (a task moving between two status indexes is seen in
        exactly one) and merged."""
        if len(indexes) == 1:
            return list(await self.redis.zrange(indexes[0], upper, "-", desc=True, bylex=True, offset=0, num=count))
        pages: list[list[str]] = await self.scripts.call("indexes", indexes, ["page", upper, count])
        return heapq.nlargest(count, itertools.chain.from_iterable(pages))

    @staticmethod
    def _matches(task: TaskPublic, status: TaskStatus | None, task_type: str | None, priority: int | None) -> bool:
        return (
            (status is None or task.status == status)
            and (task_type is None or task.type == task_type)
            and (priority is None or task.priority == priority)
        )

    async def stats(self) -> Stats:
        """Counts from index sizes and counters: two requests sent together, no scans."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.stats)
        pipe.xlen(self.keys.dead)
        # the status counts of one instant (one script), so their sum is the total
        sizes, (counters, dead) = await asyncio.gather(
            self.scripts.call("indexes", self.keys.status_indexes(), ["count"]), pipe.execute()
        )
        counts = dict(zip(STATUS_ORDER, sizes, strict=True))
        return Stats(
            queue=self.keys.queue,
            total=sum(counts.values()),
            **{status.value: count for status, count in counts.items()},
            submitted_total=int(counters.get("submitted_total", 0)),
            completed_total=int(counters.get("completed_total", 0)),
            failed_total=int(counters.get("failed_total", 0)),
            retried_total=int(counters.get("retried_total", 0)),
            dead_letter=dead,
        )

    # --- state changes ---------------------------------------------------------------------------
    async def cancel(self, task_id: str) -> TaskPublic:
        """Pending or scheduled: cancelled now. Processing: asked to stop (``cancel_requested``; the
        worker running it ends it cancelled)."""
        ok, status = await self.scripts.call(
            "cancel",
            [*self._common, self.keys.task(task_id), self.keys.cancels],
            [self.events_maxlen, task_id, self.result_ttl_ms],
        )
        self._check(task_id, ok, status, "only pending, scheduled or processing tasks can be cancelled")
        return await self.get(task_id)

    async def revive(self, task_id: str) -> TaskPublic:
        ok, status, *workflow = await self.scripts.call(
            "revive", [*self._common, self.keys.task(task_id)], [self.events_maxlen, task_id]
        )
        if workflow:  # its workflow's counts would miss the new run
            retry = f"POST /api/workflows/{workflow[0]}/retry"
            rule = f"a workflow's task is re-run with its workflow: retry the workflow: {retry}"
            raise Conflict(task_id, str(status), rule)
        self._check(task_id, ok, status, "only failed or cancelled tasks can be retried")
        return await self.get(task_id)

    async def delete(self, task_id: str) -> None:
        task = await self.get(task_id)
        keys = [*self._common, self.keys.task(task_id), self.keys.index_type(task.type)]
        args = [self.events_maxlen, "delete", task_id, self.keys.webhook(""), self.keys.deliveries("")]
        ok, status, *workflow = await self.scripts.call("remove", keys, args)
        if workflow:  # the workflow would wait for it forever
            rule = (
                f"a workflow's task is deleted with its workflow {workflow[0]}, once it ended and its retention passed"
            )
            raise Conflict(task_id, str(status), rule)
        self._check(task_id, ok, status, "only completed, failed or cancelled tasks can be deleted")

    async def prune(self, bounds: Sequence[int] = NO_BOUNDS, batch: int = 200) -> tuple[int, int]:
        """One remove.lua 'prune' call: finished tasks past their retention deadline or beyond
        ``bounds`` (age ms and count of completed, failed, cancelled and dead letters, -1 for none:
        :func:`streamq.shared.retention.lua_bounds`), oldest first, at most ``batch`` tasks and ``batch`` dead
        letters. Returns (tasks removed, dead letters removed)."""
        pruned = await self.prune_step(bounds, batch)
        return pruned.tasks, pruned.dead

    async def prune_step(
        self, bounds: Sequence[int] = NO_BOUNDS, batch: int = 200, cursors: Sequence[str] = WALK_FROM_START
    ) -> Pruned:
        """:meth:`prune`, with the count walks (completed, failed, cancelled) going on from ``cursors``
        (the previous step's), so tasks kept for their ``keep_s`` are walked over once per pass."""
        args = [self.events_maxlen, "prune", self._prefixes[0], self._prefixes[1], batch, *bounds, *cursors]
        args += [self.keys.webhook(""), self.keys.deliveries("")]
        tasks, dead, more, *walked = await self.scripts.call("remove", list(self._common), args)
        return Pruned(int(tasks), int(dead), bool(int(more)), tuple(str(c) for c in walked))

    @staticmethod
    def _check(task_id: str, ok: int, status: str, reason: str) -> None:
        if int(ok):
            return
        if not status:
            raise NotFound(task_id)
        raise Conflict(task_id, status, reason)

    # --- task types ------------------------------------------------------------------------------
    async def advertised_types(self) -> set[str]:
        return set(await self.redis.smembers(self.keys.types))

    # --- workers ---------------------------------------------------------------------------------
    async def workers(self) -> list[WorkerInfo]:
        """Live workers (heartbeat within their TTL), oldest first; one pipelined read."""
        ids: list[str] = await self.redis.zrange(self.keys.workers, 0, -1)
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for worker_id in ids:
            pipe.hgetall(self.keys.worker(worker_id))
        out = []
        for raw in await pipe.execute():
            if not raw or "last_heartbeat" not in raw:
                continue
            out.append(
                WorkerInfo(
                    id=raw["id"],
                    host=raw["host"],
                    pid=int(raw["pid"]),
                    concurrency=int(raw["concurrency"]),
                    in_flight=int(raw.get("in_flight", 0)),
                    processed=int(raw.get("processed", 0)),
                    started_at=ms_to_dt(raw["started_at"]),  # type: ignore[arg-type]
                    last_heartbeat=ms_to_dt(raw["last_heartbeat"]),  # type: ignore[arg-type]
                    handlers=[h for h in raw.get("handlers", "").split(",") if h],
                    queue=raw.get("queue", "default"),
                    queues=[q for q in raw.get("queues", raw.get("queue", "default")).split(",") if q],
                )
            )
        return sorted(out, key=lambda w: w.started_at)
