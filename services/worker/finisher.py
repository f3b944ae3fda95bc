"""Recording outcomes: every outcome that arrives while a call is in flight goes in the next one,
so under load many tasks are finished per round trip and an idle worker still finishes at once.

With a ``refill`` (the consumer), the slots a batch frees are refilled in the same round trip:
finish.lua and take.lua go out in one pipeline (two atomic script calls, no MULTI), and the
consumer dispatches what take.lua read and started. That saves the consumer's own fetch round trip whenever
slots free up because tasks finished (the common case under load).

Outcomes of different partitions (named queues, partitions) go in one finish.lua call per
partition, all in the same pipeline: each call touches one hash slot."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from services.worker.jobs import Outcome
from shared.keys import KeySchema
from shared.scripts import Scripts

log = logging.getLogger("streamq.worker")
MAX_BATCH = 256
Recorded = Callable[[str | BaseException], None]  # told the status written, or the call's error


class Refill(Protocol):
    def reserve(self, slots: int) -> tuple[list[str], list[Any]] | None:
        """``slots`` slots are about to be freed: take.lua's KEYS and ARGV to fill them, or None."""

    async def settle(self) -> None:
        """Returns once the consumer's own take call (if any) has answered (bounded)."""

    def fetched(self, reply: Any, slots: int, keys: list[str] | None = None) -> None:
        """take.lua's reply (or the exception it raised) for a reservation of ``slots`` (``keys``: the
        KEYS :meth:`reserve` gave)."""


class Finisher:
    def __init__(
        self,
        scripts: Scripts,
        keys: KeySchema,
        *,
        group: str,
        consumer: str,
        result_ttl_ms: int,
        events_maxlen: int,
    ) -> None:
        self.scripts = scripts
        self.keys = keys
        self._head: list[Any] = [events_maxlen, group, consumer, result_ttl_ms]
        self._waiting: list[tuple[Outcome, Recorded]] = []
        self._flushing = False
        self._task: asyncio.Task[None] | None = None
        self.refill: Refill | None = None

    async def record(self, outcome: Outcome) -> str:
        """Record one outcome; returns the status written (or ``lost``/``stale``)."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def settle(status: str | BaseException) -> None:
            # a caller cancelled while waiting cancels only its own future: recorded all the same
            if not future.done():
                if isinstance(status, BaseException):
                    future.set_exception(status)
                else:
                    future.set_result(status)

        self.post(outcome, settle)
        return await future

    def post(self, outcome: Outcome, then: Recorded) -> None:
        """Record one outcome in the next call; ``then`` gets the status written (or ``lost``/``stale``),
        or the error that call raised. The caller need not wait: a worker's job ends with its handler,
        and its slot is freed by ``then`` (no future and no second step of the job's task)."""
        self._waiting.append((outcome, then))
        if not self._flushing:
            self._flushing = True
            self._task = asyncio.get_running_loop().create_task(self._flush())

    async def idle(self) -> None:
        """Until every outcome posted so far is recorded (or failed); cancelling this wait does not
        cancel the recording."""
        while self._task is not None and not self._task.done():
            await asyncio.wait({self._task})

    async def _flush(self) -> None:
        try:
            if self.refill is not None:
                await self.refill.settle()  # starting what is due goes first (a burst)
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                try:
                    statuses = await self._call([o for o, _ in batch])
                except Exception as error:
                    for _, then in batch:
                        _tell(then, error)
                    continue
                for (outcome, then), status in zip(batch, statuses, strict=True):
                    outcome.status = status
                    _tell(then, status)
        finally:
            self._flushing = False

    async def _call(self, outcomes: list[Outcome]) -> list[str]:
        groups: dict[KeySchema, list[int]] = {}
        for i, o in enumerate(outcomes):
            groups.setdefault(o.job.delivery.keys or self.keys, []).append(i)
        calls = [self._finish_call(part, [outcomes[i] for i in members]) for part, members in groups.items()]
        refill = self.refill
        fetch = refill.reserve(len(outcomes)) if refill is not None else None
        if refill is None or fetch is None:
            if len(calls) == 1:
                replies = [await self.scripts.call(*calls[0])]
            else:
                replies = await self.scripts.call_many(calls)
        else:
            try:
                *replies, delivered = await self.scripts.call_many([*calls, ("take", *fetch)])
            except BaseException as error:
                refill.fetched(error, len(outcomes), fetch[0])
                raise
            refill.fetched(delivered, len(outcomes), fetch[0])
        statuses: list[str] = [""] * len(outcomes)
        for members, reply in zip(groups.values(), replies, strict=True):
            if isinstance(reply, BaseException):
                raise reply
            for i, status in zip(members, reply, strict=True):
                statuses[i] = str(status)
        return statuses

    def _finish_call(self, part: KeySchema, outcomes: list[Outcome]) -> tuple[str, list[str], list[Any]]:
        keys = part.common()
        args = list(self._head)
        for o in outcomes:
            d = o.job.delivery
            keys.append(part.task(d.task_id))
            args += [
                d.task_id,
                d.msg_id,
                "completed" if o.completed else "failed",
                o.value,
                o.delay_ms,
                o.history,
            ]
        return "finish", keys, args


def _tell(then: Recorded, status: str | BaseException) -> None:
    """One poster's callback; one that fails is logged and does not keep the rest of the batch from
    theirs (each frees a worker slot)."""
    try:
        then(status)
    except Exception:
        log.exception("outcome callback failed")
