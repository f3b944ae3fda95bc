from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from streamq.services.worker.executor import Executor, backoff_ms
from streamq.services.worker.jobs import Delivery, Job
from streamq.services.worker.registry import Registry, TaskContext
from streamq.shared.errors import Permanent, Retry


def make_job(task_type: str, payload: Any = None, attempt: int = 1, timeout_s: float | None = None) -> Job:
    return Job(
        delivery=Delivery(3, "1-0", "T1"),
        type=task_type,
        payload_json=orjson.dumps(payload).decode(),
        timeout_s=timeout_s,
        attempt=attempt,
        max_retries=3,
        retry_backoff_s=None,
        due_ms=0,
        priority=3,
    )


@pytest.fixture
def executor() -> Executor:
    registry = Registry()

    async def echo(payload: Any, ctx: TaskContext) -> Any:
        return {"payload": payload, "attempt": ctx.attempt}

    def sync_add(payload: list[int]) -> int:
        return sum(payload)

    async def slow(_payload: Any) -> None:
        await asyncio.sleep(5)

    async def later(_payload: Any) -> None:
        raise Retry(after=2.5)

    async def never(_payload: Any) -> None:
        raise Permanent("bad input")

    def unserialisable(_payload: Any) -> object:
        return object()

    for name, func in [("echo", echo), ("add", sync_add), ("slow", slow), ("later", later), ("never", never),
                       ("odd", unserialisable)]:  # fmt: skip
        registry.register(name, func)
    return Executor(registry, queue="default", default_timeout_s=10, retry_base_s=1.0, retry_max_s=600)


async def test_async_handler_with_context(executor: Executor) -> None:
    outcome = await executor.run(make_job("echo", [1, 2], attempt=2))
    assert outcome.completed and orjson.loads(outcome.value) == {"payload": [1, 2], "attempt": 2}


async def test_sync_handler_runs_in_thread(executor: Executor) -> None:
    outcome = await executor.run(make_job("add", [1, 2, 3]))
    assert outcome.completed and outcome.value == "6"


async def test_timeout_is_a_retryable_failure(executor: Executor) -> None:
    outcome = await executor.run(make_job("slow", timeout_s=0.05))
    assert not outcome.completed and "timed out after 0.05 s" in outcome.value
    assert 0 <= outcome.delay_ms <= 1000
    assert orjson.loads(outcome.history)["attempt"] == 1


async def test_retry_after_and_permanent(executor: Executor) -> None:
    assert (await executor.run(make_job("later"))).delay_ms == 2500
    never = await executor.run(make_job("never"))
    assert never.delay_ms == -1 and never.value == "Permanent: bad input"


async def test_unknown_type_and_bad_result_are_permanent(executor: Executor) -> None:
    assert (await executor.run(make_job("missing"))).delay_ms == -1
    odd = await executor.run(make_job("odd"))
    assert odd.delay_ms == -1 and "not JSON serialisable" in odd.value


def test_backoff_is_capped_full_jitter() -> None:
    for attempt, ceiling in [(1, 1000), (2, 2000), (3, 4000), (12, 600_000), (40, 600_000)]:
        samples = [backoff_ms(attempt, 1.0, 600.0) for _ in range(300)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.5  # spread over the range, not pinned at 0


async def test_deadlines_share_a_timer_and_a_shutdown_cancel_still_propagates(executor: Executor) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    outcomes = await asyncio.gather(*(executor.run(make_job("slow", timeout_s=0.05)) for _ in range(20)))
    assert all("timed out after 0.05 s" in o.value for o in outcomes)
    assert loop.time() - began < 0.05 + executor.deadlines.resolution_s + 1.0  # late by at most one slot (+ slack)
    assert executor.deadlines.slots == {} and executor.deadlines.expired == set()
    # a run cancelled from outside (shutdown) is not turned into a timeout, even when its deadline passes too
    run = asyncio.ensure_future(executor.run(make_job("slow", timeout_s=0.05)))
    await asyncio.sleep(0.01)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    # a run that ends before its deadline leaves nothing behind and is never cancelled later
    assert (await executor.run(make_job("echo", payload=1))).completed
    await asyncio.sleep(0.1)
    assert executor.deadlines.expired == set()
