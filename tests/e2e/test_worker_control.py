"""The worker side of issue 20 with real processes: workers with different handler sets on one queue,
cancelling running tasks, progress."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.models import TaskCreate, TaskPublic
from shared.queue import Queue
from shared.settings import Settings
from tests.e2e.processes import service_env, start_schedulers, start_workers, stop_all
from tests.integration.helpers import wait_for_status

pytestmark = pytest.mark.e2e
EXTRA = "tests.e2e.handlers,tests.e2e.handlers_extra"


async def wait_until(
    queue: Queue, ids: list[str], check: Callable[[TaskPublic], bool], timeout: float = 30.0
) -> list[TaskPublic]:
    """The tasks ``ids`` once ``check`` holds for every one (bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = await queue.get_many(ids)
        if all(check(t) for t in tasks):
            return tasks
        assert time.monotonic() < deadline, [t.model_dump(include={"id", "status", "error"}) for t in tasks]
        await asyncio.sleep(0.05)


def waiting_for_handler(task: TaskPublic) -> bool:
    return task.status == "scheduled" and "waiting for a worker with a handler" in (task.error or "")


@pytest.mark.timeout(120)
async def test_a_worker_without_the_handler_gives_the_task_back_for_one_that_has_it(
    settings: Settings, queue: Queue, log_dir: Path
) -> None:
    env = service_env(settings)
    services = [*await start_schedulers(env, log_dir, 1), *await start_workers(env, log_dir, 1, name="stock")]
    try:
        ids = [s.task.id for s in await queue.submit([TaskCreate(type="extra_echo", payload=i) for i in range(20)])]
        ids += [s.task.id for s in await queue.submit([TaskCreate(type="rel_sleep", payload=0)])]
        # no live worker handles extra_echo: the tasks wait, visible as such, not failed nor counted as attempts
        waiting = await wait_until(queue, ids[:20], lambda t: waiting_for_handler(t) and t.attempts == 0)
        assert all("no live worker advertises it" in (t.error or "") for t in waiting)
        assert await wait_for_status(queue, ids[20], {"completed"}) == "completed"
        custom = await start_workers({**env, "STREAMQ_HANDLERS": EXTRA}, log_dir, 1, name="custom")
        services += custom
        done = await wait_until(queue, ids[:20], lambda t: t.status in ("completed", "failed"), timeout=60)
        assert {t.status for t in done} == {"completed"}
        assert {t.result["pid"] for t in done} == {custom[0].pid}  # type: ignore[index]
        assert {t.attempts for t in done} == {1}  # the give-backs used no attempt
        assert (await queue.stats()).failed == 0
    finally:
        stop_all(services)


@pytest.mark.timeout(60)
async def test_a_task_no_worker_handles_fails_after_the_documented_time(
    settings: Settings, queue: Queue, log_dir: Path
) -> None:
    env = service_env(settings, unhandled_timeout_s=2)
    services = [*await start_schedulers(env, log_dir, 1), *await start_workers(env, log_dir, 2)]
    try:
        (sub,) = await queue.submit([TaskCreate(type="nobody_handles_this", payload=None)])
        assert await wait_for_status(queue, sub.task.id, {"failed"}, timeout=30) == "failed"
        task = await queue.get(sub.task.id)
        assert "STREAMQ_UNHANDLED_TIMEOUT_S" in (task.error or "") and "nobody_handles_this" in (task.error or "")
        assert task.attempts == 0
    finally:
        stop_all(services)
