"""Fixtures: one real Redis per test session; every test gets its own key prefix.

``--redis-topology=cluster`` (or ``STREAMQ_TEST_TOPOLOGY=cluster``) starts a real 3-master Redis Cluster
instead of one redis-server, and hands every test and service process its ``redis+cluster://`` URL;
tests marked ``standalone_only`` are skipped then (README: Scaling out, Redis Cluster)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from streamq.shared.keys import KeySchema
from streamq.shared.queue import Queue
from streamq.shared.redis import make_client
from streamq.shared.settings import Settings
from streamq.testing import ClusterServers, RedisServer
from tests.support import in_process_api

pytest_plugins = ["tests.services"]


TOPOLOGIES = ("standalone", "cluster")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--redis-topology",
        choices=TOPOLOGIES,
        default=os.environ.get("STREAMQ_TEST_TOPOLOGY", "standalone"),
        help="the Redis the session fixtures start: one redis-server, or a 3-master Redis Cluster",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "standalone_only(reason): needs one plain redis-server; skipped with --redis-topology=cluster"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--redis-topology") == "standalone":
        return
    for item in items:
        marker = item.get_closest_marker("standalone_only")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "standalone only")
            item.add_marker(pytest.mark.skip(reason=f"not on a cluster: {reason}"))


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest) -> Iterator[RedisServer | ClusterServers]:
    server = ClusterServers() if request.config.getoption("--redis-topology") == "cluster" else RedisServer()
    yield server
    server.stop()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(redis_server: RedisServer | ClusterServers, prefix: str) -> Settings:
    return Settings(
        redis_url=redis_server.url,
        key_prefix=prefix,
        retry_base_s=0.05,
        retry_max_s=0.5,
        heartbeat_s=0.5,
        shutdown_grace_s=5,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def keys(settings: Settings) -> KeySchema:
    return KeySchema(settings.key_prefix, settings.queue)


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = make_client(settings)  # the topology's client: a RedisCluster on a cluster
    yield client
    await client.aclose()


@pytest.fixture
def queue(redis: Redis, keys: KeySchema, settings: Settings) -> Queue:
    return Queue(redis, keys, events_maxlen=settings.events_maxlen, result_ttl_s=settings.result_ttl_s)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The api app in-process, through httpx's ASGI transport, with its lifespan run."""
    async with in_process_api(settings) as client:
        yield client


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path
