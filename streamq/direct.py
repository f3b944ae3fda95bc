"""The client's direct transport: the api's own submit, read and wait code run in the producer's process,
talking to Redis with the services' settings (``STREAMQ_*``), without the HTTP hop.

Nothing here is a second implementation: a submit is validated by the api's models (``TaskCreate``,
``TaskBatchCreate``), checked by the api's :class:`Submission` (the type catalog, payload checks, the
webhook SSRF guard) and stored by the same submit.lua call through :class:`Broker` (partition placement,
idempotency keys, durable submission, the memory guard, events and counters). Answers are made from the
same bytes the api sends (services/api/encoding.py) and parsed into the client's models, and errors are
the client's typed errors with the HTTP status the api would have answered. ``wait`` listens on the
events stream through the api's :class:`Waiters`.

Needs the ``redis`` extra (``pip install "streamq[redis]"``): redis-py, hiredis, pydantic-settings,
orjson and prometheus-client; never FastAPI or uvicorn. :class:`Engine` lives on one event loop; the
blocking client runs it on a loop of its own in a background thread (:class:`Portal`)."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import gc
import itertools
import os
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError
from redis import ConnectionPool
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamq import _core as core
from streamq.errors import Conflict, InvalidTask, NotFound, StreamqError, Timeout, Unavailable
from streamq.models import Stats, Task, TaskStatus
from streamq.services.api.submission import Submission, broker_for, count
from streamq.services.api.types import TypeCatalog
from streamq.services.api.unavailable import redis_answer
from streamq.services.api.waiters import Waiters
from streamq.shared import errors as server
from streamq.shared import tracing
from streamq.shared.broker import Broker, Plan
from streamq.shared.memguard import MemoryGuard
from streamq.shared.models import TaskBatchCreate, TaskCreate, ms_to_dt, new_task_ids
from streamq.shared.models import TaskStatus as ServerStatus
from streamq.shared.queue import Queue, Stored
from streamq.shared.redaction import redact_payload
from streamq.shared.redis import connect, make_client, make_sync_client, redact
from streamq.shared.scripts import source
from streamq.shared.settings import Settings
from streamq.shared.ssrf import SsrfGuard

T = TypeVar("T")
IN_FLIGHT = 4  # submit_many's batches sent at once: the client builds the next while Redis runs one
# one PING (redis-py's own reconnect back-off inside, about 5 s) before the first call gives up: Unavailable,
# which the client retries as it retries the api's 503 (a producer should not hang on a Redis that is down)
CONNECT_ATTEMPTS = 1
_TASK = TypeAdapter(Task)
_TASKS = TypeAdapter(list[Task])


def settings_for(redis_url: str, settings: Settings | None) -> Settings:
    """The services' settings (``STREAMQ_*`` and ``.env``, as every service reads them), or ``settings``,
    with ``redis_url``; ``ValueError`` naming the rule when the URL is not one streamq takes."""
    if settings is None:
        return Settings(redis_url=redis_url)
    if settings.redis_url == redis_url:
        return settings
    return Settings.model_validate({**settings.model_dump(), "redis_url": redis_url})


def _public(model: BaseModel) -> bytes:
    """A server model as the api writes it (the client's models read the same JSON over HTTP)."""
    return model.__pydantic_serializer__.to_json(model)


def _invalid(error: ValidationError, where: tuple[str | int, ...]) -> InvalidTask:
    """The api's 422 for a body the models refuse: each error located under ``body`` (as FastAPI does)."""
    items: list[dict[str, Any]] = []
    for e in error.errors(include_url=False, include_context=False):
        item: dict[str, Any] = dict(e)
        item["loc"] = [*where, *e["loc"]]
        items.append(item)
    return _refused(items)


def _refused(items: list[dict[str, Any]]) -> InvalidTask:
    """:class:`InvalidTask` carrying the api's 422 error items (``loc``, ``msg``, ``type``, ``input``)."""
    rules = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in items)
    return InvalidTask(f"invalid task (direct transport): {rules}", status_code=422, detail=items)


