"""``GET /api/tasks/{id}?wait=S`` (the long-poll) without the framework's per-request machinery.

A pure ASGI middleware beside the submit fast path (services/api/fastpath.py), inside every other
middleware: API keys, rate limit and HTTP metrics run in front of it as for any route. It takes only
the plain form of the request, a query of exactly ``wait=S`` with ``0 < S <= 60``, waits through the
route's own :class:`streamq.services.api.waiters.Waiters`, and answers with the bytes FastAPI sends
for the route's ``TaskPublic`` (pydantic's JSON of the model). A missing task, Redis out of reach and
the other mapped errors are answered as the app's exception handlers answer them
(services/api/answers.py). Anything else (a ``queue`` parameter, a bad or repeated ``wait``, another
parameter) goes to the FastAPI route, which answers it, 422s included, as before.

Why: a waited task cost the api about 1.8 ms of CPU through the route (py-spy: routing, dependency
solving, query validation and response validation, against a few Redis replies), and a woken waiter's
answer waits behind that work on the event loop (the ``wait`` workload's p99 target).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from streamq.services.api.answers import MAPPED, send_error
from streamq.services.api.routes import tasks
from streamq.services.api.waiters import Waiters
from streamq.shared.broker import Broker
from streamq.shared.models import TaskPublic

PREFIX = "/api/tasks/"
MAX_WAIT_S = 60.0  # as the route's WaitSeconds: 0 < S <= 60
JSON = b"application/json"


def wait_route() -> APIRoute:
    """The route the fast path stands in for (routing puts it in ``scope["route"]``)."""
    for route in tasks.router.routes:
        if isinstance(route, APIRoute) and route.path == "/api/tasks/{task_id}" and "GET" in (route.methods or ()):
            return route
    raise LookupError("no GET /api/tasks/{task_id} route to stand in for")


def waited(scope: Scope) -> tuple[str, float] | None:
    """The task id and wait of a plain long-poll request, else None (the route answers it)."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return None
    path: str = scope["path"]
    if not path.startswith(PREFIX):
        return None
    task_id = path[len(PREFIX) :]
    query: bytes = scope["query_string"]
    if not task_id or "/" in task_id or not query.startswith(b"wait=") or b"&" in query:
        return None
    try:
        wait_s = float(query[5:].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    return (task_id, wait_s) if 0 < wait_s <= MAX_WAIT_S else None  # nan and inf fail here too


class FastWait:
    def __init__(self, app: ASGIApp, *, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self.route = wait_route()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        asked = waited(scope)
        if asked is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route  # for HttpMetrics' route label, as routing would set it
        broker: Broker = self.api.state.broker
        waiters: Waiters = self.api.state.waiters
        try:
            task = await waiters.task(broker, asked[0], None, asked[1])
        except MAPPED as error:  # answered as the app's exception handlers answer (this runs outside them)
            await send_error(error, scope, receive, send)
            return
        await _respond(send, task)


async def _respond(send: Send, task: TaskPublic) -> None:
    """The head and body Starlette's ``JSONResponse`` of FastAPI's serialised ``TaskPublic`` sends."""
    body = task.__pydantic_serializer__.to_json(task)
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", JSON)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
