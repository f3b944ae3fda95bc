"""Running services in-process for integration tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol, TypeVar

from streamq.services.worker.main import Worker
from streamq.services.worker.registry import REGISTRY, Registry
from streamq.shared.queue import Queue
from streamq.shared.settings import Settings


class InProcess(Protocol):
    ready: asyncio.Event

    async def run(self, stop: asyncio.Event) -> None: ...


S = TypeVar("S", bound=InProcess)


@asynccontextmanager
async def running(service: S, stop_timeout: float = 30) -> AsyncIterator[S]:
    """Run a service object (worker, scheduler, notifier: ``run(stop)`` and ``ready``) in this event
    loop until it is ready; stop it cleanly on exit. If it dies while starting, its error is raised."""
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    ready = asyncio.create_task(service.ready.wait())
    await asyncio.wait({task, ready}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raise what stopped it
    try:
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, stop_timeout)


def running_worker(settings: Settings, registry: Registry = REGISTRY) -> AbstractAsyncContextManager[Worker]:
    return running(Worker(settings, registry))


async def wait_for_status(queue: Queue, task_id: str, statuses: set[str], timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        task = await queue.get(task_id)
        if task.status in statuses:
            return task.status
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {task_id} is {task.status}, expected one of {statuses}")
        await asyncio.sleep(0.02)