def typed(error: BaseException) -> StreamqError | None:
    """The client's typed error for what the api would have answered with a 4xx or 503; None for any
    other error (a bug: raised as it is, as the api would answer 500)."""
    if isinstance(error, server.NotFound):
        return NotFound(str(error), status_code=404, detail=str(error))
    if isinstance(error, server.Conflict):
        return Conflict(str(error), status_code=409, detail=str(error), status=error.status)
    if isinstance(error, server.NotDurable):
        body = server.not_durable_body(error)
        return Unavailable(str(error), status_code=503, detail=body["detail"])
    answer = redis_answer(error)  # Redis out of reach or refusing writes
    if answer is not None:
        status, body, headers = answer
        retry_after = float(headers["Retry-After"]) if "Retry-After" in headers else None
        return Unavailable(str(body["detail"]), status_code=status, detail=body["detail"], retry_after=retry_after)
    return None


async def send(engine: Engine, call: core.Call[T], config: core.Config) -> T:
    """One call over the direct transport, retried as the api client retries a 503 (Redis out of reach or
    refusing writes): ``config.retries`` times, after its Retry-After or the back-off."""
    direct = core.direct_call(call)
    attempt = 0
    while True:
        try:
            return await engine.run(direct, core.direct_timeout_s(config, call))
        except Unavailable as error:
            if not core.should_retry(attempt, config.retries, None):
                raise
            await asyncio.sleep(core.direct_backoff_s(attempt, error))
        attempt += 1


def batch_calls(tasks: Iterable[Mapping[str, Any]]) -> list[core.Call[core.Batch]]:
    """``submit_many``'s calls over the direct transport: the tasks carry only the idempotency keys given,
    and each batch's ids are made now, so a call sent again goes with them (submit.lua answers an id already
    stored with its task) instead of one key per task kept for a day."""
    return [
        core.submit_batch(bodies, new_task_ids(len(bodies), int(time.time() * 1000)))
        for bodies in core.batches(tasks, make_keys=False)
    ]


async def send_all(engine: Engine, calls: list[core.Call[T]], config: core.Config) -> list[T]:
    """The calls' values in order, ``IN_FLIGHT`` at a time (as that many api requests would be). As over
    HTTP, an error stops the rest; calls already sent may have been applied (submitting them again is
    safe: each task carries its idempotency key, or on the direct transport the id made for it)."""
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(call: core.Call[T]) -> T:
        async with gate:
            return await send(engine, call, config)

    return list(await asyncio.gather(*(one(call) for call in calls)))


# --- answers: the client's Task from submit.lua's records, without a JSON round trip ------------------
_STATUS = {s.value: s for s in TaskStatus}  # a status submit.lua cannot return fails (KeyError)
_FIELDS = frozenset(Task.model_fields)
# every Task field at its default, in declaration order (the required ones are set per task)
_TEMPLATE: dict[str, Any] = {
    name: None if field.is_required() else field.get_default(call_default_factory=True)
    for name, field in Task.model_fields.items()
}
_SCALARS = (type(None), str, int, float, bool)
if not set(TaskCreate.model_fields) <= _FIELDS:  # a TaskCreate field the client's Task lacks
    raise RuntimeError("every TaskCreate field must be a client Task field too (streamq/direct.py)")


# BaseModel's slots, set through their descriptors (what object.__setattr__ finds, without the lookup)
_SET_DICT = object.__setattr__
_SET_FIELDS_SET = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_SET_EXTRA = BaseModel.__dict__["__pydantic_extra__"].__set__
_SET_PRIVATE = BaseModel.__dict__["__pydantic_private__"].__set__


def _built(values: dict[str, Any]) -> Task:
    """A :class:`Task` of ``values`` (every field, already of its type), made as ``Task.model_construct``
    makes it, without its per-field Python loop (12 us a task against 2 here: most of a large
    ``submit_many``'s answer). Every field is set, as a parsed answer has them."""
    task = Task.__new__(Task)
    _SET_DICT(task, "__dict__", values)
    _SET_FIELDS_SET(task, set(_FIELDS))
    _SET_EXTRA(task, {})
    _SET_PRIVATE(task, None)
    return task


def _plain(payload: Any) -> Any:
    """The payload as the answer's JSON carries it (orjson's: a tuple is a list, a datetime a string);
    a plain scalar is its own JSON."""
    return payload if type(payload) in _SCALARS else orjson.loads(orjson.dumps(payload))


