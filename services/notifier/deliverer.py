"""Sending due webhook attempts: every tick, lease up to the free slots' worth of due deliveries
(by the Redis clock) and send each in its own asyncio task."""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis

from services.notifier.sender import Sender
from shared.deliveries import Claimed, Deliveries
from shared.keys import KeySchema
from shared.loops import PeriodicLoop

log = logging.getLogger("streamq.notifier")


class Deliverer(PeriodicLoop):
    name = "notifier-deliver"

    def __init__(
        self,
        redis: Redis,
        keys: KeySchema,
        deliveries: Deliveries,
        sender: Sender,
        *,
        concurrency: int,
        lease_s: float,
        interval_s: float,
    ) -> None:
        super().__init__(interval_s)
        self.redis = redis
        self.keys = keys
        self.deliveries = deliveries
        self.sender = sender
        self.concurrency = concurrency
        self.lease_ms = int(lease_s * 1000)
        self.running: set[asyncio.Task[None]] = set()

    async def tick(self) -> None:
        while (free := self.concurrency - len(self.running)) > 0:
            seconds, micros = await self.redis.time()
            now_ms = int(seconds) * 1000 + int(micros) // 1000
            ids = await self.redis.zrangebyscore(self.keys.webhooks_due, "-inf", now_ms, start=0, num=free)
            claimed = await self.deliveries.claim(list(ids), self.lease_ms)
            for c in claimed:
                task = asyncio.create_task(self._send(c), name=f"webhook-{c.delivery_id}")
                self.running.add(task)
                task.add_done_callback(self.running.discard)
            if len(ids) < free:
                return

    async def _send(self, claimed: Claimed) -> None:
        try:
            await self.sender.send(claimed)
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
