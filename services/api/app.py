"""The FastAPI application: ``create_app(settings)``; Redis and the queue are made in the lifespan."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY

from streamq.services.api import answers, docs, fastpath
from streamq.services.api.collector import QueueCollector
from streamq.services.api.fastpath import FastSubmit
from streamq.services.api.fastwait import FastWait
from streamq.services.api.invalid import ErrorJSON, validation_body
from streamq.services.api.middleware import BodyLimit, HttpMetrics, JsonDepth
from streamq.services.api.ratelimit import RateLimiter
from streamq.services.api.routes import (
    deliveries,
    groups,
    health,
    limits,
    queues,
    recovery,
    schedules,
    services,
    stats,
    tasks,
    workflows,
)
from streamq.services.api.security import Guard
from streamq.services.api.submission import Submission, broker_for
from streamq.services.api.types import TypeCatalog
from streamq.services.api.waiters import Waiters
from streamq.shared.auth import parse_keys
from streamq.shared.jsondepth import MAX_BODY_DEPTH
from streamq.shared.memguard import MemoryGuard
from streamq.shared.redis import connect, make_client
from streamq.shared.registry import ServiceRegistration
from streamq.shared.settings import Settings, parse_rate_limit
from streamq.shared.ssrf import SsrfGuard

MAX_BODY_BYTES = 1024 * 1024
ERROR = {"content": {"application/json": {"example": {"detail": "what went wrong"}}}}
COMMON_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"description": "The body is not valid JSON text", **ERROR},
    401: {"description": "A valid API key is required", **ERROR},
    403: {"description": "The API key lacks the scope", **ERROR},
    413: {"description": "Request body over 1 MiB"},
    414: {"description": "URL too long", **ERROR},
    429: {"description": "Rate limit exceeded (see Retry-After)", **ERROR},
    431: {"description": "Request headers too large", **ERROR},
    503: {
        "description": "Redis is out of reach or refuses writes (see Retry-After and the body's cause); the request "
        "may not have been applied",
        **ERROR,
    },
}


def _no_otel() -> dict[str, Any]:
    """FastAPI's built-in OpenTelemetry hooks, off: streamq exports Prometheus metrics, and the hooks'
    per-request provider look-ups (os.environ reads) cost about 15 % of the api's CPU in a profile."""
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    return {}


def create_app(settings: Settings, *, fast_submit: bool = True) -> FastAPI:
    """The api; ``fast_submit=False`` leaves ``POST /api/tasks`` and the long-poll ``GET /api/tasks/{id}?wait=S``
    entirely to FastAPI (the tests compare both)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = await connect(settings)
        app.state.broker = broker = broker_for(settings, redis)
        app.state.redis = redis
        broker.memory_guard = guard = MemoryGuard(redis, settings.memory_guard_ratio)
        await guard.tick()  # right from the first request
        guard.start()
        app.state.queue = queue = broker.default  # the default queue's partition 0, made once by the broker
        app.state.catalog = catalog = TypeCatalog(queue, settings.task_types, strict=settings.strict_types)
        app.state.submission = Submission(broker, catalog, app.state.guard)
        limit = parse_rate_limit(settings.rate_limit)
        app.state.limiter = RateLimiter(queue.scripts, queue.keys, *limit) if limit else None
        app.state.queue_metrics = collector = QueueCollector(redis, queue.keys)
        REGISTRY.register(collector)
        registration = ServiceRegistration.for_settings(
            redis, settings, kind="api", metrics_host=settings.api_host, metrics_port=settings.api_port
        )
        readers = make_client(settings, blocking_reads=True)  # the long-poll waiters' partition readers
        app.state.waiters = waiters = Waiters(readers)
        registration.start()
        try:
            yield
        finally:
            await waiters.stop()
            await readers.aclose()
            await registration.stop()
            await guard.stop()
            REGISTRY.unregister(collector)
            await redis.aclose()

    app = FastAPI(
        title="streamq",
        summary="A distributed task queue on Redis Streams",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served by docs.install from local assets, not FastAPI's CDN page
        redoc_url=None,  # no local ReDoc assets (services/api/docs.py)
        **_no_otel(),
    )
    docs.install(app)
    app.state.settings = settings
    app.state.limiter = None
    app.state.guard = SsrfGuard.from_settings(settings)
    routers = (tasks, recovery, schedules, stats, queues, groups, limits, health, deliveries, services, workflows)
    for module in routers:
        app.include_router(module.router, responses=COMMON_RESPONSES)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        """FastAPI's own 422 body, safe to send whatever the input was (services/api/invalid.py)."""
        return ErrorJSON(validation_body(error.errors()), status_code=422)

    answers.install(app)  # NotFound, Conflict, NotDurable, RateLimited, Redis down or refusing writes

    # JsonDepth, then the fast path (which checks the depth of the requests it takes), inside BodyLimit:
    # they read bounded bodies; every middleware below runs in front of them as for any route
    app.add_middleware(JsonDepth, max_depth=MAX_BODY_DEPTH, skip=fastpath.takes if fast_submit else None)
    if fast_submit:
        app.add_middleware(FastSubmit, api=app, max_depth=MAX_BODY_DEPTH)
        app.add_middleware(FastWait, api=app)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(Guard, keys=parse_keys(settings.api_keys), limiter=lambda: app.state.limiter)
    app.add_middleware(HttpMetrics)
    return app
