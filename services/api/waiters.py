"""Long-poll waiters (``GET /api/tasks/{id}?wait=S``): one reader per partition fans its events out to
every request waiting on a task of that partition, so 1,000 waiters cost the partitions' readers (one
blocked ``XREAD`` connection each, over the blocking-reads client) and nothing per request.

Each partition a waited task may be in gets its reader (dashboard/events.py's :class:`PartitionFeed`)
when its first waiter comes, positioned at the newest event before that waiter reads its task: any
later terminal event reaches it, and an earlier one is in the task the waiter reads.
Readers are stopped with the api. The client's direct transport (streamq/direct.py) waits through
this class too, in the producer's process.

A reader that holds its connection reads the ended tasks' hashes in the same write as its next
``XREAD`` and hands each waiter its task (:class:`Heard`): the answer needs no round trip of the
waiter's own. Otherwise (Cluster, plain redis-py) the woken waiter reads its task itself."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

from streamq.dashboard.events import PartitionFeed
from streamq.shared.broker import Broker
from streamq.shared.errors import NotFound
from streamq.shared.keys import KeySchema
from streamq.shared.loops import stop_all
from streamq.shared.models import TERMINAL, TaskPublic
from streamq.shared.queue import decode_task

WAKING_STATUSES = frozenset(str(s) for s in TERMINAL)
WAKING_EVENTS = frozenset({"deleted"})  # the task is gone: its waiter answers now (404)


class Heard:
    """One waiter's wake-up: set when its task ended, with the task's hash when the reader read it."""

    __slots__ = ("event", "found", "raw")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.found = False  # the reader read the hash (``raw``; empty: the task is gone)
        self.raw: dict[str, str] = {}

    async def wait(self) -> None:
        await self.event.wait()


class Waiters:
    """Who waits on which task, and the partition readers that wake them."""

    def __init__(self, readers: Redis) -> None:
        self.readers = readers  # make_client(settings, blocking_reads=True): one connection per blocked read
        self.feeds: dict[KeySchema, PartitionFeed] = {}
        self._positioned: dict[KeySchema, asyncio.Future[None]] = {}
        self.waiting: dict[str, set[Heard]] = {}

    async def task(self, broker: Broker, task_id: str, queue: str | None, wait_s: float) -> TaskPublic:
        """The task once it ended, or after ``wait_s`` seconds as it stands then.

        The waiter is registered and every partition the task may be in has its reader positioned
        before the task is read, so an end written after that read wakes it; the read finds the task's
        partition too (one round trip, not a lookup and then a read)."""
        candidates = await broker.candidates(queue)
        async with self.watch(task_id, *(q.keys for q in candidates)) as heard:
            partition, task = await broker.find(task_id, candidates)
            if task.status in TERMINAL:
                return task
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(heard.wait(), wait_s)
            if heard.found:  # the reader read it after the end it woke us for
                if not heard.raw:
                    raise NotFound(task_id)
                return decode_task(heard.raw, task_id, partition.keys.queue)
            return await partition.get(task_id)

    @contextlib.asynccontextmanager
    async def watch(self, task_id: str, *partitions: KeySchema) -> AsyncIterator[Heard]:
        """A :class:`Heard` set when ``task_id`` ends (or is deleted), from readers of ``partitions``
        positioned before this returns: read the task after entering, then wait on it."""
        heard = Heard()
        self.waiting.setdefault(task_id, set()).add(heard)
        try:
            for partition in partitions:
                await self._follow(partition)
            yield heard
        finally:
            others = self.waiting.get(task_id)
            if others is not None:
                others.discard(heard)
                if not others:
                    del self.waiting[task_id]

    async def _follow(self, partition: KeySchema) -> None:
        ready = self._positioned.get(partition)
        if ready is None or (ready.done() and ready.exception() is not None):
            ready = self._positioned[partition] = asyncio.ensure_future(self._start(partition))
        await asyncio.shield(ready)

    async def _start(self, partition: KeySchema) -> None:
        newest = await self.readers.xrevrange(partition.events, count=1)
        feed = PartitionFeed(self.readers, partition, self.publish, self.deliver)
        feed.last_id = newest[0][0] if newest else "0-0"
        feed.start()
        self.feeds[partition] = feed

    def publish(self, batch: list[dict[str, Any]]) -> list[str]:
        """The tasks of ``batch`` that ended or were deleted and have waiters: the reader reads their
        hashes and :meth:`deliver` s them."""
        waiting = self.waiting
        if not waiting:
            return []
        ended = [
            task_id
            for event in batch
            if (event.get("status") in WAKING_STATUSES or event.get("event") in WAKING_EVENTS)
            and (task_id := event.get("task", "")) in waiting
        ]
        return list(dict.fromkeys(ended))  # once each (an end and a delete may come in one batch)

    def deliver(self, task_id: str, raw: dict[str, str] | None) -> None:
        """Wake the waiters of ``task_id``, with its hash as read after its end (None: not read, each
        waiter reads it)."""
        for heard in self.waiting.get(task_id, ()):
            if raw is not None:
                heard.found, heard.raw = True, raw
            heard.event.set()

    async def stop(self) -> None:
        await stop_all(list(self.feeds.values()))
        self.feeds.clear()
