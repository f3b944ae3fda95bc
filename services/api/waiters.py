"""Long-poll waiters (``GET /api/tasks/{id}?wait=S``): one reader per partition fans its events out to
every request waiting on a task of that partition, so 1,000 waiters cost the partitions' readers (one
blocked ``XREAD`` connection each, over the blocking-reads client) and nothing per request.

Each partition a waited task may be in gets its reader (dashboard/events.py's :class:`PartitionFeed`)
when its first waiter comes, positioned at the newest event before that waiter reads its task: any
later terminal event reaches it, and an earlier one is in the task the waiter reads.
Readers are stopped with the api. The client's direct transport (streamq/direct.py) waits through
this class too, in the producer's process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

from streamq.dashboard.events import PartitionFeed
from streamq.shared.broker import Broker
from streamq.shared.keys import KeySchema
from streamq.shared.loops import stop_all
from streamq.shared.models import TERMINAL, TaskPublic

WAKING_STATUSES = frozenset(str(s) for s in TERMINAL)
WAKING_EVENTS = frozenset({"deleted"})  # the task is gone: its waiter answers now (404)


class Waiters:
    """Who waits on which task, and the partition readers that wake them."""

    def __init__(self, readers: Redis) -> None:
        self.readers = readers  # make_client(settings, blocking_reads=True): one connection per blocked read
        self.feeds: dict[KeySchema, PartitionFeed] = {}
        self._positioned: dict[KeySchema, asyncio.Future[None]] = {}
        self.waiting: dict[str, set[asyncio.Event]] = {}

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
            return await partition.get(task_id)

    @contextlib.asynccontextmanager
    async def watch(self, task_id: str, *partitions: KeySchema) -> AsyncIterator[asyncio.Event]:
        """An event set when ``task_id`` ends (or is deleted), from readers of ``partitions`` positioned
        before this returns: read the task after entering, then wait on the event."""
        heard = asyncio.Event()
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
        feed = PartitionFeed(self.readers, partition, self.publish)
        feed.last_id = newest[0][0] if newest else "0-0"
        feed.start()
        self.feeds[partition] = feed

    def publish(self, batch: list[dict[str, Any]]) -> None:
        """Wake the waiters of every task in ``batch`` that ended or was deleted."""
        if not self.waiting:
            return
        for event in batch:
            if event.get("status") in WAKING_STATUSES or event.get("event") in WAKING_EVENTS:
                for heard in self.waiting.get(event.get("task", ""), ()):
                    heard.set()

    async def stop(self) -> None:
        await stop_all(list(self.feeds.values()))
        self.feeds.clear()
