"""/api/schedules: periodic schedules (cron + time zone + task template), pause and resume.

A schedule lives in the queue its template names (``task.queue``, default: the api's queue); names
are global, so every route finds a schedule by name alone."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response, status
from fastapi.exceptions import RequestValidationError

from streamq.services.api.deps import CatalogDep, GuardDep, QueueDep
from streamq.shared.payloads import check_task
from streamq.shared.queues import QueueRegistry
from streamq.shared.schedules import ScheduleBook, ScheduleCreate, ScheduleExists, ScheduleNotFound, SchedulePublic

T = TypeVar("T")
router = APIRouter(prefix="/api/schedules", tags=["schedules"])
NamePath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]


def get_schedules(request: Request, queue: QueueDep) -> ScheduleBook:
    """One ScheduleBook per app (its scripts are registered once), made on first use."""
    state = request.app.state
    if getattr(state, "schedules", None) is None:
        registry = QueueRegistry(queue.redis, queue.keys)
        state.schedules = ScheduleBook(queue.redis, queue.keys, registry, events_maxlen=queue.events_maxlen)
    return state.schedules  # type: ignore[no-any-return]


SchedulesDep = Annotated[ScheduleBook, Depends(get_schedules)]


@router.post("", status_code=status.HTTP_201_CREATED, responses={409: {"description": "The name is taken (any queue)"}})
async def create_schedule(
    spec: ScheduleCreate, schedules: SchedulesDep, catalog: CatalogDep, guard: GuardDep
) -> SchedulePublic:
    """Create a schedule in the queue ``task.queue`` names (created on first use); its first tick is the
    next one after now (nothing fires for the past). Names are global across queues. Its task passes
    the checks a submitted task does (type, email/http payload, SSRF guard on URLs)."""
    unknown = await catalog.unknown({spec.task.type})
    if unknown:
        error = unknown[spec.task.type]
        raise RequestValidationError(
            [{"loc": ["body", "task", "type"], "msg": str(error), "type": "unknown_task_type", "input": spec.task.type}]
        )
    errors = await check_task(spec.task, guard, ("body", "task"))
    if errors:
        raise RequestValidationError(errors)
    try:
        return await schedules.create(spec)
    except ScheduleExists as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None


@router.get("")
async def list_schedules(schedules: SchedulesDep) -> list[SchedulePublic]:
    """Every schedule of every queue, by name."""
    return await schedules.list_all()


@router.get("/{name}", responses={404: {}})
async def get_schedule(name: NamePath, schedules: SchedulesDep) -> SchedulePublic:
    return await _found(schedules.get(name))


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, responses={404: {}})
async def delete_schedule(name: NamePath, schedules: SchedulesDep) -> Response:
    """Delete a schedule; the tasks it already created are kept."""
    await _found(schedules.delete(name))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{name}/pause", responses={404: {}})
async def pause_schedule(name: NamePath, schedules: SchedulesDep) -> SchedulePublic:
    """No tick fires while paused."""
    return await _found(schedules.pause(name))


@router.post("/{name}/resume", responses={404: {}})
async def resume_schedule(name: NamePath, schedules: SchedulesDep) -> SchedulePublic:
    """Resume at the next tick from now; ticks missed while paused are not fired."""
    return await _found(schedules.resume(name))


async def _found(call: Awaitable[T]) -> T:
    """Await ``call``; a missing schedule becomes 404."""
    try:
        return await call
    except ScheduleNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
