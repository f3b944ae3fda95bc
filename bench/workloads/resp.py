"""A bare RESP connection (asyncio stream + hiredis reader) for the raw yardstick: commands are
encoded once by hand and pipelined, so the figure is the transport's limit, not a client's."""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis


def encode(*parts: str | bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class Resp:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = hiredis.Reader()

    @classmethod
    async def open(cls, host: str, port: int) -> Resp:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def pipeline(self, payload: bytes, replies: int) -> list[Any]:
        """Send pre-encoded commands; read ``replies`` replies (errors are raised)."""
        self.writer.write(payload)
        out: list[Any] = []
        while len(out) < replies:
            reply = self.parser.gets()
            if reply is False:
                self.parser.feed(await self.reader.read(1 << 20))
                continue
            if isinstance(reply, hiredis.ReplyError):
                raise reply
            out.append(reply)
        return out

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()
