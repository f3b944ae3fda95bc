"""Waking the promoter when a task is scheduled (or a group held back until a time): a blocking read of
each partition's wake-up stream (``KeySchema.wakeups``), to which every script call that scheduled a
task or held a group adds one entry (lua/lib.lua ``wake_scheduler``). The lifecycle events of tasks that
run at once never wake the scheduler: on 2 cores its wake-ups competed with the worker's for the core
at the moment a task was submitted.

One :class:`Watcher` per partition of every known queue (:class:`Watchers` starts one for each new
partition within the registry's cache period): in Redis Cluster a blocking read may only name the
streams of one hash slot, and each partition is its own slot. The read is a plain XREAD (no consumer
group), so cancelling it on stop loses nothing.

Redis releases a blocked read on its own timer (every 100 ms at the default ``hz``), too coarse
for due times, so this loop only reports new scheduled tasks; the promoter keeps the time itself.
The reads go through a client of their own whose XREAD replies stay as hiredis parsed them
(:func:`streamq.shared.redisfast.raw_stream_reads`). When a read brings ``busy_at`` wake-ups or more
(a queue scheduling tasks in many calls), the next read waits ``busy_pause_s``, so the promoter is
woken once per page rather than per call; a page that comes back full (``page``) is skipped to the
newest entry.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from streamq.shared.keys import KeySchema
from streamq.shared.loops import PeriodicLoop
from streamq.shared.queues import QueueRegistry

ERROR_PAUSE_S = 0.5


def _entries(reply: Any) -> list[Any]:
    """The entries of a raw XREAD reply (RESP2 list or RESP3 map), or of redis-py's parsed one
    (``STREAMQ_REDIS_PLAIN``)."""
    if not reply:
        return []
    batches = reply.values() if isinstance(reply, dict) else (stream[1] for stream in reply)
    return [entry for batch in batches for entry in batch]


class Watcher(PeriodicLoop):
    name = "watcher"

    def __init__(
        self,
        redis: Redis,
        keys: KeySchema,
        on_scheduled: Callable[[], None],
        *,
        block_ms: int = 1000,
        page: int = 1000,
        busy_at: int = 50,
        busy_pause_s: float = 0.01,
    ) -> None:
        super().__init__(0.0)
        self.redis = redis
        self.keys = keys
        self.on_scheduled = on_scheduled
        self.block_ms = block_ms
        self.page = page
        self.busy_at = busy_at
        self.busy_pause_s = busy_pause_s
        self.last_id: str | None = None

    async def tick(self) -> None:
        self.interval_s = ERROR_PAUSE_S  # kept if the read fails (Redis down): no busy loop
        if self.last_id is None:
            self.last_id = await self._newest_id()
        reply = await self.redis.xread({self.keys.wakeups: self.last_id}, count=self.page, block=self.block_ms)
        entries = _entries(reply)
        if len(entries) >= self.page:  # more than a page since the last read: skip to the newest
            self.last_id = await self._newest_id()
            self.interval_s = self.busy_pause_s
            self.on_scheduled()
            return
        self.interval_s = self.busy_pause_s if len(entries) >= self.busy_at else 0.0
        if entries:
            self.last_id = str(entries[-1][0])
            self.on_scheduled()

    async def _newest_id(self) -> str:
        newest = await self.redis.xrevrange(self.keys.wakeups, "+", "-", count=1)
        return str(newest[0][0]) if newest else "0-0"

    async def stop(self) -> None:
        """Stop now: cancel the blocking read rather than wait for its timeout."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class Watchers(PeriodicLoop):
    """Keeps one :class:`Watcher` running per partition of every known queue (partitions only grow)."""

    name = "watchers"

    def __init__(
        self,
        registry: QueueRegistry,
        reader: Redis,
        on_scheduled: Callable[[], None],
        *,
        also: str,
        interval_s: float = 1.0,
    ) -> None:
        """``reader``: the watchers' own client, made by :func:`streamq.shared.redisfast.raw_stream_reads`."""
        super().__init__(interval_s)
        self.registry = registry
        self.reader = reader
        self.on_scheduled = on_scheduled
        self.also = also
        self.watchers: dict[KeySchema, Watcher] = {}

    async def tick(self) -> None:
        for part in await self.registry.all_partitions(self.also):
            if part not in self.watchers:
                watcher = Watcher(self.reader, part, self.on_scheduled)
                watcher.name = f"watcher-{part.tag}"
                watcher.start()
                self.watchers[part] = watcher

    async def stop(self) -> None:
        await super().stop()
        for watcher in self.watchers.values():
            await watcher.stop()
