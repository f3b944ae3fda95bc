"""/api/queues: every named queue with its figures; configure partitions and group limit defaults; pause
and resume (a queue's groups and type limits: routes/groups.py, routes/limits.py).

Reading is ``read`` scope; PUT and pause/resume are ``admin`` (services/api/security.py maps every
non-GET route outside submitting to ``admin``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from streamq.services.api.deps import BrokerDep, SettingsDep
from streamq.services.api.routes.groups import LimitStoreDep
from streamq.shared import retention
from streamq.shared.broker import Broker, QueueFigures
from streamq.shared.limits import DEFAULT, MAX_CONCURRENCY, Limits, LimitStore, Rate, parse_spec
from streamq.shared.models import Stats
from streamq.shared.queues import MAX_PARTITIONS, RETAINED, Bound, Retention, retention_json
from streamq.shared.settings import Settings

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
    # what the queue keeps of finished tasks and dead letters (its own bounds over the defaults)
    retention: dict[str, dict[str, int | None]]
    # the default limits of every group without its own (docs/groups-and-limits.md)
    group_concurrency: int | None = None
    group_rate: Rate | None = None


class BoundBody(BaseModel):
    """One kind's bounds; a measure left out keeps its current value, null removes that bound."""

    model_config = ConfigDict(extra="forbid")

    age_s: int | None = Field(default=None, ge=0, strict=True)  # null: kept until STREAMQ_RESULT_TTL_S
    count: int | None = Field(default=None, ge=0, le=1_000_000_000, strict=True)  # null: no count bound


class RetentionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    completed: BoundBody | None = None
    failed: BoundBody | None = None
    cancelled: BoundBody | None = None
    dead_letter: BoundBody | None = None


class QueueConfigBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partitions: int | None = Field(default=None, ge=1, le=MAX_PARTITIONS, strict=True)  # absent: unchanged
    retention: RetentionBody | None = None  # the kinds named change; the others keep their bounds
    # every group's limits unless it has its own (docs/groups-and-limits.md); absent: unchanged, null: none
    group_concurrency: int | None = Field(default=None, ge=1, le=MAX_CONCURRENCY, strict=True)
    group_rate: Rate | None = None


async def _public(broker: Broker, figures: list[QueueFigures], settings: Settings) -> list[QueuePublic]:
    workers = await broker.workers()
    defaults = retention.defaults(settings)
    pipe = broker.redis.pipeline(transaction=False)
    for f in figures:
        pipe.hget(broker.keys.for_queue(f.config.name).limits_groups, DEFAULT)
    group_defaults = [parse_spec(raw) for raw in await pipe.execute()]
    return [
        QueuePublic(
            name=f.config.name,
            partitions=f.config.partitions,
            paused=f.config.paused,
            stats=f.stats,
            depth=f.depth,
            dead_letter=f.stats.dead_letter,
            workers=[w.id for w in workers if f.config.name in (w.queues or [w.queue])],
            retention=retention_json(retention.effective(f.config, defaults)),
            group_concurrency=group.concurrency,
            group_rate=group.rate,
        )
        for f, group in zip(figures, group_defaults, strict=True)
    ]


async def _one(broker: Broker, name: str, settings: Settings) -> QueuePublic:
    figures = await broker.figures(name)
    if not figures:
        raise HTTPException(status_code=404, detail=f"queue {name!r} not found")
    [one] = await _public(broker, figures, settings)
    return one


@router.get("")
async def list_queues(broker: BrokerDep, settings: SettingsDep) -> list[QueuePublic]:
    """Every known queue (the default one always), by name."""
    return await _public(broker, await broker.figures(), settings)


@router.get("/{name}", responses={404: {"description": "No such queue"}})
async def get_queue(name: Name, broker: BrokerDep, settings: SettingsDep) -> QueuePublic:
    return await _one(broker, name, settings)


