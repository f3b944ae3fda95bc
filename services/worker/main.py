"""The worker process: wires the consumer, finisher, heartbeat and janitor, and shuts down cleanly."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor

from redis.asyncio import Redis

from streamq.services.worker import builtin  # noqa: F401  (registers the built-in handlers)
from streamq.services.worker.cancels import Canceller
from streamq.services.worker.consumer import Consumer
from streamq.services.worker.executor import Executor
from streamq.services.worker.finisher import Finisher
from streamq.services.worker.growth import Growth
from streamq.services.worker.heartbeat import Heartbeat
from streamq.services.worker.integrations import configure as configure_integrations
from streamq.services.worker.janitor import Janitor
from streamq.services.worker.progress import ProgressSender
from streamq.services.worker.recovery import recovery_loops
from streamq.services.worker.registry import REGISTRY, Registry, load_modules
from streamq.services.worker.sources import Sources
from streamq.services.worker.watchers import Watchers
from streamq.shared import health, lifecycle, retention, schema, tracing
from streamq.shared.broker import Broker
from streamq.shared.keys import WORKER_GROUP, KeySchema
from streamq.shared.logging import setup_logging
from streamq.shared.loops import PeriodicLoop, stop_all
from streamq.shared.queues import QueueRegistry
from streamq.shared.redis import connect, make_client
from streamq.shared.registry import ServiceRegistration
from streamq.shared.settings import Settings, load_settings
from streamq.shared.streams import ensure_group

log = logging.getLogger("streamq.worker")


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    """One worker process's parts; :meth:`run` until ``stop`` is set, then drain."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry = REGISTRY,
        worker_id: str | None = None,
        metrics_port: int = 0,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.worker_id = worker_id or new_worker_id()
        self.keys = KeySchema(settings.key_prefix, settings.queue)
        self.ready = asyncio.Event()  # set once registered and consuming
        self.metrics_port = metrics_port  # where metrics.serve() bound /metrics (for the service registry)

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        configure_integrations(s)  # email and http task types
        # a thread per slot for sync handlers (asyncio's default pool has min(32, CPUs + 4))
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=s.worker_concurrency, thread_name_prefix="streamq-handler")
        )
        if not await schema.at_start(s, stop, migrate_older=False):  # waits for the api to migrate
            return
        redis = await connect(s)
        readers = make_client(s, blocking_reads=True)  # the watchers' blocking reads (connects when first used)
        try:
            broker = Broker(redis, self.keys, events_maxlen=s.events_maxlen, result_ttl_s=s.result_ttl_s)
            queue = broker.default  # partition 0 of STREAMQ_QUEUE; the janitor asks the broker for the others
            sources = await self.sources(redis)
            for part in sources.all():
                await ensure_group(redis, part.streams(), WORKER_GROUP)
            executor = Executor(
                self.registry,
                queue=s.queue,
                default_timeout_s=s.task_timeout_s,
                retry_base_s=s.retry_base_s,
                retry_max_s=s.retry_max_s,
                unhandled_timeout_s=s.unhandled_timeout_s,
                redis=redis,
                keys=self.keys,
            )
            finisher = Finisher(
                queue.scripts,
                self.keys,
                group=WORKER_GROUP,
                consumer=self.worker_id,
                result_ttl_ms=s.result_ttl_s * 1000,
                events_maxlen=s.events_maxlen,
                keep_s=s.lease_s,  # outcomes kept through a Redis outage until the lease runs out
            )
            self.consumer = consumer = Consumer(
                redis,
                queue.scripts,
                self.keys,
                executor,
                finisher,
                consumer=self.worker_id,
                concurrency=s.worker_concurrency,
                events_maxlen=s.events_maxlen,
                sources=sources,
                cancel_grace_s=s.cancel_grace_s,
            )
            health.HEALTH.watch_intake(consumer.clock.age, consumer.block_ms / 1000)  # /readyz: a stuck intake
            heartbeat = Heartbeat(
                redis,
                self.keys,
                worker_id=self.worker_id,
                concurrency=s.worker_concurrency,
                handlers=self.registry.names(),
                interval_s=s.heartbeat_s,
                counters=lambda: (len(consumer.running), consumer.processed),
                queues=sources.queues,
                on_peers=functools.partial(setattr, executor, "handled_elsewhere"),
            )
            await heartbeat.register()
            janitor = Janitor(
                queue,
                partitions=lambda: [broker.queue(p.queue, p.partition) for p in sources.all()],
                registry=broker.registry,
                defaults=retention.defaults(s),
                result_ttl_s=s.result_ttl_s,
            )
            loops: list[PeriodicLoop] = [heartbeat, janitor, Growth(consumer), Canceller(consumer)]
            loops.append(ProgressSender(consumer))
            loops.append(
                ServiceRegistration.for_settings(
                    redis,
                    s,
                    kind="worker",
                    metrics_port=self.metrics_port,
                    service_id=self.worker_id,
                    info=lambda: {
                        "concurrency": s.worker_concurrency,
                        "in_flight": len(consumer.running),
                        "processed": consumer.processed,
                    },
                )
            )
            loops += recovery_loops(s, consumer, stop)  # lease renewal, reclaim, dead consumers, trimming
            for loop in loops:
                loop.start()
            log.info(
                "worker started",
                extra={
                    "worker": self.worker_id,
                    "concurrency": s.worker_concurrency,
                    "handlers": self.registry.names(),
                    "queues": sources.weights,
                },
            )
            self.watchers = watchers = Watchers(consumer, redis, readers, queue.scripts, stop)
            watchers.sync()
            self.ready.set()
            await consumer.run(stop)
            await watchers.join()  # each finishes its current block; what it got is run by the drain
            left = await consumer.drain(s.shutdown_grace_s)
            await stop_all(loops)
            await heartbeat.unregister()
            log.info("worker stopped", extra={"worker": self.worker_id, "left_pending": left})
        finally:
            await readers.aclose()
            await redis.aclose()

    async def sources(self, redis: Redis) -> Sources:
        """The queues this worker consumes (created if new) with their partitions."""
        s = self.settings
        registry = QueueRegistry(redis, self.keys)
        weights = s.queue_weights()
        for name in weights:
            await registry.ensure(name)
        sources = Sources(self.keys, weights, strict=s.queues_strict, registry=registry)
        await sources.refresh()
        return sources


def main() -> None:
    settings = load_settings()
    setup_logging("worker", settings.log_level, settings.log_format)
    tracing.setup("worker")
    load_modules(settings.handlers)
    port = health.serve(settings.metrics_host, settings.metrics_port, settings)  # /metrics, /livez, /readyz
    service = Worker(settings, metrics_port=port)
    lifecycle.freeze_startup_heap()  # the user's handler modules are loaded by now
    lifecycle.run(health.watch(service.run, service.ready))
    tracing.shutdown()  # the last spans leave before the process ends (bounded)
