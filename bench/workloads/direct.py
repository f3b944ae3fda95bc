"""direct: the client's direct Redis transport (``streamq.Client(redis_url=...)``), as a producer uses it.

Three phases on one key prefix, the blocking client in a thread of the benchmark's process (as a web
app's request handler calls it) and the asyncio client on the benchmark's loop:

1. idle: no service running; ``direct_n`` single ``submit`` calls back to back: ``submit_idle_p50/p99_ms``
   (the blocking client); with the stack running, the asyncio client's ``async_submit_p50/p99_ms``.
2. submit_many: ``direct_many_n`` noop tasks in one ``submit_many`` call (batches of 1,000, a few in
   flight), then the same through the api's ``POST /api/tasks/batch`` (``streamq.Client(url)``) for
   comparison: ``submit_many_per_s`` and ``api_submit_many_per_s``.
3. latency: the api, the scheduler (when present) and ``cfg.workers`` workers (default concurrency)
   running; ``direct_n`` ``bench.stamp`` tasks submitted one by one at ``latency_rate`` by the asyncio
   client (as taskiq's producer is asyncio):
   send = the producer's clock just before the call, started = the worker's clock when the handler is
   entered; ``started_p50/p95/p99_ms`` and the call's own round trip ``submit_call_p50/p99_ms``; the
   same one by one through the api (``api_started_*``) for comparison.

With ``--trace``, the workers stamp each task's stages (bench/handlers.py) and the latency phase also
reports ``started_<stage>_p50/p99_ms`` (and ``api_started_<stage>_*``), as the ``latency`` workload does.

Peers: with ``--direct-taskiq``, taskiq-redis's send-to-start on the same Redis, its workers started
beside streamq's stack and its paced producer run in ``PEER_CHUNKS`` chunks alternating with the direct
client's (``taskiq_started_*``; bench/peers.py installs it into the venv when asked): the VM's speed drifts
within a run, and the two figures are then taken in the same minutes. Without it, compare
``started_p50_ms`` with the issue's figure for taskiq-redis (about 1.1 ms on this machine).
"""

from __future__ import annotations

import asyncio
import time

import streamq
from bench import peers
from bench.env import has_scheduler
from bench.handlers import STAMP, TRACE_ENV
from bench.stats import percentile
from bench.workloads.base import Context, Figures, paced, task_fields, wait_completed
from bench.workloads.trace import handler_time, stage_figures
from streamq.shared.keys import KeySchema
from streamq.shared.settings import Settings

PEER_CHUNKS = 4  # --direct-taskiq: the paced phase in this many chunks, alternating with the peer's


async def run(ctx: Context) -> Figures:
    cfg = ctx.config
    stack = ctx.stack()
    settings = Settings(redis_url=ctx.server.url, key_prefix=stack.prefix, _env_file=None)  # type: ignore[call-arg]
    figures: Figures = {}
    peer: peers.TaskiqPeer | None = None
    try:
        with streamq.Client(redis_url=ctx.server.url, settings=settings) as direct:
            calls = await asyncio.to_thread(_singles, direct, cfg.direct_n)
            figures["submit_idle_p50_ms"] = percentile(calls, 50)
            figures["submit_idle_p99_ms"] = percentile(calls, 99)
            figures["submit_many_per_s"] = await asyncio.to_thread(_many, direct, cfg.direct_many_n)
            url, _api = await stack.api()
            with streamq.Client(url) as http:
                figures["api_submit_many_per_s"] = await asyncio.to_thread(_many, http, cfg.direct_many_n)
            services = [stack.start("streamq.services.scheduler")] if has_scheduler() else []
            extra = {TRACE_ENV: "1"} if cfg.trace else {}
            services += await stack.workers(ctx.redis, cfg.workers, cfg.default_concurrency, **extra)
            await asyncio.sleep(0.5)  # let the workers settle into their blocking read
            done = int(await ctx.redis.hget(stack.keys.stats, "submitted_total") or 0)
            if cfg.direct_taskiq and peers.installed():
                peer = peers.TaskiqPeer(ctx.server.url, ctx.log_dir, cfg.workers)
            elif cfg.direct_taskiq:
                figures["taskiq_started_p50_ms"] = "n/a (not installable)"
            async with (
                streamq.AsyncClient(redis_url=ctx.server.url, settings=settings) as adirect,
                streamq.AsyncClient(url) as ahttp,
            ):
                figures.update(await _async_singles(adirect, cfg.direct_n))
                sent, calls, theirs = await _alternating(adirect, peer, cfg.direct_n, cfg.latency_rate)
                done += cfg.direct_n
                await wait_completed(ctx.redis, stack.keys, done, *services, timeout=120)
                figures.update(await _started(ctx, stack.keys, sent, "", trace=cfg.trace))
                figures["submit_call_p50_ms"] = percentile(calls, 50)
                figures["submit_call_p99_ms"] = percentile(calls, 99)
                if theirs:
                    figures.update(peers.figures(theirs))
                sent, calls = await _paced(ahttp, cfg.direct_n, cfg.latency_rate)
                done += cfg.direct_n
                await wait_completed(ctx.redis, stack.keys, done, *services, timeout=120)
                figures.update(await _started(ctx, stack.keys, sent, "api_", trace=cfg.trace))
    finally:
        if peer is not None:
            peer.stop()
        stack.stop()
    return figures


