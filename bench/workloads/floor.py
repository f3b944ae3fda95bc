"""floor: the ``latency`` and ``schedule`` measurements made by bare loops that keep no task state,
in the same run: what Redis Streams and two consumer processes allow on this machine at this hour,
the yardstick of the two timing targets (as ``raw`` is of the throughputs).

Consumers: ``cfg.workers`` processes of ``python -m bench.floor`` (uvloop, hand-encoded RESP), each
blocked in XREADGROUP and stamping every entry as soon as its reply is parsed.
- latency: ``latency_n`` entries XADDed one round trip each at ``latency_rate``, each carrying the
  producer's clock just before its XADD; consumers read ``default_concurrency`` at a time;
  latency = stamp - that clock (the ``latency`` workload's created-to-started);
- schedule: ``schedule_n`` ids in a zset, all due at one instant 1 s ahead; this process wakes at the
  due time (sleeps to 2 ms before it, then spins) and moves them onto the stream with one script
  call (ZRANGEBYSCORE, an XADD each, ZREMRANGEBYSCORE); consumers read ``tuned_concurrency`` at a
  time; lateness = stamp - due time (the ``schedule`` workload's).
The ``latency`` and ``schedule`` rows show their p50 and p99 as a ratio to these."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from bench.env import until
from bench.stats import percentile
from bench.workloads.base import Context, Figures
from bench.workloads.resp import Resp, encode

GROUP = "floor"
# KEYS[1] the zset of due ids, KEYS[2] the stream; ARGV[1] due time (ms), ARGV[2] the t field
# Returns: how many ids were moved
MOVE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _ = 1, #ids do redis.call('XADD', KEYS[2], '*', 't', ARGV[2]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return #ids
"""
Feed = Callable[[Resp, str], Awaitable[int]]  # (connection, stream) -> entries added


async def run(ctx: Context) -> Figures:
    cfg = ctx.config
    latency = await _measure(ctx, cfg.default_concurrency, lambda conn, stream: _paced(ctx, conn, stream))
    lateness = await _measure(ctx, cfg.tuned_concurrency, lambda conn, stream: _due_at_once(ctx, conn, stream))
    return {
        "latency_p50_ms": percentile(latency, 50),
        "latency_p99_ms": percentile(latency, 99),
        "schedule_min_ms": min(lateness),
        "schedule_p50_ms": percentile(lateness, 50),
        "schedule_p99_ms": percentile(lateness, 99),
    }


async def _measure(ctx: Context, count: int, feed: Feed) -> list[float]:
    """Start the consumers, run ``feed``, wait until every entry is acknowledged: each entry's
    stamp minus its t field, in ms."""
    stack = ctx.stack()
    stream = f"{stack.prefix}:floor"
    await ctx.redis.xgroup_create(stream, GROUP, id="$", mkstream=True)
    url = urlsplit(ctx.server.url)
    outs = [ctx.log_dir / f"floor-{uuid.uuid4().hex[:6]}.json" for _ in range(ctx.config.workers)]
    conn = await Resp.open(url.hostname or "127.0.0.1", url.port or 6379)
    try:
        consumers = [
            stack.start("bench.floor", FLOOR_REDIS=url.netloc, FLOOR_STREAM=stream, FLOOR_GROUP=GROUP,
                        FLOOR_CONSUMER=f"c{i}", FLOOR_COUNT=str(count), FLOOR_OUT=str(out))
            for i, out in enumerate(outs)
        ]  # fmt: skip

        async def blocked() -> bool:  # every consumer blocked in its read (Redis 7.0 lists a consumer
            clients = await ctx.redis.client_list()  # only once it has been delivered something)
            return sum(c["cmd"] == "xreadgroup" and "b" in c["flags"] for c in clients) >= len(consumers)

        await until(blocked, *consumers, what="floor consumers reading")
        await asyncio.sleep(0.3)
        n = await feed(conn, stream)

        async def acknowledged() -> bool:
            [info] = await ctx.redis.xinfo_groups(stream)
            return int(info["pending"]) == 0 and int(info["entries-read"] or 0) >= n

        await until(acknowledged, *consumers, what="floor entries acknowledged", timeout=60, every=0.01)
    finally:
        stack.stop()
        await conn.close()
    stamps = [pair for out in outs for pair in orjson.loads(Path(out).read_bytes())]
    await ctx.redis.delete(stream)
    if len(stamps) != n:
        raise RuntimeError(f"floor: {len(stamps)} entries stamped of {n}")
    return [(stamp - origin) * 1000 for origin, stamp in stamps]


async def _paced(ctx: Context, conn: Resp, stream: str) -> int:
    cfg = ctx.config
    t0 = time.perf_counter()
    for i in range(cfg.latency_n):
        delay = t0 + i / cfg.latency_rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await conn.pipeline(encode("XADD", stream, "*", "t", repr(time.time())), 1)
    return cfg.latency_n


async def _due_at_once(ctx: Context, conn: Resp, stream: str) -> int:
    n = ctx.config.schedule_n
    zset = stream + ":due"
    [sha] = await conn.pipeline(encode("SCRIPT", "LOAD", MOVE), 1)
    due = time.time() + 1.0
    due_ms = str(int(due * 1000))
    members: list[str] = []
    for i in range(n):
        members += [due_ms, f"t{i}"]
    await conn.pipeline(encode("ZADD", zset, *members), 1)
    await asyncio.sleep(max(0.0, due - time.time() - 0.002))
    while time.time() < due:  # noqa: ASYNC110 - a deliberate spin of at most 2 ms to wake on time
        pass
    [moved] = await conn.pipeline(encode("EVALSHA", sha, "2", zset, stream, due_ms, repr(int(due_ms) / 1000)), 1)
    if moved != n:
        raise RuntimeError(f"floor: moved {moved} of {n}")
    return n
