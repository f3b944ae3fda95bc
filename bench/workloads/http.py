"""A minimal HTTP/1.1 keep-alive client for load generation (a pre-encoded request, read the reply).

httpx costs this machine several times more CPU per request than the api spends serving it, so a
benchmark driven by httpx measures httpx; this client does only what the load needs: one
connection per simulated client, a pre-encoded request, and a reply read by Content-Length."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, base: str) -> Connection:
        parts = urlsplit(base)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Send a pre-encoded request (``encode_post``, ``encode_get``); returns (status, body)."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def encode_post(base: str, path: str, body: bytes) -> bytes:
    host = urlsplit(base).netloc
    return (
        f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body


def encode_get(base: str, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nhost: {urlsplit(base).netloc}\r\n\r\n".encode()


@contextlib.asynccontextmanager
async def answering(answer: Callable[[bytes, bytes], bytes]) -> AsyncIterator[int]:
    """A tiny HTTP/1.1 keep-alive server on a free loopback port (yielded): each request's body is read
    by Content-Length and ``answer(head, body)`` gives the whole response to send."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length:\s*(\d+)", head)
                body = await reader.readexactly(int(length[1])) if length else b""
                writer.write(answer(head, body))
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.CancelledError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
