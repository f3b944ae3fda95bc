"""otel: what OpenTelemetry tracing costs: the same submit + drain with tracing off and on, interleaved
(off, on, off, on, ...: ``--otel-pairs``), each round on fresh processes.

A round: one api; ``--otel-n`` noop tasks through ``POST /api/tasks/batch`` (1,000 a request, 2
connections), then a fifth as many through ``POST /api/tasks`` (8 connections); then ``cfg.workers``
workers (default concurrency) drain them all. On: every service exports to an OTLP/HTTP sink in this
process (``OTEL_EXPORTER_OTLP_ENDPOINT``; the batch span processor's defaults but a 0.5 s delay), which answers 200 and
keeps the bodies; they are decoded after the rounds (``opentelemetry-proto``) to count the spans that
arrived (the last ones leave when a service stops). Off: ``OTEL_SDK_DISABLED=true``. With a head
sampler in the bench's environment (``OTEL_TRACES_SAMPLER=parentbased_traceidratio``,
``OTEL_TRACES_SAMPLER_ARG=0.1``: the services inherit it) the on rounds wait for the exports to settle
instead of for every run's span, and ``spans_per_task`` is the sampled share.

Figures: per mode, the median over its rounds of api CPU per 1,000 batch-submitted tasks, api CPU per
1,000 single submits, single submits/s, worker CPU per 1,000 tasks and drain tasks/s (first
``started_at`` to last ``completed_at``); each ``_on`` figure's ratio to its ``_off`` (``_cost``: 1.10 =
10% more CPU on); ``spans_per_task`` (exported spans / tasks run in the on rounds: a send span per
request and a process span per run).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator

from bench.env import redis_cpu_seconds, until
from bench.workloads.base import Context, Figures, task_fields, wait_completed
from bench.workloads.http import Connection, answering, encode_post
from bench.workloads.submit import _drive

BATCH = 1_000
SCHEDULE_DELAY_MS = 500  # OTEL_BSP_SCHEDULE_DELAY of the on rounds (at these rates batches of 512 leave sooner)


def encode_put(base: str, path: str, body: bytes) -> bytes:
    return encode_post(base, path, body).replace(b"POST ", b"PUT ", 1)


SINGLE_CLIENTS = 8


@contextlib.asynccontextmanager
async def sink() -> AsyncIterator[tuple[str, list[bytes]]]:
    """An OTLP/HTTP receiver on a free port: every POST answered 200 (an empty export response), its
    body kept. Yields (the endpoint, the bodies)."""
    bodies: list[bytes] = []

    def keep(_head: bytes, body: bytes) -> bytes:
        bodies.append(body)
        return b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"

    async with answering(keep) as port:
        yield f"http://127.0.0.1:{port}", bodies


def count_spans(bodies: list[bytes]) -> Counter[str]:
    """Exported spans by name."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    names: Counter[str] = Counter()
    for body in bodies:
        export = ExportTraceServiceRequest.FromString(body)
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                names.update(span.name for span in scope.spans)
    return names


def sampled() -> bool:
    """A head sampler is configured for the on rounds (``OTEL_TRACES_SAMPLER`` in the bench's own
    environment, which the services inherit): not every task's spans are exported."""
    return os.environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on") not in ("always_on", "parentbased_always_on")


async def _settled(bodies: list[bytes], quiet_s: float = 3 * SCHEDULE_DELAY_MS / 1000) -> None:
    """Wait until no export came for ``quiet_s`` (three of the batch processor's delays)."""
    seen, since = len(bodies), time.monotonic()
    while time.monotonic() - since < quiet_s:
        await asyncio.sleep(0.1)
        if len(bodies) != seen:
            seen, since = len(bodies), time.monotonic()


async def _pause(base: str, paused: bool) -> None:
    """Pause (or resume) the default queue through the api (created first by an empty PUT)."""
    path = "/api/queues/default/" + ("pause" if paused else "resume")
    conn = await Connection.open(base)
    try:
        for request in (encode_put(base, "/api/queues/default", b"{}"), encode_post(base, path, b"")):
            status, reply = await conn.send(request)
            if status != 200:
                raise RuntimeError(f"otel: {path}: {status} {reply[:300]!r}")
    finally:
        await conn.close()


