"""Worker registration: a hash with a TTL, refreshed every heartbeat, and the advertised types."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

from redis.asyncio import Redis

from streamq.shared.keys import KeySchema
from streamq.shared.loops import PeriodicLoop
from streamq.shared.registry import unregister

log = logging.getLogger("streamq.worker")


class Heartbeat(PeriodicLoop):
    name = "heartbeat"

    def __init__(
        self,
        redis: Redis,
        keys: KeySchema,
        *,
        worker_id: str,
        concurrency: int,
        handlers: list[str],
        interval_s: float,
        counters: Callable[[], tuple[int, int]],
        queues: list[str] | None = None,
        on_peers: Callable[[frozenset[str]], None] | None = None,
    ) -> None:
        super().__init__(interval_s)
        self.redis = redis
        self.keys = keys
        self.worker_id = worker_id
        self.counters = counters  # () -> (in_flight, processed)
        self.ttl_s = max(3, int(interval_s * 3))
        self.static = {
            "id": worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "concurrency": concurrency,
            "handlers": ",".join(handlers),
            "queue": (queues or [keys.queue])[0],
            "queues": ",".join(queues or [keys.queue]),
            "started_at": int(time.time() * 1000),
        }
        self.handlers = handlers
        self.on_peers = on_peers  # told the task types live workers advertise, every beat

    async def register(self) -> None:
        pipe = self.redis.pipeline(transaction=False)
        if self.handlers:
            pipe.sadd(self.keys.types, *self.handlers)
        pipe.hset(self.keys.worker(self.worker_id), mapping=self.static)
        await pipe.execute()
        await self.tick()

    async def tick(self) -> None:
        in_flight, processed = self.counters()
        now = int(time.time() * 1000)
        key = self.keys.worker(self.worker_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, mapping={"in_flight": in_flight, "processed": processed, "last_heartbeat": now})
        pipe.hset(key, mapping=self.static)  # survives a Redis restart
        pipe.expire(key, self.ttl_s)
        pipe.zadd(self.keys.workers, {self.worker_id: now})
        pipe.zremrangebyscore(self.keys.workers, "-inf", now - self.ttl_s * 1000)
        if self.on_peers is not None:
            pipe.zrange(self.keys.workers, 0, -1)
        replies = await pipe.execute()
        if self.on_peers is not None:
            self.on_peers(await self.live_types(replies[-1]))

    async def live_types(self, worker_ids: list[str]) -> frozenset[str]:
        """The task types the live workers ``worker_ids`` advertise (one pipelined read)."""
        pipe = self.redis.pipeline(transaction=False)
        for worker_id in worker_ids:
            pipe.hget(self.keys.worker(worker_id), "handlers")
        return frozenset(t for handlers in await pipe.execute() if handlers for t in handlers.split(",") if t)

    async def unregister(self) -> None:
        """At shutdown, bounded like the service registration's (Redis gone: the worker's key expires
        and the next heartbeat elsewhere drops it from the index)."""
        if not await unregister(self.redis, self.keys.worker(self.worker_id), self.keys.workers, self.worker_id):
            log.warning("could not unregister; the heartbeat expires by itself", extra={"worker": self.worker_id})
