"""STREAMQ_REDIS_URL / STREAMQ_REDIS_MODE / STREAMQ_DURABLE_SUBMIT parsing, and the client each topology gets."""

from __future__ import annotations

import subprocess
import sys

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool

from streamq.shared.redis import make_client, parse_topology, redact
from streamq.shared.settings import Settings, parse_durable_submit
from tests.support import ROOT


def _settings(**values: object) -> Settings:
    return Settings(**values, _env_file=None)  # type: ignore[arg-type]


def test_schemes_pick_the_topology() -> None:
    cluster = parse_topology("rediss+cluster://u:p%40ss@h1:7000,[::1]:7001/")
    assert (cluster.mode, cluster.hosts, cluster.tls) == ("cluster", (("h1", 7000), ("::1", 7001)), True)
    assert (cluster.username, cluster.password) == ("u", "p@ss")
    sentinel = parse_topology("redis+sentinel://s1:26379,s2:26380/mymaster/2")
    assert (sentinel.mode, sentinel.master, sentinel.db, sentinel.tls) == ("sentinel", "mymaster", 2, False)
    assert parse_topology("redis://h:6379/0").mode == "standalone"
    assert parse_topology("unix:///run/redis.sock").mode == "standalone"


def test_mode_setting_overrides_a_plain_url() -> None:
    assert parse_topology("redis://h:7000", "cluster").hosts == (("h", 7000),)
    assert parse_topology("redis://s:26379/main", "sentinel").master == "main"
    assert parse_topology("redis+cluster://h:1/", "auto").mode == "cluster"


@pytest.mark.parametrize(
    ("url", "mode", "message"),
    [
        ("http://h:1", "auto", "must start with redis://"),
        ("redis+cluster://h:1/3", "auto", "only database 0"),
        ("redis+cluster://", "auto", "names no host:port"),
        ("redis+cluster://h", "auto", "'h' is not host:port"),
        ("redis+sentinel://s:1", "auto", "must end with /<master-name>"),
        ("redis+sentinel://s:1/0", "auto", "master's name, not a database"),
        ("redis+sentinel://s:1/m/x", "auto", "database 'x' is not a number"),
        ("unix:///tmp/r.sock", "cluster", "unix:// socket cannot be used for cluster"),
        ("redis+cluster://h:1", "sentinel", "cannot be used with STREAMQ_REDIS_MODE=sentinel"),
    ],
)
def test_bad_urls_name_the_problem(url: str, mode: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_topology(url, mode)


def test_bad_setting_stops_with_one_line_and_exit_2() -> None:
    env = {"STREAMQ_REDIS_URL": "redis+cluster://u:secret@h:1/5", "PATH": "/usr/bin:/bin"}
    code = "from streamq.shared.settings import load_settings; load_settings()"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("streamq: invalid setting STREAMQ_REDIS_URL:")
    assert "secret" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_bad_mode_names_the_setting() -> None:
    with pytest.raises(ValueError, match="redis_mode"):
        _settings(redis_mode="ring")


def test_passwords_are_redacted_for_every_topology() -> None:
    assert redact("redis+cluster://u:s3cret@h1:1,h2:2/") == "redis+cluster://u:***@h1:1,h2:2/"
    assert redact("rediss+sentinel://:s3cret@s:1/m") == "rediss+sentinel://:***@s:1/m"
    assert redact("redis://h:1/0") == "redis://h:1/0"


def test_durable_submit_values() -> None:
    assert parse_durable_submit("") is None
    assert parse_durable_submit("replicas:1") == (1, 1000)
    assert parse_durable_submit(" replicas: 2 , 250 ") == (2, 250)
    for bad in ("replicas:0", "replicas:1,0", "1", "replicas:x", "wait:1"):
        with pytest.raises(ValueError, match="replica"):
            parse_durable_submit(bad)
    assert _settings(durable_submit="replicas:1,500").durable() == (1, 500)


async def test_each_topology_gets_its_client_without_connecting() -> None:
    cluster = make_client(_settings(redis_url="redis+cluster://u:pw@127.0.0.1:1,127.0.0.1:2/"))
    assert isinstance(cluster, RedisCluster)
    assert [n.name for n in cluster.startup_nodes] == ["127.0.0.1:1", "127.0.0.1:2"]
    assert cluster.connection_kwargs["password"] == "pw" and cluster.connection_kwargs["decode_responses"]
    await cluster.aclose()
    sentinel = make_client(_settings(redis_url="redis+sentinel://127.0.0.1:3/main/1"))
    assert isinstance(sentinel, Redis) and isinstance(sentinel.connection_pool, SentinelConnectionPool)
    assert sentinel.connection_pool.service_name == "main"
    assert sentinel.connection_pool.connection_kwargs["db"] == 1
    await sentinel.aclose()
    plain = make_client(_settings(redis_url="redis://127.0.0.1:4/0"))
    assert type(plain) is Redis and plain.connection_pool.connection_kwargs["port"] == 4
    await plain.aclose()
