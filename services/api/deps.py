"""Dependencies as ``Annotated`` aliases; everything lives on ``app.state``, built in the lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from redis.asyncio import Redis

from streamq.services.api.submission import Submission
from streamq.services.api.types import TypeCatalog
from streamq.shared.broker import Broker
from streamq.shared.queue import Queue
from streamq.shared.settings import Settings
from streamq.shared.ssrf import SsrfGuard


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_queue(request: Request) -> Queue:
    return request.app.state.queue  # type: ignore[no-any-return]


async def get_broker(request: Request) -> Broker:
    return request.app.state.broker  # type: ignore[no-any-return]


async def get_redis(request: Request) -> Redis:
    return request.app.state.redis


async def get_catalog(request: Request) -> TypeCatalog:
    return request.app.state.catalog  # type: ignore[no-any-return]


async def get_submission(request: Request) -> Submission:
    return request.app.state.submission  # type: ignore[no-any-return]


async def get_guard(request: Request) -> SsrfGuard:
    return request.app.state.guard  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]
QueueDep = Annotated[Queue, Depends(get_queue)]
BrokerDep = Annotated[Broker, Depends(get_broker)]
QueueName = Annotated[
    str | None,
    Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$", description="Only this queue (default: all)"),
]
RedisDep = Annotated[Redis, Depends(get_redis)]
CatalogDep = Annotated[TypeCatalog, Depends(get_catalog)]
GuardDep = Annotated[SsrfGuard, Depends(get_guard)]
SubmissionDep = Annotated[Submission, Depends(get_submission)]


async def get_task_queue(task_id: str, broker: BrokerDep, queue: QueueName = None) -> Queue:
    """The partition (``Queue``) holding the task named in the path; 404 when none does."""
    return await broker.locate(task_id, queue)


TaskQueueDep = Annotated[Queue, Depends(get_task_queue)]
