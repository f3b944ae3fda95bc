"""Recording outcomes: every outcome that arrives while a call is in flight goes in the next one,
so under load many tasks are finished per round trip and an idle worker still finishes at once.

How a batch goes out is the poster's :class:`Sender`: by default the batch's calls alone
(:class:`PlainSender`); a worker's consumer passes its own, which adds take.lua for the slots the
batch frees to the same pipeline (:meth:`Consumer.send`), so the finisher knows nothing of slots.

Outcomes of different partitions (named queues, partitions) go in one finish.lua call per
partition, all in the same pipeline: each call touches one hash slot.

An outcome whose call failed because Redis was out of reach (a restart, a failover) or refused writes
(out of memory, a read-only replica, a failed persistence check) is kept, in memory, and sent again
with back-off until Redis answers, for up to ``keep_s`` (the lease) after the run ended: the task is
not run again. Its slot stays taken meanwhile (as its lease is renewed), so a worker keeps at most as
many outcomes as it runs jobs (and never more than ``MAX_KEPT``). After the lease the reclaimer may
have given the task to another worker; sending the outcome then is still safe (finish.lua records an
outcome only while the entry is pending for this consumer and the task runs on that entry, else
answers ``lost`` or ``stale``), but the slot is freed and the error reported."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from streamq.services.worker.jobs import Outcome
from streamq.shared.keys import KeySchema
from streamq.shared.refusals import counted_refusal, transient
from streamq.shared.scripts import Scripts

log = logging.getLogger("streamq.worker")
MAX_BATCH = 256
MAX_KEPT = 10_000  # most outcomes kept through a Redis outage (the worker's slots bound them first)
RETRY_S = (0.05, 2.0)  # back-off between sends of kept outcomes: first, most
Recorded = Callable[[str | BaseException], None]  # told the status written, or the call's error
Call = tuple[str, list[str], list[Any]]  # one script call: name, KEYS, ARGV


@dataclass(slots=True)
class Posted:
    """An outcome waiting for its finish.lua call, and until when it is kept through Redis errors."""

    outcome: Outcome
    then: Recorded
    keep_until: float  # time.monotonic()
    tries: int = 0  # calls that failed with a Redis error it was kept through


class Sender(Protocol):
    """How the finisher's batches go out."""

    async def wait_turn(self) -> None:
        """Returns when a flush may send its first batch (bounded)."""

    async def send(self, calls: list[Call], freeing: int) -> list[Any]:
        """A batch's finish.lua calls, whose outcomes free ``freeing`` slots, in one round trip: each
        call's reply or error (or raises when the round trip failed)."""


class PlainSender:
    """A batch's calls alone, at once."""

    def __init__(self, scripts: Scripts) -> None:
        self.scripts = scripts

    async def wait_turn(self) -> None:
        return None

    async def send(self, calls: list[Call], freeing: int) -> list[Any]:
        if len(calls) == 1:
            return [await self.scripts.call(*calls[0])]
        return await self.scripts.call_many(calls)


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
        keep_s: float = 30.0,
    ) -> None:
        self.scripts = scripts
        self.keys = keys
        self._head: list[Any] = [events_maxlen, group, consumer, result_ttl_ms]
        self.keep_s = keep_s  # STREAMQ_LEASE_S: how long an outcome is kept through Redis errors
        self._waiting: list[Posted] = []
        self.kept = 0  # outcomes sent again after a Redis error and then recorded (for tests and logs)
        self._flushing = False
        self._task: asyncio.Task[None] | None = None
        self.plain = PlainSender(scripts)

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

    def post(self, outcome: Outcome, then: Recorded, sender: Sender | None = None) -> None:
        """Record one outcome in the next call; ``then`` gets the status written (or ``lost``/``stale``),
        or the error that call raised. The caller need not wait: a worker's job ends with its handler,
        and its slot is freed by ``then`` (no future and no second step of the job's task). ``sender``
        sends the batches of the flush this post starts (default :class:`PlainSender`); outcomes posted
        while a flush runs go out with its batches."""
        self._waiting.append(Posted(outcome, then, time.monotonic() + self.keep_s))
        if not self._flushing:
            self._flushing = True
            self._task = asyncio.get_running_loop().create_task(self._flush(sender or self.plain))

    async def idle(self) -> None:
        """Until every outcome posted so far is recorded (or failed); cancelling this wait does not
        cancel the recording."""
        while self._task is not None and not self._task.done():
            await asyncio.wait({self._task})

    async def _flush(self, sender: Sender) -> None:
        try:
            await sender.wait_turn()  # starting what is due goes first (a burst)
            pause = RETRY_S[0]
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                try:
                    statuses = await self._call([p.outcome for p in batch], sender)
                except Exception as error:
                    statuses = [error] * len(batch)
                kept = self._settle(batch, statuses)
                if kept:  # Redis out of reach or refusing writes: sent again after a pause
                    self._waiting = kept + self._waiting
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, RETRY_S[1])
                else:
                    pause = RETRY_S[0]
        finally:
            self._flushing = False

    def _settle(self, batch: list[Posted], statuses: list[str | BaseException]) -> list[Posted]:
        """Tell each poster its status, or its error when that cannot be waited out or its time is up;
        returns the outcomes kept to be sent again."""
        kept: list[Posted] = []
        now = time.monotonic()
        for posted, status in zip(batch, statuses, strict=True):
            if isinstance(status, BaseException):
                if transient(status) and now < posted.keep_until and len(kept) + len(self._waiting) < MAX_KEPT:
                    kept.append(posted)
                    continue
            else:
                posted.outcome.status = status
                self.kept += posted.tries > 0
            _tell(posted.then, status)
        for posted in kept:
            posted.tries += 1
        if kept:
            error = next(s for s in statuses if isinstance(s, BaseException))
            counted_refusal(error)  # one refused call (or pipeline), counted once
            log.warning(
                "could not record outcomes; kept, sending them again",
                extra={"outcomes": len(kept), "error": str(error)},
            )
        return kept

    async def _call(self, outcomes: list[Outcome], sender: Sender) -> list[str | BaseException]:
        """Each outcome's status written, or the error of the call that carried it."""
        groups: dict[KeySchema, list[int]] = {}
        for i, o in enumerate(outcomes):
            groups.setdefault(o.job.delivery.keys or self.keys, []).append(i)
        calls = [self.finish_call(part, [outcomes[i] for i in members]) for part, members in groups.items()]
        replies = await sender.send(calls, len(outcomes))
        statuses: list[str | BaseException] = [""] * len(outcomes)
        for members, reply in zip(groups.values(), replies, strict=True):  # a failed call fails only its own
            each: list[str | BaseException] = (
                [reply] * len(members) if isinstance(reply, BaseException) else [str(r) for r in reply]
            )
            for i, status in zip(members, each, strict=True):
                statuses[i] = status
        return statuses

    def finish_call(self, part: KeySchema, outcomes: list[Outcome]) -> Call:
        """finish.lua's call for outcomes of one partition."""
        keys = part.common()
        args = list(self._head)
        for o in outcomes:
            d = o.job.delivery
            keys.append(part.task(d.task_id))
            args += [
                d.task_id,
                d.msg_id,
                o.kind or ("completed" if o.completed else "failed"),
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
