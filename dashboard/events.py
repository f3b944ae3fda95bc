"""Live updates: one reader per events stream (every partition of every known queue) fans each batch
out to every SSE subscriber. Each reader is a plain ``XREAD BLOCK`` naming one partition's stream
(one hash slot, as Redis Cluster requires) and no consumer group, so stopping it mid-read loses
nothing. New queues and partitions get a reader within the registry's cache period."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from streamq.shared.keys import KeySchema
from streamq.shared.loops import PeriodicLoop, stop_all
from streamq.shared.queues import QueueRegistry
from streamq.shared.redisfast import HeldConnection

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


Publish = Callable[[list[dict[str, Any]]], Sequence[str] | None]
Deliver = Callable[[str, dict[str, str] | None], None]


class PartitionFeed(PeriodicLoop):
    """``XREAD BLOCK`` on one partition's events stream from where it stood at start, read again as soon
    as a batch is published (no pause between reads).

    ``publish`` may answer with task ids whose hashes its caller wants read (the long-poll waiters: the
    tasks that just ended); ``deliver(task_id, hash)`` then gets each. On a connection the feed holds
    (standalone and Sentinel, see :class:`streamq.shared.redisfast.HeldConnection`) the ``HGETALL`` s
    go in the same write as the next ``XREAD BLOCK`` and are delivered as soon as their replies arrive:
    one write per batch, and a woken waiter needs no round trip of its own. Elsewhere (Cluster, plain
    redis-py) ``deliver`` gets ``None`` at once and the caller reads the task itself."""

    def __init__(self, redis: Redis, keys: KeySchema, publish: Publish, deliver: Deliver | None = None) -> None:
        super().__init__(0)
        self.name = f"events-{keys.tag}"
        self.redis = redis
        self.keys = keys
        self.publish = publish
        self.deliver = deliver
        self.last_id: str | None = None
        self._held = HeldConnection(redis) if HeldConnection.usable(redis) else None
        self._reading: list[str] = []  # task ids whose hashes go with the next read

    async def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    await self.tick()
                except Exception:
                    log.exception("background loop failed; will try again", extra={"loop": self.name})
                    await asyncio.sleep(1)
        finally:
            if self._held is not None:
                await self._held.release()

    async def tick(self) -> None:
        try:
            if self.last_id is None:
                newest = await self.redis.xrevrange(self.keys.events, count=1)
                self.last_id = newest[0][0] if newest else "0-0"
            entries = await (self._held_read() if self._held is not None else self._read())
        except (RedisError, OSError) as error:
            log.warning("cannot read the events stream; trying again", extra={"error": str(error)})
            self._undelivered()
            await asyncio.sleep(1)
            return
        if not entries:
            return
        self.last_id = entries[-1][0]
        queue = self.keys.queue
        ended = self.publish([{"id": entry_id, "queue": queue, **fields} for entry_id, fields in entries])
        if ended and self.deliver is not None:
            if self._held is not None:
                self._reading = list(ended)
            else:
                for task_id in ended:
                    self.deliver(task_id, None)

    async def _read(self) -> list[tuple[str, dict[str, str]]]:
        reply = await self.redis.xread({self.keys.events: self.last_id}, count=BATCH, block=BLOCK_MS)
        return list(reply[0][1]) if reply else []

    async def _held_read(self) -> list[tuple[str, dict[str, str]]]:
        """The hashes asked for by the last publish (delivered as they arrive), then the next batch."""
        assert self._held is not None and self.last_id is not None
        reading, self._reading = self._reading, []
        commands: list[tuple[Any, ...]] = [("HGETALL", self.keys.task(task_id)) for task_id in reading]
        commands.append(("XREAD", "COUNT", BATCH, "BLOCK", BLOCK_MS, "STREAMS", self.keys.events, self.last_id))
        delivering = iter(reading)

        def each(reply: Any) -> None:
            task_id = next(delivering, None)
            if task_id is not None and self.deliver is not None:
                self.deliver(task_id, _as_hash(reply))

        try:
            replies = await self._held.exchange(*commands, each=each)
        except BaseException:
            self._undelivered(list(delivering))
            raise
        return _entries(replies[-1])

    def _undelivered(self, task_ids: Sequence[str] | None = None) -> None:
        """Tasks whose hashes were to be read but were not: their callers read them themselves."""
        pending = self._reading if task_ids is None else task_ids
        self._reading = []
        if self.deliver is not None:
            for task_id in pending:
                self.deliver(task_id, None)


def _as_hash(reply: Any) -> dict[str, str] | None:
    """An ``HGETALL`` reply as a dict (RESP2 gives a flat list, RESP3 a map); None for an error."""
    if isinstance(reply, dict):
        return reply
    if isinstance(reply, list):
        return dict(zip(reply[::2], reply[1::2], strict=True))
    return None


def _entries(reply: Any) -> list[tuple[str, dict[str, str]]]:
    """One stream's ``XREAD`` reply as (id, fields) pairs (RESP2: ``[[stream, entries]]``, RESP3: a map)."""
    if not reply or isinstance(reply, BaseException):
        if isinstance(reply, BaseException):
            raise reply
        return []
    [entries] = reply.values() if isinstance(reply, dict) else [reply[0][1]]
    return [(entry_id, _as_hash(fields) or {}) for entry_id, fields in entries]


def _end(queue: asyncio.Queue[list[dict[str, Any]] | None]) -> None:
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(None)
