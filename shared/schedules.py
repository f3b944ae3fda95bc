"""Periodic schedules: a cron expression, a time zone and a task template.

Each schedule is a hash plus its name in two sorted sets (every name; active names by next tick).
Firing a tick is one script call that creates the task and moves the schedule on only when the
schedule is still due at the tick the caller read, so several schedulers can fire concurrently
and each tick fires once.

A schedule's task template may name a queue (``task.queue``; missing -> the api's default queue).
The schedule is stored in partition 0 of that queue (its hash tag), and its tasks are created in
partition 0 too: fire.lua writes the schedule and the new task atomically, so both must be in one
hash slot. Names are global: :class:`ScheduleBook` finds a name in whichever queue holds it and
refuses a name another queue already uses.
"""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from redis.asyncio import Redis

from streamq.shared.errors import StreamqError
from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskCreate, ms_to_dt, new_task_id
from streamq.shared.queue import _encode
from streamq.shared.queues import QUEUE_NAME, QueueRegistry
from streamq.shared.redaction import redact_payload
from streamq.shared.scripts import Scripts

ScheduleName = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")


class ScheduleNotFound(StreamqError):
    def __init__(self, name: str) -> None:
        super().__init__(f"schedule {name!r} not found")


class ScheduleExists(StreamqError):
    def __init__(self, name: str, queue: str | None = None) -> None:
        where = f" (by a schedule of queue {queue!r})" if queue else ""
        super().__init__(f"schedule name {name!r} is taken{where}; names are global: delete it first")


MAX_CRON_FIELDS = 6


def first_tick_ms(cron: str, timezone: str, after_ms: int) -> int | None:
    """As :func:`next_tick_ms`, or None when no tick is found (croniter searches about 50 years ahead)."""
    try:
        return next_tick_ms(cron, timezone, after_ms)
    except CroniterError:
        return None


def next_tick_ms(cron: str, timezone: str, after_ms: int) -> int:
    """The first tick of ``cron`` (in ``timezone``) strictly after ``after_ms``."""
    start = datetime.fromtimestamp(after_ms / 1000, ZoneInfo(timezone))
    following: float = croniter(cron, start).get_next(float)
    return round(following * 1000)


class TaskTemplate(TaskCreate):
    """A schedule's task: a TaskCreate that may also name the queue its tasks go to."""

    queue: str | None = Field(default=None, min_length=1, max_length=64, pattern=QUEUE_NAME.pattern)


class ScheduleCreate(BaseModel):
    """What a client sends to create a schedule."""

    model_config = ConfigDict(extra="forbid")

    name: str = ScheduleName
    timezone: str = Field(default="UTC", min_length=1, max_length=64)  # before cron: its check uses the zone
    cron: str = Field(min_length=1, max_length=200)
    task: TaskTemplate

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str, info: ValidationInfo) -> str:
        # at most 6 fields: croniter's 7th (a year) makes schedules that stop firing once it has passed
        if len(value.split()) > MAX_CRON_FIELDS or not croniter.is_valid(value):
            raise ValueError(
                "is not a valid cron expression: 5 fields (minute hour day month weekday), "
                "or 6 with seconds last, e.g. '*/5 * * * *'"
            )
        timezone = info.data.get("timezone", "UTC")  # absent when the zone was refused itself
        if first_tick_ms(value, timezone, int(time.time() * 1000)) is None:
            raise ValueError(f"never fires: no date matches {value!r} (e.g. the 30th of February)")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("is not a known IANA time zone, e.g. 'UTC' or 'Europe/Paris'") from None
        return value

    @field_validator("task", mode="before")
    @classmethod
    def _from_task(cls, value: object) -> object:
        """A plain TaskCreate is a template too (its queue, if it names one, is kept)."""
        if isinstance(value, TaskCreate) and not isinstance(value, TaskTemplate):
            return value.model_dump(exclude_unset=True)
        return value

    @field_validator("task")
    @classmethod
    def _template(cls, value: TaskTemplate) -> TaskTemplate:
        if value.scheduled_for is not None:
            raise ValueError("task.scheduled_for is not allowed: the schedule decides when its tasks run")
        if value.idempotency_key is not None:
            raise ValueError("task.idempotency_key is not allowed: every tick creates a new task")
        if value.unique is not None or value.debounce is not None:
            raise ValueError("task.unique and task.debounce are not allowed: every tick creates a new task")
        if value.group is not None:  # fire.lua creates its tasks on their streams, past the groups' limits
            raise ValueError("task.group is not allowed: a schedule's tasks are not held by group limits")
        return value


