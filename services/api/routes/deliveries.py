"""/api/tasks/{id}/deliveries (the webhook delivery log) and /api/tasks/{id}/redeliver."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel

from streamq.services.api.deps import RedisDep, SettingsDep, TaskQueueDep
from streamq.shared import webhooks
from streamq.shared.deliveries import Deliveries, task_data
from streamq.shared.errors import Conflict
from streamq.shared.models import TERMINAL, new_task_id
from streamq.shared.queue import Queue
from streamq.shared.settings import Settings

router = APIRouter(prefix="/api/tasks", tags=["webhooks"])


class DeliveryAttempt(BaseModel):
    webhook_id: str
    event: str
    url: str
    attempt: int
    status_code: int | None = None
    error: str | None = None
    response: str | None = None
    duration_ms: float
    started_at: str
    finished_at: str
    outcome: str
    next_attempt_at: str | None = None


class DeliveryLog(BaseModel):
    task: str
    webhook: str | None
    webhook_status: str | None
    deliveries: list[DeliveryAttempt]


class Redelivery(BaseModel):
    task: str
    webhook_id: str
    webhook_status: str
    new_message: bool


def _deliveries(queue: Queue, settings: Settings) -> Deliveries:
    return Deliveries(
        queue.scripts, queue.keys, events_maxlen=queue.events_maxlen, keep_ms=settings.result_ttl_s * 1000
    )


@router.get("/{task_id}/deliveries", responses={404: {"description": "No such task"}})
async def delivery_log(task_id: str, queue: TaskQueueDep, redis: RedisDep, settings: SettingsDep) -> DeliveryLog:
    """Every webhook attempt for the task (oldest first, the last 100): status code, error,
    duration, attempt number, timestamps and outcome."""
    task = await queue.get(task_id)
    entries: list[dict[str, Any]] = await _deliveries(queue, settings).log(redis, task_id)
    return DeliveryLog(
        task=task.id,
        webhook=task.webhook,
        webhook_status=task.webhook_status,
        deliveries=[DeliveryAttempt.model_validate(e) for e in entries],
    )


@router.post(
    "/{task_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    responses={404: {}, 409: {"description": "No webhook, or the task has not finished"}},
)
async def redeliver(task_id: str, queue: TaskQueueDep, redis: RedisDep, settings: SettingsDep) -> Redelivery:
    """Send the task's latest webhook message again (same ``webhook-id`` and body) with a fresh
    retry schedule; a finished task whose message is gone gets a new one with its current state."""
    task = await queue.get(task_id)
    if not task.webhook:
        raise Conflict(task_id, task.status, "the task has no webhook")
    if task.status not in TERMINAL:
        raise Conflict(task_id, task.status, "webhooks are sent when a task is completed, failed or cancelled")
    latest = await redis.hget(queue.keys.task(task_id), "webhook_delivery")
    exists = bool(latest) and bool(await redis.exists(queue.keys.webhook(latest)))
    delivery_id = latest if exists else f"msg_{new_task_id()}"
    now_ms = int(task.completed_at.timestamp() * 1000) if task.completed_at else 0
    body = webhooks.body(task.status.value, task_data(task), now_ms)
    created = await _deliveries(queue, settings).create(
        mode="redeliver",
        delivery_id=delivery_id,
        task_id=task_id,
        event=task.status.value,
        url=task.webhook,
        body=body,
    )
    return Redelivery(task=task_id, webhook_id=delivery_id, webhook_status="pending", new_message=created)