async def _alternating(
    client: streamq.AsyncClient, peer: peers.TaskiqPeer | None, n: int, rate: float
) -> tuple[dict[str, float], list[float], list[float]]:
    """``n`` stamp tasks paced at ``rate`` through ``client`` (:func:`_paced`); with the peer, in
    ``PEER_CHUNKS`` chunks alternating with as many of the peer's (the peer first in every other round),
    so a drift of the VM's speed within the run weighs on both alike. Each task's send time, each call's
    ms, and the peer's send-to-start ms."""
    sent: dict[str, float] = {}
    calls: list[float] = []
    theirs: list[float] = []
    chunks = PEER_CHUNKS if peer is not None else 1
    for k in range(chunks):
        size = n // chunks + (1 if k < n % chunks else 0)
        if peer is not None and k % 2 == 1:
            theirs += await asyncio.to_thread(peer.chunk, size, rate)
        ours, ms = await _paced(client, size, rate)
        sent.update(ours)
        calls += ms
        if peer is not None and k % 2 == 0:
            theirs += await asyncio.to_thread(peer.chunk, size, rate)
    return sent, calls, theirs


def _singles(client: streamq.Client, n: int) -> list[float]:
    """``n`` single submits back to back (after a few to warm up); each call's ms."""
    for _ in range(50):
        client.submit("noop")
    calls = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.submit("noop")
        calls.append((time.perf_counter() - t0) * 1000)
    return calls


def _many(client: streamq.Client, n: int) -> float:
    """Tasks per second of one ``submit_many`` of ``n`` noop tasks."""
    specs = [{"type": "noop", "queue": "many"}] * n
    t0 = time.perf_counter()
    done = client.submit_many(specs)
    elapsed = time.perf_counter() - t0
    assert len(done) == n
    return n / elapsed


async def _async_singles(client: streamq.AsyncClient, n: int) -> Figures:
    """The async client's single submit round trip (the stack running, workers idle between tasks)."""
    for _ in range(50):
        await client.submit("noop", queue="many")
    calls = []
    for _ in range(n):
        t0 = time.perf_counter()
        await client.submit("noop", queue="many")
        calls.append((time.perf_counter() - t0) * 1000)
    return {"async_submit_p50_ms": percentile(calls, 50), "async_submit_p99_ms": percentile(calls, 99)}


async def _paced(client: streamq.AsyncClient, n: int, rate: float) -> tuple[dict[str, float], list[float]]:
    """``n`` stamp tasks submitted at a steady ``rate`` (an asyncio producer, as taskiq's): each task's
    send time and each call's ms."""
    sent: dict[str, float] = {}
    calls: list[float] = []
    async for _ in paced(n, rate):
        created = time.time()
        task = await client.submit(STAMP)
        calls.append((time.time() - created) * 1000)
        sent[task.id] = created
    return sent, calls


async def _started(ctx: Context, keys: KeySchema, sent: dict[str, float], name: str, *, trace: bool) -> Figures:
    """Send -> handler entry p50/p95/p99 (``<name>started_*``); traced (``--trace``), also each stage's
    (``<name>started_<stage>_p50/p99_ms``, bench/workloads/trace.py)."""
    ids = list(sent)
    rows = await task_fields(ctx.redis, keys, ids, "result")
    to_start = [(handler_time(r[0]) - sent[i]) * 1000 for i, r in zip(ids, rows, strict=True)]
    figures: Figures = {f"{name}started_p{p}_ms": percentile(to_start, p) for p in (50, 95, 99)}
    if trace:
        figures.update(stage_figures([sent[i] for i in ids], [r[0] for r in rows], f"{name}started"))
    return figures
