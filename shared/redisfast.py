"""Every place streamq reaches into redis-py's internals, behind one switch (``STREAMQ_REDIS_PLAIN``).

Each override replaces a redis-py path that profiling showed on the services' hot paths; each depends
on redis-py's internal methods or attributes, so each may break with a redis-py release (the tested
versions are pyproject's bound on ``redis``):

- :class:`HiredisPacking` (a connection mixin): commands packed by hiredis in C, and the write's timeout
  as a timer instead of ``asyncio.wait_for`` (overrides ``pack_command`` and ``send_packed_command``).
- :class:`QuickBlockingPool`: an idle connection handed out without the blocking pool's waiting
  machinery (overrides ``get_connection``, reads ``_available_connections``).
- :class:`HeldConnection` / :class:`HeldConnections`: a connection kept by a loop, its commands written
  and read with the connection's own ``pack_commands``, ``send_packed_command`` and ``read_response``
  (no pipeline object, no pool checkout, no per-call retry).
- :func:`raw_stream_reads`: XREAD replies left as the parser made them (a response callback).

With ``STREAMQ_REDIS_PLAIN=true`` :func:`streamq.shared.redis.make_client` makes clients with none of
them: redis-py's blocking pool and connection class, and the callers fall back to redis-py's public
calls (:meth:`HeldConnection.usable` is false: scripts go through ``EVALSHA`` and pipelines, the
worker's read-then-take through a pipeline; XREAD replies parsed by redis-py). Same commands, same
replies to the services, more client CPU per command (bench/README.md).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import MaxConnectionsError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

# clients made with STREAMQ_REDIS_PLAIN=true (a client not made by make_client counts as fast)
_PLAIN: weakref.WeakSet[Any] = weakref.WeakSet()


def pool_class(plain: bool) -> type[BlockingConnectionPool]:
    """The standalone client's pool class."""
    return BlockingConnectionPool if plain else QuickBlockingPool


def finish_client(client: Any, plain: bool) -> Any:
    """``client`` (just made by ``make_client``), marked plain, or with its connections packing by hiredis
    (standalone: the cluster and Sentinel clients keep redis-py's connection class)."""
    if plain:
        _PLAIN.add(client)
    elif isinstance(client, Redis) and type(client.connection_pool) is QuickBlockingPool:
        use_hiredis_packing(client.connection_pool)
    return client


def is_plain(client: Any) -> bool:
    """Whether ``client`` was made with ``STREAMQ_REDIS_PLAIN=true``."""
    return client in _PLAIN


class HiredisPacking:
    """Mixin for a ``redis.asyncio`` connection class: ``pack_command`` through hiredis, and a send
    timeout without a task per command.

    redis-py's synchronous client already packs with ``hiredis.pack_command`` when hiredis is installed
    (``redis.connection.HiredisRespSerializer``); its asyncio connection still joins the bytes in Python,
    re-copying a growing buffer for every argument. For a 1,000-task submit (about 21,000 arguments)
    that is about 23 ms against 3.4 ms with hiredis: the largest single cost of ``POST
    /api/tasks/batch`` in py-spy. The bytes are the same (checked in ``tests/unit/test_packing.py``);
    anything hiredis refuses (``None``, ``bool``, ``bytearray``) goes to redis-py's packer, which
    raises or packs exactly as redis-py does.

    redis-py 8 also gives every connection a 5 s socket timeout by default, and bounds each write with
    ``asyncio.wait_for``: on Python 3.11 a new task and two more event-loop turns per command, about
    50 us of a 2-command pipeline's 250 us of client CPU on the benchmark's VM. The mixin bounds the
    write with ``asyncio.timeout`` (a timer) instead; a write that cannot complete in time still fails
    with redis-py's ``TimeoutError`` and drops the connection (``tests/unit/test_packing.py``)."""

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


class HiredisPacker:
    """The synchronous client's command packer (a connection's ``command_packer``): the arguments handed
    to ``hiredis.pack_command`` as they are. redis-py's own ``HiredisRespSerializer`` first copies every
    argument through a Python generator (to turn a ``bytearray`` or ``memoryview`` into ``bytes``): half
    of the packing time of a 1,000-task submit (2.9 against 1.4 ms). Anything hiredis refuses goes to
    redis-py's serializer, which converts, packs or raises exactly as redis-py does."""

    def __init__(self) -> None:
        from redis.connection import HiredisRespSerializer

        self._fallback = HiredisRespSerializer()

    def pack(self, *args: Any) -> list[bytes]:
        first = args[0]
        if (" " if isinstance(first, str) else b" ") in first:  # literal arguments in the name ("CONFIG GET")
            return self._fallback.pack(*args)  # type: ignore[no-any-return]
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            return self._fallback.pack(*args)  # type: ignore[no-any-return]


def use_hiredis_packing(pool: ConnectionPool) -> None:
    """The pool's connections (made from now on) pack with hiredis, when they encode as hiredis does
    (utf-8, strict: redis-py's defaults)."""
    kwargs = pool.connection_kwargs
    if kwargs.get("encoding", "utf-8") != "utf-8" or kwargs.get("encoding_errors", "strict") != "strict":
        return
    cls = pool.connection_class
    if not issubclass(cls, HiredisPacking):
        pool.connection_class = type(f"HiredisPacking{cls.__name__}", (HiredisPacking, cls), {})


