"""shared/loops.py: a loop stops after its current tick, and a tick that does not end (Redis
unreachable: each call retries for seconds) is cancelled instead of holding up the shutdown."""

from __future__ import annotations

import asyncio

import pytest

from streamq.shared import loops
from streamq.shared.loops import PeriodicLoop, stop_all


class Counting(PeriodicLoop):
    def __init__(self, hang: bool = False) -> None:
        super().__init__(0.01)
        self.ticks = 0
        self.hang = hang
        self.cancelled = False

    async def tick(self) -> None:
        self.ticks += 1
        if self.hang:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise


async def test_stop_lets_a_normal_tick_finish() -> None:
    loop = Counting()
    loop.start()
    await asyncio.sleep(0.05)
    await loop.stop()
    ticks = loop.ticks
    assert ticks >= 1 and loop._task is not None and loop._task.done()
    await asyncio.sleep(0.05)
    assert loop.ticks == ticks  # no tick after stop


async def test_a_hung_tick_is_cancelled_after_the_bound(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(loops, "STOP_WITHIN_S", 0.2)
    hung, fine = Counting(hang=True), Counting()
    hung.start()
    fine.start()
    await asyncio.sleep(0.05)
    started = asyncio.get_running_loop().time()
    await stop_all([hung, fine])  # together: one bound for all, not one each
    assert 0.2 <= asyncio.get_running_loop().time() - started < 1.0
    assert hung.cancelled and hung._task is not None and hung._task.done()
    assert fine._task is not None and fine._task.done() and not fine.cancelled
    assert "background loop cancelled at shutdown" in caplog.text
