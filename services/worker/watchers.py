"""Persistent blocking readers, one per consumed partition, used while nothing waits anywhere.

While the consumer is idle (its last round found nothing), each watcher blocks in XREADGROUP on its
own partition's five priority streams (one hash slot, so it also runs on Redis Cluster), COUNT 1,
``block_ms`` at a time. An entry it receives goes to the consumer at once (:meth:`Consumer.deliver`),
which wakes and starts it; no other partition's block has to time out first. A blocked read is never
cancelled: on shutdown each watcher finishes its current block (at most ``block_ms``) and whatever it
received is run during the drain. A paused partition is not read (its flag is checked before each
block); a read that was already blocked when the pause came is caught by start.lua, which puts the
entry back instead of starting it.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from services.worker.consumer import Consumer, wait_either
from services.worker.jobs import Delivery
from shared.keys import WORKER_GROUP, KeySchema
from shared.models import PRIORITIES

log = logging.getLogger("streamq.worker")


class Watchers:
    """One watcher task per partition of ``consumer.sources``; new partitions get one in :meth:`sync`."""

    def __init__(self, consumer: Consumer, stop: asyncio.Event) -> None:
        self.consumer = consumer
        self.stop = stop
        self.tasks: dict[KeySchema, asyncio.Task[None]] = {}
        self.received = 0  # entries delivered by blocking reads (for tests and debugging)

    def sync(self) -> None:
        for part in self.consumer.sources.all():
            if part not in self.tasks:
                self.tasks[part] = asyncio.get_running_loop().create_task(self.watch(part), name=f"watch-{part.tag}")

    async def join(self) -> None:
        """Wait for every watcher to finish its current block (after ``stop`` is set)."""
        if self.tasks:
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    async def watch(self, part: KeySchema) -> None:
        consumer = self.consumer
        streams = part.streams()
        while not self.stop.is_set():
            self.sync()  # a partition added meanwhile gets its own watcher
            await wait_either(self.stop, consumer.idle)
            if self.stop.is_set():
                return
            try:
                if await consumer.redis.exists(part.paused):
                    await wait_either(self.stop, asyncio.Event(), within_s=consumer.block_ms / 1000)
                    continue
                reply = await consumer.redis.xreadgroup(
                    WORKER_GROUP, consumer.consumer, {s: ">" for s in streams}, count=1, block=consumer.block_ms
                )
            except (RedisError, OSError) as error:
                log.warning("redis unavailable; retrying", extra={"error": str(error)})
                await asyncio.sleep(0.5)
                continue
            except Exception:  # a watcher never dies silently: logged, and it blocks again
                log.exception("watcher failed; retrying", extra={"partition": part.tag})
                await asyncio.sleep(0.5)
                continue
            deliveries = [
                Delivery(PRIORITIES[streams.index(stream)], msg_id, fields.get("id", ""), part)
                for stream, entries in reply or []
                for msg_id, fields in entries
            ]
            if deliveries:
                self.received += len(deliveries)
                consumer.deliver(deliveries)