class QuickBlockingPool(BlockingConnectionPool):  # type: ignore[misc]
    """A blocking pool that hands out an idle connection without its waiting machinery.

    redis-py's blocking pool takes an asyncio condition and arms a timeout for every command, even
    when a connection sits idle (about 0.12 ms of a cold client's 0.3 ms before a command reaches
    the socket, bench/README.md round 4). With an idle connection at hand nothing has to wait, so it
    is taken as the plain pool takes it (same bookkeeping, same health check); with none, the blocking
    path queues for one (up to the pool's timeout, never more than ``max_connections``)."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self._available_connections:
            try:
                return await ConnectionPool.get_connection(self)
            except MaxConnectionsError:  # the last idle one was taken meanwhile: wait like the blocking pool
                pass
        return await super().get_connection()


class HeldConnection:
    """One connection of a client's pool, kept by one long-lived loop (a worker's blocking reader) for
    its round trips: each :meth:`exchange` packs its commands into one write and reads their replies
    off the connection, without a pipeline object, the pool's checkout and release, or redis-py's
    per-call retry and metrics (0.14 ms of a 1.1 ms created-to-read at p50, bench/README.md round 7).
    Standalone and Sentinel clients only, and not with ``STREAMQ_REDIS_PLAIN`` (:meth:`usable`); a
    cluster client routes each command by its slot, so its callers keep a pipeline. A connection that
    fails, or whose exchange is cancelled part way, is disconnected and given back, and the next
    exchange takes a fresh one from the pool; errors are raised as redis-py raises them
    (``ConnectionError``, ``TimeoutError``)."""

    def __init__(self, client: Redis) -> None:
        self.pool = client.connection_pool
        self.conn: Any = None

    @staticmethod
    def usable(client: Redis) -> bool:
        """Whether callers may hold ``client``'s connections (else they use its pipelines)."""
        return not isinstance(client, RedisCluster) and not is_plain(client)

    async def exchange(self, *commands: tuple[Any, ...], each: Callable[[Any], None] | None = None) -> list[Any]:
        """Send ``commands`` in one write; each one's reply in order, or the ``ResponseError`` it got
        (as a pipeline's ``execute(raise_on_error=False)``: the replies after it are still read).
        ``each`` is called with every reply as soon as it is read: a caller whose last command blocks
        (``XREAD BLOCK``) uses the replies before it while that one waits."""
        conn = self.conn
        if conn is None:
            conn = self.conn = await self.pool.get_connection()
        try:
            await conn.send_packed_command(conn.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    reply = await conn.read_response()
                except ResponseError as error:  # the reply was read: the connection stays in step
                    reply = error
                replies.append(reply)
                if each is not None:
                    each(reply)
            return replies
        except BaseException:
            await self.release(broken=True)
            raise

    async def release(self, broken: bool = False) -> None:
        """Give the connection back to the pool (disconnected first if ``broken``)."""
        conn, self.conn = self.conn, None
        if conn is not None:
            if broken:
                await conn.disconnect()
            await self.pool.release(conn)


class HeldConnections:
    """:class:`HeldConnection` s shared by many coroutines for short exchanges (script calls): each
    exchange takes an idle one or a new one, and gives it back after; at most ``keep`` stay held while
    idle (the others go back to the pool), so the pool keeps its connections for everything else.
    :meth:`of` gives every user of one client the same set (a process may have a ``Queue``, and so a
    ``Scripts``, per queue partition)."""

    def __init__(self, client: Redis, keep: int = 4) -> None:
        self.client = client
        self.keep = keep
        self.idle: list[HeldConnection] = []

    @classmethod
    def of(cls, client: Redis) -> HeldConnections:
        """The one set of ``client``'s pool (made on first use, dropped with the pool)."""
        pool = client.connection_pool
        found = _HELD_BY_POOL.get(pool)
        if found is None:
            found = _HELD_BY_POOL[pool] = cls(client)
        return found

    async def exchange(self, *commands: tuple[Any, ...]) -> list[Any]:
        held = self.idle.pop() if self.idle else HeldConnection(self.client)
        try:
            return await held.exchange(*commands)
        finally:  # a failed one already gave its connection back: it takes a fresh one next time
            if len(self.idle) < self.keep:
                self.idle.append(held)
            else:
                await held.release()


_HELD_BY_POOL: weakref.WeakKeyDictionary[Any, HeldConnections] = weakref.WeakKeyDictionary()


def raw_stream_reads(client: Redis) -> Redis:
    """``client`` with its XREAD replies left as hiredis parsed them (nested lists: one entry is
    ``[id, [field, value, ...]]``), without redis-py's dict per entry (2.3 -> 1 us of CPU per entry
    read). For a client of its own, used only by readers that scan entries (the scheduler's watchers).
    A plain client is returned as it is: its entries are ``(id, {field: value})``."""
    if not is_plain(client):
        client.set_response_callback("XREAD", _as_parsed)
    return client


def _as_parsed(response: Any, **_options: Any) -> Any:
    return response