def task_of(stored: Stored, created_at: datetime | None = None) -> Task:
    """The client's :class:`Task` for one submitted task, equal to what the api's answer for it parses to
    (``POST /api/tasks``, ``POST /api/tasks/batch``: services/api/encoding.py) but made from the record
    the client already holds: the validated ``TaskCreate`` and the id, queue, status and time submit.lua
    answered. ``created_at``: the record's time as a datetime, when the caller made it already (a batch's
    records share one). A duplicate answers its earlier task, read from Redis, through its JSON."""
    earlier = stored.earlier
    if earlier is not None:
        return _TASK.validate_json(_public(earlier))
    task = stored.task
    values = _TEMPLATE.copy()
    values.update(task.__dict__)  # type, payload, priority, ... (queue and scheduled_for set below)
    if task.unique is not None or task.debounce is not None:
        values["unique"] = None if task.unique is None else task.unique.model_dump()
        values["debounce"] = None if task.debounce is None else task.debounce.model_dump()
    values["payload"] = _plain(redact_payload(task.type, task.payload))  # as TaskPublic shows it
    values["id"] = stored.id
    values["queue"] = stored.queue
    values["status"] = status = _STATUS[stored.status]
    values["scheduled_for"] = task.scheduled_for if status is TaskStatus.SCHEDULED else None
    values["created_at"] = created_at if created_at is not None else ms_to_dt(stored.created_ms)
    values["history"] = []
    return _built(values)


def batch_of(done: Sequence[Stored]) -> core.Batch:
    """``POST /api/tasks/batch``'s answer for these records, as the client's :class:`streamq._core.Batch`."""
    stamps: dict[int, datetime] = {}  # created_ms -> its datetime (one per script call)
    tasks = []
    for stored in done:
        stamp = stamps.get(stored.created_ms)
        if stamp is None and stored.earlier is None:
            stamp = stamps[stored.created_ms] = ms_to_dt(stored.created_ms)  # type: ignore[assignment]
        tasks.append(task_of(stored, stamp))
    created = sum(1 for stored in done if stored.earlier is None)
    return core.Batch(tasks, created, len(done) - created)


