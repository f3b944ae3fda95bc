"""The crash-recovery loops every worker runs: lease renewal, reclaim, and stream housekeeping."""

from __future__ import annotations

import asyncio

from streamq.services.worker.consumer import Consumer
from streamq.services.worker.lease import Lease
from streamq.services.worker.reclaimer import Reclaimer
from streamq.services.worker.sweeper import Sweeper
from streamq.shared.loops import PeriodicLoop
from streamq.shared.settings import Settings


def recovery_loops(settings: Settings, consumer: Consumer, stop: asyncio.Event) -> list[PeriodicLoop]:
    """Lease (renews this worker's running entries), Reclaimer (takes over stalled ones; stops
    claiming once ``stop`` is set) and Sweeper (dead consumers, safe trimming). Not started."""
    return [
        Lease(consumer, lease_s=settings.lease_s),
        Reclaimer(
            consumer,
            lease_s=settings.lease_s,
            max_deliveries=settings.max_deliveries,
            result_ttl_ms=settings.result_ttl_s * 1000,
            stop=stop,
        ),
        Sweeper(
            consumer.redis,
            consumer.scripts,
            consumer.keys,
            me=consumer.consumer,
            lease_s=settings.lease_s,
            events_maxlen=settings.events_maxlen,
            partitions=consumer.sources.all,
        ),
    ]
