"""The producers' facade over named queues and their partitions (one :class:`Queue` per partition).

``submit`` groups tasks by (queue, partition) and sends every group's submit.lua call in one pipelined
round trip (each call touches one partition's hash slot); replies come back in request order. A task's
partition is ``partition_of(placement_key(...), partitions)``: its group's, so a group's tasks and state
share a slot; else its own key's (:func:`own_key`: unique or debounce key, else idempotency key), so a
key always meets its earlier task in the same slot; else (a type with a limit) its type's; else its
id's. Reads by id find the partition holding the task with one pipelined read over every known
partition (or the named queue's); state changes first ``locate`` it (one pipelined EXISTS).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from streamq.shared.errors import NotDurable, NotFound
from streamq.shared.keys import STATUS_ORDER, WORKER_GROUP, KeySchema
from streamq.shared.memguard import MemoryGuard
from streamq.shared.models import PRIORITIES, Stats, TaskCreate, TaskPublic, TaskStatus, WorkerInfo, new_task_ids
from streamq.shared.queue import Queue, Stored, Submitted, decode_task, submit_ids
from streamq.shared.queues import QueueConfig, QueueRegistry, partition_of, placement_key
from streamq.shared.recovery import reschedule, revive_failed

COUNTERS = ("submitted_total", "completed_total", "failed_total", "retried_total")


def own_key(task: TaskCreate) -> str | None:
    """The key a task must meet its earlier tasks by, in one slot: its unique or debounce key, else its
    idempotency key (a group, when it has one, decides its partition first: see ``placement_key``)."""
    if task.unique is not None:
        return task.unique.key
    if task.debounce is not None:
        return task.debounce.key
    return task.idempotency_key


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """One queue's live figures, summed over its partitions."""

    config: QueueConfig
    stats: Stats
    depth: dict[int, int]  # tasks waiting on each priority stream (length less delivered-unacked)


@dataclass(frozen=True, slots=True)
class Plan:
    """One submit's script calls (:meth:`Broker.place`): per call, its (queue, partition), the positions
    of its tasks in the submit, their new ids and the call itself."""

    groups: list[tuple[str, int]]
    positions: list[list[int]]
    call_ids: list[list[str]]
    calls: list[tuple[str, list[str], list[Any]]]

    def members(self, tasks: Sequence[TaskCreate], k: int) -> list[TaskCreate]:
        """The tasks of call ``k``."""
        return [tasks[i] for i in self.positions[k]]

    def outcomes(
        self, count: int, replies: Sequence[Any], records: Sequence[list[Stored]]
    ) -> list[Stored | BaseException]:
        """Each task's outcome in submit order, from every call's reply (an error for each task of a failed
        call) and ``records``: one list per call that succeeded, in call order."""
        each = iter(records)
        out: list[Stored | BaseException] = [None] * count  # type: ignore[list-item]  # all set below
        for members, reply in zip(self.positions, replies, strict=True):
            outcomes: Sequence[Stored | BaseException] = (
                [reply] * len(members) if isinstance(reply, BaseException) else next(each)
            )
            for i, outcome in zip(members, outcomes, strict=True):
                out[i] = outcome
        return out


