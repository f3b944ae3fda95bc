"""The dashboard against hostile clients, as real processes (api and dashboard) with real Redis: its
``/api/*`` pass-through keeps the api's body limit, its own routes need the scopes the api asks for
the same data, and its login is throttled."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.security.test_limits import rss_kib
from tests.stack import Stack
from tests.support import RedisServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def open_stack(redis_server: RedisServer, tmp_path: Path) -> Iterator[Stack]:
    """api and dashboard without keys."""
    stack = Stack(redis_server, tmp_path)
    stack.start("api", "dashboard")
    yield stack
    stack.close()


def chunked_upload(port: int, path: str, cap: int) -> tuple[int, bytes]:
    """POST a chunked body of up to ``cap`` bytes until the server answers; returns how many bytes were
    sent before it did and the start of its reply (the status line and headers)."""
    sent = 0
    chunk = b"x" * 65536
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    reply = b""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: dash\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        sock.settimeout(0.001)
        try:
            while sent < cap and not reply:
                sock.sendall(framed)
                sent += len(chunk)
                with contextlib.suppress(TimeoutError, BlockingIOError):
                    reply = sock.recv(4096)
            if not reply:
                sock.sendall(b"0\r\n\r\n")  # the whole body is out: the server answers now at the latest
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(60)
        while b"\r\n\r\n" not in reply:
            data = sock.recv(4096)
            if not data:
                break
            reply += data
    return sent, reply


def test_pass_through_cuts_a_large_upload_off_at_the_apis_limit(open_stack: Stack) -> None:
    dashboard = open_stack.services["dashboard"]
    warm = httpx.post(f"{open_stack.dashboard_url}/api/tasks", json={"type": "noop"}, timeout=10)
    assert warm.status_code == 201, warm.text  # the pass-through works for a normal body
    before = rss_kib(dashboard.pid)
    sent, reply = chunked_upload(open_stack.dashboard_port, "/api/tasks", 256 * 1024**2)
    grew = rss_kib(dashboard.pid) - before
    print(f"sent {sent / 1024**2:.1f} MiB before the dashboard answered; its RSS grew {grew} KiB")
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert sent < 64 * 1024**2  # cut off near the 1 MiB limit, not after the whole upload
    assert grew < 8 * 1024
    # the same 413 for a declared length over the limit, before any of the body is read
    big = httpx.post(
        f"{open_stack.dashboard_url}/api/tasks/batch", content=b"x" * (1024 * 1024 + 1), timeout=10,
        headers={"content-type": "application/json"},
    )  # fmt: skip
    assert big.status_code == 413 and "larger than 1048576 bytes" in big.json()["detail"][0]["msg"]
    # and the dashboard still serves
    assert httpx.get(f"{open_stack.dashboard_url}/api/stats", timeout=10).status_code == 200
