"""/api/tasks recovery actions: reschedule a scheduled task, revive every failed task."""

from __future__ import annotations

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from streamq.services.api.deps import BrokerDep, QueueName
from streamq.shared.models import AwareDatetime, TaskPublic, dt_to_ms

router = APIRouter(prefix="/api/tasks", tags=["tasks"])


class RescheduleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scheduled_for: AwareDatetime


class Revived(BaseModel):
    revived: int


@router.post("/retry-failed")
async def retry_failed(
    broker: BrokerDep, batch: int = Query(default=500, ge=1, le=5000), queue: QueueName = None
) -> Revived:
    """Every failed task (of ``queue``, or of every queue) back to pending with fresh attempts,
    ``batch`` per Redis round trip and partition; their dead letters are removed."""
    return Revived(revived=await broker.revive_failed(batch, queue))


@router.post("/{task_id}/reschedule", responses={404: {}, 409: {"description": "Not scheduled"}})
async def reschedule_task(task_id: str, body: RescheduleBody, broker: BrokerDep, queue: QueueName = None) -> TaskPublic:
    """Move a scheduled task to a new time (a past time runs it now)."""
    return await broker.reschedule(task_id, dt_to_ms(body.scheduled_for), queue)
