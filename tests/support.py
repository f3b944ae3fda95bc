"""Test support: a private redis-server, free ports, and service processes started as users run them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from streamq.shared.keys import KeySchema

ROOT = Path(__file__).resolve().parent.parent


async def task_ids(redis: Redis, keys: KeySchema) -> list[str]:
    """Every task id of a partition, sorted: the union of its status indexes (each task is in exactly
    one; there is no index of all tasks). Not atomic: for a test's settled state."""
    pipe = redis.pipeline(transaction=False)
    for index in keys.status_indexes():
        pipe.zrange(index, 0, -1)
    return sorted(task_id for page in await pipe.execute() for task_id in page)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


class RedisServer:
    """A real redis-server on a free loopback port, with no persistence, in a temp dir."""

    def __init__(self, *extra: str) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="streamq-redis-")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--maxmemory-policy", "noeviction", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_port(self.port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Service:
    """A streamq service started as ``python -m <module>`` from the checkout (or as ``command`` from
    ``cwd``: an installed ``streamq`` command), its output in a log file."""

    def __init__(
        self,
        module: str,
        env: dict[str, str],
        log_dir: Path,
        name: str | None = None,
        *,
        command: list[str] | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.module = module
        self.name = name or module.rsplit(".", 1)[-1]
        self.log_path = log_dir / f"{self.name}-{time.monotonic_ns()}.log"
        self._log: IO[bytes] = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, "STREAMQ_LOG_FORMAT": "json", **env}
        argv = command or [sys.executable, "-m", module]
        self.proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_http(url: str, timeout: float = 30.0) -> None:
    """Until ``url`` answers (below 500); a process starting on a loaded 2-core machine can take 15 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def chunked_upload(port: int, path: str, cap: int) -> tuple[int, bytes]:
    """POST a chunked body of up to ``cap`` bytes until the server answers; returns how many bytes were
    sent before it did and the start of its reply (the status line and headers)."""
    sent = 0
    chunk = b"x" * 65536
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    reply = b""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: streamq\r\nContent-Type: application/json\r\n"
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
