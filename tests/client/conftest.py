"""Fixtures for the client tests: a real api process and a real worker (tests/services.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.client.proxy import FlakyProxy
from tests.e2e.processes import wait_logged
from tests.services import StartService


def _with_worker(api_url: str, start_service: StartService, **env: str) -> str:
    worker = start_service("streamq.services.worker", STREAMQ_WORKER_CONCURRENCY="8", **env)
    asyncio.run(wait_logged(worker, "worker started"))
    return api_url


@pytest.fixture
def stack(api_url: str, start_service: StartService) -> str:
    """The api's url, with a worker of the built-in handlers (noop, echo, sleep, fail) running."""
    return _with_worker(api_url, start_service)


@pytest.fixture
def control_stack(api_url: str, start_service: StartService) -> str:
    """The api's url, with a worker that also runs tests/e2e/handlers_extra.py (handlers reporting
    progress, or stopping on a cancel or not) and gives an ignored cancel 1 s of grace."""
    return _with_worker(api_url, start_service, STREAMQ_HANDLERS="tests.e2e.handlers_extra", STREAMQ_CANCEL_GRACE_S="1")


@pytest.fixture
def flaky(api_url: str) -> Iterator[FlakyProxy]:
    """A real HTTP proxy in front of the api that answers 503 to the first request it forwards."""
    proxy = FlakyProxy(api_url)
    yield proxy
    proxy.stop()
