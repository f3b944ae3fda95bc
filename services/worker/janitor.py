"""Pruning finished tasks and dead letters to each queue's retention bounds (docs/scaling-out.md: Retention), in
every partition the worker consumes: past ``STREAMQ_RESULT_TTL_S``, beyond a count, older than an
age; oldest first, in bounded batches (one remove.lua call each)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from streamq.shared.loops import PeriodicLoop
from streamq.shared.queue import NO_BOUNDS, WALK_FROM_START, Queue
from streamq.shared.queues import QueueRegistry, Retention
from streamq.shared.retention import effective, lua_bounds, settle


class Janitor(PeriodicLoop):
    name = "janitor"

    def __init__(
        self,
        queue: Queue,
        interval_s: float = 5.0,
        batch: int = 500,
        partitions: Callable[[], list[Queue]] | None = None,
        registry: QueueRegistry | None = None,
        defaults: Retention | None = None,
        result_ttl_s: int = 7 * 24 * 3600,
    ) -> None:
        super().__init__(interval_s)
        self.queue = queue
        self.batch = batch
        self.partitions = partitions or (lambda: [queue])  # every partition the worker consumes
        # without a registry: only what is past its retention deadline
        self.registry = registry
        self.defaults = defaults or {}
        self.result_ttl_s = result_ttl_s

    async def tick(self) -> None:
        by_queue: dict[str, list[Queue]] = {}
        for part in self.partitions():
            by_queue.setdefault(part.keys.queue, []).append(part)
        for name, parts in by_queue.items():
            bounds = await self._bounds(name, parts)
            for part in parts:
                await self._prune(part, bounds[part.keys.partition])

    async def _prune(self, part: Queue, bounds: Sequence[int]) -> None:
        """Prune one partition in calls of ``batch``, while a call is full; each pass's count walks
        start at the lowest ids and go on from call to call (over the tasks kept for their keep_s)."""
        cursors: Sequence[str] = WALK_FROM_START
        while True:
            pruned = await part.prune_step(bounds, self.batch, cursors)
            if not (pruned.more or max(pruned.tasks, pruned.dead) >= self.batch):
                return
            cursors = pruned.cursors

    async def _bounds(self, name: str, parts: list[Queue]) -> dict[int, list[int] | tuple[int, ...]]:
        """Each of the queue's partitions' prune bounds (its share of the counts)."""
        if self.registry is None:
            return {part.keys.partition: NO_BOUNDS for part in parts}
        config = await self.registry.get(name) or await self.registry.ensure(name)
        config = await settle(self.registry, config, parts, self.result_ttl_s)
        retention = effective(config, self.defaults)
        return {part.keys.partition: lua_bounds(retention, config.partitions) for part in parts}
