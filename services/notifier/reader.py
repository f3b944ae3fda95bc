"""The notifier's read loop on the events stream (its consumer group, new entries with ``>``),
and the recovery of its own unacknowledged entries at start (read from id ``0``)."""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from streamq.services.notifier.events import EventHandler
from streamq.shared.keys import NOTIFIER_GROUP, KeySchema
from streamq.shared.loops import PeriodicLoop
from streamq.shared.streams import ensure_group

log = logging.getLogger("streamq.notifier")


PACE_S = 0.05  # after a read that was not a full batch, the next waits this long (see EventReader)


class EventReader(PeriodicLoop):
    """Blocks on the events stream for new entries (``>``); each tick handles one batch. After a read
    that brought fewer than a batch, the next read waits ``pace_s``: the events of that time are then
    read, their tasks looked up and acknowledged in one round trip each, instead of a wake-up and three
    round trips per event (three events a task: 2,000 tasks at 200/s cost the notifier 2.3 s of CPU read
    one by one). A webhook's first attempt is due at once but found by the deliverer's poll
    (``STREAMQ_WEBHOOK_POLL_S``, 0.25 s), so the pause adds at most ``pace_s`` to it; an idle stream is
    still waited on by the blocking read, and a full batch is followed at once."""

    name = "notifier-events"

    def __init__(
        self, redis: Redis, keys: KeySchema, handler: EventHandler, *, consumer: str, pace_s: float = PACE_S
    ) -> None:
        super().__init__(0.0)
        self.redis = redis
        self.keys = keys
        self.handler = handler
        self.consumer = consumer
        self.block_ms = 1000
        self.batch = 200
        self.pace_s = pace_s

    async def missed(self) -> int | None:
        """Events trimmed from the capped stream before this group read them (the notifier was
        down for about STREAMQ_EVENTS_MAXLEN events): entries added - entries read - lag. None
        when Redis cannot tell."""
        stream = await self.redis.xinfo_stream(self.keys.events)
        group = next(g for g in await self.redis.xinfo_groups(self.keys.events) if g["name"] == NOTIFIER_GROUP)
        read, lag = group.get("entries-read"), group.get("lag")
        if read is None and group.get("last-delivered-id") == "0-0":
            read = 0
        if read is None or lag is None:
            return None
        missed = max(0, int(stream["entries-added"]) - int(read) - int(lag))
        if missed:
            log.warning(
                "events were trimmed before the notifier read them; their webhooks were not sent",
                extra={"missed": missed},
            )
        return missed

    async def recover_own(self) -> int:
        """Handle what this consumer read before a crash and never acknowledged (read from id 0)."""
        handled = 0
        while True:
            reply = await self.redis.xreadgroup(
                NOTIFIER_GROUP, self.consumer, {self.keys.events: "0"}, count=self.batch
            )
            entries = [e for _stream, items in reply or [] for e in items]
            if not entries:
                return handled
            await self.handler.handle(entries)
            handled += len(entries)

    async def tick(self) -> None:
        started = time.monotonic()
        try:
            reply = await self.redis.xreadgroup(
                NOTIFIER_GROUP, self.consumer, {self.keys.events: ">"}, count=self.batch, block=self.block_ms
            )
        except ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            log.warning("events stream or group missing (Redis flushed?); creating it again")
            await ensure_group(self.redis, [self.keys.events], NOTIFIER_GROUP)
            return
        except (RedisError, OSError) as error:
            log.warning("redis unavailable; retrying", extra={"error": str(error)})
            await asyncio.sleep(0.5)
            return
        entries = [e for _stream, items in reply or [] for e in items]
        self.interval_s = self.pace_s if 0 < len(entries) < self.batch else 0.0
        if entries:
            created = await self.handler.handle(entries)
            log.debug(
                "events handled",
                extra={"events": len(entries), "deliveries": created, "ms": (time.monotonic() - started) * 1000},
            )
