"""Rate limits (a Redis token bucket shared by api replicas) and request size limits."""

from __future__ import annotations

import socket
import time

import httpx
from redis.asyncio import Redis

from streamq.shared.keys import KeySchema
from streamq.testing import free_port, wait_http
from tests.security.conftest import KEYS, SECRETS, ApiFactory
from tests.services import StartService
from tests.support import chunked_upload, rss_kib, task_ids


def test_burst_of_1000_against_100_per_s_burst_200(start_service: StartService) -> None:
    """1,000 requests sent at once, pipelined on 10 connections spread over two real api replicas that
    share one bucket. At most the burst plus what refilled while they were served may pass."""
    ports = [free_port(), free_port()]
    for port in ports:
        start_service("streamq.services.api", STREAMQ_API_PORT=str(port), STREAMQ_RATE_LIMIT="100/s burst 200")
    for port in ports:
        wait_http(f"http://127.0.0.1:{port}/api/health")
    # the limit is checked before routing, so any route is limited alike; an unknown one keeps the
    # allowed requests cheap (404 with no Redis call), so the burst is served as fast as possible
    request = b"GET /api/limited HTTP/1.1\r\nHost: api\r\n\r\n"
    started = time.monotonic()
    socks = [socket.create_connection(("127.0.0.1", ports[i % 2])) for i in range(10)]
    for sock in socks:
        sock.sendall(request * 100)
    replies = []
    for sock in socks:
        sock.settimeout(30)
        reply = b""
        while reply.count(b"HTTP/1.1 ") < 100:
            data = sock.recv(1 << 16)
            assert data, "connection closed early"
            reply += data
        replies.append(reply)
        sock.close()
    took = time.monotonic() - started
    text = b"".join(replies)
    allowed, limited = text.count(b"HTTP/1.1 404"), text.count(b"HTTP/1.1 429")
    print(f"1000 requests in {took:.2f} s: {allowed} allowed, {limited} limited")
    assert allowed + limited == 1000
    # the bucket law over the measured window: it starts full (a fresh prefix), so the whole burst
    # passes; on top of it at most what refilled at 100/s while the burst was being served (a loaded
    # machine serves it more slowly, so more refills: the bound follows the elapsed time, not a fixed
    # count); +2 for the Redis clock's millisecond rounding at each end of the window
    refilled = 100 * took
    assert 200 <= allowed <= 200 + refilled + 2  # the burst is handed out, never more than it holds
    assert limited >= 1000 - (200 + refilled + 2)  # every request beyond that is refused
    assert text.lower().count(b"retry-after: ") == limited
    assert b"rate limit exceeded" in text


async def test_replicas_share_one_bucket_and_batches_count_each_task(
    make_api: ApiFactory, redis: Redis, keys: KeySchema
) -> None:
    async with make_api(rate_limit="1/h burst 10") as one, make_api(rate_limit="1/h burst 10") as two:
        assert (await one.post("/api/tasks/batch", json={"tasks": [{"type": "noop"}] * 6})).status_code == 201
        assert (await two.post("/api/tasks", json={"type": "noop"})).status_code == 201  # 7 taken
        r = await one.post("/api/tasks/batch", json={"tasks": [{"type": "noop"}] * 5})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 60
        too_big = await two.post("/api/tasks/batch", json={"tasks": [{"type": "noop"}] * 50})
        assert too_big.status_code == 422 and "can never pass" in too_big.json()["detail"][0]["msg"]
    assert len(await task_ids(redis, keys)) == 7  # nothing of the refused batches was written


async def test_a_batch_over_the_burst_is_422_naming_it_not_429(
    make_api: ApiFactory, redis: Redis, keys: KeySchema
) -> None:
    """A batch takes a token per task, so one larger than the burst never fits: 422 (no Retry-After),
    not a 429 inviting a retry loop; a batch of exactly the burst fits a full bucket."""
    async with make_api(rate_limit="1/h burst 5") as client:
        for _ in range(3):
            r = await client.post("/api/tasks/batch", json={"tasks": [{"type": "noop"}] * 6})
            assert r.status_code == 422 and "retry-after" not in r.headers
            [error] = r.json()["detail"]
            assert error["loc"] == ["body", "tasks"] and "the burst is 5" in error["msg"]
            assert "at most 5 tasks per batch" in error["msg"]
        # each refused batch took only its request's token: 2 of 5 are left
        assert (await client.post("/api/tasks/batch", json={"tasks": [{"type": "noop"}] * 2})).status_code == 201
    assert len(await task_ids(redis, keys)) == 2
    async with make_api(rate_limit="1/h burst 5", key_prefix=keys.prefix + "b") as fresh:
        assert (await fresh.post("/api/tasks/batch", json={"tasks": [{"type": "noop"}] * 5})).status_code == 201


async def test_limit_is_per_key(make_api: ApiFactory) -> None:
    async with make_api(rate_limit="1/h burst 2", api_keys=KEYS) as client:
        reader = {"Authorization": f"Bearer {SECRETS['reader']}"}
        admin = {"Authorization": f"Bearer {SECRETS['admin']}"}
        codes = [(await client.get("/api/stats", headers=reader)).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        assert (await client.post("/api/tasks/01NOSUCHTASK/cancel", headers=admin)).status_code == 404
        assert (await client.get("/api/health")).status_code == 200  # never limited


async def test_header_url_and_list_limits(make_api: ApiFactory) -> None:
    async with make_api() as client:
        r = await client.get("/api/stats", headers={"x-big": "a" * 20_000})
        assert r.status_code == 431 and "16384 bytes" in r.json()["detail"]
        r = await client.get("/api/tasks", params={"type": "a" * 9000})
        assert r.status_code == 414
        r = await client.get("/api/tasks", params={"limit": 501})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "limit"]


def test_1_gb_streamed_body_is_cut_off_at_the_limit(start_service: StartService) -> None:
    port = free_port()
    api = start_service("streamq.services.api", STREAMQ_API_PORT=str(port))
    wait_http(f"http://127.0.0.1:{port}/api/health")
    httpx.post(f"http://127.0.0.1:{port}/api/tasks", json={"type": "noop"})  # warm up
    before = rss_kib(api.pid)
    sent, reply = chunked_upload(port, "/api/tasks", 1024**3)
    grew = rss_kib(api.pid) - before
    print(f"sent {sent / 1024**2:.1f} MiB before the api answered; api RSS grew {grew} KiB")
    assert reply.startswith(b"HTTP/1.1 413")
    assert sent < 64 * 1024**2  # cut off near the 1 MiB limit, not after the whole gigabyte
    assert grew < 8 * 1024
