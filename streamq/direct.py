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
import concurrent.futures
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from streamq import _core as core
from streamq.errors import Conflict, InvalidTask, NotFound, StreamqError, Timeout, Unavailable
from streamq.models import Stats, Task, TaskStatus
from streamq.services.api.encoding import TaskJson, batch_json
from streamq.services.api.submission import Submission, broker_for
from streamq.services.api.types import TypeCatalog
from streamq.services.api.unavailable import redis_answer
from streamq.services.api.waiters import Waiters
from streamq.shared import errors as server
from streamq.shared.memguard import MemoryGuard
from streamq.shared.models import TaskBatchCreate, TaskCreate
from streamq.shared.models import TaskStatus as ServerStatus
from streamq.shared.redis import connect, make_client, redact
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


async def send_all(engine: Engine, calls: list[core.Call[T]], config: core.Config) -> list[T]:
    """The calls' values in order, ``IN_FLIGHT`` at a time (as that many api requests would be). As over
    HTTP, an error stops the rest; calls already sent may have been applied (each task carries its
    idempotency key, so submitting them again is safe)."""
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(call: core.Call[T]) -> T:
        async with gate:
            return await send(engine, call, config)

    return list(await asyncio.gather(*(one(call) for call in calls)))


class BatchAnswer(BaseModel):
    """``POST /api/tasks/batch``'s answer, read from the same bytes."""

    tasks: list[Task]
    created: int
    duplicates: int


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
        self._task_json = TaskJson()

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
        """``POST /api/tasks``: validate, check, store (coalesced as in the api), answer."""
        try:
            task = TaskCreate.model_validate(body)
        except ValidationError as error:
            raise _invalid(error, ("body",)) from None
        submission = await self.submission()
        await self._check(submission, [task], batch=False)
        stored = await submission.submit_one(task, ())
        return _TASK.validate_json(self._task_json(stored))

    async def submit_batch(self, bodies: list[dict[str, Any]]) -> BatchAnswer:
        """``POST /api/tasks/batch``: up to 1,000 tasks, one script call per queue partition."""
        try:
            batch = TaskBatchCreate.model_validate({"tasks": bodies})
        except ValidationError as error:
            raise _invalid(error, ("body",)) from None
        submission = await self.submission()
        await self._check(submission, batch.tasks, batch=True)
        done = await submission.submit_many(batch.tasks, ())
        return BatchAnswer.model_validate_json(batch_json(done))

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

    def _started(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None and self._pid == os.getpid():
            return loop
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                self._loop = asyncio.new_event_loop()
                self._pid = os.getpid()
                self.engine = Engine(self.settings)  # a forked child's copy holds its parent's sockets
                self._thread = threading.Thread(target=self._loop.run_forever, name="streamq-direct", daemon=True)
                self._thread.start()
            return self._loop

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
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join()
        loop.close()
        self._loop = self._thread = None
