"""submit-single and submit-batch: tasks through the REST api (one api process, keep-alive clients)."""

from __future__ import annotations

import asyncio
import time

import httpx

from bench.env import Service, redis_cpu_seconds
from bench.stats import percentile
from bench.workloads.base import Context, Figures
from bench.workloads.http import Connection, encode_post

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


async def _raw_loop(conn: Connection, request: bytes, todo: list[int], lat: list[float]) -> None:
    try:
        while todo:
            todo.pop()
            sent = time.perf_counter()
            status, body = await conn.send(request)
            lat.append(time.perf_counter() - sent)
            if status != 201:
                raise RuntimeError(f"submit: {status} {body[:300]!r}")
    finally:
        await conn.close()


async def _drive(
    base: str, path: str, body: bytes, requests: int, clients: int, kind: str
) -> tuple[float, list[float]]:
    """Send ``requests`` POSTs from ``clients`` concurrent keep-alive connections; returns
    (wall seconds, per-request latencies)."""
    todo, lat = list(range(requests)), list[float]()
    if kind == "raw":
        request = encode_post(base, path, body)
        conns = [await Connection.open(base) for _ in range(clients)]
        await conns[0].send(request)  # warm: the api's type catalog
        started = time.perf_counter()
        await asyncio.gather(*(_raw_loop(conn, request, todo, lat) for conn in conns))
        return time.perf_counter() - started, lat
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60.0) as client:
        await client.post(path, content=body, headers=HEADERS)  # warm: connection, type catalog
        started = time.perf_counter()
        await asyncio.gather(*(_client_loop(client, path, body, todo, lat) for _ in range(clients)))
        return time.perf_counter() - started, lat


async def single(ctx: Context) -> Figures:
    cfg = ctx.config
    stack = ctx.stack()
    try:
        base, api = await stack.api()
        cpu = await _cpu(ctx, api)
        wall, lat = await _drive(base, "/api/tasks", SINGLE_BODY, cfg.single_n, cfg.single_clients, cfg.http_client)
        api_cpu, redis_cpu = await _cpu(ctx, api, cpu)
    finally:
        stack.stop()
    per_1k = 1000 / cfg.single_n
    return {
        "tasks_per_s": cfg.single_n / wall,
        "api_cpu_ms_per_1k": api_cpu * 1000 * per_1k,
        "redis_cpu_ms_per_1k": redis_cpu * 1000 * per_1k,
        "p50_ms": percentile(lat, 50) * 1000,
        "p99_ms": percentile(lat, 99) * 1000,
    }


async def batch(ctx: Context) -> Figures:
    cfg = ctx.config
    body = b'{"tasks":[' + b",".join([SINGLE_BODY] * cfg.batch_size) + b"]}"
    requests = max(1, cfg.batch_n // cfg.batch_size)
    stack = ctx.stack()
    try:
        base, api = await stack.api()
        cpu = await _cpu(ctx, api)
        wall, lat = await _drive(base, "/api/tasks/batch", body, requests, cfg.batch_clients, cfg.http_client)
        api_cpu, redis_cpu = await _cpu(ctx, api, cpu)
    finally:
        stack.stop()
    per_1k = 1000 / (requests * cfg.batch_size)
    return {
        "tasks_per_s": requests * cfg.batch_size / wall,
        "p50_ms": percentile(lat, 50) * 1000,
        "api_cpu_ms_per_1k": api_cpu * 1000 * per_1k,
        "redis_cpu_ms_per_1k": redis_cpu * 1000 * per_1k,
    }


async def _cpu(ctx: Context, api: Service, since: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float]:
    """(api, redis) CPU seconds used so far, minus ``since``."""
    return api.cpu_seconds() - since[0], await redis_cpu_seconds(ctx.redis) - since[1]
