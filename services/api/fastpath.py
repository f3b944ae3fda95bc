"""``POST /api/tasks`` without the framework's per-request machinery, for the common case only.

A pure ASGI middleware, the innermost one but ``JsonDepth``: the size limits, API keys, rate limit,
body limit and HTTP metrics in front of it run exactly as for any other route. For ``POST /api/tasks`` with a
``Content-Type: application/json`` body and no ``Idempotency-Key`` header it reads the body, parses
it as the route does (``json.loads``, what Starlette's ``Request.json`` calls), validates a
``TaskCreate``, and checks and submits it through the route's own submission service
(``services/api/submission.py``: the same type and payload checks, coalescing, tracing and counting),
and answers with the bytes FastAPI would send (201, or 200 for an idempotent replay; the body is
``TaskPublic`` as pydantic dumps it, FastAPI's own serialiser for a response model, written by
``encoding.TaskJson``). An error is answered as the app's exception handlers answer it
(``services/api/answers.py``).

``JsonDepth``, behind it, lets the requests it takes pass unread: it refuses a body nested too deep
itself, with the same 422 and before parsing, on the body it reads anyway (one read per submit).

Anything unusual goes to the FastAPI route instead, with the body replayed untouched: not JSON, not
an object, a validation error, an unknown type, a refused payload or webhook, another content type,
the header, a task with a unique or debounce key. The route then produces its own status and error
body, so those stay identical.
Why: the framework stack (routing, dependency solving, request and response validation) was most
of the api's CPU per submitted task in py-spy (see ``bench/README.md``).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from streamq.services.api.answers import MAPPED, send_error
from streamq.services.api.encoding import TaskJson
from streamq.services.api.middleware import read_body, replay, too_deep
from streamq.services.api.routes import tasks
from streamq.services.api.submission import Submission
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Stored

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


def takes(scope: Scope) -> bool:
    """Whether the fast path reads this request (and checks its depth: ``JsonDepth`` lets it pass)."""
    return scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "POST" and _plain(scope["headers"])


class FastSubmit:
    def __init__(self, app: ASGIApp, *, api: FastAPI, max_depth: int) -> None:
        self.app = app
        self.api = api
        self.max_depth = max_depth
        self.route = submit_route()
        self.encode = TaskJson()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not takes(scope):
            await self.app(scope, receive, send)
            return
        messages = await read_body(receive)
        body = b"".join(m.get("body", b"") for m in messages)
        if await too_deep(body, self.max_depth, send):  # as JsonDepth answers, before anything parses it
            return
        if messages[-1]["type"] == "http.request":
            try:
                done = await self._submit(body, scope)
            except MAPPED as error:  # answered as the app's exception handlers answer (this runs outside them)
                scope["route"] = self.route  # for HttpMetrics' route label, as routing would set it
                await send_error(error, scope, receive, send)
                return
            if done is not None:
                scope["route"] = self.route
                await _respond(send, 200 if done.earlier is not None else 201, self.encode(done))
                return
        await self.app(scope, replay(messages, receive), send)

    async def _submit(self, body: bytes, scope: Scope) -> Stored | None:
        """The submitted task's record, or None to let the FastAPI route answer."""
        task = _task(body)
        submission: Submission = self.api.state.submission
        if task is None or task.unique is not None or task.debounce is not None:  # the route answers 409/200 for these
            return None
        if await submission.problems([task], batch=False):
            return None
        return await submission.submit_one(task, scope["headers"])


def _task(body: bytes) -> TaskCreate | None:
    try:
        data: Any = json.loads(body)
        return TaskCreate.model_validate(data) if isinstance(data, dict) else None
    except (ValueError, ValidationError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


async def _respond(send: Send, status: int, body: bytes) -> None:
    """The same head Starlette's ``Response(content, media_type="application/json")`` sends."""
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", JSON)]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
