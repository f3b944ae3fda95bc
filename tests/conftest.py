"""Fixtures: one real redis-server per test session; every test gets its own key prefix."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from services.api.app import create_app
from shared.keys import KeySchema
from shared.queue import Queue
from shared.settings import Settings
from tests.support import RedisServer

pytest_plugins = ["tests.services"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(redis_server: RedisServer, prefix: str) -> Settings:
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
    client = Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def queue(redis: Redis, keys: KeySchema, settings: Settings) -> Queue:
    return Queue(redis, keys, events_maxlen=settings.events_maxlen, result_ttl_s=settings.result_ttl_s)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The api app in-process, through httpx's ASGI transport, with its lifespan run."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path