@router.put("/{name}")
async def configure_queue(
    name: Name, body: QueueConfigBody, broker: BrokerDep, settings: SettingsDep, store: LimitStoreDep
) -> QueuePublic:
    """Create the queue; grow it to ``partitions`` (partitions never shrink: 422); set its retention
    bounds (docs/scaling-out.md: Retention); set the limits of every group without its own
    (``group_concurrency``, ``group_rate``: docs/groups-and-limits.md)."""
    changes = _retention(body.retention, settings) if body.retention is not None else None
    if body.partitions is not None:
        before = await broker.config(name)
        try:
            config = await broker.registry.configure(name, body.partitions)
        except ValueError as error:
            raise _invalid(["partitions"], str(error), body.partitions) from None
        parts = broker.registry.partition_keys(config)
        await store.copy_to(parts[0], parts[before.partitions :])  # new partitions get the queue's limits
    await _group_defaults(name, body, store)
    if changes is not None:
        current = await broker.config(name)
        base = retention.effective(current, retention.defaults(settings))
        await broker.registry.set_retention(name, _merged(changes, base))
    elif body.partitions is None:
        await broker.config(name)  # an empty body (or one with group defaults only) creates the queue
    return await _one(broker, name, settings)


async def _group_defaults(name: str, body: QueueConfigBody, store: LimitStore) -> None:
    """The queue's default group limits: the parts the body names (null removes one), the others kept."""
    given = body.model_fields_set & {"group_concurrency", "group_rate"}
    if not given:
        return
    current = await store.default(name)
    await store.set_default(
        name,
        Limits(
            concurrency=body.group_concurrency if "group_concurrency" in given else current.concurrency,
            rate=body.group_rate if "group_rate" in given else current.rate,
        ),
    )


def _retention(body: RetentionBody, settings: Settings) -> dict[str, dict[str, int | None]]:
    """The measures the body sets, per kind; 422 for an age beyond ``STREAMQ_RESULT_TTL_S`` (every
    finished task leaves by then: a longer age could not hold)."""
    out: dict[str, dict[str, int | None]] = {}
    for kind in RETAINED:
        bound: BoundBody | None = getattr(body, kind)
        if bound is None:
            continue
        given = bound.model_dump(include=bound.model_fields_set)
        age = given.get("age_s")
        if age is not None and age > settings.result_ttl_s:
            rule = f"age_s must be at most STREAMQ_RESULT_TTL_S ({settings.result_ttl_s} s), the longest kept"
            raise _invalid(["retention", kind, "age_s"], rule, age)
        out[kind] = given
    return out


def _merged(changes: dict[str, dict[str, int | None]], base: Retention) -> Retention:
    """Each changed kind's whole bound: the measures given, the others as they are now."""
    return {
        kind: Bound(given.get("age_s", base[kind].age_s), given.get("count", base[kind].count))
        for kind, given in changes.items()
    }


def _invalid(loc: list[str], msg: str, value: object) -> RequestValidationError:
    return RequestValidationError([{"loc": ["body", *loc], "msg": msg, "type": "value_error", "input": value}])


@router.post("/{name}/pause", responses={404: {"description": "No such queue"}})
async def pause_queue(name: Name, broker: BrokerDep, settings: SettingsDep) -> QueuePublic:
    """Stop starting this queue's tasks (submits are still accepted). Once this returns, no worker
    starts a task of the queue until it is resumed."""
    return await _pause(broker, name, True, settings)


@router.post("/{name}/resume", responses={404: {"description": "No such queue"}})
async def resume_queue(name: Name, broker: BrokerDep, settings: SettingsDep) -> QueuePublic:
    """Start this queue's tasks again."""
    return await _pause(broker, name, False, settings)


async def _pause(broker: Broker, name: str, paused: bool, settings: Settings) -> QueuePublic:
    if await broker.registry.get(name) is None:
        raise HTTPException(status_code=404, detail=f"queue {name!r} not found")
    await broker.registry.set_paused(name, paused)
    return await _one(broker, name, settings)
