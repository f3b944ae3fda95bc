"""Fixtures for the client tests: a real api process and a real worker (tests/services.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.client.proxy import FlakyProxy
from tests.e2e.processes import wait_logged
from tests.services import StartService


@pytest.fixture
def stack(api_url: str, start_service: StartService) -> str:
    """The api's url, with a worker of the built-in handlers (noop, echo, sleep, fail) running."""
    worker = start_service("streamq.services.worker", STREAMQ_WORKER_CONCURRENCY="8")
    asyncio.run(wait_logged(worker, "worker started"))
    return api_url


@pytest.fixture
def flaky(api_url: str) -> Iterator[FlakyProxy]:
    """A real HTTP proxy in front of the api that answers 503 to the first request it forwards."""
    proxy = FlakyProxy(api_url)
    yield proxy
    proxy.stop()