class Engine:
    """The api's state for one producer process: Redis, the broker, the submission checks and the
    waiters, made on the first call (on the loop that makes it) and closed by :meth:`close`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ready: asyncio.Future[Submission] | None = None
        self._redis: Redis | None = None
        self._readers: Redis | None = None
        self._guard: MemoryGuard | None = None
        self._waiters: Waiters | None = None
        self._submitting = 0  # single submits sent alone and not answered yet (see submit)

    async def _start(self) -> Submission:
        try:
            self._redis = redis = await connect(self.settings, attempts=CONNECT_ATTEMPTS)
        except RuntimeError as error:  # connect()'s "cannot reach Redis at ..." (the URL redacted)
            raise Unavailable(f"direct transport: {error}") from error
        broker = broker_for(self.settings, redis)
        broker.memory_guard = self._guard = MemoryGuard(redis, self.settings.memory_guard_ratio)
        await self._guard.tick()
        self._guard.start()
        catalog = TypeCatalog(broker.default, self.settings.task_types, strict=self.settings.strict_types)
        return Submission(broker, catalog, SsrfGuard.from_settings(self.settings))

    def started(self) -> Submission | None:
        """The submission service once made (from any thread), else None."""
        ready = self._ready
        if ready is None or not ready.done() or ready.cancelled() or ready.exception() is not None:
            return None
        return ready.result()

    async def submission(self) -> Submission:
        """The submission service, made once (concurrent first calls share the start)."""
        if self._ready is None or (self._ready.done() and self._ready.exception() is not None):
            self._ready = asyncio.ensure_future(self._start())
        return await asyncio.shield(self._ready)

    async def run(self, call: Callable[[Engine], Awaitable[T]], timeout_s: float) -> T:
        """One call, its server errors as the client's typed errors; :class:`Timeout` past ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                return await call(self)
        except TimeoutError as error:
            where = redact(self.settings.redis_url)
            if self._redis is None:  # still connecting: Redis is out of reach, as the api would answer 503
                raise Unavailable(f"direct transport: cannot reach Redis at {where} within {timeout_s:g} s") from error
            raise Timeout(f"no answer from Redis at {where} within {timeout_s:g} s") from error
        except (server.StreamqError, RedisError, OSError) as error:
            mapped = typed(error)
            if mapped is None:
                raise
            raise mapped from error

    # --- the calls (each what its api route does) -------------------------------------------------
    async def submit(self, body: dict[str, Any]) -> Task:
        """``POST /api/tasks``: validate, check, store, answer. A submit made while another of this engine
        is in flight is coalesced as in the api (the single submits of one loop turn share one script
        call); one made alone goes out at once in a call of its own, as the api's durable submission
        sends each (:meth:`Submission.submit_one`): the coalescer's flush would hold it a loop turn for
        submits that are not coming, and what it stores and answers is the same (services/api/coalesce.py:
        each task gets what ``Broker.submit_stored([task])`` gives it alone)."""
        try:
            task = TaskCreate.model_validate(body)
        except ValidationError as error:
            raise _invalid(error, ("body",)) from None
        submission = self.started() or await self.submission()
        if not submission.checked_now((task,)):  # no I/O needed: what problems() would find is nothing
            await self._check(submission, [task], batch=False)
        if self._submitting or tracing.ENABLED:  # others in flight (or the api's submit span): coalesced
            return task_of(await submission.submit_one(task, ()))
        self._submitting += 1
        try:
            [done] = await submission.broker.submit_stored((task,))
        finally:
            self._submitting -= 1
        count([done])
        return task_of(done)

    async def submit_batch(self, bodies: list[dict[str, Any]], ids: list[str] | None = None) -> core.Batch:
        """``POST /api/tasks/batch``: up to 1,000 tasks, one script call per queue partition (``ids``: the new
        tasks' ids, when the caller made them: a batch sent again with the same ones answers the tasks its
        first attempt stored, see submit.lua)."""
        try:
            batch = TaskBatchCreate.model_validate({"tasks": bodies})
        except ValidationError as error:
            raise _invalid(error, ("body",)) from None
        submission = await self.submission()
        await self._check(submission, batch.tasks, batch=True)
        return batch_of(await submission.submit_many(batch.tasks, (), ids))

    async def _check(self, submission: Submission, tasks: list[TaskCreate], *, batch: bool) -> None:
        problems = await submission.problems(tasks, batch=batch)
        if problems:
            raise _refused(problems)

    async def get(self, task_id: str, queue: str | None, wait_s: float | None) -> Task:
        """``GET /api/tasks/{id}`` (``?wait=S``: the task once it ended, heard on the events stream)."""
        broker = (await self.submission()).broker
        if wait_s is None:
            return _TASK.validate_json(_public(await broker.get(task_id, queue)))
        public = await self.waiters().task(broker, task_id, queue, max(wait_s, 0.001))
        return _TASK.validate_json(_public(public))

    async def cancel(self, task_id: str, queue: str | None) -> Task:
        broker = (await self.submission()).broker
        return _TASK.validate_json(_public(await broker.cancel(task_id, queue)))

    async def list_page(self, cursor: str | None, limit: int, filters: dict[str, Any]) -> tuple[list[Task], str | None]:
        """One page of ``GET /api/tasks``, newest first, and the next page's cursor."""
        broker = (await self.submission()).broker
        status = filters.get("status")
        tasks, next_cursor = await broker.list_tasks(
            queue=filters.get("queue"),
            status=ServerStatus(TaskStatus(status).value) if status is not None else None,
            task_type=filters.get("type"),
            priority=filters.get("priority"),
            limit=limit,
            cursor=cursor,
        )
        return [_TASK.validate_json(_public(t)) for t in tasks], next_cursor

    async def stats(self, queue: str | None) -> Stats:
        broker = (await self.submission()).broker
        return Stats.model_validate_json(_public(await broker.stats(queue)))

    def waiters(self) -> Waiters:
        """The long-poll waiters, with their own client for the partitions' blocked reads (made on the
        first wait)."""
        if self._waiters is None:
            self._readers = make_client(self.settings, blocking_reads=True)
            self._waiters = Waiters(self._readers)
        return self._waiters

    async def close(self) -> None:
        if self._waiters is not None:
            await self._waiters.stop()
        if self._readers is not None:
            await self._readers.aclose()
        if self._guard is not None:
            await self._guard.stop()
        if self._redis is not None:
            await self._redis.aclose()
        self._ready = self._redis = self._readers = self._guard = self._waiters = None


