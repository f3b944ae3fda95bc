"""Sending due webhook attempts: every tick, read the due sets of every lane (partition) in one
pipeline, lease up to the free slots' worth of due deliveries (by the Redis clock; one claim script
per partition that has any, in that partition's slot) and send each in its own asyncio task. The
lane read first rotates every tick, so a busy partition cannot starve the others."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio import Redis

from streamq.services.notifier.lanes import Lane
from streamq.services.notifier.sender import Sender
from streamq.shared.deliveries import Claimed, Deliveries
from streamq.shared.loops import PeriodicLoop

log = logging.getLogger("streamq.notifier")


class Deliverer(PeriodicLoop):
    name = "notifier-deliver"

    def __init__(
        self,
        redis: Redis,
        lanes: Callable[[], list[Lane]],
        sender: Sender,
        *,
        concurrency: int,
        lease_s: float,
        interval_s: float,
    ) -> None:
        super().__init__(interval_s)
        self.redis = redis
        self.lanes = lanes
        self.sender = sender
        self.concurrency = concurrency
        self.lease_ms = int(lease_s * 1000)
        self.running: set[asyncio.Task[None]] = set()
        self._turn = 0

    async def tick(self) -> None:
        lanes = self.lanes()
        if lanes:
            self._turn = (self._turn + 1) % len(lanes)
            lanes = lanes[self._turn :] + lanes[: self._turn]
        while lanes and (free := self.concurrency - len(self.running)) > 0:
            seconds, micros = await self.redis.time()
            now_ms = int(seconds) * 1000 + int(micros) // 1000
            pipe = self.redis.pipeline(transaction=False)
            for lane in lanes:
                pipe.zrangebyscore(lane.keys.webhooks_due, "-inf", now_ms, start=0, num=free)
            due: list[list[str]] = await pipe.execute()
            full = []
            for lane, ids in zip(lanes, due, strict=True):
                room = self.concurrency - len(self.running)
                if ids and room > 0:
                    self._start(lane.deliveries, await lane.deliveries.claim(list(ids[:room]), self.lease_ms))
                if len(ids) >= free:
                    full.append(lane)
            lanes = full

    def _start(self, deliveries: Deliveries, claimed: list[Claimed]) -> None:
        for c in claimed:
            task = asyncio.create_task(self._send(deliveries, c), name=f"webhook-{c.delivery_id}")
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    async def _send(self, deliveries: Deliveries, claimed: Claimed) -> None:
        try:
            await self.sender.send(claimed, deliveries)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "webhook attempt not recorded; due again when its lease ends", extra={"webhook_id": claimed.delivery_id}
            )

    async def drain(self, grace_s: float) -> int:
        """Wait up to ``grace_s`` for attempts in flight; cancel the rest (due again after the lease)."""
        if not self.running:
            return 0
        _done, left = await asyncio.wait(set(self.running), timeout=grace_s)
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left)
        return len(left)