async def _round(ctx: Context, endpoint: str | None, bodies: list[bytes]) -> dict[str, float]:
    cfg = ctx.config
    # on: the batch span processor's defaults but its delay (5 s): the round waits for the last spans
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint or "", "OTEL_BSP_SCHEDULE_DELAY": str(SCHEDULE_DELAY_MS)}
    env = on if endpoint else {"OTEL_SDK_DISABLED": "true"}
    stack = ctx.stack()
    keys = stack.keys
    singles = max(1, cfg.otel_n // 5)
    try:
        base, api = await stack.api(**env)
        await _pause(base, True)  # the workers start first, idle: their start-up is not in the drain
        workers = await stack.workers(ctx.redis, cfg.workers, cfg.default_concurrency, **env)
        cpu = api.cpu_seconds()
        body = b'{"tasks":[' + b",".join([b'{"type":"noop"}'] * BATCH) + b"]}"
        requests = max(1, cfg.otel_n // BATCH)
        await _drive(base, "/api/tasks/batch", body, requests, 2, cfg.http_client)
        batch_cpu = api.cpu_seconds() - cpu
        batched = (requests + 1) * BATCH  # _drive sends one more first, to warm up
        cpu = api.cpu_seconds()
        wall, _ = await _drive(base, "/api/tasks", b'{"type":"noop"}', singles, SINGLE_CLIENTS, cfg.http_client)
        single_cpu = api.cpu_seconds() - cpu
        total = int(await ctx.redis.zcard(keys.index_status("pending")))
        redis_cpu = await redis_cpu_seconds(ctx.redis)
        worker_cpu = sum(w.cpu_seconds() for w in workers)
        exported = count_spans(bodies)["process noop"]  # earlier rounds'
        await _pause(base, False)
        await wait_completed(ctx.redis, keys, total, *workers, timeout=60 + total / 100)
        if endpoint and sampled():  # a sampler drops some: the spans that come, once none came for a while
            await _settled(bodies)
        elif endpoint:  # the spans leave in a thread of each worker: their export is part of the cost

            async def all_exported() -> bool:
                return count_spans(bodies)["process noop"] - exported >= total

            await until(all_exported, *workers, what="every run's span exported", timeout=30, every=0.2)
        worker_cpu = sum(w.cpu_seconds() for w in workers) - worker_cpu
        redis_cpu = await redis_cpu_seconds(ctx.redis) - redis_cpu
        ids = list(await ctx.redis.zrange(keys.index_status("completed"), 0, -1))
    finally:  # in a thread: the sink runs in this loop and gets the spans each service exports as it stops
        await asyncio.to_thread(stack.stop)
    stamps = await task_fields(ctx.redis, keys, ids, "started_at", "completed_at")
    first = min(int(s[0] or 0) for s in stamps)
    last = max(int(s[1] or 0) for s in stamps)
    return {
        "batch_api_cpu_ms_per_1k": batch_cpu * 1e6 / batched,
        "single_api_cpu_ms_per_1k": single_cpu * 1e6 / (singles + 1),
        "single_per_s": singles / wall,
        "worker_cpu_ms_per_1k": worker_cpu * 1e6 / total,
        "redis_cpu_ms_per_1k": redis_cpu * 1e6 / total,
        "drain_per_s": total / max((last - first) / 1000, 0.001),
        "tasks": float(total),
    }


async def run(ctx: Context) -> Figures:
    cfg = ctx.config
    rounds: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    async with sink() as (endpoint, bodies):
        for _ in range(cfg.otel_pairs):
            for mode in ("off", "on"):
                await ctx.redis.flushall()
                rounds[mode].append(await _round(ctx, endpoint if mode == "on" else None, bodies))
    figures: Figures = {}
    for name in rounds["off"][0]:
        if name == "tasks":
            continue
        off = statistics.median(r[name] for r in rounds["off"])
        on = statistics.median(r[name] for r in rounds["on"])
        figures[f"{name}_off"] = off
        figures[f"{name}_on"] = on
        figures[f"{name}_{'cost' if 'cpu' in name else 'ratio'}"] = on / off if off else 0.0
    names = count_spans(bodies)
    print(f"otel: spans exported by name: {dict(names)}", file=sys.stderr)
    figures["spans_per_task"] = sum(names.values()) / sum(r["tasks"] for r in rounds["on"])
    return figures
