"""Entry point: ``python -m streamq.services.api``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Generator

import uvicorn

from streamq.services.api.app import create_app
from streamq.shared import lifecycle, schema, tracing
from streamq.shared.forwarded import server_options
from streamq.shared.logging import setup_logging
from streamq.shared.settings import Settings, load_settings

log = logging.getLogger("streamq.api")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # streamq.shared.lifecycle owns SIGTERM/SIGINT and sets `stop`; see serve()


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Serve until ``stop`` (SIGTERM/SIGINT): uvicorn stops accepting, finishes open requests within
    the grace period, runs the lifespan shutdown, and the process exits 0."""
    if not await schema.at_start(settings, stop, migrate_older=settings.auto_migrate):
        return
    app = create_app(settings)
    lifecycle.freeze_startup_heap()
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        http="httptools",
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        **server_options(settings.api_trusted_proxies),
    )
    server = _Server(config)
    serving = asyncio.create_task(server.serve())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopper}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    await serving
    stopper.cancel()
    if not server.started:
        raise SystemExit(f"streamq: the api could not start on {settings.api_host}:{settings.api_port}")


def main() -> None:
    settings = load_settings()
    setup_logging("api", settings.log_level, settings.log_format)
    tracing.setup("api")
    if not settings.api_keys and settings.api_host not in ("127.0.0.1", "::1", "localhost"):
        log.warning(
            "no API keys configured but the api binds to a non-loopback address: anyone who can reach it can "
            "submit and delete tasks; set STREAMQ_API_KEYS",
            extra={"host": settings.api_host},
        )
    log.info("api starting", extra={"url": f"http://{settings.api_host}:{settings.api_port}"})
    lifecycle.run(lambda stop: serve(settings, stop))
    tracing.shutdown()  # the last spans leave before the process ends (bounded)
