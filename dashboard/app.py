"""The dashboard's web app: static pages, a same-origin pass-through to the api, live events (SSE),
chart history, and the services with what their ``/metrics`` said at the last sample."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.requests import ClientDisconnect

from streamq.dashboard import history, login
from streamq.dashboard.events import Broadcaster
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
STATIC = resources.files("streamq.dashboard") / "static"
NO_FRAMES = {"x-frame-options": "DENY", "content-security-policy": "frame-ancestors 'none'"}
PASS_HEADERS = ("content-type", "idempotency-key")
KEEPALIVE_S = 15.0


def create_app(settings: Settings) -> FastAPI:
    keys = KeySchema(settings.key_prefix, settings.queue)
    api_keys = parse_keys(settings.api_keys)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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

    app = FastAPI(title="streamq dashboard", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.port = None  # set by main() when the port is picked at start
    app.add_middleware(login.LoginGuard, keys=api_keys, store=lambda: app.state.sessions)
    # the api's body limit, enforced while the body streams in (before the pass-through buffers it)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        headers = {"cache-control": "no-cache", **(NO_FRAMES if api_keys else {})}
        return FileResponse(str(STATIC / "index.html"), headers=headers)

    @app.get("/login", include_in_schema=False)
    async def login_page() -> Response:
        return login.login_page() if api_keys else RedirectResponse("/", status_code=303)

    @app.post("/login", include_in_schema=False)
    async def log_in(request: Request) -> Response:
        if not api_keys:
            return JSONResponse({"detail": "no login: STREAMQ_API_KEYS is not set"}, status_code=404)
        return await login.login(request, api_keys, request.app.state.sessions, request.app.state.throttle)

    @app.post("/logout", include_in_schema=False)
    async def log_out(request: Request) -> Response:
        request.app.state.broadcaster.end_owner(request.cookies.get(login.COOKIE, ""))
        return await login.logout(request, request.app.state.sessions)

    @app.get("/dash/session")
    async def session(request: Request) -> dict[str, Any]:
        """Who is logged in and what the page may offer (``auth`` false: no keys, everything allowed)."""
        current = login.session_of(request)
        if current is None:
            return {"auth": False, "name": None, "scopes": [s.value for s in Scope], "csrf": None}
        return {"auth": True, "name": current.name, "scopes": sorted(s.value for s in current.scopes),
                "csrf": current.csrf}  # fmt: skip

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """Liveness for the container health check (``STREAMQ_HEALTHCHECK_URL``); open even with keys."""
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/dash/config")
    async def config() -> dict[str, Any]:
        return {
            "queue": settings.queue,
            "history": "prometheus" if settings.prometheus_url else "redis",
            "interval_s": settings.history_interval_s,
        }

    @app.get("/dash/history")
    async def chart_history(
        request: Request, range_s: Annotated[int, Query(ge=60, le=24 * 3600)] = 900
    ) -> dict[str, Any]:
        """Chart series over the last ``range_s`` seconds (at most 600 points)."""
        if settings.prometheus_url:
            return await history.from_prometheus(request.app.state.upstream.client, settings.prometheus_url, range_s)
        return await history.from_redis(request.app.state.redis, keys, range_s, settings.history_interval_s)

    @app.get("/dash/services")
    async def services(request: Request) -> list[dict[str, Any]]:
        """Every live process (from the api's registry) with whether its ``/metrics`` answered at the
        last sample and the tasks it had in progress then."""
        listed: list[dict[str, Any]] = await request.app.state.upstream.json(
            "GET", "/api/services", headers=bearer(request)
        )
        scraped = {s.service_id: s for s in request.app.state.sampler.latest}
        for service in listed:
            result = scraped.get(service["id"])
            service["metrics_up"] = None if result is None else result.up
            service["metrics_error"] = None if result is None else result.error
            service["in_progress"] = (
                None if result is None or not result.up else result.total("streamq_tasks_in_progress")
            )
        return listed

    @app.get("/dash/events")
    async def events(request: Request) -> StreamingResponse:
        """Server-sent events: each message is a JSON list of lifecycle events (event, task, status)."""
        broadcaster: Broadcaster = request.app.state.broadcaster
        cookie = request.cookies.get(login.COOKIE, "") if login.session_of(request) else None
        queue = broadcaster.subscribe(cookie)

        async def stream() -> AsyncIterator[bytes]:
            checked = time.monotonic()  # when the session was last found in Redis
            try:
                yield b"retry: 1000\nevent: hello\ndata: {}\n\n"
                while True:
                    try:
                        batch = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except TimeoutError:
                        batch = []
                    if batch is None:
                        return
                    if cookie is not None and time.monotonic() - checked >= KEEPALIVE_S:
                        # logged out (on another dashboard replica) or expired: the browser reconnects, gets 401
                        if await request.app.state.sessions.get(cookie) is None:
                            return
                        checked = time.monotonic()
                    yield (b"data: " + orjson.dumps(batch) + b"\n\n") if batch else b": keep-alive\n\n"
            finally:
                broadcaster.unsubscribe(queue, cookie)

        headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    @app.api_route("/api/{path:path}", methods=["GET", "POST", "PUT", "DELETE"], include_in_schema=False)
    async def pass_through(path: str, request: Request) -> Response:
        """The api's REST endpoints under the dashboard's own origin (no CORS, one URL for the browser)."""
        headers = {k: v for k, v in request.headers.items() if k.lower() in PASS_HEADERS}
        headers.update(bearer(request))
        try:
            body = await request.body()  # at most MAX_BODY_BYTES: BodyLimit answers 413 past it
        except ClientDisconnect:  # over the limit (413 already sent) or the client went away
            return Response(status_code=499)  # never sent: the connection is done
        try:
            upstream = await request.app.state.upstream.request(
                request.method, f"/api/{path}", params=request.query_params.multi_items(),
                content=body, headers=headers,
            )  # fmt: skip
        except UpstreamError as error:
            return JSONResponse({"detail": str(error)}, status_code=502)
        media = upstream.headers.get("content-type")
        return Response(upstream.content, status_code=upstream.status_code, media_type=media)

    def bearer(request: Request) -> dict[str, str]:
        """The logged-in key for the api; with keys configured and no session (cannot happen behind the
        guard) an empty bearer, so the service key is never used on a user's behalf."""
        current = login.session_of(request)
        if current is not None:
            return {"authorization": f"Bearer {current.secret}"}
        return {"authorization": ""} if api_keys else {}

    @app.exception_handler(UpstreamError)
    async def upstream_down(_request: Request, error: UpstreamError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=502)

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