@contextmanager
def _typed_errors() -> Iterator[None]:
    """The server's errors as the client's typed errors (as :meth:`Engine.run` maps them)."""
    try:
        yield
    except (server.StreamqError, RedisError, OSError) as error:
        mapped = typed(error)
        if mapped is None:
            raise
        raise mapped from error


class Prepared(NamedTuple):
    """One submit made ready on the caller's thread (:meth:`Lane.prepare`): its script calls to send."""

    broker: Broker
    tasks: list[TaskCreate]
    plan: Plan


class Lane:
    """The blocking client's ``submit``, ``submit_many`` and ``get`` made on the caller's thread: the
    script call over a synchronous redis-py client (:func:`streamq.shared.redis.make_sync_client`, one
    thread-safe pool per process), without the hops to the portal's loop and back (each wakes a thread:
    most of a single submit's time, bench/README.md).

    The same code as the api's submit, not a copy: the api's models validate; :meth:`Submission.problems`
    checks (the type catalog, payloads, the SSRF guard); :meth:`Broker.place` places the tasks and builds
    submit.lua's calls; :meth:`Queue.records` reads the replies; :func:`count` counts. Only the sending
    differs. What needs the services' asyncio state runs on the portal's loop, as a short hop, and the
    call goes on on the caller's thread: the submission service's start, the checks whenever they need
    I/O (a webhook or http URL resolved by the SSRF guard, an email payload, a strict type catalog's
    cache to refresh), the queue configs when their 1 s cache is stale, a reply naming duplicates (their
    earlier tasks are read), and durable submission (its WAIT). With tracing on, the whole submit runs
    on the loop (the api's submit span)."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    def submission(self) -> Submission:
        """The portal engine's submission service (started on the loop by the first call)."""
        started = self.portal.engine_now().started()
        if started is not None:
            return started
        return self.portal.run(lambda engine: engine.submission())

    # --- submit ----------------------------------------------------------------------------------
    def submit(self, body: dict[str, Any]) -> Task:
        """As :meth:`Engine.submit` (``POST /api/tasks``), on the caller's thread."""
        if tracing.ENABLED:
            return self.portal.run(lambda engine: engine.submit(body))
        try:
            task = TaskCreate.model_validate(body)
        except ValidationError as error:
            raise _invalid(error, ("body",)) from None
        with _typed_errors():
            [done] = self._store([task], batch=False)
        return task_of(done)

    def submit_batch(self, bodies: list[dict[str, Any]], ids: list[str] | None = None) -> core.Batch:
        """As :meth:`Engine.submit_batch` (``POST /api/tasks/batch``), on the caller's thread (``ids``: the
        new tasks' ids, when the caller made them already)."""
        if tracing.ENABLED:
            return self.portal.run(lambda engine: engine.submit_batch(bodies, ids))
        try:
            batch = TaskBatchCreate.model_validate({"tasks": bodies})
        except ValidationError as error:
            raise _invalid(error, ("body",)) from None
        with _typed_errors():
            return batch_of(self._store(batch.tasks, batch=True, ids=ids))

    def _store(self, tasks: list[TaskCreate], *, batch: bool, ids: list[str] | None = None) -> list[Stored]:
        """:meth:`Submission.submit_many`'s work (:meth:`Broker.submit_each`'s steps) for checked tasks."""
        prepared = self.prepare(tasks, batch=batch, ids=ids)
        return self.finish(prepared, self._send(prepared.broker, prepared.plan))

    def prepare(self, tasks: list[TaskCreate], *, batch: bool, ids: list[str] | None = None) -> Prepared:
        """Everything before the script calls: the checks, the memory guard, ids, placement, the calls."""
        submission = self.submission()
        if not submission.checked_now(tasks):
            problems = self.portal.run(lambda _engine: submission.problems(tasks, batch=batch))
            if problems:
                raise _refused(problems)
        broker = submission.broker
        if broker.memory_guard is not None:  # sampled on the portal's loop; read here
            broker.memory_guard.check()
        return Prepared(broker, tasks, broker.place(tasks, ids, self._configs(broker, tasks)))

    def finish(self, prepared: Prepared, replies: list[Any]) -> list[Stored]:
        """Everything after the script calls: the records from the replies (the first error raised), counted."""
        broker, tasks, plan = prepared
        records = [
            self._records(broker.queue(name, part), plan.members(tasks, k), plan.call_ids[k], reply)
            for k, ((name, part), reply) in enumerate(zip(plan.groups, replies, strict=True))
            if not isinstance(reply, BaseException)
        ]
        done = plan.outcomes(len(tasks), replies, records)
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome
        stored: list[Stored] = done  # type: ignore[assignment]  # no error left
        count(stored)
        return stored

    def _configs(self, broker: Broker, tasks: list[TaskCreate]) -> dict[str, Any]:
        """:meth:`Broker.configs_of` from the registry's cache while it is fresh, else read on the loop."""
        known = broker.registry.cached()
        if known is not None:
            configs = {}
            for task in tasks:
                name = task.queue or broker.keys.queue
                found = known.get(name)
                if found is None:
                    break
                configs[name] = found
            else:
                return configs
        return self.portal.run(lambda _engine: broker.configs_of(tasks))

    def _send(self, broker: Broker, plan: Plan) -> list[Any]:
        """:meth:`Broker.send_planned` over the synchronous client (durable submission: on the loop)."""
        if broker.durable is not None:
            return self.portal.run(lambda _engine: broker.send_planned(plan))
        client = self.portal.sync_client()
        scripts = broker.default.scripts
        if len(plan.calls) == 1:
            return [_script(client, scripts.call_command(*plan.calls[0]), plan.calls[0])]
        pipe = client.pipeline(transaction=False)
        for call in plan.calls:
            pipe.execute_command(*scripts.call_command(*call))
        replies: list[Any] = pipe.execute(raise_on_error=False)
        for i, (reply, call) in enumerate(zip(replies, plan.calls, strict=True)):
            if isinstance(reply, NoScriptError):  # not run: sent again on its own (as Scripts.unless_unknown)
                try:
                    replies[i] = _script(client, scripts.call_command(*call), call)
                except Exception as error:  # handed back like the pipeline's own errors
                    replies[i] = error
        return replies

    def _records(self, queue: Queue, tasks: list[TaskCreate], ids: list[str], reply: list[Any]) -> list[Stored]:
        """:meth:`Queue.stored`: a reply naming duplicates reads their earlier tasks (on the loop)."""
        if len(reply) > 1:
            return self.portal.run(lambda _engine: queue.stored(tasks, ids, reply))
        return queue.records(tasks, ids, reply, {})

    # --- reads -----------------------------------------------------------------------------------
    def get(self, task_id: str, queue: str | None) -> Task:
        """As :meth:`Engine.get` without a wait (``GET /api/tasks/{id}``), on the caller's thread."""
        with _typed_errors():
            broker = self.submission().broker
            known = broker.registry.cached()
            if known is None or (queue is not None and queue not in known):
                candidates = self.portal.run(lambda _engine: broker.candidates(queue))
            else:
                configs = list(known.values()) if queue is None else [known[queue]]
                candidates = [q for config in configs for q in broker.partitions(config)]
            client = self.portal.sync_client()
            if len(candidates) == 1:
                raws = [client.hgetall(candidates[0].keys.task(task_id))]
            else:
                pipe = client.pipeline(transaction=False)
                for q in candidates:
                    pipe.hgetall(q.keys.task(task_id))
                raws = pipe.execute()
            _, public = broker.found(task_id, candidates, raws)
        return _TASK.validate_json(_public(public))