class SchedulePublic(BaseModel):
    name: str
    queue: str
    cron: str
    timezone: str
    task: TaskTemplate
    paused: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_task_id: str | None
    fired_total: int
    created_at: datetime

    @field_validator("task")
    @classmethod
    def _redact(cls, value: TaskTemplate) -> TaskTemplate:
        """Secret values of the template are never shown (shared/redaction.py); the scheduler fires from the
        stored template."""
        payload = redact_payload(value.type, value.payload)
        return value if payload is value.payload else value.model_copy(update={"payload": payload})


def decode_schedule(raw: dict[str, str], queue: str) -> SchedulePublic:
    return SchedulePublic(
        name=raw["name"],
        queue=queue,
        cron=raw["cron"],
        timezone=raw["timezone"],
        task=TaskTemplate.model_validate_json(raw["task"]),
        paused=raw.get("paused") == "1",
        next_run_at=ms_to_dt(raw.get("next_at")),
        last_run_at=ms_to_dt(raw.get("last_at")),
        last_task_id=raw.get("last_task") or None,
        fired_total=int(raw.get("fired_total") or 0),
        created_at=ms_to_dt(raw["created_at"]),  # type: ignore[arg-type]
    )


class Schedules:
    """Schedule operations of one queue, in its partition 0 (used by :class:`ScheduleBook` and tests)."""

    def __init__(
        self, redis: Redis, keys: KeySchema, *, events_maxlen: int = 100_000, scripts: Scripts | None = None
    ) -> None:
        self.redis = redis
        self.keys = keys.of_partition(0)
        self.scripts = scripts or Scripts(redis)
        self.events_maxlen = events_maxlen
        self._common = self.keys.common()

    def _keys(self, name: str) -> list[str]:
        return [*self._common, self.keys.schedule(name), self.keys.schedules, self.keys.schedules_due]

    async def _now_ms(self) -> int:
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def create(self, spec: ScheduleCreate) -> SchedulePublic:
        first = next_tick_ms(spec.cron, spec.timezone, await self._now_ms())
        fields = {
            "name": spec.name,
            "cron": spec.cron,
            "timezone": spec.timezone,
            "task": spec.task.model_dump_json(exclude_none=True),
        }
        flat = [part for item in fields.items() for part in item]
        ok, _created = await self.scripts.call(
            "schedule_save", self._keys(spec.name), [self.events_maxlen, spec.name, first, len(fields), *flat]
        )
        if not int(ok):
            raise ScheduleExists(spec.name)
        return await self.get(spec.name)

    async def get(self, name: str) -> SchedulePublic:
        raw = await self.redis.hgetall(self.keys.schedule(name))
        if not raw:
            raise ScheduleNotFound(name)
        return decode_schedule(raw, self.keys.queue)

    async def list_all(self) -> list[SchedulePublic]:
        names: list[str] = await self.redis.zrange(self.keys.schedules, 0, -1)
        if not names:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self.keys.schedule(name))
        return [decode_schedule(raw, self.keys.queue) for raw in await pipe.execute() if raw]

    async def delete(self, name: str) -> None:
        if not int(await self.scripts.call("schedule_remove", self._keys(name), [self.events_maxlen, name])):
            raise ScheduleNotFound(name)

    async def pause(self, name: str) -> SchedulePublic:
        return await self._set_paused(name, "pause", 0)

    async def resume(self, name: str) -> SchedulePublic:
        current = await self.get(name)
        following = next_tick_ms(current.cron, current.timezone, await self._now_ms())
        return await self._set_paused(name, "resume", following)

    async def _set_paused(self, name: str, mode: str, following: int) -> SchedulePublic:
        args = [self.events_maxlen, name, mode, following]
        if not int(await self.scripts.call("schedule_pause", self._keys(name), args)):
            raise ScheduleNotFound(name)
        return await self.get(name)

    # --- the scheduler's side --------------------------------------------------------------------
    async def due(self, now_ms: int, limit: int = 100) -> list[tuple[str, int]]:
        """Active schedules whose next tick is at or before ``now_ms``: (name, tick)."""
        rows = await self.redis.zrangebyscore(
            self.keys.schedules_due, "-inf", now_ms, start=0, num=limit, withscores=True
        )
        return [(str(name), int(score)) for name, score in rows]

    async def next_due_ms(self) -> int | None:
        rows = await self.redis.zrange(self.keys.schedules_due, 0, 0, withscores=True)
        return int(rows[0][1]) if rows else None

    async def fire(self, name: str, tick_ms: int, now_ms: int) -> str | None:
        """Fire ``tick_ms`` of ``name`` once: returns the new task id, or None when another
        scheduler fired it first (or the schedule is gone or paused)."""
        raw = await self.redis.hmget(self.keys.schedule(name), ["cron", "timezone", "task"])
        if not raw[0]:
            return None
        cron, timezone, template = raw
        task = TaskTemplate.model_validate_json(template)
        following = next_tick_ms(cron, timezone, max(now_ms, tick_ms))
        task_id = new_task_id(int(time.time() * 1000))
        fields = _encode(task)
        keys = [
            *self._common,
            self.keys.schedule(name),
            self.keys.schedules_due,
            self.keys.task(task_id),
            self.keys.index_type(task.type),
        ]
        args = [self.events_maxlen, name, tick_ms, following, task_id, task.priority, len(fields) // 2, *fields]
        fired = int(await self.scripts.call("fire", keys, args))
        return task_id if fired else None


class ScheduleBook:
    """Schedules of every known queue: create in the template's queue, find a name in any queue,
    list them all, and (for the scheduler) read the due ticks of every queue in one round trip.

    Names are global. Creating checks every queue first, then writes in one queue's slot; two
    clients creating one name in two different queues at the same instant could both succeed
    (the check and the write are in different slots); every other duplicate is refused."""

    def __init__(self, redis: Redis, keys: KeySchema, registry: QueueRegistry, *, events_maxlen: int = 100_000) -> None:
        self.redis = redis
        self.keys = keys  # the default queue: templates without a queue go there
        self.registry = registry
        self.events_maxlen = events_maxlen
        self.scripts = Scripts(redis)
        self._of: dict[str, Schedules] = {}

    def of(self, queue: str) -> Schedules:
        """The schedules of one queue (its partition 0)."""
        if queue not in self._of:
            keys = self.keys.for_queue(queue)
            self._of[queue] = Schedules(self.redis, keys, events_maxlen=self.events_maxlen, scripts=self.scripts)
        return self._of[queue]

    async def queues(self, *, fresh: bool = False) -> list[str]:
        return sorted({*(await self.registry.all(fresh=fresh)), self.keys.queue})

    async def find(self, name: str) -> Schedules:
        """The schedules of the queue holding ``name``; raises ScheduleNotFound."""
        for fresh in (False, True):
            queues = await self.queues(fresh=fresh)
            pipe = self.redis.pipeline(transaction=False)
            for queue in queues:
                pipe.exists(self.of(queue).keys.schedule(name))
            for queue, found in zip(queues, await pipe.execute(), strict=True):
                if found:
                    return self.of(queue)
        raise ScheduleNotFound(name)

    async def create(self, spec: ScheduleCreate) -> SchedulePublic:
        queue = spec.task.queue or self.keys.queue
        try:
            holder = await self.find(spec.name)
        except ScheduleNotFound:
            holder = None
        if holder is not None:
            raise ScheduleExists(spec.name, holder.keys.queue)
        await self.registry.ensure(queue)
        return await self.of(queue).create(spec)

    async def get(self, name: str) -> SchedulePublic:
        return await (await self.find(name)).get(name)

    async def delete(self, name: str) -> None:
        await (await self.find(name)).delete(name)

    async def pause(self, name: str) -> SchedulePublic:
        return await (await self.find(name)).pause(name)

    async def resume(self, name: str) -> SchedulePublic:
        return await (await self.find(name)).resume(name)

    async def list_all(self) -> list[SchedulePublic]:
        """Every schedule of every queue, by name."""
        found = [s for queue in await self.queues() for s in await self.of(queue).list_all()]
        return sorted(found, key=lambda s: s.name)

    # --- the scheduler's side --------------------------------------------------------------------
    async def due(self, now_ms: int, limit: int = 100) -> list[tuple[Schedules, str, int]]:
        """Due ticks of every queue, read in one pipeline: (the queue's schedules, name, tick)."""
        queues = [self.of(q) for q in await self.queues()]
        pipe = self.redis.pipeline(transaction=False)
        for schedules in queues:
            pipe.zrangebyscore(schedules.keys.schedules_due, "-inf", now_ms, start=0, num=limit, withscores=True)
        rows: list[list[tuple[str, float]]] = await pipe.execute()
        return [(s, str(name), int(score)) for s, found in zip(queues, rows, strict=True) for name, score in found]

    async def next_due_ms(self) -> int | None:
        """The earliest next tick of any active schedule of any queue."""
        queues = [self.of(q) for q in await self.queues()]
        pipe = self.redis.pipeline(transaction=False)
        for schedules in queues:
            pipe.zrange(schedules.keys.schedules_due, 0, 0, withscores=True)
        firsts = [int(rows[0][1]) for rows in await pipe.execute() if rows]
        return min(firsts) if firsts else None
