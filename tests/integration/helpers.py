"""Running a worker in-process for integration tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from services.worker.main import Worker
from services.worker.registry import REGISTRY, Registry
from shared.queue import Queue
from shared.settings import Settings


@asynccontextmanager
async def running_worker(settings: Settings, registry: Registry = REGISTRY) -> AsyncIterator[Worker]:
    worker = Worker(settings, registry)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    ready = asyncio.create_task(worker.ready.wait())
    await asyncio.wait({task, ready}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raise what stopped it
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def wait_for_status(queue: Queue, task_id: str, statuses: set[str], timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        task = await queue.get(task_id)
        if task.status in statuses:
            return task.status
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {task_id} is {task.status}, expected one of {statuses}")
        await asyncio.sleep(0.02)