def _script(client: Any, command: tuple[Any, ...], call: tuple[str, list[str], list[Any]]) -> Any:
    """One EVALSHA; a script the server does not know yet is sent whole (EVAL: it runs, and the node
    caches it for the next EVALSHA)."""
    try:
        return client.execute_command(*command)
    except NoScriptError:
        name, keys, args = call
        return client.execute_command("EVAL", source(name), len(keys), *keys, *args)


def send_lane(lane: Lane, call: core.Call[T], config: core.Config) -> T:
    """One call on the caller's thread (its lane form, else on the portal's loop), retried as
    :func:`send` retries: after Redis out of reach or refusing writes."""
    if call.lane is None:
        return lane.portal.run(lambda engine: send(engine, call, config))
    return _retried(functools.partial(call.lane, lane), config)


def _retried(work: Callable[[], T], config: core.Config) -> T:
    attempt = 0
    while True:
        try:
            return work()
        except Unavailable as error:
            if not core.should_retry(attempt, config.retries, None):
                raise
            time.sleep(core.direct_backoff_s(attempt, error))
        attempt += 1


def submit_many(lane: Lane, tasks: Iterable[Mapping[str, Any]], config: core.Config) -> list[core.Batch]:
    """``POST /api/tasks/batch`` of ``tasks`` (``submit``'s keywords each), ``core.BATCH_LIMIT`` a batch, in
    order. Each batch is built, checked and placed on this thread, its tasks' ids made in order (they sort
    as given, as one call's would), and its script calls written at once on one connection, up to
    ``IN_FLIGHT`` batches ahead of their replies: Redis runs one batch while the next is built, and no
    thread waits for another (:func:`_pipelined`; durable submission: each batch's calls and WAIT on the
    loop, one after another). A Redis Cluster, or tracing: :func:`_pooled`. As over HTTP, an error (a bad task of
    a later batch too) stops the rest; batches already sent may have been applied. The tasks carry only the
    idempotency keys given: a batch sent again (after Redis was out of reach) goes with the ids made for
    it, and submit.lua answers an id already stored with its task (no key per task kept for a day)."""
    chunks = _chunks(tasks, core.BATCH_LIMIT)
    client = lane.portal.sync_client()
    if isinstance(getattr(client, "connection_pool", None), ConnectionPool) and not tracing.ENABLED:
        return _pipelined(lane, client, chunks, config)
    return _pooled(lane, chunks, config)


