"""Single submits that arrive together go to Redis together: one submit.lua call for all of them.

Under load the api reads many ``POST /api/tasks`` requests in one turn of the event loop (one per
connection with data). A script call per request costs its own pool checkout, packing, socket write,
reply wake-up and parse (measured in ``bench/README.md``). Here the first task of a loop turn starts a
flush task, which runs on the next turn, after every request of this turn has added its task; the
flush submits them all through ``Broker.submit_stored`` (one script call per queue partition,
pipelined: what the batch route does), counts them, and hands each request its own ``Stored`` record. Nothing waits on a
timer: a lone request goes out one loop turn later; several flushes may be in flight.

What each request gets is what ``Broker.submit_stored([task])`` gives it alone: its id, status,
the script's ``created_at``, or the earlier task of its idempotency key (submit.lua takes a batch's
tasks in order, so a key seen earlier in the same call is a duplicate exactly as in an earlier
call). A failed call fails every request it carried, each with the call's exception; when the
tasks of a turn span several queue partitions (one call each), the requests of the calls that
succeeded get their records (``Broker.submit_each``): none is told it failed while its task was
written. Durable
submission (``STREAMQ_DURABLE_SUBMIT``) is not coalesced: its 503 names the tasks of the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from streamq.shared.broker import Broker
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Stored

MAX_TASKS = 1000  # per call, as POST /api/tasks/batch (a script call holds Redis for its whole run)
Count = Callable[[list[Stored]], None]


class _Batch:
    __slots__ = ("tasks", "waiters")

    def __init__(self) -> None:
        self.tasks: list[TaskCreate] = []
        self.waiters: list[asyncio.Future[Stored]] = []


class Coalescer:
    """``await submit(task)``: the task's ``Stored`` record, from a script call shared with the other
    tasks submitted in the same loop turn."""

    def __init__(self, broker: Broker, count: Count, max_tasks: int = MAX_TASKS) -> None:
        self.broker = broker
        self._count = count
        self.max_tasks = max_tasks
        self._open: _Batch | None = None  # the batch tasks join, until its flush starts (or it is full)
        self._flushes: set[asyncio.Task[None]] = set()  # strong references until each is done

    async def submit(self, task: TaskCreate) -> Stored:
        loop = asyncio.get_running_loop()
        batch = self._open
        if batch is None:  # the first task of this turn: its flush runs on the next turn
            batch = self._open = _Batch()
            flush = loop.create_task(self._flush(batch))
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        waiter: asyncio.Future[Stored] = loop.create_future()
        batch.tasks.append(task)
        batch.waiters.append(waiter)
        if len(batch.tasks) >= self.max_tasks:
            self._open = None  # full: the next task starts another batch
        return await waiter

    async def _flush(self, batch: _Batch) -> None:
        if self._open is batch:
            self._open = None
        waiters = batch.waiters
        try:
            done = await self.broker.submit_each(batch.tasks)
            self._count([outcome for outcome in done if not isinstance(outcome, BaseException)])
        except asyncio.CancelledError:  # the loop is closing: so are the requests waiting here
            for waiter in waiters:
                waiter.cancel()
            raise
        except Exception as error:  # each request raises what its own call would have raised
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(error)
            return
        for waiter, outcome in zip(waiters, done, strict=True):
            if waiter.done():
                continue
            if isinstance(outcome, BaseException):  # its partition's call failed; the others' were written
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)
