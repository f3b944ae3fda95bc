"""Taking over events another notifier read and never acknowledged (it died): XAUTOCLAIM with the
full cursor loop. Entries trimmed from the capped stream while pending come back as deleted ids
(Redis >= 7 removes them from the pending list); they are counted and logged, their payload is gone."""

from __future__ import annotations

import logging

from redis.asyncio import Redis

from services.notifier.events import EventHandler
from shared.keys import NOTIFIER_GROUP, KeySchema
from shared.loops import PeriodicLoop

log = logging.getLogger("streamq.notifier")


class Reclaimer(PeriodicLoop):
    name = "notifier-reclaim"

    def __init__(
        self, redis: Redis, keys: KeySchema, handler: EventHandler, *, consumer: str, min_idle_s: float
    ) -> None:
        super().__init__(max(min_idle_s / 2, 0.1))
        self.redis = redis
        self.keys = keys
        self.handler = handler
        self.consumer = consumer
        self.min_idle_ms = int(min_idle_s * 1000)
        self.deleted = 0

    async def tick(self) -> None:
        await self.sweep()

    async def sweep(self) -> int:
        """One full pass over the pending list; returns how many entries were taken over."""
        cursor = "0-0"
        taken = 0
        while True:
            reply = await self.redis.xautoclaim(
                self.keys.events, NOTIFIER_GROUP, self.consumer, self.min_idle_ms, start_id=cursor, count=100
            )
            cursor, entries = reply[0], reply[1]
            deleted = reply[2] if len(reply) > 2 else []
            if deleted:
                self.deleted += len(deleted)
                log.warning(
                    "pending events were trimmed before they were handled",
                    extra={"entries": list(deleted)[:20], "count": len(deleted)},
                )
            if entries:
                taken += len(entries)
                await self.handler.handle(entries)
            if cursor in ("0-0", b"0-0"):
                return taken