def _pooled(lane: Lane, chunks: Iterator[list[Any]], config: core.Config) -> list[core.Batch]:
    """:func:`submit_many` on a Redis Cluster (its calls routed per node) or with tracing: each batch made
    here (its ids in order) and sent by :meth:`Lane.submit_batch` on a thread of a pool, ``IN_FLIGHT``
    at a time."""
    with concurrent.futures.ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="streamq-direct-many") as pool:
        futures: list[concurrent.futures.Future[core.Batch]] = []
        try:
            for chunk in chunks:
                [bodies] = core.batches(chunk, make_keys=False)
                ids = new_task_ids(len(bodies), int(time.time() * 1000))
                futures.append(pool.submit(_retried, functools.partial(lane.submit_batch, bodies, ids), config))
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:  # the batches not started yet are not sent
                future.cancel()
            raise


def _pipelined(lane: Lane, client: Any, chunks: Iterator[list[Any]], config: core.Config) -> list[core.Batch]:
    """:func:`submit_many` over one connection of a standalone or Sentinel client, ``IN_FLIGHT`` batches
    ahead. A batch the script did not know (NOSCRIPT) is sent again on its own. If Redis is out of reach
    or refuses, the batches not answered yet and the rest go one by one with the retries of
    :meth:`Lane.submit_batch` (with their ids: a batch that was applied answers its tasks again)."""
    out: list[core.Batch] = []
    pending: collections.deque[tuple[Prepared, list[dict[str, Any]], list[str]]] = collections.deque()
    unsent: tuple[list[dict[str, Any]], list[str]] | None = None  # the batch being made ready
    conn = client.connection_pool.get_connection()
    try:
        with _typed_errors():
            for chunk in chunks:
                [bodies] = core.batches(chunk, make_keys=False)
                ids = new_task_ids(len(bodies), int(time.time() * 1000))
                unsent = (bodies, ids)
                try:
                    batch = TaskBatchCreate.model_validate({"tasks": bodies})
                except ValidationError as error:
                    raise _invalid(error, ("body",)) from None
                prepared = lane.prepare(batch.tasks, batch=True, ids=ids)
                if prepared.broker.durable is not None:  # its WAIT: on the loop (see Lane._send)
                    out.append(batch_of(lane.finish(prepared, lane._send(prepared.broker, prepared.plan))))
                    unsent = None
                    continue
                calls = [prepared.broker.default.scripts.call_command(*call) for call in prepared.plan.calls]
                conn.send_packed_command(conn.pack_commands(calls))
                pending.append((prepared, bodies, ids))
                unsent = None
                if len(pending) > IN_FLIGHT:
                    out.append(_answer(lane, client, conn, pending[0][0]))
                    pending.popleft()
            while pending:
                out.append(_answer(lane, client, conn, pending[0][0]))
                pending.popleft()
    except Unavailable:
        conn.disconnect()  # replies may still be on their way: the connection is out of step
        again = [(bodies, ids) for _prepared, bodies, ids in pending] + ([unsent] if unsent is not None else [])
        for bodies, ids in again:
            out.append(_retried(functools.partial(lane.submit_batch, bodies, ids), config))
        for chunk in chunks:
            [bodies] = core.batches(chunk, make_keys=False)
            ids = new_task_ids(len(bodies), int(time.time() * 1000))
            out.append(_retried(functools.partial(lane.submit_batch, bodies, ids), config))
    except BaseException:
        conn.disconnect()
        raise
    finally:
        client.connection_pool.release(conn)
    return out


