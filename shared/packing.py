"""Commands packed by hiredis (C) instead of redis-py's pure-Python packer on the asyncio client.

redis-py's synchronous client already packs with ``hiredis.pack_command`` when hiredis is installed
(``redis.connection.HiredisRespSerializer``); its asyncio connection still joins the bytes in Python,
re-copying a growing buffer for every argument. For a 1,000-task submit (about 21,000 arguments)
that is about 23 ms against 3.4 ms with hiredis: the largest single cost of ``POST
/api/tasks/batch`` in py-spy. The bytes are the same (checked in ``tests/unit/test_packing.py``);
anything hiredis refuses (``None``, ``bool``, ``bytearray``) goes to redis-py's packer, which
raises or packs exactly as before.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio import ConnectionPool


class HiredisPacking:
    """Mixin for a ``redis.asyncio`` connection class: ``pack_command`` through hiredis."""

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


def use_hiredis_packing(pool: ConnectionPool) -> None:
    """The pool's connections (made from now on) pack with hiredis, when they encode as hiredis does
    (utf-8, strict: redis-py's defaults)."""
    kwargs = pool.connection_kwargs
    if kwargs.get("encoding", "utf-8") != "utf-8" or kwargs.get("encoding_errors", "strict") != "strict":
        return
    cls = pool.connection_class
    if not issubclass(cls, HiredisPacking):
        pool.connection_class = type(f"HiredisPacking{cls.__name__}", (HiredisPacking, cls), {})
