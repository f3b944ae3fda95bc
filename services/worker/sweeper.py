"""Stream housekeeping: removing consumers of dead workers and trimming below the oldest pending entry.

A consumer is removed only when its worker's registration has expired and it has no pending
entry on any priority stream of a partition (checked and removed in one script per partition,
drop_consumer.lua): XGROUP
DELCONSUMER would otherwise discard its pending entries. Streams are trimmed only below the
oldest pending or unread entry (streamq.shared.streams.trim_below_pending), so no task is trimmed away.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from redis.asyncio import Redis

from streamq.services.worker.intake import staging_consumer, staging_owner
from streamq.shared.keys import WORKER_GROUP, KeySchema
from streamq.shared.loops import PeriodicLoop
from streamq.shared.scripts import Scripts
from streamq.shared.streams import trim_below_pending

log = logging.getLogger("streamq.worker")


class Sweeper(PeriodicLoop):
    name = "sweeper"

    def __init__(
        self,
        redis: Redis,
        scripts: Scripts,
        keys: KeySchema,
        *,
        me: str,
        lease_s: float,
        events_maxlen: int,
        partitions: Callable[[], list[KeySchema]] | None = None,
    ) -> None:
        super().__init__(max(lease_s, 1.0))
        self.redis = redis
        self.scripts = scripts
        self.keys = keys
        self.me = me
        self.min_idle_ms = int(lease_s * 1000)
        self.events_maxlen = events_maxlen
        self.partitions = partitions or (lambda: [keys])  # the partitions the worker consumes
        self.removed = 0

    async def tick(self) -> None:
        for part in self.partitions():
            await self.remove_dead_consumers(part)
            for stream in part.streams():
                await trim_below_pending(self.redis, stream)

    async def remove_dead_consumers(self, part: KeySchema | None = None) -> None:
        part = part or self.keys
        candidates: set[str] = set()
        mine = (self.me, staging_consumer(self.me))
        for stream in part.streams():
            for c in await self.redis.xinfo_consumers(stream, WORKER_GROUP):
                if c["name"] not in mine and int(c["pending"]) == 0 and int(c["idle"]) > self.min_idle_ms:
                    candidates.add(str(c["name"]))
        if not candidates:
            return
        names = sorted(candidates)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:  # a staging consumer (intake.py) lives as long as its worker
            pipe.exists(self.keys.worker(staging_owner(name) or name))
        for name, alive in zip(names, await pipe.execute(), strict=True):
            if alive:
                continue
            args = [self.events_maxlen, WORKER_GROUP, name]
            if int(await self.scripts.call("drop_consumer", part.common(), args)):
                self.removed += 1
                log.info("removed the consumer of a dead worker", extra={"consumer": name})
