"""What a queue keeps of its finished tasks and dead letters (docs/scaling-out.md: Retention).

Each queue has a bound per kind (``streamq.shared.queues.RETAINED``): an age (seconds after finishing) and a
count (the newest kept), over defaults from the settings (``STREAMQ_RETENTION_*``). Every finished
task also leaves by ``STREAMQ_RESULT_TTL_S``, the longest anything is kept (its retention deadline).
The workers' janitor prunes each partition with remove.lua's 'prune' mode; a queue's count is split
evenly over its partitions. A task's own ``keep_s`` sets its deadline (finish + keep_s, at most the TTL)
and spares it from the count bound until then; the age bound still applies.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from streamq.shared.queue import Queue
from streamq.shared.queues import RETAINED, Bound, QueueConfig, QueueRegistry, Retention
from streamq.shared.settings import Settings

log = logging.getLogger("streamq.retention")


def defaults(settings: Settings) -> Retention:
    """The bounds of a queue that sets none of its own."""
    return {kind: Bound(*settings.retention_default(kind)) for kind in RETAINED}


def legacy(result_ttl_s: int) -> Retention:
    """What a queue kept before retention bounds existed: every finished task for the result TTL, no
    count bound; a dead letter as long as its task."""
    return {kind: Bound(result_ttl_s if kind != "dead_letter" else None, None) for kind in RETAINED}


def effective(config: QueueConfig, base: Retention) -> Retention:
    """The queue's bounds: its own over ``base`` (the settings' defaults)."""
    return {**base, **(config.retention or {})}


def lua_bounds(retention: Retention, partitions: int) -> list[int]:
    """remove.lua's prune bounds for one of ``partitions`` partitions: age (ms) and count per kind in
    RETAINED order, -1 for no bound; each partition keeps its share of the count, rounded up."""
    out: list[int] = []
    for kind in RETAINED:
        bound = retention[kind]
        out.append(-1 if bound.age_s is None else bound.age_s * 1000)
        out.append(-1 if bound.count is None else math.ceil(bound.count / partitions))
    return out


async def settle(
    registry: QueueRegistry, config: QueueConfig, parts: Sequence[Queue], result_ttl_s: int
) -> QueueConfig:
    """Give a queue stored before retention existed its bounds, once: one that already keeps finished
    tasks keeps today's behaviour (:func:`legacy`, so an upgrade deletes nothing it kept; an operator
    lowers it with PUT /api/queues/{queue}); a new one takes the settings' defaults."""
    if config.retention is not None:
        return config
    kept = sum([await part.redis.zcard(part.keys.retention) for part in parts])
    if kept:
        log.warning(
            "queue stored before retention bounds: keeping its finished tasks as before (result TTL, no count"
            " bound); set its retention with PUT /api/queues/{queue}",
            extra={"queue": config.name, "finished": kept},
        )
        return await registry.set_retention(config.name, legacy(result_ttl_s))
    return await registry.set_retention(config.name, {})
