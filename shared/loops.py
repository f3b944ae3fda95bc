"""A background loop with start/stop: each periodic job of a service is one small subclass."""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger("streamq.loops")


class PeriodicLoop:
    """Calls :meth:`tick` every ``interval_s`` until :meth:`stop`; a failing tick is logged, not fatal."""

    name = "loop"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task

    async def tick(self) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("background loop failed; will try again", extra={"loop": self.name})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_s)
