"""The dashboard's web app: static pages, a same-origin pass-through to the api, live events (SSE),
chart history, and the services with what their ``/metrics`` said at the last sample. The routes are
in ``streamq.dashboard.routes``, one router per resource; what they share lives on ``app.state``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from streamq.dashboard import login
from streamq.dashboard.events import Broadcaster
from streamq.dashboard.routes import charts, events, health, pages, passthrough, services, session
from streamq.dashboard.routes.pages import STATIC
from streamq.dashboard.sampler import Sampler
from streamq.dashboard.sessions import SessionStore
from streamq.dashboard.throttle import LoginThrottle
from streamq.dashboard.upstream import Upstream, UpstreamError
from streamq.services.api.app import MAX_BODY_BYTES
from streamq.services.api.middleware import BodyLimit
from streamq.shared.auth import Scope, parse_keys, verify
from streamq.shared.keys import KeySchema
from streamq.shared.loops import PeriodicLoop, stop_all
from streamq.shared.redis import connect, make_client, ping
from streamq.shared.registry import ServiceRegistration
from streamq.shared.settings import Settings

log = logging.getLogger("streamq.dashboard")
ROUTERS = (pages, session, health, charts, services, events, passthrough)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Redis, the api client, the session store and the background loops (event feeds, the history
    sampler unless Prometheus keeps the history, the service registration), on ``app.state``."""
    settings: Settings = app.state.settings
    keys: KeySchema = app.state.keys
    redis = await connect(settings)
    upstream = Upstream(settings.api_url, service_key=settings.dashboard_api_key.get_secret_value() or None)
    app.state.sessions = SessionStore(redis, keys, settings.dashboard_session_ttl_s)
    app.state.throttle = LoginThrottle(redis, keys)
    warn_about_service_key(settings)
    readers = make_client(settings, blocking_reads=True)  # the event feeds' blocking reads, one per partition
    await ping(readers)  # connected (on a cluster: its slot map read) before the feeds take their start
    broadcaster = Broadcaster(readers, keys)
    sampler = Sampler(
        redis, keys, upstream, interval_s=settings.history_interval_s, retention_s=settings.history_retention_s
    )
    loops: list[PeriodicLoop] = [broadcaster]
    if settings.prometheus_url is None:
        loops.append(sampler)
    loops.append(
        ServiceRegistration.for_settings(
            redis, settings, kind="dashboard", metrics_host=settings.dashboard_host,
            metrics_port=app.state.port or settings.dashboard_port,
        )
    )  # fmt: skip
    app.state.redis, app.state.upstream = redis, upstream
    app.state.broadcaster, app.state.sampler = broadcaster, sampler
    for loop in loops:
        loop.start()
    try:
        yield
    finally:
        await stop_all(loops)  # together: with Redis gone each waits up to STOP_WITHIN_S
        await upstream.aclose()
        await readers.aclose()
        await redis.aclose()


async def upstream_down(_request: Request, error: Exception) -> JSONResponse:
    """The api did not answer (``UpstreamError``): 502 naming it."""
    return JSONResponse({"detail": str(error)}, status_code=502)


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="streamq dashboard", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.keys = KeySchema(settings.key_prefix, settings.queue)
    app.state.api_keys = api_keys = parse_keys(settings.api_keys)
    app.state.port = None  # set by main() when the port is picked at start
    app.add_middleware(login.LoginGuard, keys=api_keys, store=lambda: app.state.sessions)
    # the api's body limit, enforced while the body streams in (before the pass-through buffers it)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    for module in ROUTERS:
        app.include_router(module.router)
    app.add_exception_handler(UpstreamError, upstream_down)
    return app


def warn_about_service_key(settings: Settings) -> None:
    """With keys, the dashboard's own reads need ``STREAMQ_DASHBOARD_API_KEY`` (a configured ``read`` key)."""
    api_keys = parse_keys(settings.api_keys)
    if not api_keys:
        return
    service_key = settings.dashboard_api_key.get_secret_value()
    key = verify(api_keys, service_key) if service_key else None
    if key is None or Scope.READ not in key.scopes:
        log.warning(
            "STREAMQ_API_KEYS is set but STREAMQ_DASHBOARD_API_KEY is not the secret of a configured key "
            "with the read scope: history sampling and /metrics scraping will be refused by the api"
        )
