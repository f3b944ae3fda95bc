"""The worker side of issue 20 with real processes: workers with different handler sets on one queue,
cancelling running tasks, progress."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskCreate, TaskPublic
from streamq.shared.queue import Queue
from streamq.shared.settings import Settings
from streamq.testing import Service
from tests.e2e.handlers import read_runs
from tests.e2e.processes import group_state, service_env, start_schedulers, start_workers, stop_all, wait_logged
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


async def started(queue: Queue, task_type: str, payload: object) -> str:
    """A task submitted and seen processing (its handler running)."""
    (sub,) = await queue.submit([TaskCreate(type=task_type, payload=payload, max_retries=3)])
    assert await wait_for_status(queue, sub.task.id, {"processing"}, timeout=20) == "processing"
    return sub.task.id


async def wait_recorded(runs: Path, task_id: str, pid: int, timeout: float = 20.0) -> None:
    """Until the handler of ``task_id`` in the worker ``pid`` has recorded its run in ``runs``."""
    deadline = time.monotonic() + timeout
    while (task_id, pid) not in read_runs(str(runs)):
        assert time.monotonic() < deadline, f"no run of {task_id} by {pid} recorded within {timeout} s"
        await asyncio.sleep(0.02)


async def cancel(api_url: str, task_id: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(f"{api_url}/api/tasks/{task_id}/cancel")


async def events_of(redis: Redis, keys: KeySchema, task_id: str) -> list[str]:
    return [f["event"] for _, f in await redis.xrange(keys.events) if f["task"] == task_id]


@pytest.mark.timeout(120)
async def test_cancelling_running_tasks_stops_their_handlers(
    settings: Settings, queue: Queue, redis: Redis, keys: KeySchema, log_dir: Path, api_url: str
) -> None:
    runs = log_dir / "runs.txt"
    env = {**service_env(settings, runs, cancel_grace_s=2), "STREAMQ_HANDLERS": EXTRA}
    workers = await start_workers(env, log_dir, 1)
    try:
        # an async handler sleeping 30 s: CancelledError inside it, the task ends cancelled
        slow = await started(queue, "cancel_sleep", 30)
        answer = await cancel(api_url, slow)
        assert answer.status_code == 202 and answer.json()["cancel_requested"] is True
        assert answer.json()["status"] == "processing"
        assert (await cancel(api_url, slow)).status_code in (202, 409)  # asked twice: still processing, or ended
        assert await wait_for_status(queue, slow, {"cancelled", "completed", "failed"}, timeout=10) == "cancelled"
        task = await queue.get(slow)
        assert task.attempts == 1 and task.result is None and "cancelled while it ran" in (task.error or "")
        events = await events_of(redis, keys, slow)
        assert events[-2:] == ["cancel_requested", "cancelled"] and "retrying" not in events

        # a sync handler polling ctx.cancelled stops by itself, within the grace
        polling = await started(queue, "cancel_poll", 60)
        assert (await cancel(api_url, polling)).status_code == 202
        assert await wait_for_status(queue, polling, {"cancelled", "completed", "failed"}, timeout=10) == "cancelled"
        assert f"{polling}-saw-cancel" in {task for task, _ in read_runs(str(runs))}

        # a sync handler that never looks: recorded cancelled after STREAMQ_CANCEL_GRACE_S, and logged
        deaf = await started(queue, "cancel_deaf", 4)
        assert (await cancel(api_url, deaf)).status_code == 202
        assert await wait_for_status(queue, deaf, {"cancelled", "completed", "failed"}, timeout=10) == "cancelled"
        assert "did not stop within 2 s" in ((await queue.get(deaf)).error or "")
        await wait_logged(workers[0], "the handler ignored the cancel request")

        stats = await queue.stats()
        assert stats.retried_total == 0 and stats.cancelled == 3
        runs_per_task = Counter(task for task, _ in read_runs(str(runs)))
        assert runs_per_task[slow] == runs_per_task[polling] == runs_per_task[deaf] == 1
    finally:
        stop_all(workers)


@pytest.mark.timeout(120)
async def test_a_cancel_requested_task_whose_worker_dies_ends_cancelled_and_never_runs_again(
    settings: Settings, queue: Queue, redis: Redis, keys: KeySchema, log_dir: Path, api_url: str
) -> None:
    runs = log_dir / "runs.txt"
    env = {**service_env(settings, runs, lease_s=2), "STREAMQ_HANDLERS": EXTRA}
    (doomed,) = await start_workers(env, log_dir, 1, name="doomed")
    survivor: list[Service] = []
    try:
        task_id = await started(queue, "cancel_sleep", 30)
        # the task is marked processing before its handler runs: stop the worker only once the handler
        # has recorded its run, or the SIGSTOP could freeze it before the record the test counts
        await wait_recorded(runs, task_id, doomed.pid)
        doomed.signal(signal.SIGSTOP)  # it cannot hear the request: the reclaim path must end the task
        assert (await cancel(api_url, task_id)).status_code == 202
        doomed.signal(signal.SIGKILL)
        doomed.wait(10)
        survivor += await start_workers(env, log_dir, 1, name="survivor")
        assert await wait_for_status(queue, task_id, {"cancelled", "completed", "failed"}, timeout=30) == "cancelled"
        task = await queue.get(task_id)
        assert "its worker stopped before ending it" in (task.error or "")
        assert [pid for task, pid in read_runs(str(runs)) if task == task_id] == [doomed.pid]  # never ran again
        assert await group_state(redis, keys) == (0, 0)
    finally:
        stop_all([doomed, *survivor])


async def test_pending_and_finished_tasks_cancel_as_before(queue: Queue, api_url: str) -> None:
    (sub,) = await queue.submit([TaskCreate(type="cancel_sleep", payload=1)])
    answer = await cancel(api_url, sub.task.id)
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    assert answer.json()["cancel_requested"] is False
    again = await cancel(api_url, sub.task.id)
    assert again.status_code == 409


@pytest.mark.timeout(120)
async def test_progress_is_stored_rate_limited_and_returned_by_the_api(
    settings: Settings, queue: Queue, redis: Redis, keys: KeySchema, log_dir: Path, api_url: str
) -> None:
    env = {**service_env(settings), "STREAMQ_HANDLERS": EXTRA}
    workers = await start_workers(env, log_dir, 1)
    try:
        sync_id = await started(queue, "progress_sync", 3)
        task = await wait_until(queue, [sync_id], lambda t: t.progress is not None)
        assert task[0].progress == 0.5 and task[0].progress_message == "half way"
        async with httpx.AsyncClient(timeout=10) as http:
            shown = (await http.get(f"{api_url}/api/tasks/{sync_id}")).json()
        assert shown["progress"] == 0.5 and shown["progress_message"] == "half way"

        async_id = await started(queue, "progress_async", 4)
        assert await wait_for_status(queue, async_id, {"completed", "failed"}, timeout=30) == "completed"
        done = await queue.get(async_id)
        assert done.progress == 1.0 and done.progress_message == "step 4 of 4"
        events = await events_of(redis, keys, async_id)
        # 8,000 reports: each step's latest reaches Redis, coalesced (at most one write per 0.1 s)
        assert 4 <= events.count("progress") < 40, events

        (bad,) = await queue.submit([TaskCreate(type="progress_bad", payload=1.5, max_retries=0)])
        assert await wait_for_status(queue, bad.task.id, {"completed", "failed"}, timeout=20) == "failed"
        assert "progress must be a fraction in [0, 1]" in ((await queue.get(bad.task.id)).error or "")
    finally:
        stop_all(workers)


@pytest.mark.timeout(120)
async def test_progress_from_a_worker_that_lost_the_task_is_refused(
    settings: Settings, queue: Queue, log_dir: Path
) -> None:
    runs = log_dir / "runs.txt"
    env = {**service_env(settings, runs, lease_s=1), "STREAMQ_HANDLERS": EXTRA}
    (frozen,) = await start_workers(env, log_dir, 1, name="frozen")
    others: list[Service] = []
    try:
        task_id = await started(queue, "progress_forever", 8)
        await wait_until(queue, [task_id], lambda t: t.progress is not None)
        frozen.signal(signal.SIGSTOP)  # longer than the lease: another worker reclaims the task
        others += await start_workers(env, log_dir, 1, name="other")
        other_pid = others[0].pid
        await wait_until(queue, [task_id], lambda t: f"on {other_pid}" in (t.progress_message or ""))
        frozen.signal(signal.SIGCONT)
        # thawed, it learns it lost the task from whichever call comes first: a progress report the
        # script refuses, or its lease renewal (then its reports stop there); either way none lands
        async with asyncio.timeout(30):
            while not any(t in frozen.log() for t in ("progress refused: this worker", "lease lost: another worker")):
                await asyncio.sleep(0.05)
        for _ in range(10):  # what the frozen worker reports never lands
            task = await queue.get(task_id)
            assert task.status != "processing" or f"on {other_pid}" in (task.progress_message or "")
            await asyncio.sleep(0.05)
    finally:
        stop_all([frozen, *others])
