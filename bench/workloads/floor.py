"""floor: the ``latency`` and ``schedule`` measurements made by bare loops, in the same run: what
Redis Streams and two consumer processes allow on this machine at this hour (the yardstick of the
two timing targets, as ``raw`` is of the throughputs), and what the project's own scripts cost on
top of that with no worker, scheduler or client library on the way.

Consumers: ``cfg.workers`` processes of ``python -m bench.floor`` (uvloop, hand-encoded RESP), each
stamping every entry as soon as its reply is parsed.
- ``latency_*``: ``latency_n`` entries XADDed one round trip each at ``latency_rate``, each carrying
  the producer's clock just before its XADD; consumers read ``default_concurrency`` at a time;
  latency = stamp - that clock (the ``latency`` workload's created-to-started);
- ``schedule_*``: ``schedule_n`` ids in a zset, all due at one instant 1 s ahead; this process wakes
  at the due time (sleeps to 2 ms before it, then spins) and moves them onto the stream with one
  script call (ZRANGEBYSCORE, an XADD each, ZREMRANGEBYSCORE); consumers read ``tuned_concurrency``
  at a time; lateness = stamp - due time (the ``schedule`` workload's);
- ``state_latency_*`` and ``state_schedule_*``: the same with full task state, by the project's own
  scripts called over the bare sockets: each task submitted by submit.lua (one call, its arguments
  built by ``Queue.submit_call`` after the clock is read), the due ones moved by promote.lua (the
  candidates read before the due time, as the scheduler does), and taken by take.lua behind a
  blocking read, as a worker's watcher does (``bench/floor.py``). The gap between the two floors is
  what the guarantees cost in Redis; the gap from ``state_*`` to ``latency``/``schedule`` is the
  services' own.
The ``latency`` and ``schedule`` rows show their p50 and p99 as a multiple of the bare floor."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from bench.env import Service, Stack, until
from bench.stats import percentile
from bench.workloads.base import Context, Figures, paced
from bench.workloads.resp import Resp, encode
from streamq.services.scheduler.promoter import promote_call
from streamq.shared.keys import WORKER_GROUP, KeySchema
from streamq.shared.models import TaskCreate, new_task_id
from streamq.shared.scripts import source
from streamq.shared.streams import ensure_group

GROUP = "floor"
# KEYS[1] the zset of due ids, KEYS[2] the stream; ARGV[1] due time (ms), ARGV[2] the t field
# Returns: how many ids were moved
MOVE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _ = 1, #ids do redis.call('XADD', KEYS[2], '*', 't', ARGV[2]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return #ids
"""
# (connection, key prefix) -> entries added, and each task id's reference time (state) or None (bare:
# the entries carry it)
Feed = Callable[[Resp, str], Awaitable[tuple[int, dict[str, float] | None]]]


async def run(ctx: Context) -> Figures:
    cfg = ctx.config
    figures: Figures = {}
    for state, steady, due in ((False, _paced, _due_at_once), (True, _paced_state, _due_state)):
        name = "state_" if state else ""
        latency = await _measure(ctx, cfg.default_concurrency, state, functools.partial(steady, ctx))
        lateness = await _measure(ctx, cfg.tuned_concurrency, state, functools.partial(due, ctx))
        figures.update({
            f"{name}latency_p50_ms": percentile(latency, 50),
            f"{name}latency_p99_ms": percentile(latency, 99),
            f"{name}schedule_min_ms": min(lateness),
            f"{name}schedule_p50_ms": percentile(lateness, 50),
            f"{name}schedule_p99_ms": percentile(lateness, 99),
        })  # fmt: skip
    return figures


async def _measure(ctx: Context, count: int, state: bool, feed: Feed) -> list[float]:
    """Start the consumers, run ``feed``, wait until every entry is read: each one's stamp minus its
    reference time, in ms."""
    stack = ctx.stack()
    part = KeySchema(stack.prefix, "default")
    if state:
        await ensure_group(ctx.redis, part.streams(), WORKER_GROUP)
    else:
        await ctx.redis.xgroup_create(f"{stack.prefix}:floor", GROUP, id="$", mkstream=True)
    url = urlsplit(ctx.server.url)
    outs = [ctx.log_dir / f"floor-{uuid.uuid4().hex[:6]}.json" for _ in range(ctx.config.workers)]
    conn = await Resp.open(url.hostname or "127.0.0.1", url.port or 6379)
    try:
        consumers = _consumers(stack, url.netloc, count, state, outs)

        async def blocked() -> bool:  # every consumer blocked in its read (Redis 7.0 lists a consumer
            clients = await ctx.redis.client_list()  # only once it has been delivered something)
            return sum(c["cmd"] == "xreadgroup" and "b" in c["flags"] for c in clients) >= len(consumers)  # type: ignore[no-any-return]

        await until(blocked, *consumers, what="floor consumers reading")
        await asyncio.sleep(0.3)
        n, refs = await feed(conn, stack.prefix)

        async def read_all() -> bool:
            if state:  # every task started (take.lua's index move)
                return int(await ctx.redis.zcard(part.common()[2])) >= n
            [info] = await ctx.redis.xinfo_groups(f"{stack.prefix}:floor")
            return int(info["pending"]) == 0 and int(info["entries-read"] or 0) >= n

        await until(read_all, *consumers, what="floor entries read", timeout=60, every=0.01)
    finally:
        stack.stop()
        await conn.close()
    stamps = [pair for out in outs for pair in orjson.loads(out.read_bytes())]
    if len(stamps) != n:
        raise RuntimeError(f"floor: {len(stamps)} entries stamped of {n}")
    return [(stamp - (refs[ref] if refs is not None else ref)) * 1000 for ref, stamp in stamps]


