"""raw: the transport's limit, a bare loop of pipelined XADD, then XREADGROUP + XACK, one client.

Two clients: hand-encoded RESP over one socket (``xadd_per_s``, ``drain_per_s``: the yardstick),
and redis-py's pipeline (``redispy_*``: what the project's own client library manages)."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from bench.workloads.base import Context, Figures
from bench.workloads.resp import Resp, encode
from streamq.shared.keys import WORKER_GROUP, KeySchema
from streamq.shared.models import new_task_id


async def run(ctx: Context) -> Figures:
    cfg, redis = ctx.config, ctx.redis
    stream = KeySchema("bench-raw", "default").stream(3)
    ids = [new_task_id() for _ in range(cfg.raw_n)]
    figures = await _bare(ctx, stream, ids)
    figures.update(await _redispy(ctx, stream, ids))
    await redis.delete(stream)
    return figures


async def _bare(ctx: Context, stream: str, ids: list[str]) -> Figures:
    cfg = ctx.config
    await ctx.redis.delete(stream)
    url = urlsplit(ctx.server.url)
    conn = await Resp.open(url.hostname or "127.0.0.1", url.port or 6379)
    try:
        started = time.perf_counter()
        for start in range(0, len(ids), cfg.raw_chunk):
            chunk = ids[start : start + cfg.raw_chunk]
            await conn.pipeline(b"".join(encode("XADD", stream, "*", "id", i) for i in chunk), len(chunk))
        xadd_s = time.perf_counter() - started

        await conn.pipeline(encode("XGROUP", "CREATE", stream, WORKER_GROUP, "0"), 1)
        read = encode("XREADGROUP", "GROUP", WORKER_GROUP, "raw", "COUNT", str(cfg.raw_chunk), "STREAMS", stream, ">")
        started = time.perf_counter()
        drained, ack = 0, list[bytes]()
        while True:
            payload = (encode("XACK", stream, WORKER_GROUP, *ack) if ack else b"") + read
            reply = (await conn.pipeline(payload, 2 if ack else 1))[-1]
            ack = [entry[0] for entry in reply[0][1]] if reply else []
            drained += len(ack)
            if not ack:
                break
        drain_s = time.perf_counter() - started
    finally:
        await conn.close()
    if drained != len(ids):
        raise RuntimeError(f"raw: drained {drained} of {len(ids)}")
    return {"xadd_per_s": len(ids) / xadd_s, "drain_per_s": len(ids) / drain_s}


async def _redispy(ctx: Context, stream: str, ids: list[str]) -> Figures:
    cfg, redis = ctx.config, ctx.redis
    await redis.delete(stream)
    started = time.perf_counter()
    for start in range(0, len(ids), cfg.raw_chunk):
        pipe = redis.pipeline(transaction=False)
        for task_id in ids[start : start + cfg.raw_chunk]:
            pipe.xadd(stream, {"id": task_id})
        await pipe.execute()
    xadd_s = time.perf_counter() - started

    await redis.xgroup_create(stream, WORKER_GROUP, id="0")
    started = time.perf_counter()
    drained = 0
    ack: list[str] = []
    while True:
        pipe = redis.pipeline(transaction=False)
        if ack:
            pipe.xack(stream, WORKER_GROUP, *ack)
        pipe.xreadgroup(WORKER_GROUP, "raw", {stream: ">"}, count=cfg.raw_chunk)
        reply = (await pipe.execute())[-1]
        entries = reply[0][1] if reply else []
        ack = [entry_id for entry_id, _fields in entries]
        drained += len(ack)
        if not ack:
            break
    drain_s = time.perf_counter() - started
    if drained != len(ids):
        raise RuntimeError(f"raw (redis-py): drained {drained} of {len(ids)}")
    return {"redispy_xadd_per_s": len(ids) / xadd_s, "redispy_drain_per_s": len(ids) / drain_s}
