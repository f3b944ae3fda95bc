"""The notifier process: events -> deliveries -> signed POSTs, with recovery of what a dead
notifier left (its unacknowledged events, its leased attempts), over every partition of every
known queue (one lane per partition, see :mod:`streamq.services.notifier.lanes`)."""

from __future__ import annotations

import asyncio
import logging
import socket

from streamq.services.notifier.deliverer import Deliverer
from streamq.services.notifier.events import EventHandler
from streamq.services.notifier.lanes import Lane, Lanes
from streamq.services.notifier.reader import EventReader
from streamq.services.notifier.reclaim import Reclaimer
from streamq.services.notifier.sender import Sender
from streamq.shared import health, lifecycle, schema, tracing, webhooks
from streamq.shared.deliveries import Deliveries
from streamq.shared.keys import KeySchema
from streamq.shared.logging import setup_logging
from streamq.shared.loops import PeriodicLoop, stop_all
from streamq.shared.queues import QueueRegistry
from streamq.shared.redis import connect, make_client
from streamq.shared.registry import ServiceRegistration
from streamq.shared.scripts import Scripts
from streamq.shared.settings import Settings, load_settings
from streamq.shared.ssrf import SsrfGuard, guarded_client

log = logging.getLogger("streamq.notifier")


def consumer_name() -> str:
    """Stable per host, so a restarted notifier finds its own unacknowledged events at once."""
    return f"notifier:{socket.gethostname()}"


class Notifier:
    def __init__(
        self,
        settings: Settings,
        consumer: str | None = None,
        guard: SsrfGuard | None = None,
        metrics_port: int = 0,
    ) -> None:
        self.metrics_port = metrics_port  # the bound /metrics port, for the service registry
        self.settings = settings
        self.keys = KeySchema(settings.key_prefix, settings.queue)
        self.consumer = consumer or consumer_name()
        self.guard = guard or SsrfGuard.from_settings(settings)
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        secrets = webhooks.parse_secrets(s.webhook_secret.get_secret_value())
        if not secrets:
            raise SystemExit(
                "streamq: invalid setting STREAMQ_WEBHOOK_SECRET: the notifier needs a secret "
                "(whsec_ + base64 of 24-64 random bytes)"
            )
        if s.webhook_lease_s <= s.webhook_timeout_s:
            raise SystemExit(
                "streamq: invalid setting STREAMQ_WEBHOOK_LEASE_S: must be greater than STREAMQ_WEBHOOK_TIMEOUT_S "
                f"({s.webhook_lease_s:g} <= {s.webhook_timeout_s:g}), or an attempt could be sent twice at once"
            )
        if not await schema.at_start(s, stop, migrate_older=False):  # waits for the api to migrate
            return
        redis = await connect(s)
        readers = make_client(s, blocking_reads=True)  # the event readers' blocking reads, one per partition
        client = guarded_client(self.guard, s.webhook_timeout_s)
        try:
            scripts = Scripts(redis)

            def make_lane(keys: KeySchema) -> Lane:
                deliveries = Deliveries(scripts, keys, events_maxlen=s.events_maxlen, keep_ms=s.result_ttl_s * 1000)
                handler = EventHandler(redis, keys, deliveries, s.webhook_schedule[0])
                return Lane(keys, deliveries, handler, EventReader(readers, keys, handler, consumer=self.consumer))

            registry = QueueRegistry(redis, self.keys)
            self.lanes = lanes = Lanes(redis, registry, make_lane, also=self.keys.queue, interval_s=registry.cache_s)
            await lanes.open_new()
            sender = Sender(
                client,
                self.guard,
                None,
                secrets=secrets,
                schedule=s.webhook_schedule,
                timeout_s=s.webhook_timeout_s,
                redis=redis,
            )
            self.deliverer = deliverer = Deliverer(
                redis,
                lanes.current,
                sender,
                concurrency=s.webhook_concurrency,
                lease_s=s.webhook_lease_s,
                interval_s=s.webhook_poll_s,
            )
            reclaimer = Reclaimer(
                redis,
                lambda: [lane.handler for lane in lanes.current()],
                consumer=self.consumer,
                min_idle_s=s.notifier_claim_idle_s,
            )
            loops: list[PeriodicLoop] = [lanes, deliverer, reclaimer]
            loops.append(ServiceRegistration.for_settings(redis, s, kind="notifier", metrics_port=self.metrics_port))
            for loop in loops:
                loop.start()
            log.info("notifier started", extra={"consumer": self.consumer, "recovered_events": lanes.recovered})
            self.ready.set()
            await stop.wait()
            await stop_all(loops)
            left = await deliverer.drain(s.shutdown_grace_s)
            log.info("notifier stopped", extra={"left_in_flight": left})
        finally:
            await client.aclose()
            await readers.aclose()
            await redis.aclose()


def main() -> None:
    settings = load_settings()
    setup_logging("notifier", settings.log_level, settings.log_format)
    tracing.setup("notifier")
    port = health.serve(settings.metrics_host, settings.metrics_port, settings)  # /metrics, /livez, /readyz
    service = Notifier(settings, metrics_port=port)
    lifecycle.run(health.watch(service.run, service.ready))
    tracing.shutdown()  # the last spans leave before the process ends (bounded)
