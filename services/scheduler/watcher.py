"""Waking the promoter when a task is scheduled: a blocking read of the events stream.

Redis releases a blocked read on its own timer (every 100 ms at the default ``hz``), too coarse
for due times, so this loop only reports new scheduled tasks; the promoter keeps the time itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from redis.asyncio import Redis

from shared.keys import KeySchema
from shared.loops import PeriodicLoop


class Watcher(PeriodicLoop):
    name = "watcher"

    def __init__(self, redis: Redis, keys: KeySchema, on_scheduled: Callable[[], None], block_ms: int = 1000) -> None:
        super().__init__(0.0)
        self.redis = redis
        self.keys = keys
        self.on_scheduled = on_scheduled
        self.block_ms = block_ms
        self.last_id: str | None = None

    async def tick(self) -> None:
        if self.last_id is None:
            newest = await self.redis.xrevrange(self.keys.events, "+", "-", count=1)
            self.last_id = newest[0][0] if newest else "0-0"
        reply = await self.redis.xread({self.keys.events: self.last_id}, count=1000, block=self.block_ms)
        wake = False
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                self.last_id = entry_id
                wake = wake or fields.get("status") == "scheduled"
        if wake:
            self.on_scheduled()

    async def stop(self) -> None:
        """Stop now: cancel the blocking read rather than wait for its timeout."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
