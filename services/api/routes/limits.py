"""/api/queues/{queue}/types: concurrency and rate limits per task type (docs/groups-and-limits.md).

The same mechanism as groups, keyed by task type; a task is subject to its type's and its group's
limits together. Writes are ``admin`` scope (services/api/security.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from streamq.services.api.routes.groups import LimitStoreDep, Name, known
from streamq.shared.limits import Limits, Rate, TypeLimitPublic

router = APIRouter(prefix="/api/queues", tags=["limits"])
TypeName = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]


class TypeLimits(BaseModel):
    queue: str
    type: str
    concurrency: int | None
    rate: Rate | None


@router.get("/{name}/types", responses={404: {"description": "No such queue"}})
async def list_type_limits(name: Name, store: LimitStoreDep) -> list[TypeLimitPublic]:
    """Every task type with a limit in this queue, with how many of its tasks run now."""
    await known(name, store)
    return await store.types(name)


@router.put("/{name}/types/{task_type}")
async def set_type_limits(name: Name, task_type: TypeName, body: Limits, store: LimitStoreDep) -> TypeLimits:
    """Limit one task type across every worker (tasks submitted from now on wait for it)."""
    if body.concurrency is None and body.rate is None:
        rule = "give concurrency or rate (DELETE removes a type's limits)"
        raise RequestValidationError([{"loc": ["body"], "msg": rule, "type": "value_error", "input": {}}])
    await store.set_type(name, task_type, body)
    return TypeLimits(queue=name, type=task_type, concurrency=body.concurrency, rate=body.rate)


@router.delete("/{name}/types/{task_type}", status_code=204, responses={404: {"description": "No such limit"}})
async def delete_type_limits(name: Name, task_type: TypeName, store: LimitStoreDep) -> Response:
    """Remove a type's limits."""
    await known(name, store)
    if not await store.delete_type(name, task_type):
        raise HTTPException(status_code=404, detail=f"type {task_type!r} has no limits in queue {name!r}")
    return Response(status_code=204)
