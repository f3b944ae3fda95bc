"""Sentinel with passwords everywhere: the sentinels' own (``STREAMQ_REDIS_SENTINEL_PASSWORD``) and
the servers' (the URL's), on a real master + replica + 3 sentinels."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Queue
from streamq.shared.redis import make_client
from streamq.shared.settings import Settings
from streamq.testing import SentinelServers

PASSWORD, SENTINEL_PASSWORD = "servers-s3cret", "sentinels-s3cret"  # two, so each is seen going where it belongs
pytestmark = pytest.mark.standalone_only(reason="starts its own Sentinel servers")


@pytest.fixture(scope="module")
def secured() -> Iterator[SentinelServers]:
    servers = SentinelServers(password=PASSWORD, sentinel_password=SENTINEL_PASSWORD)
    try:
        yield servers
    finally:
        servers.stop()


def _settings(servers: SentinelServers, **extra: str) -> Settings:
    url = servers.url.replace("redis+sentinel://", f"redis+sentinel://:{PASSWORD}@")
    return Settings(_env_file=None, redis_url=url, key_prefix=f"auth{time.time_ns()}", **extra)  # type: ignore[call-arg]


async def test_sentinel_password_reaches_the_sentinels(secured: SentinelServers) -> None:
    # the sentinels refuse an unauthenticated question, so a client must send their password
    for password in (None, PASSWORD):  # nothing, or the servers' password: refused
        with (
            redis.Redis(port=secured.sentinel_ports[0], password=password) as bare,
            pytest.raises(redis.AuthenticationError),
        ):
            bare.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelServers.MASTER)
    settings = _settings(secured, redis_sentinel_password=SENTINEL_PASSWORD)
    client = make_client(settings)
    try:
        queue = Queue(client, KeySchema(settings.key_prefix, "default"))
        [made] = await queue.submit([TaskCreate(type="noop", payload={"n": 1})])
        assert (await queue.get(made.task.id)).payload == {"n": 1}
    finally:
        await client.aclose()
    with redis.Redis(port=secured.master_port, password=PASSWORD, decode_responses=True) as master:
        assert master.exists(KeySchema(settings.key_prefix, "default").task(made.task.id))


def test_sentinel_password_is_not_shown(secured: SentinelServers) -> None:
    settings = _settings(secured, redis_sentinel_password=SENTINEL_PASSWORD)
    assert SENTINEL_PASSWORD not in repr(settings) and SENTINEL_PASSWORD not in str(settings)
