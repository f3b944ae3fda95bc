"""Entry point: ``python -m services.api``."""

from __future__ import annotations

import logging

import uvicorn

from services.api.app import create_app
from shared.logging import setup_logging
from shared.settings import load_settings

log = logging.getLogger("streamq.api")


def main() -> None:
    settings = load_settings()
    setup_logging("api", settings.log_level, settings.log_format)
    if not settings.api_keys and settings.api_host not in ("127.0.0.1", "::1", "localhost"):
        log.warning(
            "no API keys configured but the api binds to a non-loopback address: anyone who can reach it can "
            "submit and delete tasks; set STREAMQ_API_KEYS",
            extra={"host": settings.api_host},
        )
    app = create_app(settings)
    log.info("api starting", extra={"url": f"http://{settings.api_host}:{settings.api_port}"})
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
    )