def _answer(lane: Lane, client: Any, conn: Any, prepared: Prepared) -> core.Batch:
    """The answer of one pipelined batch: its calls' replies read off ``conn`` in order."""
    scripts = prepared.broker.default.scripts
    replies: list[Any] = []
    for call in prepared.plan.calls:
        try:
            reply = conn.read_response()
        except NoScriptError:  # not run: sent again on its own (as Scripts.unless_unknown)
            reply = _script(client, scripts.call_command(*call), call)
        except (RedisConnectionError, RedisTimeoutError):
            raise
        except RedisError as error:  # an error reply, read: the connection stays in step
            reply = error
        replies.append(reply)
    return batch_of(lane.finish(prepared, replies))


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


@contextmanager
def no_gc() -> Iterator[None]:
    """Python's cyclic garbage collector paused for the block (if it was running). A large submit_many
    allocates several containers per task that all live to its end (bodies, models, answers): each
    collection on the way walks every one of them again, which tripled the client's CPU per task
    (bench/README.md). Nothing here makes cycles to collect; the collector runs again after."""
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


class Portal:
    """An event loop in a daemon thread that runs an :class:`Engine` for the blocking client: any thread
    may call :meth:`run`. Started on the first call and again in a forked child (threads do not survive
    a fork, e.g. a web server's pre-forked workers)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._pid = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.engine = Engine(settings)
        self._sync: Any = None  # the synchronous client of the lane (made on first use, again after a fork)
        self.lane = Lane(self)

    def _started(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None and self._pid == os.getpid():
            return loop
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                self._loop = asyncio.new_event_loop()
                self._pid = os.getpid()
                self.engine = Engine(self.settings)  # a forked child's copy holds its parent's sockets
                self._sync = None
                self._thread = threading.Thread(target=self._loop.run_forever, name="streamq-direct", daemon=True)
                self._thread.start()
            return self._loop

    def engine_now(self) -> Engine:
        """This process's engine (its loop started)."""
        self._started()
        return self.engine

    def sync_client(self) -> Any:
        """This process's synchronous Redis client (thread-safe; the lane's script calls and reads)."""
        self._started()
        client = self._sync
        if client is None:
            with self._lock:
                if self._sync is None:
                    self._sync = make_sync_client(self.settings)
                client = self._sync
        return client

    def run(self, work: Callable[[Engine], Coroutine[Any, Any, T]]) -> T:
        """``work(engine)`` run on the portal's loop, from any thread; its value or its error."""
        loop = self._started()
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(work(self.engine), loop)
        return future.result()

    def close(self) -> None:
        if self._loop is None or self._pid != os.getpid():
            return
        loop, thread = self._loop, self._thread
        asyncio.run_coroutine_threadsafe(self.engine.close(), loop).result()
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join()
        loop.close()
        self._loop = self._thread = None
