"""The notifier's lanes: one per partition of every known queue, each with its own events stream
consumer (blocking XREADGROUP naming that partition's stream only: one hash slot per read),
event handler and deliveries (whose keys are in that partition's slot, like the task they belong
to). :class:`Lanes` opens a lane for each new partition within the registry's cache period."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from streamq.services.notifier.events import EventHandler
from streamq.services.notifier.reader import EventReader
from streamq.shared.deliveries import Deliveries
from streamq.shared.keys import NOTIFIER_GROUP, KeySchema
from streamq.shared.loops import PeriodicLoop, stop_all
from streamq.shared.queues import QueueRegistry
from streamq.shared.streams import ensure_group

log = logging.getLogger("streamq.notifier")


@dataclass(frozen=True, slots=True)
class Lane:
    keys: KeySchema
    deliveries: Deliveries
    handler: EventHandler
    reader: EventReader


class Lanes(PeriodicLoop):
    """Opens a lane per partition (group created, missed events reported, own pending events
    handled, reader started); partitions only grow, so lanes are never closed before :meth:`stop`."""

    name = "notifier-lanes"

    def __init__(
        self,
        redis: Redis,
        registry: QueueRegistry,
        make_lane: Callable[[KeySchema], Lane],
        *,
        also: str,
        interval_s: float = 1.0,
    ) -> None:
        super().__init__(interval_s)
        self.redis = redis
        self.registry = registry
        self.make_lane = make_lane
        self.also = also
        self.lanes: dict[KeySchema, Lane] = {}
        self.recovered = 0

    def current(self) -> list[Lane]:
        return list(self.lanes.values())

    @property
    def trimmed(self) -> int:
        """Pending events whose payload was trimmed before they were handled, over every lane."""
        return sum(lane.handler.trimmed for lane in self.lanes.values())

    async def tick(self) -> None:
        await self.open_new()

    async def open_new(self) -> int:
        """Open a lane for each partition not seen yet; returns how many were opened."""
        opened = 0
        for part in await self.registry.all_partitions(self.also):
            if part in self.lanes:
                continue
            await ensure_group(self.redis, [part.events], NOTIFIER_GROUP)
            lane = self.make_lane(part)
            await lane.reader.missed()
            self.recovered += await lane.reader.recover_own()
            lane.reader.name = f"notifier-events-{part.tag}"
            lane.reader.start()
            self.lanes[part] = lane
            opened += 1
            log.info("notifier lane opened", extra={"queue": part.queue, "partition": part.partition})
        return opened

    async def stop(self) -> None:
        """Stop opening lanes, then every reader at once (each ends its blocking read first, or is
        cancelled after ``STOP_WITHIN_S`` when Redis is gone: one after another, a few hundred lanes
        would hold the shutdown for minutes)."""
        await super().stop()
        await stop_all([lane.reader for lane in self.lanes.values()])
