"""Waking the promoter when a task is scheduled: a blocking read of each partition's events stream.

One :class:`Watcher` per partition of every known queue (:class:`Watchers` starts one for each new
partition within the registry's cache period): in Redis Cluster a blocking read may only name the
streams of one hash slot, and each partition is its own slot. The read is a plain XREAD (no consumer
group), so cancelling it on stop loses nothing.

Redis releases a blocked read on its own timer (every 100 ms at the default ``hz``), too coarse
for due times, so this loop only reports new scheduled tasks; the promoter keeps the time itself.
When events arrive faster than one page per read (a busy queue), it stops reading them one by one:
it skips to the newest event and wakes the promoter every ``busy_pause_s`` instead, so its cost
stays flat however many tasks run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from redis.asyncio import Redis

from shared.keys import KeySchema
from shared.loops import PeriodicLoop
from shared.queues import QueueRegistry

ERROR_PAUSE_S = 0.5


class Watcher(PeriodicLoop):
    name = "watcher"

    def __init__(
        self,
        redis: Redis,
        keys: KeySchema,
        on_scheduled: Callable[[], None],
        *,
        block_ms: int = 1000,
        page: int = 100,
        busy_pause_s: float = 0.01,
    ) -> None:
        super().__init__(0.0)
        self.redis = redis
        self.keys = keys
        self.on_scheduled = on_scheduled
        self.block_ms = block_ms
        self.page = page
        self.busy_pause_s = busy_pause_s
        self.last_id: str | None = None

    async def tick(self) -> None:
        self.interval_s = ERROR_PAUSE_S  # kept if the read fails (Redis down): no busy loop
        if self.last_id is None:
            self.last_id = await self._newest_id()
        reply = await self.redis.xread({self.keys.events: self.last_id}, count=self.page, block=self.block_ms)
        entries = [entry for _stream, batch in reply or [] for entry in batch]
        if len(entries) >= self.page:  # busy: skip ahead rather than parse every event
            self.last_id = await self._newest_id()
            self.interval_s = self.busy_pause_s
            self.on_scheduled()
            return
        self.interval_s = 0.0
        if entries:
            self.last_id = entries[-1][0]
        if any(fields.get("status") == "scheduled" for _id, fields in entries):
            self.on_scheduled()

    async def _newest_id(self) -> str:
        newest = await self.redis.xrevrange(self.keys.events, "+", "-", count=1)
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
        self, registry: QueueRegistry, on_scheduled: Callable[[], None], *, also: str, interval_s: float = 1.0
    ) -> None:
        super().__init__(interval_s)
        self.registry = registry
        self.on_scheduled = on_scheduled
        self.also = also
        self.watchers: dict[KeySchema, Watcher] = {}

    async def tick(self) -> None:
        for part in await self.registry.all_partitions(self.also):
            if part not in self.watchers:
                watcher = Watcher(self.registry.redis, part, self.on_scheduled)
                watcher.name = f"watcher-{part.tag}"
                watcher.start()
                self.watchers[part] = watcher

    async def stop(self) -> None:
        await super().stop()
        for watcher in self.watchers.values():
            await watcher.stop()
