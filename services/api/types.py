"""Which task types the api accepts: built-ins, every type a worker ever advertised, and
``STREAMQ_TASK_TYPES``. Advertised types are cached for a second and re-read on a miss."""

from __future__ import annotations

import time

from streamq.shared.models import BUILTIN_TYPES
from streamq.shared.queue import Queue

CACHE_S = 1.0


class UnknownTaskType(ValueError):
    def __init__(self, task_type: str, known: list[str]) -> None:
        super().__init__(f"unknown task type {task_type!r}; known types: {', '.join(known)}")


class TypeCatalog:
    def __init__(self, queue: Queue, configured: list[str], *, strict: bool) -> None:
        self.queue = queue
        self.static = frozenset(BUILTIN_TYPES) | frozenset(configured)
        self.strict = strict
        self._advertised: frozenset[str] = frozenset()
        self._read_at = 0.0

    async def known(self, *, refresh: bool = False) -> frozenset[str]:
        if refresh or time.monotonic() - self._read_at > CACHE_S:
            self._advertised = frozenset(await self.queue.advertised_types())
            self._read_at = time.monotonic()
        return self.static | self._advertised

    def known_now(self, types: set[str]) -> bool:
        """Whether every type is accepted by what is known without reading Redis (not strict, or each type
        built in, configured or advertised within ``CACHE_S``); False means :meth:`unknown` must decide."""
        if not self.strict:
            return True
        if types <= self.static:
            return True
        return time.monotonic() - self._read_at <= CACHE_S and types <= self.static | self._advertised

    async def unknown(self, types: set[str]) -> dict[str, UnknownTaskType]:
        """The types not accepted, each with the error to report (empty when all are fine)."""
        if not self.strict:
            return {}
        missing = types - await self.known()
        if missing:
            known = await self.known(refresh=True)
            missing -= known
            return {t: UnknownTaskType(t, sorted(known)) for t in missing}
        return {}
