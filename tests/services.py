"""Fixtures for real service processes (``python -m services.X``) against the session's redis-server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streamq.shared.settings import Settings
from streamq.testing import Service, free_port, wait_http

StartService = Callable[..., Service]


@pytest.fixture
def service_env(settings: Settings) -> dict[str, str]:
    return {
        "STREAMQ_REDIS_URL": settings.redis_url,
        "STREAMQ_KEY_PREFIX": settings.key_prefix,
        "STREAMQ_METRICS_PORT": "0",
        "STREAMQ_HEARTBEAT_S": "0.5",
        "STREAMQ_SHUTDOWN_GRACE_S": "10",
    }


@pytest.fixture
def start_service(service_env: dict[str, str], tmp_path: Path) -> Iterator[StartService]:
    started: list[Service] = []

    def start(module: str, name: str | None = None, **env: str) -> Service:
        service = Service(module, {**service_env, **env}, tmp_path, name)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def api_url(start_service: StartService) -> str:
    port = free_port()
    start_service("streamq.services.api", STREAMQ_API_PORT=str(port))
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/api/health")
    return url
