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
        self._woken = asyncio.Event()  # set by wake() or stop(): ends the current wait early
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        self._stopping.set()
        self._woken.set()
        if self._task is not None:
            await self._task

    def wake(self) -> None:
        """Run the next tick now instead of after the rest of the interval."""
        self._woken.set()

    async def tick(self) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        while not self._stopping.is_set():
            self._woken.clear()
            try:
                await self.tick()
            except Exception:
                log.exception("background loop failed; will try again", extra={"loop": self.name})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), self.interval_s)
