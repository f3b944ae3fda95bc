"""A background loop with start/stop: each periodic job of a service is one small subclass."""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger("streamq.loops")
STOP_WITHIN_S = 2.0  # longest stop() waits for the current tick (a blocking read ends within its 1 s block)


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
        """No tick after the current one. A tick still running after ``STOP_WITHIN_S`` is cancelled: with
        Redis unreachable each of its calls retries for seconds, and a shutdown is not held up by an
        outage (a tick is a periodic job: the next process, or the next tick elsewhere, does it)."""
        self._stopping.set()
        self._woken.set()
        task = self._task
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=STOP_WITHIN_S)
        if not done:
            log.warning("background loop cancelled at shutdown", extra={"loop": self.name})
            task.cancel()
            await asyncio.wait({task})

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


async def stop_all(loops: list[PeriodicLoop]) -> None:
    """Stop every loop at once (each bounded by :meth:`PeriodicLoop.stop`), not one after another."""
    await asyncio.gather(*(loop.stop() for loop in loops))
