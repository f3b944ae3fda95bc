"""The scheduler process: promoter (due tasks), watchers (wake-ups) and cron (periodic schedules),
each over every partition of every known queue.

Any number of replicas may run; every state change is a script that acts once whatever the number.
"""

from __future__ import annotations

import asyncio
import logging

from streamq.services.scheduler.cron import CronLoop
from streamq.services.scheduler.promoter import Promoter
from streamq.services.scheduler.watcher import Watchers
from streamq.shared import health, lifecycle, schema, tracing
from streamq.shared.keys import KeySchema
from streamq.shared.logging import setup_logging
from streamq.shared.loops import PeriodicLoop, stop_all
from streamq.shared.queue import Queue
from streamq.shared.queues import QueueRegistry
from streamq.shared.redis import connect, make_client
from streamq.shared.redisfast import raw_stream_reads
from streamq.shared.registry import ServiceRegistration
from streamq.shared.schedules import ScheduleBook
from streamq.shared.settings import Settings, load_settings

log = logging.getLogger("streamq.scheduler")


class Scheduler:
    """One scheduler process's loops; :meth:`run` until ``stop`` is set."""

    def __init__(self, settings: Settings, metrics_port: int = 0) -> None:
        self.settings = settings
        self.metrics_port = metrics_port  # the bound /metrics port, for the service registry
        self.keys = KeySchema(settings.key_prefix, settings.queue)
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        if not await schema.at_start(s, stop, migrate_older=False):  # waits for the api to migrate
            return
        redis = await connect(s)
        # the watchers' blocking reads, one connection per partition (connects when first used)
        reader = raw_stream_reads(make_client(s, blocking_reads=True))
        try:
            queue = Queue(redis, self.keys, events_maxlen=s.events_maxlen, result_ttl_s=s.result_ttl_s)
            registry = QueueRegistry(redis, self.keys)
            book = ScheduleBook(redis, self.keys, registry, events_maxlen=s.events_maxlen)
            self.promoter = Promoter(
                queue, registry=registry, batch=s.scheduler_batch, max_wait_s=s.scheduler_max_wait_s
            )
            self.cron = CronLoop(book, max_wait_s=s.scheduler_max_wait_s)
            watchers = Watchers(registry, reader, self.promoter.wake, also=self.keys.queue, interval_s=registry.cache_s)
            loops: list[PeriodicLoop] = [self.promoter, watchers, self.cron]
            loops.append(ServiceRegistration.for_settings(redis, s, kind="scheduler", metrics_port=self.metrics_port))
            for loop in loops:
                loop.start()
            log.info("scheduler started", extra={"queue": s.queue})
            self.ready.set()
            await stop.wait()
            await stop_all(loops)
            log.info("scheduler stopped", extra={"promoted": self.promoter.promoted, "fired": self.cron.fired})
        finally:
            await reader.aclose()
            await redis.aclose()


def main() -> None:
    settings = load_settings()
    setup_logging("scheduler", settings.log_level, settings.log_format)
    tracing.setup("scheduler")
    port = health.serve(settings.metrics_host, settings.metrics_port, settings)  # /metrics, /livez, /readyz
    service = Scheduler(settings, metrics_port=port)
    lifecycle.run(health.watch(service.run, service.ready))
    tracing.shutdown()  # the last spans leave before the process ends (bounded)
