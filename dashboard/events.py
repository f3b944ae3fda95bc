"""Live updates: one reader of the events stream fans each batch out to every SSE subscriber."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.keys import KeySchema
from shared.loops import PeriodicLoop

log = logging.getLogger("streamq.dashboard.events")
BLOCK_MS = 1000
BATCH = 500
QUEUE_SIZE = 256  # batches a slow subscriber may fall behind before it is told to resync


class Broadcaster(PeriodicLoop):
    """``XREAD BLOCK`` on the events stream from where it stood at start; each batch of events goes to
    every subscriber's queue. A subscriber that falls behind gets a ``resync`` (reload what it shows)."""

    name = "events-broadcaster"

    def __init__(self, redis: Redis, keys: KeySchema) -> None:
        super().__init__(0)
        self.redis = redis
        self.keys = keys
        self.last_id: str | None = None
        self.subscribers: set[asyncio.Queue[list[dict[str, Any]] | None]] = set()
        self.owners: dict[str, set[asyncio.Queue[list[dict[str, Any]] | None]]] = {}  # login session -> streams

    def subscribe(self, owner: str | None = None) -> asyncio.Queue[list[dict[str, Any]] | None]:
        queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue(QUEUE_SIZE)
        self.subscribers.add(queue)
        if owner is not None:
            self.owners.setdefault(owner, set()).add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[list[dict[str, Any]] | None], owner: str | None = None) -> None:
        self.subscribers.discard(queue)
        if owner is not None and owner in self.owners:
            self.owners[owner].discard(queue)
            if not self.owners[owner]:
                del self.owners[owner]

    def end_owner(self, owner: str) -> None:
        """End every stream of one login session (at logout)."""
        for queue in self.owners.pop(owner, set()):
            _end(queue)

    async def tick(self) -> None:
        if self.last_id is None:
            newest = await self.redis.xrevrange(self.keys.events, count=1)
            self.last_id = newest[0][0] if newest else "0-0"
        try:
            reply = await self.redis.xread({self.keys.events: self.last_id}, count=BATCH, block=BLOCK_MS)
        except (RedisError, OSError) as error:
            log.warning("cannot read the events stream; trying again", extra={"error": str(error)})
            await asyncio.sleep(1)
            return
        if not reply:
            return
        entries = reply[0][1]
        self.last_id = entries[-1][0]
        batch = [{"id": entry_id, **fields} for entry_id, fields in entries]
        self.publish(batch)

    def publish(self, batch: list[dict[str, Any]]) -> None:
        for queue in list(self.subscribers):
            try:
                queue.put_nowait(batch)
            except asyncio.QueueFull:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait([{"event": "resync"}])

    async def stop(self) -> None:
        await super().stop()
        for queue in list(self.subscribers):
            _end(queue)  # ends every open stream


def _end(queue: asyncio.Queue[list[dict[str, Any]] | None]) -> None:
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(None)
