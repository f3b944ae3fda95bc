"""The FastAPI application: ``create_app(settings)``; Redis and the queue are made in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY

from services.api.collector import QueueCollector
from services.api.middleware import BodyLimit, HttpMetrics
from services.api.routes import deliveries, health, recovery, schedules, services, stats, tasks
from services.api.types import TypeCatalog
from shared.errors import Conflict, NotFound
from shared.keys import KeySchema
from shared.queue import Queue
from shared.redis import connect
from shared.registry import ServiceRegistration
from shared.settings import Settings
from shared.ssrf import SsrfGuard

MAX_BODY_BYTES = 1024 * 1024


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = await connect(settings)
        queue = Queue(
            redis,
            KeySchema(settings.key_prefix, settings.queue),
            events_maxlen=settings.events_maxlen,
            result_ttl_s=settings.result_ttl_s,
            idempotency_ttl_s=settings.idempotency_ttl_s,
        )
        app.state.redis = redis
        app.state.queue = queue
        app.state.catalog = TypeCatalog(queue, settings.task_types, strict=settings.strict_types)
        app.state.queue_metrics = collector = QueueCollector(redis, queue.keys)
        REGISTRY.register(collector)
        registration = ServiceRegistration.for_settings(
            redis, settings, kind="api", metrics_host=settings.api_host, metrics_port=settings.api_port
        )
        registration.start()
        try:
            yield
        finally:
            await registration.stop()
            REGISTRY.unregister(collector)
            await redis.aclose()

    app = FastAPI(
        title="streamq",
        summary="A distributed task queue on Redis Streams",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.guard = SsrfGuard.from_settings(settings)
    app.include_router(tasks.router)
    app.include_router(recovery.router)
    app.include_router(schedules.router)
    app.include_router(stats.router)
    app.include_router(health.router)
    app.include_router(deliveries.router)
    app.include_router(services.router)

    @app.exception_handler(NotFound)
    async def not_found(_request: Request, error: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=404)

    @app.exception_handler(Conflict)
    async def conflict(_request: Request, error: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(error), "status": error.status}, status_code=409)

    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(HttpMetrics)
    return app
