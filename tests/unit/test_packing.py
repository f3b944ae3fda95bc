"""shared/redisfast.py's packing: hiredis packs every command byte for byte as redis-py's asyncio packer did,
and what hiredis refuses is left to redis-py (same bytes or the same error)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.connection import Connection as SyncConnection
from redis.exceptions import DataError

from streamq.shared.redis import make_client
from streamq.shared.redisfast import HiredisPacker, HiredisPacking, use_hiredis_packing
from streamq.shared.settings import Settings
from streamq.testing import RedisServer

VALUES: list[Any] = [0, 1, -5, 2**63 - 1, 2**70, 0.1, 1e-7, 1e20, 3.0, float("inf"), "", "é", "a b", b"\xff\x00",
                     memoryview(b"mv"), bytearray(b"ba"), "x" * 10_000, b"y" * 100_000]  # fmt: skip
COMMANDS: list[tuple[Any, ...]] = [
    ("SET", "k", "v"),
    ("CONFIG GET", "maxmemory"),
    (b"CONFIG GET", "maxmemory"),
    ("EVALSHA", "0" * 40, 2, "k1", "k2", *VALUES),
]


class Packing(HiredisPacking, Connection):
    pass


def _bytes(chunks: list[Any]) -> bytes:
    return b"".join(bytes(c) for c in chunks)


@pytest.mark.parametrize("command", COMMANDS)
def test_same_bytes_as_redis_py(command: tuple[Any, ...]) -> None:
    assert _bytes(Packing().pack_command(*command)) == _bytes(Connection().pack_command(*command))
    for value in VALUES:
        assert _bytes(Packing().pack_command("SET", "k", value)) == _bytes(Connection().pack_command("SET", "k", value))


@pytest.mark.parametrize("value", [None, True, object()])
def test_refused_values_raise_as_before(value: Any) -> None:
    with pytest.raises(DataError):
        Connection().pack_command("SET", "k", value)
    with pytest.raises(DataError):
        Packing().pack_command("SET", "k", value)
    with pytest.raises(DataError):
        SyncConnection(command_packer=HiredisPacker()).pack_command("SET", "k", value)


@pytest.mark.parametrize("command", COMMANDS)
def test_the_sync_packer_packs_as_redis_py(command: tuple[Any, ...]) -> None:
    """The synchronous client's packer (the blocking client's direct transport) against redis-py's own."""
    ours, theirs = SyncConnection(command_packer=HiredisPacker()), SyncConnection()
    assert _bytes(ours.pack_command(*command)) == _bytes(theirs.pack_command(*command))
    for value in VALUES:
        assert _bytes(ours.pack_command("SET", "k", value)) == _bytes(theirs.pack_command("SET", "k", value))


def test_pools_get_it_only_with_the_default_encoding() -> None:
    pool = BlockingConnectionPool.from_url("redis://127.0.0.1:1/0")
    use_hiredis_packing(pool)
    assert issubclass(pool.connection_class, HiredisPacking) and issubclass(pool.connection_class, Connection)
    use_hiredis_packing(pool)  # idempotent: not wrapped twice
    assert pool.connection_class.__mro__.count(HiredisPacking) == 1
    unix = BlockingConnectionPool.from_url("unix:///tmp/none.sock")
    use_hiredis_packing(unix)
    assert issubclass(unix.connection_class, UnixDomainSocketConnection)
    latin = BlockingConnectionPool.from_url("redis://127.0.0.1:1/0", encoding="latin-1")
    use_hiredis_packing(latin)
    assert not issubclass(latin.connection_class, HiredisPacking)


async def test_the_services_client_round_trips(redis_server: RedisServer) -> None:
    client: Redis = make_client(Settings(redis_url=redis_server.url, _env_file=None))  # type: ignore[call-arg]
    try:
        assert issubclass(client.connection_pool.connection_class, HiredisPacking)
        await client.set("packing:k", "é" * 3)
        assert await client.get("packing:k") == "é" * 3
        assert await client.eval("return {ARGV[1], ARGV[2]}", 0, 2**40, 0.5) == [str(2**40), "0.5"]
        assert await client.config_get("maxmemory-policy")
        await client.delete("packing:k")
    finally:
        await client.aclose()


async def test_a_write_the_server_does_not_take_times_out_and_drops_the_connection() -> None:
    """The send timeout (a timer on the write, not ``asyncio.wait_for``) still bounds a write that
    cannot complete: a peer that accepts and never reads, 64 MB to send, a 0.3 s socket timeout."""
    import asyncio

    from redis.exceptions import TimeoutError as RedisTimeoutError

    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        taken = 0
        while taken < 1 << 20:  # +OK to the connection's handshake; stops reading after 1 MB
            data = await reader.read(65536)
            if not data:
                return
            taken += len(data)
            writer.write(b"+OK\r\n" * data.count(b"*"))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = Packing(host="127.0.0.1", port=port, socket_timeout=0.3)
    try:
        await conn.connect()
        started = asyncio.get_running_loop().time()
        with pytest.raises(RedisTimeoutError, match="Timeout writing to socket"):
            await conn.send_packed_command([b"x" * (64 << 20)], check_health=False)
        assert asyncio.get_running_loop().time() - started < 5
        assert not conn.is_connected and conn.socket_timeout == 0.3
    finally:
        await conn.disconnect()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
