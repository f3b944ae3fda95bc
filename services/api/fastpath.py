"""``POST /api/tasks`` without the framework's per-request machinery, for the common case only.

A pure ASGI middleware, the innermost one: the size limits, API keys, rate limit, body limit and
HTTP metrics in front of it run exactly as for any other route. For ``POST /api/tasks`` with a
``Content-Type: application/json`` body and no ``Idempotency-Key`` header it reads the body, parses
it as the route does (``json.loads``, what Starlette's ``Request.json`` calls), validates a
``TaskCreate``, runs the same type and payload checks, submits through ``Broker.submit_stored`` (the
route's ``Broker.submit`` without the ``TaskPublic``), together with the other submits of the same
event-loop turn (``services/api/coalesce.py``: one script call for all of them), and answers with the
bytes FastAPI would send (201, or 200 for an idempotent replay; the body is ``TaskPublic`` as pydantic
dumps it, FastAPI's own serialiser for a response model, written by ``encoding.TaskJson``).

Anything unusual goes to the FastAPI route instead, with the body replayed untouched: not JSON, not
an object, a validation error, an unknown type, a refused payload or webhook, another content type,
the header. The route then produces its own status and error body, so those stay identical.
Why: the framework stack (routing, dependency solving, request and response validation) was most
of the api's CPU per submitted task in py-spy (see ``bench/README.md``).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import ValidationError
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from streamq.services.api.coalesce import Coalescer
from streamq.services.api.encoding import TaskJson
from streamq.services.api.middleware import read_body, replay
from streamq.services.api.routes import tasks
from streamq.services.api.routes.tasks import _count_stored
from streamq.services.api.unavailable import redis_answer
from streamq.shared import tracing
from streamq.shared.broker import Broker
from streamq.shared.errors import NotDurable, not_durable_body
from streamq.shared.models import TaskCreate
from streamq.shared.payloads import check_tasks

PATH = "/api/tasks"
JSON = b"application/json"


def _plain(headers: list[tuple[bytes, bytes]]) -> bool:
    """A JSON body and no ``Idempotency-Key`` header (the route validates that header itself)."""
    json_body = False
    for name, value in headers:
        if name == b"content-type":
            json_body = value == JSON
        elif name == b"idempotency-key":
            return False
    return json_body


def submit_route() -> APIRoute:
    """The route the fast path stands in for (routing puts it in ``scope["route"]``)."""
    for route in tasks.router.routes:
        if isinstance(route, APIRoute) and route.path == PATH and "POST" in (route.methods or ()):
            return route
    raise LookupError(f"no POST {PATH} route to stand in for")


class FastSubmit:
    def __init__(self, app: ASGIApp, *, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self.route = submit_route()
        self.encode = TaskJson()
        self._coalescer: Coalescer | None = None  # made on first use (the broker is made in the lifespan)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "POST" and _plain(scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        messages = await read_body(receive)
        if messages[-1]["type"] == "http.request":
            headers: list[tuple[bytes, bytes]] = []
            try:
                answer = await self._submit(b"".join(m.get("body", b"") for m in messages), scope)
            except RedisError as error:  # as the app's exception handler answers (this runs outside it)
                mapped = redis_answer(error)
                if mapped is None:
                    raise
                answer = mapped[0], orjson.dumps(mapped[1])
                headers = [(name.lower().encode(), value.encode()) for name, value in mapped[2].items()]
            if answer is not None:
                scope["route"] = self.route  # for HttpMetrics' route label, as routing would set it
                await _respond(send, *answer, headers)
                return
        await self.app(scope, replay(messages, receive), send)

    async def _submit(self, body: bytes, scope: Scope) -> tuple[int, bytes] | None:
        """(status, body) of the submitted task, or None to let the FastAPI route answer."""
        task = _task(body)
        if task is None:
            return None
        state = self.api.state
        if await state.catalog.unknown({task.type}) or await check_tasks([task], state.guard, batch=False):
            return None
        if tracing.ENABLED:
            return await self._traced(task, scope)
        return await self._store(task)

    async def _traced(self, task: TaskCreate, scope: Scope) -> tuple[int, bytes]:
        """:meth:`_store` inside the api's submit span, the task carrying its context."""
        queue = task.queue or self.api.state.broker.keys.queue
        with tracing.submitting(scope["headers"], [task], queue) as ([traced], span):
            status, body = await self._store(traced)
            if status < 300:
                tracing.submitted(span, [orjson.loads(body)["id"]])
            return status, body

    async def _store(self, task: TaskCreate) -> tuple[int, bytes]:
        """(status, body) of a checked task, submitted."""
        broker: Broker = self.api.state.broker
        if broker.durable is not None:  # each call's 503 names its own tasks: not coalesced
            try:
                [done] = await broker.submit_stored([task])
            except NotDurable as error:  # as the route's exception handler answers (this runs outside it)
                return 503, orjson.dumps(not_durable_body(error))
            _count_stored([done])
        else:
            done = await self._coalesced(broker).submit(task)
        return (200 if done.earlier is not None else 201), self.encode(done)

    def _coalesced(self, broker: Broker) -> Coalescer:
        coalescer = self._coalescer
        if coalescer is None or coalescer.broker is not broker:  # a new lifespan, a new broker
            coalescer = self._coalescer = Coalescer(broker, _count_stored)
        return coalescer


def _task(body: bytes) -> TaskCreate | None:
    try:
        data: Any = json.loads(body)
        return TaskCreate.model_validate(data) if isinstance(data, dict) else None
    except (ValueError, ValidationError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


async def _respond(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """The same head Starlette's ``Response(content, media_type="application/json")`` sends."""
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", JSON), *(extra or ())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
