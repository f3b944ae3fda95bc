"""Connecting to Redis: one asyncio client per process, closed on shutdown."""

from __future__ import annotations

import asyncio

from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from shared.packing import use_hiredis_packing
from shared.settings import Settings

MIN_REDIS_VERSION = (7, 0, 5)


def make_client(settings: Settings) -> Redis:
    """A client with reconnect retries; ``decode_responses`` so every reply is ``str``.

    The pool blocks (up to 20 s) for a free connection instead of failing, so a burst of concurrent
    requests queues for Redis rather than erroring."""
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        decode_responses=True,
        health_check_interval=30,
        socket_keepalive=True,
        max_connections=max(64, settings.worker_concurrency * 2),
        timeout=20,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=8),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    use_hiredis_packing(pool)  # perf: commands packed in C (see shared/packing.py)
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes its connections


async def connect(settings: Settings, attempts: int = 50, delay_s: float = 0.2) -> Redis:
    """Connect and ping, waiting for Redis to come up; fail with a clear error if it never does."""
    client = make_client(settings)
    last: Exception | None = None
    for _ in range(attempts):
        try:
            await client.ping()
            break
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            last = error
            await asyncio.sleep(delay_s)
    else:
        await client.aclose()
        raise RuntimeError(f"cannot reach Redis at {redact(settings.redis_url)}: {last}")
    info = await client.info("server")
    version = tuple(int(p) for p in str(info.get("redis_version", "0.0.0")).split(".")[:3])
    if version < MIN_REDIS_VERSION:
        await client.aclose()
        raise RuntimeError(f"streamq needs Redis >= 7.0.5 (found {info.get('redis_version')})")
    return client


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
