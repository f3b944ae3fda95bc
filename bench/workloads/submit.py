"""submit-single and submit-batch: tasks through the REST api (one api process, httpx keep-alive)."""

from __future__ import annotations

import asyncio
import time

import httpx

from bench.stats import percentile
from bench.workloads.base import Context, Figures

SINGLE_BODY = b'{"type":"noop"}'
HEADERS = {"content-type": "application/json"}


async def _client_loop(client: httpx.AsyncClient, url: str, body: bytes, todo: list[int], lat: list[float]) -> None:
    while todo:
        todo.pop()
        sent = time.perf_counter()
        response = await client.post(url, content=body, headers=HEADERS)
        lat.append(time.perf_counter() - sent)
        if response.status_code != 201:
            raise RuntimeError(f"submit: {response.status_code} {response.text[:300]}")


async def _drive(base: str, path: str, body: bytes, requests: int, clients: int) -> tuple[float, list[float]]:
    """Send ``requests`` POSTs from ``clients`` concurrent keep-alive connections; returns
    (wall seconds, per-request latencies)."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60.0) as client:
        await client.post(path, content=body, headers=HEADERS)  # warm: connection, type catalog
        todo = list(range(requests))
        lat: list[float] = []
        started = time.perf_counter()
        await asyncio.gather(*(_client_loop(client, path, body, todo, lat) for _ in range(clients)))
        return time.perf_counter() - started, lat


async def single(ctx: Context) -> Figures:
    cfg = ctx.config
    stack = ctx.stack()
    try:
        base = await stack.api()
        wall, lat = await _drive(base, "/api/tasks", SINGLE_BODY, cfg.single_n, cfg.single_clients)
    finally:
        stack.stop()
    return {
        "tasks_per_s": cfg.single_n / wall,
        "p50_ms": percentile(lat, 50) * 1000,
        "p99_ms": percentile(lat, 99) * 1000,
    }


async def batch(ctx: Context) -> Figures:
    cfg = ctx.config
    body = b'{"tasks":[' + b",".join([SINGLE_BODY] * cfg.batch_size) + b"]}"
    requests = max(1, cfg.batch_n // cfg.batch_size)
    stack = ctx.stack()
    try:
        base = await stack.api()
        wall, lat = await _drive(base, "/api/tasks/batch", body, requests, cfg.batch_clients)
    finally:
        stack.stop()
    return {"tasks_per_s": requests * cfg.batch_size / wall, "p50_ms": percentile(lat, 50) * 1000}
