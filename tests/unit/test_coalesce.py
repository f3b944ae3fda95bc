"""The api's submit coalescer (services/api/coalesce.py): single submits of one loop turn share a call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from streamq.services.api.coalesce import Coalescer
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Stored


class FakeBroker:
    """Records each submit_each call; answers each task with a Stored naming its call and place (or,
    for the payloads in ``fail_payloads``, the error of a failed partition's call)."""

    def __init__(self, fail: BaseException | None = None, fail_payloads: frozenset[object] = frozenset()) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail
        self.fail_payloads = fail_payloads
        self.gate = asyncio.Event()
        self.gate.set()

    async def submit_each(self, tasks: Sequence[TaskCreate]) -> list[Stored | BaseException]:
        self.calls.append([str(t.payload) for t in tasks])
        n = len(self.calls)
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [
            RuntimeError(f"partition of {t.payload} failed")
            if t.payload in self.fail_payloads
            else Stored(t, f"call{n}-{i}", "default", "pending", n, None)
            for i, t in enumerate(tasks)
        ]


def _coalescer(broker: FakeBroker, counted: list[list[Stored]], **kwargs: Any) -> Coalescer:
    return Coalescer(broker, counted.append, **kwargs)  # type: ignore[arg-type]


def _task(payload: object) -> TaskCreate:
    return TaskCreate(type="noop", payload=payload)


async def test_tasks_of_one_turn_share_one_call_in_order() -> None:
    broker, counted = FakeBroker(), []
    coalescer = _coalescer(broker, counted)
    done = await asyncio.gather(*(coalescer.submit(_task(i)) for i in range(5)))
    assert broker.calls == [["0", "1", "2", "3", "4"]]
    assert [(s.id, s.task.payload) for s in done] == [(f"call1-{i}", i) for i in range(5)]
    assert counted == [done]  # counted once per call, with every record


async def test_a_lone_task_and_later_turns_get_their_own_calls() -> None:
    broker, counted = FakeBroker(), []
    coalescer = _coalescer(broker, counted)
    assert (await coalescer.submit(_task("a"))).id == "call1-0"
    broker.gate.clear()  # the second call stays in flight: the next turn's tasks do not wait for it
    first = asyncio.gather(coalescer.submit(_task("b")), coalescer.submit(_task("c")))
    await asyncio.sleep(0.01)
    second = asyncio.gather(coalescer.submit(_task("d")))
    await asyncio.sleep(0.01)
    assert broker.calls == [["a"], ["b", "c"], ["d"]]
    broker.gate.set()
    assert [s.id for s in await first] == ["call2-0", "call2-1"]
    assert [s.id for s in await second] == ["call3-0"]


async def test_a_full_batch_goes_out_and_the_next_task_starts_another() -> None:
    broker, counted = FakeBroker(), []
    coalescer = _coalescer(broker, counted, max_tasks=2)
    done = await asyncio.gather(*(coalescer.submit(_task(i)) for i in range(5)))
    assert broker.calls == [["0", "1"], ["2", "3"], ["4"]]
    assert [s.task.payload for s in done] == [0, 1, 2, 3, 4]


async def test_a_failed_call_fails_each_of_its_tasks_and_counts_nothing() -> None:
    broker, counted = FakeBroker(fail=ConnectionError("redis went away")), []
    coalescer = _coalescer(broker, counted)
    results = await asyncio.gather(*(coalescer.submit(_task(i)) for i in range(3)), return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError] * 3 and counted == []
    broker.fail = None
    assert (await coalescer.submit(_task("x"))).id == "call2-0"  # the next call is unaffected


async def test_a_cancelled_request_leaves_the_others_their_answer() -> None:
    broker, counted = FakeBroker(), []
    coalescer = _coalescer(broker, counted)
    broker.gate.clear()
    gone = asyncio.ensure_future(coalescer.submit(_task("gone")))
    kept = asyncio.ensure_future(coalescer.submit(_task("kept")))
    await asyncio.sleep(0.01)
    gone.cancel()
    broker.gate.set()
    assert (await kept).id == "call1-1"
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert broker.calls == [["gone", "kept"]]  # already sent: it was stored, as a lone call would have been


async def test_a_failed_partition_fails_only_the_requests_it_carried() -> None:
    broker, counted = FakeBroker(fail_payloads=frozenset({1, 3})), []
    coalescer = _coalescer(broker, counted)
    done = await asyncio.gather(*(coalescer.submit(_task(i)) for i in range(5)), return_exceptions=True)
    assert [str(d) if isinstance(d, BaseException) else d.id for d in done] == [
        "call1-0",
        "partition of 1 failed",
        "call1-2",
        "partition of 3 failed",
        "call1-4",
    ]
    assert [[s.id for s in c] for c in counted] == [["call1-0", "call1-2", "call1-4"]]  # only what was written