def _consumers(stack: Stack, netloc: str, count: int, state: bool, outs: list[Path]) -> list[Service]:
    stream, group = (stack.prefix, WORKER_GROUP) if state else (f"{stack.prefix}:floor", GROUP)
    return [
        stack.start("bench.floor", FLOOR_REDIS=netloc, FLOOR_STREAM=stream, FLOOR_GROUP=group, FLOOR_CONSUMER=f"c{i}",
                    FLOOR_COUNT=str(count), FLOOR_STATE="1" if state else "0", FLOOR_OUT=str(out))
        for i, out in enumerate(outs)
    ]  # fmt: skip


async def _paced(ctx: Context, conn: Resp, prefix: str) -> tuple[int, None]:
    cfg = ctx.config
    stream = f"{prefix}:floor"
    async for _ in paced(cfg.latency_n, cfg.latency_rate):
        await conn.pipeline(encode("XADD", stream, "*", "t", repr(time.time())), 1)
    return cfg.latency_n, None


async def _paced_state(ctx: Context, conn: Resp, prefix: str) -> tuple[int, dict[str, float]]:
    cfg = ctx.config
    queue = ctx.queue(KeySchema(prefix, "default"))
    [sha] = await conn.pipeline(encode("SCRIPT", "LOAD", source("submit")), 1)
    task = TaskCreate(type="noop")
    created: dict[str, float] = {}
    async for _ in paced(cfg.latency_n, cfg.latency_rate):
        now = time.time()
        task_id = new_task_id(int(now * 1000))
        keys, args = queue.submit_call([task], [task_id])
        await conn.pipeline(encode("EVALSHA", sha, str(len(keys)), *keys, *map(str, args)), 1)
        created[task_id] = now
    return cfg.latency_n, created


async def _wake_at(due: float) -> None:
    await asyncio.sleep(max(0.0, due - time.time() - 0.002))
    while time.time() < due:  # a deliberate spin of at most 2 ms to wake on time
        pass


async def _due_at_once(ctx: Context, conn: Resp, prefix: str) -> tuple[int, None]:
    n = ctx.config.schedule_n
    stream, zset = f"{prefix}:floor", f"{prefix}:floor:due"
    [sha] = await conn.pipeline(encode("SCRIPT", "LOAD", MOVE), 1)
    due = time.time() + 1.0
    due_ms = str(int(due * 1000))
    members: list[str] = []
    for i in range(n):
        members += [due_ms, f"t{i}"]
    await conn.pipeline(encode("ZADD", zset, *members), 1)
    await _wake_at(due)
    [moved] = await conn.pipeline(encode("EVALSHA", sha, "2", zset, stream, due_ms, repr(int(due_ms) / 1000)), 1)
    if moved != n:
        raise RuntimeError(f"floor: moved {moved} of {n}")
    return n, None


async def _due_state(ctx: Context, conn: Resp, prefix: str) -> tuple[int, dict[str, float]]:
    n = ctx.config.schedule_n
    part = KeySchema(prefix, "default")
    queue = ctx.queue(part)
    [sha] = await conn.pipeline(encode("SCRIPT", "LOAD", source("promote")), 1)
    due_ms = int((time.time() + 1.0) * 1000)
    task = TaskCreate(type="noop", scheduled_for=datetime.fromtimestamp(due_ms / 1000, tz=UTC))
    done = await queue.submit([task] * n)
    due = {d.task.id: due_ms / 1000 for d in done}
    await _wake_at(due_ms / 1000 - 0.0015)  # the scheduler reads its candidates just before the due time
    [ids] = await conn.pipeline(encode("ZRANGEBYSCORE", part.scheduled, "-inf", str(due_ms)), 1)
    await _wake_at(due_ms / 1000)
    keys, args = promote_call(part, [i.decode() for i in ids], queue.events_maxlen)
    [reply] = await conn.pipeline(encode("EVALSHA", sha, str(len(keys)), *keys, *map(str, args)), 1)
    if len(reply) - 2 != n:
        raise RuntimeError(f"floor: promoted {len(reply) - 2} of {n}")
    return n, due
