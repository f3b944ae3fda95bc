"""Operator actions on tasks that wait or failed: reschedule one, revive every failed one."""

from __future__ import annotations

from streamq.shared.errors import Conflict, NotFound
from streamq.shared.models import TaskPublic, TaskStatus
from streamq.shared.queue import Queue


async def reschedule(queue: Queue, task_id: str, due_ms: int) -> TaskPublic:
    """Move a scheduled task to ``due_ms`` (a past time makes it due now); 404 / 409 otherwise."""
    ok, status = await queue.scripts.call(
        "reschedule", [*queue.keys.common(), queue.keys.task(task_id)], [queue.events_maxlen, task_id, due_ms]
    )
    if not int(ok):
        if not status:
            raise NotFound(task_id)
        raise Conflict(task_id, str(status), "only scheduled tasks can be rescheduled")
    return await queue.get(task_id)


async def revive_failed(queue: Queue, batch: int = 500) -> int:
    """Put every task that is failed now back on its stream with fresh attempts, ``batch`` tasks per
    round trip (one revive.lua call per task, pipelined). Tasks that fail again meanwhile are not
    revived twice: at most the number failed at the start is visited. A workflow's failed task is left
    as it is (its workflow is retried instead: POST /api/workflows/{id}/retry). Returns how many were
    revived."""
    index = queue.keys.index_status(TaskStatus.FAILED)
    budget = int(await queue.redis.zcard(index))
    common = queue.keys.common()
    revived = refused = 0  # refused: left in the index (a workflow's tasks), passed over by the next rounds
    while budget > 0:
        ids: list[str] = await queue.redis.zrange(index, refused, refused + min(batch, budget) - 1)
        if not ids:
            break
        budget -= len(ids)
        calls = [("revive", [*common, queue.keys.task(task_id)], [queue.events_maxlen, task_id]) for task_id in ids]
        replies = await queue.scripts.call_many(calls)  # one pipeline (per node on a cluster)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
            if len(reply) > 2:
                refused += 1
        revived += sum(int(reply[0]) for reply in replies)
    return revived
