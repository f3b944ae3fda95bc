"""``Client`` (blocking) and ``AsyncClient`` (asyncio): the same methods over one connection pool each.
Every request and the mapping of its answer live in ``streamq._core``; these classes only send calls,
retry them (429/502/503/504 and refused connections, honouring Retry-After) and sleep in between.

Two transports: the api over HTTP (``url``), or Redis directly (``redis_url``: streamq/direct.py runs the
api's own submit and read code in this process); ``streamq._core.transport`` says which one is used."""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from streamq import _core as core
from streamq._core import Call
from streamq.models import Queue, Schedule, Stats, Task, TaskStatus, Worker
from streamq.workflows import AsyncWorkflows, Workflows

if TYPE_CHECKING:
    from streamq.direct import Engine, Portal
    from streamq.shared.settings import Settings

T = TypeVar("T")


class Client:
    """A blocking client of the streamq api.

    ``url`` and ``api_key`` default to ``STREAMQ_URL`` and ``STREAMQ_API_KEY`` (then
    ``http://127.0.0.1:8080``, no key); ``timeout`` bounds each request (a long-poll's read waits its
    wait on top); ``retries`` is how many times an answer of 429, 502, 503 or 504, or a refused
    connection, is tried again. Use it as a context manager, or call :meth:`close`.

    ``redis_url`` (or ``STREAMQ_REDIS_URL`` when no ``url`` and no ``STREAMQ_URL`` is given) talks to Redis
    directly, with the services' ``STREAMQ_*`` settings (or ``settings``, a ``streamq.shared.settings.Settings``):
    submit, submit_many, get, wait, cancel, list and stats, as the api makes them; any other call raises
    :class:`streamq.ApiOnly`. Needs ``pip install "streamq[redis]"``."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        redis_url: str | None = None,
        settings: Settings | None = None,
        timeout: float = core.DEFAULT_TIMEOUT_S,
        retries: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        chosen = core.transport(url, redis_url)
        self.config = core.config(chosen.url, api_key, timeout, retries)
        self._portal: Portal | None = None
        if chosen.redis_url is not None:
            self._portal = _direct().Portal(_direct().settings_for(chosen.redis_url, settings))
        self._http = httpx.Client(
            base_url=self.config.url, headers=self.config.headers, timeout=timeout, transport=transport
        )
        self.queues = Queues(self)
        self.schedules = Schedules(self)
        self.workflows = Workflows(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        if self._portal is not None:
            self._portal.close()

    def send(self, call: Call[T]) -> T:
        """Send one call, retrying as the class says; its value, or its typed error raised."""
        if self._portal is not None:
            return self._send_direct(self._portal, call)
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self._http.request(**core.request_args(self.config, call))
            except httpx.TransportError as error:
                if not (core.not_sent(error) and core.should_retry(attempt, self.config.retries, None)):
                    raise core.transport_error(self.config, error) from error
            if response is not None and not core.should_retry(attempt, self.config.retries, response):
                return core.outcome(call, response)
            time.sleep(core.backoff_s(attempt, response))
            attempt += 1

    def _send_direct(self, portal: Portal, call: Call[T]) -> T:
        """The call over the direct transport (submit, submit_many and get on this thread, the others on
        the portal's loop), retried as a 503 of the api would be."""
        return _direct().send_lane(portal.lane, call, self.config)  # type: ignore[no-any-return]

    # --- tasks -----------------------------------------------------------------------------------
    def submit(
        self,
        type: str,
        payload: Any = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | timedelta | None = None,
        scheduled_for: datetime | None = None,
        max_retries: int | None = None,
        timeout_s: float | None = None,
        retry_backoff_s: float | None = None,
        webhook: str | None = None,
        idempotency_key: str | None = None,
        keep_s: int | None = None,
        unique: dict[str, Any] | None = None,
        debounce: dict[str, Any] | None = None,
        group: str | None = None,
    ) -> Task:
        """Create a task (``delay``: seconds or a timedelta from now; ``keep_s``: how long its record is kept
        after it finishes, see the docs: Scaling out, Retention). Retried safely: the call sends one
        idempotency key (yours, or one it makes), so the api makes the task once."""
        return self.send(core.submit(core.task_body(**_named(locals()))))

    def submit_many(self, tasks: Iterable[Mapping[str, Any]]) -> builtins.list[Task]:
        """Create many tasks (each a mapping of :meth:`submit`'s arguments), in batches of the api's
        limit (1,000), in order; the tasks come back in the same order. Over the direct transport a few
        batches are in flight at once, and the tasks carry only the idempotency keys given (a batch sent
        again goes with the ids made for it: see the docs, Client and CLI)."""
        if self._portal is not None:
            direct = _direct()
            with direct.no_gc():  # see there: most of a large call's CPU otherwise
                done = direct.submit_many(self._portal.lane, tasks, self.config)
                return [task for batch in done for task in batch.tasks]
        calls = [core.submit_batch(batch) for batch in core.batches(tasks)]
        done = [self.send(call) for call in calls]
        return [task for batch in done for task in batch.tasks]

    def get(self, task_id: str, *, queue: str | None = None) -> Task:
        return self.send(core.get(task_id, queue))

    def wait(self, task_id: str, timeout: float = 30.0, *, queue: str | None = None) -> Task:
        """The task once it is completed, failed or cancelled (long-polls the api, up to 60 s a request);
        :class:`streamq.Timeout` (with its last state as ``.task``) if it is not after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            step = core.wait_s(deadline, time.monotonic())
            task = self.send(core.get(task_id, queue, wait_s=step))
            if task.done:
                return task
            if step is None:
                raise core.wait_timeout(task, timeout)

    def cancel(self, task_id: str, *, queue: str | None = None) -> Task:
        """Cancel a pending or scheduled task (it never runs); a running one is asked to stop
        (``cancel_requested``) where the api supports it."""
        return self.send(core.cancel(task_id, queue))

    def retry(self, task_id: str, *, queue: str | None = None) -> Task:
        """A failed or cancelled task back to pending with fresh attempts."""
        return self.send(core.retry(task_id, queue))

    def retry_failed(self, *, queue: str | None = None) -> int:
        """Every failed task (of ``queue``, or of all) back to pending; how many."""
        return self.send(core.retry_failed(queue))

    def delete(self, task_id: str, *, queue: str | None = None) -> None:
        """Delete a completed, failed or cancelled task."""
        self.send(core.delete(task_id, queue))

    def list(
        self,
        *,
        status: TaskStatus | str | None = None,
        type: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        limit: int | None = None,
    ) -> Iterator[Task]:
        """Tasks newest first, page by page as it is iterated (at most ``limit``)."""
        pager = core.Pager(limit, {"status": status, "type": type, "queue": queue, "priority": priority})
        while (call := pager.call()) is not None:
            yield from pager.take(self.send(call))

    def stats(self, queue: str | None = None) -> Stats:
        return self.send(core.stats(queue))

    def workers(self) -> builtins.list[Worker]:
        return self.send(core.workers())


class Queues:
    """``client.queues``: list, pause and resume named queues."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self) -> builtins.list[Queue]:
        return self._client.send(core.queues())

    def pause(self, name: str) -> Queue:
        """Workers stop taking the queue's tasks (submits still go in) until :meth:`resume`."""
        return self._client.send(core.pause_queue(name, True))

    def resume(self, name: str) -> Queue:
        return self._client.send(core.pause_queue(name, False))


class Schedules:
    """``client.schedules``: periodic tasks by cron expression."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self, name: str, cron: str, type: str, payload: Any = None, *, timezone: str = "UTC", **task: Any
    ) -> Schedule:
        """A schedule firing ``type`` with ``payload`` at each ``cron`` time in ``timezone``; ``task``
        takes the rest of the task template (queue, priority, max_retries, timeout_s, webhook)."""
        return self._client.send(
            core.create_schedule(core.schedule_body(name, cron, type, payload, timezone=timezone, **task))
        )

    def list(self) -> builtins.list[Schedule]:
        return self._client.send(core.schedules())

    def get(self, name: str) -> Schedule:
        return self._client.send(core.schedule(name))

    def delete(self, name: str) -> None:
        self._client.send(core.delete_schedule(name))

    def pause(self, name: str) -> Schedule:
        return self._client.send(core.pause_schedule(name, True))

    def resume(self, name: str) -> Schedule:
        return self._client.send(core.pause_schedule(name, False))


class AsyncClient:
    """The asyncio twin of :class:`Client`: the same methods, awaited (``list`` is an async iterator).
    Use it as ``async with AsyncClient() as client``, or await :meth:`aclose`."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        redis_url: str | None = None,
        settings: Settings | None = None,
        timeout: float = core.DEFAULT_TIMEOUT_S,
        retries: int = 4,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        chosen = core.transport(url, redis_url)
        self.config = core.config(chosen.url, api_key, timeout, retries)
        self._engine: Engine | None = None
        if chosen.redis_url is not None:
            self._engine = _direct().Engine(_direct().settings_for(chosen.redis_url, settings))
        self._http = httpx.AsyncClient(
            base_url=self.config.url, headers=self.config.headers, timeout=timeout, transport=transport
        )
        self.queues = AsyncQueues(self)
        self.schedules = AsyncSchedules(self)
        self.workflows = AsyncWorkflows(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._engine is not None:
            await self._engine.close()

    async def send(self, call: Call[T]) -> T:
        """As :meth:`Client.send`."""
        if self._engine is not None:
            return await self._send_direct(self._engine, call)
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = await self._http.request(**core.request_args(self.config, call))
            except httpx.TransportError as error:
                if not (core.not_sent(error) and core.should_retry(attempt, self.config.retries, None)):
                    raise core.transport_error(self.config, error) from error
            if response is not None and not core.should_retry(attempt, self.config.retries, response):
                return core.outcome(call, response)
            await asyncio.sleep(core.backoff_s(attempt, response))
            attempt += 1

    async def _send_direct(self, engine: Engine, call: Call[T]) -> T:
        """As :meth:`Client._send_direct`."""
        return await _direct().send(engine, call, self.config)  # type: ignore[no-any-return]

    async def submit(
        self,
        type: str,
        payload: Any = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | timedelta | None = None,
        scheduled_for: datetime | None = None,
        max_retries: int | None = None,
        timeout_s: float | None = None,
        retry_backoff_s: float | None = None,
        webhook: str | None = None,
        idempotency_key: str | None = None,
        keep_s: int | None = None,
        unique: dict[str, Any] | None = None,
        debounce: dict[str, Any] | None = None,
        group: str | None = None,
    ) -> Task:
        """As :meth:`Client.submit`."""
        return await self.send(core.submit(core.task_body(**_named(locals()))))

    async def submit_many(self, tasks: Iterable[Mapping[str, Any]]) -> builtins.list[Task]:
        """As :meth:`Client.submit_many`."""
        if self._engine is not None:
            direct = _direct()
            done = await direct.send_all(self._engine, direct.batch_calls(tasks), self.config)
        else:
            done = [await self.send(core.submit_batch(batch)) for batch in core.batches(tasks)]
        return [task for batch in done for task in batch.tasks]

    async def get(self, task_id: str, *, queue: str | None = None) -> Task:
        return await self.send(core.get(task_id, queue))

    # ASYNC109: ``timeout`` is a deadline over several long-polls, named as in Client.wait
    async def wait(self, task_id: str, timeout: float = 30.0, *, queue: str | None = None) -> Task:  # noqa: ASYNC109
        """As :meth:`Client.wait`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            step = core.wait_s(deadline, loop.time())
            task = await self.send(core.get(task_id, queue, wait_s=step))
            if task.done:
                return task
            if step is None:
                raise core.wait_timeout(task, timeout)

    async def cancel(self, task_id: str, *, queue: str | None = None) -> Task:
        return await self.send(core.cancel(task_id, queue))

    async def retry(self, task_id: str, *, queue: str | None = None) -> Task:
        return await self.send(core.retry(task_id, queue))

    async def retry_failed(self, *, queue: str | None = None) -> int:
        return await self.send(core.retry_failed(queue))

    async def delete(self, task_id: str, *, queue: str | None = None) -> None:
        await self.send(core.delete(task_id, queue))

    async def list(
        self,
        *,
        status: TaskStatus | str | None = None,
        type: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[Task]:
        """As :meth:`Client.list`: ``async for task in client.list(...)``."""
        pager = core.Pager(limit, {"status": status, "type": type, "queue": queue, "priority": priority})
        while (call := pager.call()) is not None:
            for task in pager.take(await self.send(call)):
                yield task

    async def stats(self, queue: str | None = None) -> Stats:
        return await self.send(core.stats(queue))

    async def workers(self) -> builtins.list[Worker]:
        return await self.send(core.workers())


class AsyncQueues:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(self) -> builtins.list[Queue]:
        return await self._client.send(core.queues())

    async def pause(self, name: str) -> Queue:
        return await self._client.send(core.pause_queue(name, True))

    async def resume(self, name: str) -> Queue:
        return await self._client.send(core.pause_queue(name, False))


class AsyncSchedules:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self, name: str, cron: str, type: str, payload: Any = None, *, timezone: str = "UTC", **task: Any
    ) -> Schedule:
        body = core.schedule_body(name, cron, type, payload, timezone=timezone, **task)
        return await self._client.send(core.create_schedule(body))

    async def list(self) -> builtins.list[Schedule]:
        return await self._client.send(core.schedules())

    async def get(self, name: str) -> Schedule:
        return await self._client.send(core.schedule(name))

    async def delete(self, name: str) -> None:
        await self._client.send(core.delete_schedule(name))

    async def pause(self, name: str) -> Schedule:
        return await self._client.send(core.pause_schedule(name, True))

    async def resume(self, name: str) -> Schedule:
        return await self._client.send(core.pause_schedule(name, False))


def _direct() -> Any:
    """streamq.direct, imported on first use: it needs the ``redis`` extra, which the api transport does not."""
    try:
        import streamq.direct
    except ImportError as error:
        raise ImportError(
            f'the direct Redis transport (redis_url=...) needs pip install "streamq[redis]" ({error})'
        ) from error
    return streamq.direct


def _named(arguments: dict[str, Any]) -> dict[str, Any]:
    """A submit method's arguments as ``task_body``'s keywords (``locals()`` less ``self``)."""
    return {k: v for k, v in arguments.items() if k != "self"}
