"""Live updates: one reader per events stream (every partition of every known queue) fans each batch
out to every SSE subscriber. Each reader is a plain ``XREAD BLOCK`` naming one partition's stream
(one hash slot, as Redis Cluster requires) and no consumer group, so stopping it mid-read loses
nothing. New queues and partitions get a reader within the registry's cache period."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from streamq.shared.keys import KeySchema
from streamq.shared.loops import PeriodicLoop, stop_all
from streamq.shared.queues import QueueRegistry

log = logging.getLogger("streamq.dashboard.events")
BLOCK_MS = 1000
BATCH = 500
QUEUE_SIZE = 256  # batches a slow subscriber may fall behind before it is told to resync


class Broadcaster(PeriodicLoop):
    """Keeps one :class:`PartitionFeed` per partition of every known queue; each batch of events goes
    to every subscriber's queue. A subscriber that falls behind gets a ``resync`` (reload what it shows)."""

    name = "events-broadcaster"

    def __init__(self, redis: Redis, keys: KeySchema, registry: QueueRegistry | None = None) -> None:
        super().__init__(1.0)
        self.redis = redis
        self.keys = keys
        self.registry = registry or QueueRegistry(redis, keys)
        self.interval_s = self.registry.cache_s
        self.feeds: dict[KeySchema, PartitionFeed] = {}
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
        try:
            parts = await self.registry.all_partitions(self.keys.queue)
        except (RedisError, OSError) as error:
            log.warning("cannot read the queue registry; trying again", extra={"error": str(error)})
            return
        for part in parts:
            if part not in self.feeds:
                feed = PartitionFeed(self.redis, part, self.publish)
                feed.start()
                self.feeds[part] = feed

    def publish(self, batch: list[dict[str, Any]]) -> None:
        for queue in list(self.subscribers):
            try:
                queue.put_nowait(batch)
            except asyncio.QueueFull:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait([{"event": "resync"}])

    async def stop(self) -> None:
        """Stop every feed at once (each bounded by ``STOP_WITHIN_S``), then end every open stream."""
        await super().stop()
        await stop_all(list(self.feeds.values()))
        for queue in list(self.subscribers):
            _end(queue)  # ends every open stream


class PartitionFeed(PeriodicLoop):
    """``XREAD BLOCK`` on one partition's events stream from where it stood at start."""

    def __init__(self, redis: Redis, keys: KeySchema, publish: Callable[[list[dict[str, Any]]], None]) -> None:
        super().__init__(0)
        self.name = f"events-{keys.tag}"
        self.redis = redis
        self.keys = keys
        self.publish = publish
        self.last_id: str | None = None

    async def tick(self) -> None:
        try:
            if self.last_id is None:
                newest = await self.redis.xrevrange(self.keys.events, count=1)
                self.last_id = newest[0][0] if newest else "0-0"
            reply = await self.redis.xread({self.keys.events: self.last_id}, count=BATCH, block=BLOCK_MS)
        except (RedisError, OSError) as error:
            log.warning("cannot read the events stream; trying again", extra={"error": str(error)})
            await asyncio.sleep(1)
            return
        if not reply:
            return
        entries = reply[0][1]
        self.last_id = entries[-1][0]
        self.publish([{"id": entry_id, "queue": self.keys.queue, **fields} for entry_id, fields in entries])


def _end(queue: asyncio.Queue[list[dict[str, Any]] | None]) -> None:
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(None)
