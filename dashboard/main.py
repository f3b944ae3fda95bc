"""Entry point: ``python -m streamq.dashboard`` (``STREAMQ_DASHBOARD_PORT``, default 8081)."""

from __future__ import annotations

import logging
import socket

import uvicorn

from streamq.dashboard.app import create_app
from streamq.shared.forwarded import server_options
from streamq.shared.logging import setup_logging
from streamq.shared.redis import redact
from streamq.shared.settings import load_settings

log = logging.getLogger("streamq.dashboard")
SHUTDOWN_S = 3  # open event streams are closed after this on SIGTERM


def main() -> None:
    settings = load_settings()
    setup_logging("dashboard", settings.log_level, settings.log_format)
    app = create_app(settings)
    sock = socket.socket(socket.AF_INET6 if ":" in settings.dashboard_host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.dashboard_host, settings.dashboard_port))
    app.state.port = sock.getsockname()[1]
    log.info(
        "dashboard starting",
        extra={"url": f"http://{settings.dashboard_host}:{app.state.port}", "api": redact(settings.api_url)},
    )
    config = uvicorn.Config(
        app, log_config=None, access_log=False, loop="uvloop", http="httptools", timeout_graceful_shutdown=SHUTDOWN_S,
        **server_options(settings.dashboard_trusted_proxies),
    )  # fmt: skip
    uvicorn.Server(config).run(sockets=[sock])
