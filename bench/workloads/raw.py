"""raw: the transport's limit, a bare loop of pipelined XADD, then XREADGROUP + XACK, one client."""

from __future__ import annotations

import time

from bench.workloads.base import Context, Figures
from shared.keys import WORKER_GROUP, KeySchema
from shared.models import new_task_id


async def run(ctx: Context) -> Figures:
    cfg, redis = ctx.config, ctx.redis
    stream = KeySchema("bench-raw", "default").stream(3)
    await redis.delete(stream)
    ids = [new_task_id() for _ in range(cfg.raw_n)]

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
    await redis.delete(stream)
    if drained != cfg.raw_n:
        raise RuntimeError(f"raw: drained {drained} of {cfg.raw_n}")
    return {"xadd_per_s": cfg.raw_n / xadd_s, "drain_per_s": cfg.raw_n / drain_s}
