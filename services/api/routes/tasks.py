"""/api/tasks: submit (single and batch), list, inspect, retry, cancel, delete."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError

from streamq.services.api.deps import BrokerDep, CatalogDep, GuardDep, QueueName
from streamq.services.api.encoding import batch_json
from streamq.services.api.security import OverBurst, RateLimiter, caller_id
from streamq.services.api.waiters import Waiters
from streamq.shared import metrics, tracing
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
from streamq.shared.payloads import check_tasks
from streamq.shared.queue import Stored, Submitted

router = APIRouter(prefix="/api/tasks", tags=["tasks"])
MAX_LIST_LIMIT = 500
MAX_WAIT_S = 60  # the longest long-poll: under common proxies' and load balancers' idle timeouts


async def _check_types(catalog: CatalogDep, tasks: list[TaskCreate], *, batch: bool) -> None:
    """422 naming each task whose type no worker handles (nothing is written)."""
    unknown = await catalog.unknown({t.type for t in tasks})
    if not unknown:
        return
    errors: list[dict[str, Any]] = [
        {
            "loc": ["body", "tasks", i, "type"] if batch else ["body", "type"],
            "msg": str(unknown[t.type]),
            "type": "unknown_task_type",
            "input": t.type,
        }
        for i, t in enumerate(tasks)
        if t.type in unknown
    ]
    raise RequestValidationError(errors)


async def _check_payloads(guard: GuardDep, tasks: list[TaskCreate], *, batch: bool) -> None:
    """422 for a bad email/http payload or a webhook URL the SSRF guard refuses (nothing is written)."""
    errors = await check_tasks(tasks, guard, batch=batch)
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


def _count(done: list[Submitted]) -> None:
    for s in done:
        if not s.duplicate:
            metrics.TASKS_SUBMITTED.labels(s.task.queue, s.task.type, str(s.task.priority)).inc()


def _count_stored(done: list[Stored]) -> None:
    """As ``_count``: one ``inc(n)`` per label set instead of a ``labels()`` look-up and ``inc()`` per task."""
    counts = Counter((s.queue, s.task.type, s.task.priority) for s in done if s.earlier is None)
    for (queue, task_type, priority), n in counts.items():
        metrics.TASKS_SUBMITTED.labels(queue, task_type, str(priority)).inc(n)


def _one_queue(tasks: list[TaskCreate]) -> str | None:
    """The queue every task names, or None (the default queue, or several: the span names the default)."""
    names = {t.queue for t in tasks}
    return names.pop() if len(names) == 1 else None


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": TaskPublic, "description": "An earlier task with the same idempotency key"}},
)
async def submit_task(
    task: TaskCreate,
    broker: BrokerDep,
    catalog: CatalogDep,
    guard: GuardDep,
    response: Response,
    request: Request,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> TaskPublic:
    """Create one task. With an ``Idempotency-Key`` header (or field) seen in the last 24 h, the
    first task is returned with 200 and nothing is created. Header and field may both be sent only
    with the same value (422 otherwise: neither silently wins)."""
    task = _with_header_key(task, idempotency_key)
    await _check_types(catalog, [task], batch=False)
    await _check_payloads(guard, [task], batch=False)
    if tracing.ENABLED:  # the api's submit span; the task carries its context (shared/tracing.py)
        with tracing.submitting(request.scope["headers"], [task], task.queue or broker.keys.queue) as (traced, span):
            [done] = await broker.submit(traced)
            tracing.submitted(span, [done.task.id])
    else:
        [done] = await broker.submit([task])
    _count([done])
    if done.duplicate:
        response.status_code = status.HTTP_200_OK
    return done.task


@router.post("/batch", status_code=status.HTTP_201_CREATED, response_model=BatchResult)
async def submit_batch(
    batch: TaskBatchCreate, broker: BrokerDep, catalog: CatalogDep, guard: GuardDep, request: Request
) -> Response:
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
    await _check_types(catalog, batch.tasks, batch=True)
    await _check_payloads(guard, batch.tasks, batch=True)
    if tracing.ENABLED:
        queue = _one_queue(batch.tasks) or broker.keys.queue
        with tracing.submitting(request.scope["headers"], batch.tasks, queue) as (traced, span):
            done = await broker.submit_stored(traced)
            tracing.submitted(span, [s.id for s in done])
    else:
        done = await broker.submit_stored(batch.tasks)
    _count_stored(done)
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