class Broker:
    """Submit, find, list, count and change tasks across every queue and partition."""

    def __init__(
        self,
        redis: Redis,
        keys: KeySchema,
        *,
        events_maxlen: int = 100_000,
        result_ttl_s: int = 7 * 24 * 3600,
        idempotency_ttl_s: int = 24 * 3600,
        registry: QueueRegistry | None = None,
        durable: tuple[int, int] | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys  # its queue is the default one (STREAMQ_QUEUE)
        self.registry = registry or QueueRegistry(redis, keys)
        self._options = {
            "events_maxlen": events_maxlen,
            "result_ttl_s": result_ttl_s,
            "idempotency_ttl_s": idempotency_ttl_s,
        }
        self._queues: dict[tuple[str, int], Queue] = {}
        self.durable = durable  # (replicas, timeout ms): STREAMQ_DURABLE_SUBMIT
        self.memory_guard: MemoryGuard | None = None  # the api's: refuses new tasks while Redis is nearly full
        self.default = self.queue(keys.queue)

    def queue(self, name: str, partition: int = 0) -> Queue:
        """The ``Queue`` of one partition (made once, kept)."""
        found = self._queues.get((name, partition))
        if found is None:
            found = Queue(self.redis, self.keys.for_queue(name, partition), **self._options)
            self._queues[(name, partition)] = found
        return found

    def partitions(self, config: QueueConfig) -> list[Queue]:
        return [self.queue(config.name, k) for k in range(config.partitions)]

    async def config(self, name: str) -> QueueConfig:
        """The queue's config (cached ~1 s), creating the queue on first use."""
        found = (await self.registry.all()).get(name)
        return found if found is not None else await self.registry.ensure(name)

    async def configs(self, queue: str | None = None) -> list[QueueConfig]:
        """Every known queue, or just ``queue`` (NotFound-free: an unknown name has no tasks)."""
        known = await self.registry.all()
        if queue is None:
            return list(known.values())
        found = known.get(queue) or await self.registry.get(queue)
        return [found] if found is not None else []

    async def _submit_durable(self, calls: list[tuple[str, list[str], list[Any]]], ids: list[list[str]]) -> list[Any]:
        """The submit calls (made with ``ids``, one list per call), then WAIT on each connection that
        wrote (docs/scaling-out.md: Durable submission); :class:`NotDurable` (the api's 503) when fewer replicas than
        asked confirmed in time."""
        assert self.durable is not None
        replicas, timeout_ms = self.durable
        replies, acked = await self.default.scripts.call_many_then_wait(calls, replicas, timeout_ms)
        if acked < replicas and not any(isinstance(r, BaseException) for r in replies):
            written = [i for call_ids, reply in zip(ids, replies, strict=True) for i in submit_ids(call_ids, reply)]
            raise NotDurable(written, replicas, acked, timeout_ms)
        return replies

    # --- submit ----------------------------------------------------------------------------------
    async def submit(self, tasks: Sequence[TaskCreate]) -> list[Submitted]:
        """Every task in its queue's partition; one pipelined round trip for all groups."""
        return [s.submitted() for s in await self.submit_stored(tasks)]

    async def submit_stored(self, tasks: Sequence[TaskCreate], ids: Sequence[str] | None = None) -> list[Stored]:
        """As :meth:`submit`, answered with submit.lua's records (no ``TaskPublic`` per new task). ``ids``:
        the new tasks' ids, when the caller made them (to send a call again with the same ones)."""
        done = await self.submit_each(tasks, ids)
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome
        return cast(list[Stored], done)

    async def submit_each(
        self, tasks: Sequence[TaskCreate], ids: Sequence[str] | None = None
    ) -> list[Stored | BaseException]:
        """As :meth:`submit_stored`, but each task gets its own call's outcome: its record, or the error
        of the script call that carried it (one call per queue partition; when one of several calls
        fails, the tasks of the others were written and get their records). While the memory guard is
        tripped it raises :class:`streamq.shared.refusals.MemoryGuarded` before writing anything."""
        if self.memory_guard is not None:
            self.memory_guard.check()
        plan = self.place(tasks, ids, await self.configs_of(tasks))
        replies = await self.send_planned(plan)
        stored = [
            self.queue(name, part).stored(plan.members(tasks, k), plan.call_ids[k], reply)
            for k, ((name, part), reply) in enumerate(zip(plan.groups, replies, strict=True))
            if not isinstance(reply, BaseException)
        ]
        return plan.outcomes(len(tasks), replies, await asyncio.gather(*stored))

    async def configs_of(self, tasks: Sequence[TaskCreate]) -> dict[str, QueueConfig]:
        """The config of each queue ``tasks`` name (the default queue for None), read in order of first use."""
        configs: dict[str, QueueConfig] = {}
        for task in tasks:
            name = task.queue or self.keys.queue
            if name not in configs:
                configs[name] = await self.config(name)
        return configs

    def place(self, tasks: Sequence[TaskCreate], ids: Sequence[str] | None, configs: dict[str, QueueConfig]) -> Plan:
        """Each task's partition (with its new id, and ``configs`` from :meth:`configs_of`) and the
        submit.lua call of each (queue, partition): no I/O, so the blocking client's caller thread
        (streamq/direct.py) places and builds exactly as the api does. ``ids``: None, and they are made
        here; or made by the caller before the call's first attempt, so that a call sent again goes with
        them: then the calls are guarded (submit.lua answers an id already stored with its task)."""
        guarded = ids is not None
        if ids is None:
            ids = new_task_ids(len(tasks), int(time.time() * 1000))
        groups: dict[tuple[str, int], list[int]] = {}
        for i, task in enumerate(tasks):
            config = configs[task.queue or self.keys.queue]
            limited = task.type if task.type in config.limited_types else None
            part = partition_of(placement_key(task.group, own_key(task), ids[i], limited), config.partitions)
            groups.setdefault((config.name, part), []).append(i)
        calls: list[tuple[str, list[str], list[Any]]] = []
        call_ids = [[ids[i] for i in members] for members in groups.values()]
        for ((name, part), members), members_ids in zip(groups.items(), call_ids, strict=True):
            keys, args = self.queue(name, part).submit_call([tasks[i] for i in members], members_ids, guarded=guarded)
            calls.append(("submit", keys, args))
        return Plan(list(groups), list(groups.values()), call_ids, calls)

    async def send_planned(self, plan: Plan) -> list[Any]:
        """The plan's script calls: each one's reply or error (durable: then WAIT, see :meth:`_submit_durable`)."""
        if self.durable is not None:
            return await self._submit_durable(plan.calls, plan.call_ids)
        if len(plan.calls) == 1:  # the common case: one queue of one partition
            return [await self.default.scripts.call(*plan.calls[0])]
        return await self.default.scripts.call_many(plan.calls)

    # --- by id -----------------------------------------------------------------------------------
    async def candidates(self, queue: str | None = None) -> list[Queue]:
        """The partitions a task of ``queue`` (of any queue when None) may be in."""
        return [q for config in await self.configs(queue) for q in self.partitions(config)]

    async def locate(self, task_id: str, queue: str | None = None) -> Queue:
        """The partition holding ``task_id``: one pipelined EXISTS over every candidate partition."""
        found = await self.holder(await self.candidates(queue), lambda keys: keys.task(task_id))
        if found is None:
            raise NotFound(task_id)
        return found

    async def holder(self, candidates: Sequence[Queue], key: Callable[[KeySchema], str]) -> Queue | None:
        """The first of ``candidates`` where ``key(its keys)`` exists: one pipelined EXISTS (None when none)."""
        if not candidates:
            return None
        pipe = self.redis.pipeline(transaction=False)
        for q in candidates:
            pipe.exists(key(q.keys))
        for q, exists in zip(candidates, await pipe.execute(), strict=True):
            if exists:
                return q
        return None

    async def get(self, task_id: str, queue: str | None = None) -> TaskPublic:
        return (await self.find(task_id, await self.candidates(queue)))[1]

    async def find(self, task_id: str, candidates: Sequence[Queue]) -> tuple[Queue, TaskPublic]:
        """The partition holding ``task_id`` among ``candidates`` and the task as stored there, in one
        round trip (one HGETALL, pipelined over the candidates when there are several)."""
        if len(candidates) == 1:
            return candidates[0], await candidates[0].get(task_id)
        pipe = self.redis.pipeline(transaction=False)
        for q in candidates:
            pipe.hgetall(q.keys.task(task_id))
        return self.found(task_id, candidates, await pipe.execute())

    @staticmethod
    def found(task_id: str, candidates: Sequence[Queue], raws: Sequence[dict[str, str]]) -> tuple[Queue, TaskPublic]:
        """:meth:`find`'s answer from each candidate's HGETALL of the task's hash (no I/O: also the blocking
        client's, streamq/direct.py): the first partition holding it; :class:`NotFound` when none does."""
        for q, raw in zip(candidates, raws, strict=True):
            if raw:
                return q, decode_task(raw, task_id, q.keys.queue)
        raise NotFound(task_id)

    async def cancel(self, task_id: str, queue: str | None = None) -> TaskPublic:
        return await (await self.locate(task_id, queue)).cancel(task_id)

    async def revive(self, task_id: str, queue: str | None = None) -> TaskPublic:
        return await (await self.locate(task_id, queue)).revive(task_id)

    async def delete(self, task_id: str, queue: str | None = None) -> None:
        await (await self.locate(task_id, queue)).delete(task_id)

    async def reschedule(self, task_id: str, due_ms: int, queue: str | None = None) -> TaskPublic:
        return await reschedule(await self.locate(task_id, queue), task_id, due_ms)

    async def revive_failed(self, batch: int = 500, queue: str | None = None) -> int:
        """Every failed task of every partition (of ``queue``, or of all queues) back to pending."""
        total = 0
        for config in await self.configs(queue):
            for q in self.partitions(config):
                total += await revive_failed(q, batch)
        return total

    # --- lists and counts ------------------------------------------------------------------------
    async def list_tasks(
        self,
        *,
        queue: str | None = None,
        status: TaskStatus | None = None,
        task_type: str | None = None,
        priority: int | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[TaskPublic], str | None]:
        """Newest first across partitions: each partition's page, merged by id. A partition whose page
        stopped early (its scan budget) bounds what is certain: only ids above its cursor are returned,
        and the next cursor continues from there."""
        parts = [q for config in await self.configs(queue) for q in self.partitions(config)]
        if len(parts) == 1:
            return await parts[0].list_tasks(
                status=status, task_type=task_type, priority=priority, limit=limit, cursor=cursor
            )
        pages = await asyncio.gather(
            *(
                q.list_tasks(status=status, task_type=task_type, priority=priority, limit=limit, cursor=cursor)
                for q in parts
            )
        )
        floor = max((c for _, c in pages if c is not None), default=None)
        merged = sorted((t for tasks, _ in pages for t in tasks), key=lambda t: t.id, reverse=True)
        certain = [t for t in merged if floor is None or t.id >= floor]
        taken = certain[:limit]
        if len(taken) == limit:
            return taken, taken[-1].id
        return taken, floor

    async def stats(self, queue: str | None = None) -> Stats:
        """Counts summed over every partition of ``queue`` (or of every queue)."""
        configs = await self.configs(queue)
        parts = [q for config in configs for q in self.partitions(config)]
        each = await asyncio.gather(*(q.stats() for q in parts))
        names = [c.name for c in configs]
        return self.sum_stats(queue or (names[0] if len(names) == 1 else "*"), names, list(each))

    @staticmethod
    def sum_stats(name: str, names: list[str], each: list[Stats]) -> Stats:
        fields = ("total", *(s.value for s in STATUS_ORDER), *COUNTERS, "dead_letter")
        sums = {f: sum(int(getattr(s, f)) for s in each) for f in fields}
        return Stats(queue=name, queues=names, **sums)

    async def figures(self, queue: str | None = None) -> list[QueueFigures]:
        """Per queue: config, summed counts and waiting depth per priority (one round trip per kind)."""
        configs = await self.configs(queue)
        out = []
        for config in configs:
            parts = self.partitions(config)
            each, depth = await asyncio.gather(asyncio.gather(*(q.stats() for q in parts)), self.depth(parts))
            out.append(QueueFigures(config, self.sum_stats(config.name, [config.name], list(each)), depth))
        return out

    async def depth(self, parts: list[Queue]) -> dict[int, int]:
        """Tasks waiting per priority: stream length less entries delivered and not acknowledged."""
        pipe = self.redis.pipeline(transaction=False)
        for q in parts:
            for p in PRIORITIES:
                pipe.xlen(q.keys.stream(p))
                pipe.xpending(q.keys.stream(p), WORKER_GROUP)
        reply = await pipe.execute(raise_on_error=False)
        depth = dict.fromkeys(sorted(PRIORITIES), 0)
        i = 0
        for _q in parts:
            for p in PRIORITIES:
                length, pending = reply[i], reply[i + 1]
                i += 2
                delivered = pending["pending"] if isinstance(pending, dict) else 0  # NOGROUP: no worker yet
                depth[p] += max(0, int(length) - int(delivered)) if isinstance(length, int) else 0
        return depth

    # --- shared by every queue -------------------------------------------------------------------
    async def workers(self) -> list[WorkerInfo]:
        return await self.default.workers()

    async def advertised_types(self) -> set[str]:
        return await self.default.advertised_types()
