"""The partitions a worker reads, and the order it reads them in each round.

The worker consumes ``STREAMQ_QUEUES`` (weights) or ``STREAMQ_QUEUE`` alone. Each round orders the
queues: strictly as listed with ``STREAMQ_QUEUES_STRICT``, otherwise a weighted random order (asynq's
way: a queue comes first with probability weight / total, so when every queue is backlogged the
shares started follow the weights). Within a queue the partitions rotate: each round starts one
partition further, so every partition is read fairly. Partition counts come from the queue registry
(cached about a second), so a queue that grows is picked up by :meth:`refresh`.
"""

from __future__ import annotations

import random

from streamq.shared.keys import KeySchema
from streamq.shared.queues import QueueRegistry


class Sources:
    def __init__(
        self,
        keys: KeySchema,
        weights: dict[str, int],
        *,
        strict: bool = False,
        registry: QueueRegistry | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.keys = keys
        self.weights = dict(weights)
        self.strict = strict
        self.registry = registry
        self.rng = rng or random.Random()
        self.parts: dict[str, list[KeySchema]] = {q: [keys.for_queue(q)] for q in weights}
        self._turn: dict[str, int] = dict.fromkeys(weights, 0)

    @classmethod
    def single(cls, keys: KeySchema) -> Sources:
        """Just one partition (the ``keys`` given)."""
        sources = cls(keys, {keys.queue: 1})
        sources.parts = {keys.queue: [keys]}
        return sources

    @property
    def queues(self) -> list[str]:
        return list(self.weights)

    def all(self) -> list[KeySchema]:
        return [part for parts in self.parts.values() for part in parts]

    async def refresh(self) -> list[KeySchema]:
        """Pick up grown partition counts; returns the partitions new to this worker."""
        if self.registry is None:
            return []
        known = await self.registry.all()
        added: list[KeySchema] = []
        for name in self.weights:
            config = known.get(name)
            have = len(self.parts[name])
            if config is not None and config.partitions > have:
                fresh = [self.keys.for_queue(name, k) for k in range(have, config.partitions)]
                self.parts[name] = [*self.parts[name], *fresh]
                added += fresh
        return added

    def order(self) -> list[KeySchema]:
        """This round's partitions: queues in strict or weighted random order, partitions rotated."""
        out: list[KeySchema] = []
        for name in self.queue_order():
            parts = self.parts[name]
            turn = self._turn[name] % len(parts)
            self._turn[name] = turn + 1
            out += parts[turn:] + parts[:turn]
        return out

    def queue_order(self) -> list[str]:
        if self.strict or len(self.weights) == 1:
            return list(self.weights)
        left = dict(self.weights)
        order: list[str] = []
        while left:
            [pick] = self.rng.choices(list(left), weights=list(left.values()))
            order.append(pick)
            del left[pick]
        return order
