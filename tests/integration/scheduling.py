"""Running the scheduler in-process for integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from services.scheduler.main import Scheduler
from shared.settings import Settings


@asynccontextmanager
async def running_scheduler(settings: Settings) -> AsyncIterator[Scheduler]:
    scheduler = Scheduler(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    ready = asyncio.create_task(scheduler.ready.wait())
    await asyncio.wait({task, ready}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    try:
        yield scheduler
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def entry_ms(entry_id: str) -> int:
    return int(entry_id.split("-")[0])
