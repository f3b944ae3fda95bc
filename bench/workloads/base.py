"""What every workload gets: the config, the private Redis, a log folder; and shared helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from bench.config import Config
from bench.env import RedisServer, Service, Stack, until
from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Queue
from streamq.shared.redis import make_client
from streamq.shared.settings import Settings

Figures = dict[str, float | str]


@dataclass(slots=True)
class Context:
    config: Config
    server: RedisServer
    redis: Redis  # plain redis-py: the raw loop's yardstick client and the workloads' own reads
    log_dir: Path
    profile_dir: Path | None = None  # set while a workload runs under --profile
    library: Redis | None = None  # the client the services make (streamq.shared.redis.make_client), for Queue

    def stack(self) -> Stack:
        return Stack(self.server, self.log_dir, self.profile_dir)

    def queue(self, keys: KeySchema, result_ttl_s: int = 7 * 24 * 3600) -> Queue:
        """The library as the services use it: a Queue over the client streamq.shared.redis.make_client makes
        (commands packed by hiredis), not over the plain redis-py client of the raw yardstick."""
        if self.library is None:
            self.library = make_client(Settings(redis_url=self.server.url))
        return Queue(self.library, keys, result_ttl_s=result_ttl_s)


async def paced(n: int, rate: float) -> AsyncIterator[int]:
    """0 .. n-1, the i-th at ``i / rate`` seconds after the first (a steady pace, not a sleep per step)."""
    t0 = time.perf_counter()
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        yield i


async def enqueue(queue: Queue, n: int, task_type: str = "noop", chunk: int = 1_000) -> list[str]:
    """Queue ``n`` tasks through the library (one script call per ``chunk``); returns their ids."""
    ids: list[str] = []
    for start in range(0, n, chunk):
        done = await queue.submit([TaskCreate(type=task_type)] * min(chunk, n - start))
        ids += [d.task.id for d in done]
    return ids


async def wait_completed(redis: Redis, keys: KeySchema, n: int, *services: Service, timeout: float) -> None:
    """Until ``n`` tasks have completed (the lifetime counter, which expiry does not lower); fails
    if nothing progresses for 30 s or ``timeout`` passes."""
    last, last_change = -1, time.monotonic()

    async def done() -> bool:
        nonlocal last, last_change
        count = int(await redis.hget(keys.stats, "completed_total") or 0)
        if count != last:
            last, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > 30:
            raise TimeoutError(f"bench: stuck at {count}/{n} completed")
        return count >= n

    await until(done, *services, what=f"{n} tasks completed", timeout=timeout, every=0.01)


async def task_fields(redis: Redis, keys: KeySchema, ids: list[str], *fields: str) -> list[list[str | None]]:
    """``HMGET`` of the given fields of every task, pipelined in chunks."""
    out: list[list[str | None]] = []
    for start in range(0, len(ids), 5_000):
        pipe = redis.pipeline(transaction=False)
        for task_id in ids[start : start + 5_000]:
            pipe.hmget(keys.task(task_id), list(fields))
        out += await pipe.execute()
    return out
