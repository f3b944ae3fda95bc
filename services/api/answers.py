"""The api's one mapping of errors to HTTP answers.

The app's exception handlers (:func:`install`), and the pure ASGI parts that run outside them (the
guard's rate limit, the submit fast path), answer an error through :func:`error_response`: the same
status, body and headers wherever it was raised. Redis out of reach or refusing writes is described
in services/api/unavailable.py.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from redis.exceptions import RedisError
from starlette.types import Receive, Scope, Send

from streamq.services.api.ratelimit import RateLimited
from streamq.services.api.unavailable import redis_answer
from streamq.shared.errors import Conflict, NotDurable, NotFound, not_durable_body


class UniqueHeld(Exception):
    """A submit refused because another task holds its unique key in the queue (409 naming the holder)."""

    def __init__(self, key: str, holder: str) -> None:
        super().__init__(f"unique key {key!r} is held by task {holder}: it is released when that task ends "
                         "(or starts, with until=started)")  # fmt: skip
        self.task_id = holder


# what :func:`error_response` answers (any other error is a 500, as for any bug)
MAPPED: tuple[type[Exception], ...] = (NotFound, Conflict, UniqueHeld, NotDurable, RateLimited, RedisError)


def error_response(error: BaseException) -> JSONResponse | None:
    """The answer to ``error``, or None when it is not one the api answers (the caller raises it again)."""
    if isinstance(error, NotFound):
        return JSONResponse({"detail": str(error)}, status_code=404)
    if isinstance(error, UniqueHeld):
        return JSONResponse({"detail": str(error), "task_id": error.task_id}, status_code=409)
    if isinstance(error, Conflict):
        return JSONResponse({"detail": str(error), "status": error.status}, status_code=409)
    if isinstance(error, NotDurable):  # applied on the master, unconfirmed by the replicas asked for
        return JSONResponse(not_durable_body(error), status_code=503)
    if isinstance(error, RateLimited):
        headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s else None
        return JSONResponse({"detail": str(error)}, status_code=429, headers=headers)
    answer = redis_answer(error)  # Redis out of reach or refusing writes; None for any other error
    if answer is None:
        return None
    status, body, headers = answer
    return JSONResponse(body, status_code=status, headers=headers)


async def send_error(error: BaseException, scope: Scope, receive: Receive, send: Send) -> None:
    """:func:`error_response`'s answer sent from a pure ASGI middleware; ``error`` raised again when unmapped."""
    response = error_response(error)
    if response is None:
        raise error
    await response(scope, receive, send)


async def _handler(_request: Request, error: Exception) -> Response:
    response = error_response(error)
    if response is None:
        raise error
    return response


def install(app: FastAPI) -> None:
    """The exception handlers of the errors in :data:`MAPPED`."""
    for kind in MAPPED:
        app.add_exception_handler(kind, _handler)
