"""/api/tasks: submit (single and batch), list, inspect, retry, cancel, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError

from streamq.services.api.answers import UniqueHeld
from streamq.services.api.deps import BrokerDep, QueueName, SubmissionDep
from streamq.services.api.encoding import batch_json
from streamq.services.api.ratelimit import OverBurst, RateLimiter, caller_id
from streamq.services.api.submission import Submission
from streamq.services.api.waiters import Waiters
from streamq.shared.models import (
    MAX_PRIORITY,
    MIN_PRIORITY,
    BatchResult,
    TaskBatchCreate,
    TaskCreate,
    TaskPage,
    TaskPublic,
    TaskStatus,
)
from streamq.shared.queue import UNIQUE_HELD

router = APIRouter(prefix="/api/tasks", tags=["tasks"])
MAX_LIST_LIMIT = 500
MAX_WAIT_S = 60  # the longest long-poll: under common proxies' and load balancers' idle timeouts


async def _check(submission: Submission, tasks: list[TaskCreate], *, batch: bool) -> None:
    """422 naming each task whose type no worker handles, or each bad email/http payload or refused
    webhook URL (nothing is written)."""
    errors = await submission.problems(tasks, batch=batch)
    if errors:
        raise RequestValidationError(errors)


def _with_header_key(task: TaskCreate, header: str | None) -> TaskCreate:
    """The task with the ``Idempotency-Key`` header's key; 422 naming both when the body's differs."""
    if header is None or task.idempotency_key == header:
        return task
    if task.idempotency_key is None:
        return task.model_copy(update={"idempotency_key": header})
    msg = "the Idempotency-Key header and the body's idempotency_key differ; send one of them, or the same value"
    raise RequestValidationError(
        [
            {"loc": ["header", "idempotency-key"], "msg": msg, "type": "idempotency_key_conflict", "input": header},
            {"loc": ["body", "idempotency_key"], "msg": msg, "type": "idempotency_key_conflict",
             "input": task.idempotency_key},
        ]
    )  # fmt: skip


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {
            "model": TaskPublic,
            "description": "An earlier task with the same idempotency key, or the waiting "
            "task of the same debounce key, updated (`debounced`: true)",
        },
        409: {"description": 'Another task holds its unique key: `{"detail": ..., "task_id": <holder>}`'},
    },
)
async def submit_task(
    task: TaskCreate,
    submission: SubmissionDep,
    response: Response,
    request: Request,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> TaskPublic:
    """Create one task. With an ``Idempotency-Key`` header (or field) seen in the last 24 h, the
    first task is returned with 200 and nothing is created. Header and field may both be sent only
    with the same value (422 otherwise: neither silently wins). With ``unique``: 409 naming the task
    that holds the key; with ``debounce``: 200 and the waiting task, updated, while one waits."""
    task = _with_header_key(task, idempotency_key)
    await _check(submission, [task], batch=False)
    done = (await submission.submit_one(task, request.scope["headers"])).submitted()
    if done.kind == UNIQUE_HELD:
        raise UniqueHeld(task.unique.key if task.unique and task.unique.key else "", done.task.id)
    if done.duplicate:
        response.status_code = status.HTTP_200_OK
    return done.task


@router.post("/batch", status_code=status.HTTP_201_CREATED, response_model=BatchResult)
async def submit_batch(batch: TaskBatchCreate, submission: SubmissionDep, request: Request) -> Response:
    """Create up to 1,000 tasks in one request and one Redis round trip (one atomic script call per
    queue partition the batch touches: all or none of a partition's tasks are written).
    Under a rate limit each task counts (the request itself already took one token)."""
    limiter: RateLimiter | None = request.app.state.limiter
    if limiter is not None:
        try:
            await limiter.take_batch(caller_id(request.scope), len(batch.tasks))
        except OverBurst as error:
            error_item = {"loc": ["body", "tasks"], "msg": str(error), "type": "over_burst"}
            raise RequestValidationError([error_item]) from None
    await _check(submission, batch.tasks, batch=True)
    done = await submission.submit_many(batch.tasks, request.scope["headers"])
    # the BatchResult's bytes, without a TaskPublic per task (services/api/encoding.py)
    return Response(batch_json(done), status_code=status.HTTP_201_CREATED, media_type="application/json")


@router.get("")
async def list_tasks(
    broker: BrokerDep,
    queue: QueueName = None,
    status_: Annotated[TaskStatus | None, Query(alias="status")] = None,
    type_: Annotated[str | None, Query(alias="type", max_length=128)] = None,
    priority: Annotated[int | None, Query(ge=MIN_PRIORITY, le=MAX_PRIORITY)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=64, pattern=r"^[0-9A-Z]+$")] = None,
) -> TaskPage:
    """Newest first; pass ``next_cursor`` back as ``cursor`` for the next page (null at the end)."""
    tasks, next_cursor = await broker.list_tasks(
        queue=queue, status=status_, task_type=type_, priority=priority, limit=limit, cursor=cursor
    )
    return TaskPage(tasks=tasks, next_cursor=next_cursor)


WaitSeconds = Annotated[
    float | None,
    Query(gt=0, le=MAX_WAIT_S, description="Long-poll: answer once the task is completed, failed or cancelled, "
          "or after this many seconds with its current state (200 either way)"),
]  # fmt: skip


@router.get("/{task_id}", responses={404: {"description": "No such task"}})
async def get_task(
    task_id: str, broker: BrokerDep, request: Request, queue: QueueName = None, wait: WaitSeconds = None
) -> TaskPublic:
    if wait is None:
        return await broker.get(task_id, queue)
    waiters: Waiters = request.app.state.waiters
    return await waiters.task(broker, task_id, queue, wait)


@router.post("/{task_id}/retry", responses={404: {}, 409: {"description": "Not failed or cancelled"}})
async def retry_task(task_id: str, broker: BrokerDep, queue: QueueName = None) -> TaskPublic:
    """A failed or cancelled task goes back to pending with fresh attempts."""
    return await broker.revive(task_id, queue)


@router.post(
    "/{task_id}/cancel",
    responses={
        202: {"description": "Processing: asked to stop (cancel_requested); it ends cancelled"},
        404: {},
        409: {"description": "Already completed, failed or cancelled"},
    },
)
async def cancel_task(task_id: str, broker: BrokerDep, response: Response, queue: QueueName = None) -> TaskPublic:
    """A pending or scheduled task is cancelled and never runs (200); a processing one is asked to stop
    (202, ``cancel_requested``): its worker cancels the handler and records it cancelled."""
    task = await broker.cancel(task_id, queue)
    if task.status == TaskStatus.PROCESSING:
        response.status_code = status.HTTP_202_ACCEPTED
    return task


@router.delete(
    "/{task_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {}, 409: {"description": "Not finished"}},
)
async def delete_task(task_id: str, broker: BrokerDep, queue: QueueName = None) -> Response:
    """Delete a completed, failed or cancelled task."""
    await broker.delete(task_id, queue)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
