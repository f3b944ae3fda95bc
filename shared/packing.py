"""Commands packed by hiredis (C) instead of redis-py's pure-Python packer on the asyncio client.

redis-py's synchronous client already packs with ``hiredis.pack_command`` when hiredis is installed
(``redis.connection.HiredisRespSerializer``); its asyncio connection still joins the bytes in Python,
re-copying a growing buffer for every argument. For a 1,000-task submit (about 21,000 arguments)
that is about 23 ms against 3.4 ms with hiredis: the largest single cost of ``POST
/api/tasks/batch`` in py-spy. The bytes are the same (checked in ``tests/unit/test_packing.py``);
anything hiredis refuses (``None``, ``bool``, ``bytearray``) goes to redis-py's packer, which
raises or packs exactly as before.

redis-py 8 also gives every connection a 5 s socket timeout by default, and bounds each write with
``asyncio.wait_for``: on Python 3.11 a new task and two more event-loop turns per command, about
50 us of a 2-command pipeline's 250 us of client CPU on the benchmark's VM. The mixin bounds the
write with ``asyncio.timeout`` (a timer) instead; a write that cannot complete in time still fails
with redis-py's ``TimeoutError`` and drops the connection (``tests/unit/test_packing.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import hiredis
from redis.asyncio import ConnectionPool
from redis.exceptions import TimeoutError as RedisTimeoutError


class HiredisPacking:
    """Mixin for a ``redis.asyncio`` connection class: ``pack_command`` through hiredis, and a send
    timeout without a task per command."""

    socket_timeout: float | None  # the connection's own

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        # the command name may carry literal arguments ("CONFIG GET"), sent separately (as redis-py)
        if isinstance(first, str):
            if " " in first:
                args = tuple(first.encode().split()) + args[1:]
        elif b" " in first:
            args = tuple(first.split()) + args[1:]
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            return super().pack_command(*args)  # type: ignore[misc, no-any-return]

    async def send_packed_command(self, command: bytes | str | Iterable[bytes], check_health: bool = True) -> None:
        """redis-py's, with the socket timeout as a timer on the write instead of ``asyncio.wait_for``
        (on Python 3.11 a task and two more event-loop turns per command: redis-py 8 sets a 5 s socket
        timeout by default). The write is bounded the same way and fails the same way."""
        timeout = self.socket_timeout
        if not timeout:
            return await super().send_packed_command(command, check_health)  # type: ignore[misc, no-any-return]
        self.socket_timeout = None
        try:
            async with asyncio.timeout(timeout):
                await super().send_packed_command(command, check_health)  # type: ignore[misc]
        except TimeoutError:  # the connection was dropped by redis-py's own handler on the way out
            raise RedisTimeoutError("Timeout writing to socket") from None
        finally:
            self.socket_timeout = timeout


def use_hiredis_packing(pool: ConnectionPool) -> None:
    """The pool's connections (made from now on) pack with hiredis, when they encode as hiredis does
    (utf-8, strict: redis-py's defaults)."""
    kwargs = pool.connection_kwargs
    if kwargs.get("encoding", "utf-8") != "utf-8" or kwargs.get("encoding_errors", "strict") != "strict":
        return
    cls = pool.connection_class
    if not issubclass(cls, HiredisPacking):
        pool.connection_class = type(f"HiredisPacking{cls.__name__}", (HiredisPacking, cls), {})
