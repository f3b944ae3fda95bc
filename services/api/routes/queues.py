"""/api/queues: every named queue with its figures; configure partitions; pause and resume.

Reading is ``read`` scope; PUT and pause/resume are ``admin`` (services/api/security.py maps every
non-GET route outside submitting to ``admin``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from services.api.deps import BrokerDep
from shared.broker import Broker, QueueFigures
from shared.models import Stats
from shared.queues import MAX_PARTITIONS

router = APIRouter(prefix="/api/queues", tags=["queues"])
Name = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]


class QueuePublic(BaseModel):
    name: str
    partitions: int
    paused: bool
    stats: Stats  # counts per status and lifetime counters, summed over the partitions
    depth: dict[int, int]  # tasks waiting per priority (1..5), summed over the partitions
    dead_letter: int
    workers: list[str]  # live workers that consume this queue


class QueueConfigBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partitions: int = Field(ge=1, le=MAX_PARTITIONS, strict=True)


async def _public(broker: Broker, figures: list[QueueFigures]) -> list[QueuePublic]:
    workers = await broker.workers()
    return [
        QueuePublic(
            name=f.config.name,
            partitions=f.config.partitions,
            paused=f.config.paused,
            stats=f.stats,
            depth=f.depth,
            dead_letter=f.stats.dead_letter,
            workers=[w.id for w in workers if f.config.name in (w.queues or [w.queue])],
        )
        for f in figures
    ]


async def _one(broker: Broker, name: str) -> QueuePublic:
    figures = await broker.figures(name)
    if not figures:
        raise HTTPException(status_code=404, detail=f"queue {name!r} not found")
    [one] = await _public(broker, figures)
    return one


@router.get("")
async def list_queues(broker: BrokerDep) -> list[QueuePublic]:
    """Every known queue (the default one always), by name."""
    return await _public(broker, await broker.figures())


@router.get("/{name}", responses={404: {"description": "No such queue"}})
async def get_queue(name: Name, broker: BrokerDep) -> QueuePublic:
    return await _one(broker, name)


@router.put("/{name}")
async def configure_queue(name: Name, body: QueueConfigBody, broker: BrokerDep) -> QueuePublic:
    """Create the queue, or grow it to ``partitions`` (partitions never shrink: 422)."""
    try:
        await broker.registry.configure(name, body.partitions)
    except ValueError as error:
        raise RequestValidationError(
            [{"loc": ["body", "partitions"], "msg": str(error), "type": "value_error", "input": body.partitions}]
        ) from None
    return await _one(broker, name)


@router.post("/{name}/pause", responses={404: {"description": "No such queue"}})
async def pause_queue(name: Name, broker: BrokerDep) -> QueuePublic:
    """Stop starting this queue's tasks (submits are still accepted). Once this returns, no worker
    starts a task of the queue until it is resumed."""
    return await _pause(broker, name, True)


@router.post("/{name}/resume", responses={404: {"description": "No such queue"}})
async def resume_queue(name: Name, broker: BrokerDep) -> QueuePublic:
    """Start this queue's tasks again."""
    return await _pause(broker, name, False)


async def _pause(broker: Broker, name: str, paused: bool) -> QueuePublic:
    if await broker.registry.get(name) is None:
        raise HTTPException(status_code=404, detail=f"queue {name!r} not found")
    await broker.registry.set_paused(name, paused)
    return await _one(broker, name)
