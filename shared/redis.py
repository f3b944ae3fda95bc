"""Connecting to Redis: one asyncio client per process, closed on shutdown.

:func:`make_client` is the only place that knows the topology (standalone, Redis Cluster, Sentinel);
everything else talks to the client it returns through the same commands, scripts and pipelines.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry  # the asyncio Retry: the sync one does not retry awaited calls
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, RedisClusterException, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamq.shared import redisfast
from streamq.shared.refusals import refusal
from streamq.shared.settings import Settings

MIN_REDIS_VERSION = (7, 0, 5)
Mode = Literal["standalone", "cluster", "sentinel"]
# client-side reconnect budget: ~5 s of back-off per command covers a quick Sentinel failover (detection +
# promotion) without keeping a shutdown waiting long when Redis is gone
RETRIES = 8
UNCAPPED = 2**31  # redis-py's own "no limit" for a pool's max_connections (a client for blocking reads)
PING_TIMEOUT_S = 5.0  # longest one start-up PING may take (retries included) before connect() tries again
BACKOFF = ExponentialBackoff(cap=1.0, base=0.05)
SCHEMES: dict[str, Mode] = {
    "redis": "standalone",
    "rediss": "standalone",
    "unix": "standalone",
    "redis+cluster": "cluster",
    "rediss+cluster": "cluster",
    "redis+sentinel": "sentinel",
    "rediss+sentinel": "sentinel",
}

# The type services see: every topology's client answers the same commands.
Client = Redis


@dataclass(frozen=True, slots=True)
class Topology:
    """What ``STREAMQ_REDIS_URL`` + ``STREAMQ_REDIS_MODE`` describe."""

    mode: Mode
    hosts: tuple[tuple[str, int], ...] = ()  # cluster: startup nodes; sentinel: the sentinels
    tls: bool = False
    username: str | None = None
    password: str | None = None
    master: str = ""  # sentinel: the monitored master's name
    db: int = 0
    options: dict[str, str] = field(default_factory=dict)  # query string, handed to the connections


def parse_topology(url: str, mode: str = "auto") -> Topology:
    """Parse the URL for ``mode`` (``auto`` = from the scheme); ``ValueError`` names what is wrong."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ValueError("must start with " + ", ".join(f"{s}://" for s in SCHEMES))
    chosen: Mode = SCHEMES[scheme] if mode == "auto" else mode  # type: ignore[assignment]
    if chosen not in ("standalone", "cluster", "sentinel"):
        raise ValueError("STREAMQ_REDIS_MODE must be auto, standalone, cluster or sentinel")
    if mode != "auto" and SCHEMES[scheme] != "standalone" and SCHEMES[scheme] != chosen:
        raise ValueError(f"a {scheme}:// URL cannot be used with STREAMQ_REDIS_MODE={mode}")
    tls = scheme.startswith("rediss")
    if chosen == "standalone":
        return Topology("standalone", tls=tls)
    if scheme == "unix":
        raise ValueError(f"a unix:// socket cannot be used for {chosen}")
    return _parse_multi(url, chosen, tls)


def _parse_multi(url: str, mode: Mode, tls: bool) -> Topology:
    rest = url.split("://", 1)[1]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, _, hostlist = netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    hosts = tuple(_host_port(part) for part in hostlist.split(",") if part.strip())
    if not hosts:
        raise ValueError("names no host:port")
    segments = [unquote(s) for s in path.split("/") if s]
    master, db = "", 0
    if mode == "cluster":
        if segments not in ([], ["0"]):
            raise ValueError("a cluster URL takes no path but /0 (a cluster has only database 0)")
    else:
        if not segments or len(segments) > 2:
            raise ValueError("a sentinel URL must end with /<master-name> or /<master-name>/<db>")
        master = segments[0]
        if master.isdigit():
            raise ValueError(f"a sentinel URL's path starts with the master's name, not a database ({master})")
        db = _db(segments[1]) if len(segments) == 2 else 0
    return Topology(
        mode, hosts, tls, unquote(username) or None, unquote(password) or None, master, db, dict(parse_qsl(query))
    )


def _host_port(part: str) -> tuple[str, int]:
    host, sep, port = part.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{part.strip()!r} is not host:port")
    return host.strip("[]"), int(port)


def _db(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"database {text!r} is not a number")
    return int(text)


def _retry() -> Retry:
    return Retry(BACKOFF, retries=RETRIES)


def _common(settings: Settings, topology: Topology) -> dict[str, Any]:
    """Connection options every topology shares."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "health_check_interval": 30,
        "socket_keepalive": True,
        "username": topology.username,
        "password": topology.password,
        "retry": _retry(),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    if topology.tls:
        options["ssl"] = True
        options.update({k: v for k, v in topology.options.items() if k.startswith("ssl_")})
    return options


def make_client(settings: Settings, *, blocking_reads: bool = False) -> Redis:
    """The asyncio client for the configured topology; ``decode_responses`` so every reply is ``str``.

    Standalone: the pool blocks (up to 20 s) for a free connection instead of failing, so a burst of
    concurrent requests queues for Redis rather than erroring. Cluster: a :class:`RedisCluster` that
    follows MOVED/ASK and refreshes its slot map, and whose callers wait likewise at the cap
    (:class:`WaitingCluster`). Sentinel: the master's client, which asks the
    sentinels for the current master on every reconnect (so a failover is followed without restart).

    ``blocking_reads``: a client for long blocking reads only (one per partition: a worker's watchers,
    the scheduler's, the notifier's and the dashboard's readers). Each blocked read holds its
    connection for the whole block, so their number follows the partitions (up to 64 per queue, and a
    process may read several queues): such a client has no cap on its connections, and the service's
    other client, whose pool is capped, stays free for its heartbeat, registration and every other
    loop however many partitions there are."""
    topology = parse_topology(settings.redis_url, settings.redis_mode)
    size = UNCAPPED if blocking_reads else max(64, settings.worker_concurrency * 2)
    plain = settings.redis_plain  # redis-py without streamq's overrides (shared/redisfast.py)
    if topology.mode == "cluster":
        return redisfast.finish_client(_cluster(settings, topology, size), plain)  # same command API as Redis
    if topology.mode == "sentinel":
        return redisfast.finish_client(_sentinel(settings, topology), plain)
    pool = redisfast.pool_class(plain).from_url(
        settings.redis_url,
        decode_responses=True,
        health_check_interval=30,
        socket_keepalive=True,
        max_connections=size,
        timeout=20,
        retry=_retry(),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    # the client owns the pool: aclose() closes its connections; unless plain, commands packed in C
    return redisfast.finish_client(Redis.from_pool(pool), plain)


def _cluster(settings: Settings, topology: Topology, size: int) -> RedisCluster:
    options = _common(settings, topology)
    options.pop("retry_on_error")  # the cluster client retries connection/timeout/cluster-down errors itself
    return WaitingCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in topology.hosts],
        max_connections=min(size * 4, UNCAPPED),  # per node; past it callers wait (WaitingCluster)
        # a MOVED reply patches that slot in the map and the command follows it; never a periodic full
        # refresh, which in redis-py closes the whole client (every connection, also those in use by
        # blocked reads); connection errors (a node gone, a failover) still refresh the whole map
        reinitialize_steps=0,
        **options,
    )


POOL_WAIT_S = 20.0  # the longest a caller waits for a connection at the pool's cap (as the standalone pool)
_HOLDING: ContextVar[object | None] = ContextVar("streamq_cluster_permit", default=None)  # whose permit


class WaitingCluster(RedisCluster):  # type: ignore[misc]  # untyped in redis-py
    """redis-py's Cluster client, whose callers wait for a connection when a node's pool is at its cap,
    as the standalone blocking pool's do (up to ``POOL_WAIT_S``, then ``MaxConnectionsError``). redis-py
    raises that error at once instead, and the api answered 503 to part of a burst of 1,000
    simultaneous requests (``tests/integration/test_burst.py``).

    A command or a pipeline in flight holds one permit, and as many permits exist as a node's pool
    may hold connections: each holds at most one connection of a node at a time, so no node passes
    its cap. The permits are the client's, not a node's (redis-py picks the node inside the call, and
    a pipeline's per-node sends cannot be retried alone): while a node is unreachable its callers
    keep their permits through redis-py's retries (seconds), and at full load the others wait that
    long too. A call made while holding a permit of this client (a pipeline re-sending a redirected
    command one by one) does not take another. Pub/sub and WATCH transactions take connections
    without a permit (streamq uses neither on this client)."""

    def __init__(self, *args: Any, max_connections: int = UNCAPPED, **kwargs: Any) -> None:
        super().__init__(*args, max_connections=max_connections, **kwargs)
        self._permits = asyncio.Semaphore(max_connections)

    async def acquire_permit(self) -> Token[object | None] | None:
        """Take a permit (None: this context holds one already); give it back with :meth:`release_permit`."""
        if _HOLDING.get() is self:
            return None
        try:
            async with asyncio.timeout(POOL_WAIT_S):
                await self._permits.acquire()
        except TimeoutError:
            raise MaxConnectionsError(f"no connection free within {POOL_WAIT_S:g} s") from None
        return _HOLDING.set(self)

    def release_permit(self, token: Token[object | None] | None) -> None:
        if token is not None:
            _HOLDING.reset(token)
            self._permits.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        token = await self.acquire_permit()
        try:
            return await super().execute_command(*args, **kwargs)
        finally:
            self.release_permit(token)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:  # as RedisCluster.pipeline
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        return _WaitingPipeline(self, transaction)


class _WaitingPipeline(ClusterPipeline):  # type: ignore[misc]  # untyped in redis-py
    """A pipeline of a :class:`WaitingCluster`: sent under one permit of its client."""

    __slots__ = ()
    cluster_client: WaitingCluster

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        token = await self.cluster_client.acquire_permit()
        try:
            replies: list[Any] = await super().execute(raise_on_error, allow_redirections)
            return replies
        finally:
            self.cluster_client.release_permit(token)


class _SentinelPool(SentinelConnectionPool):  # type: ignore[misc]  # untyped in redis-py
    """The master's pool; closing it also closes the connections to the sentinels."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        for sentinel in self.sentinel_manager.sentinels:
            await sentinel.aclose()


def _sentinel_options(settings: Settings) -> dict[str, Any]:
    """How to talk to the sentinels themselves."""
    options: dict[str, Any] = {"decode_responses": True, "socket_timeout": 2.0, "socket_connect_timeout": 2.0}
    if settings.redis_sentinel_password:  # the sentinels' own auth; the URL's credentials are the servers'
        options["username"] = settings.redis_sentinel_username or None
        options["password"] = settings.redis_sentinel_password.get_secret_value()
    return options


def _sentinel(settings: Settings, topology: Topology) -> Redis:
    options = _common(settings, topology)
    manager = Sentinel(list(topology.hosts), sentinel_kwargs=_sentinel_options(settings), **options)
    return manager.master_for(topology.master, connection_pool_class=_SentinelPool, db=topology.db)


def route_to_key(client: Redis, key: str) -> dict[str, Any]:
    """Options that send a keyless command (WAIT) to the node owning ``key``: on a cluster, that
    node; elsewhere nothing (there is one master)."""
    if isinstance(client, RedisCluster):
        return {"target_nodes": client.get_node_from_key(key)}
    return {}


async def ping(client: Redis) -> None:
    """PING, raising unless Redis answers. A refusal to write is an answer: under MISCONF (a failed
    persistence check) Redis refuses PING too, yet it is there and serves reads."""
    try:
        await client.ping()
    except ResponseError as error:
        if refusal(error) is None:
            raise


async def connect(settings: Settings, attempts: int = 50, delay_s: float = 0.2) -> Redis:
    """Connect and ping, waiting for Redis to come up; fail with a clear error if it never does (after
    ``attempts`` pings ``delay_s`` apart, each given at most ``PING_TIMEOUT_S``, and at most that long
    in all plus one ping's time)."""
    client = make_client(settings)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + attempts * delay_s + PING_TIMEOUT_S
    for attempt in range(1, attempts + 1):
        try:
            async with asyncio.timeout(PING_TIMEOUT_S):  # a TLS port read as plain Redis never answers
                await ping(client)
            break
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            if attempt == attempts or loop.time() + delay_s > deadline:
                await client.aclose()
                reason = str(error) or f"no answer to PING within {PING_TIMEOUT_S:g} s"
                raise RuntimeError(f"cannot reach Redis at {redact(settings.redis_url)}: {reason}") from error
            await asyncio.sleep(delay_s)
    info = await client.info("server")  # one node's answer, also on a cluster (INFO goes to one node)
    version = tuple(int(p) for p in str(info.get("redis_version", "0.0.0")).split(".")[:3])
    if version < MIN_REDIS_VERSION:
        await client.aclose()
        raise RuntimeError(f"streamq needs Redis >= 7.0.5 (found {info.get('redis_version')})")
    return client


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (also for several hosts: cluster, sentinel), in
    its user info and in query parameters naming a password (redis-py reads ``?password=``)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = "&".join(_redact_param(param) for param in parts.query.split("&"))
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _redact_param(param: str) -> str:
    name, sep, _value = param.partition("=")
    return f"{name}=***" if sep and "password" in unquote(name).lower() else param


def make_sync_client(settings: Settings) -> Any:
    """A synchronous (redis-py, thread-safe pool) client for the configured topology, with the options
    :func:`make_client` gives its asyncio client (``decode_responses``, the reconnect budget, TLS, the
    Sentinel's own credentials). For the blocking client's direct transport (streamq/direct.py), which
    makes its script calls on its caller's thread. Standalone and Sentinel: commands packed by
    :class:`streamq.shared.redisfast.HiredisPacker` (unless ``STREAMQ_REDIS_PLAIN``)."""
    import redis
    from redis.cluster import ClusterNode as SyncNode
    from redis.cluster import RedisCluster as SyncCluster
    from redis.retry import Retry as SyncRetry
    from redis.sentinel import Sentinel as SyncSentinel

    topology = parse_topology(settings.redis_url, settings.redis_mode)
    options = _common(settings, topology)
    options["retry"] = SyncRetry(BACKOFF, retries=RETRIES)  # the back-off object is stateless
    if topology.mode == "cluster":
        options.pop("retry_on_error")
        nodes = [SyncNode(host, port) for host, port in topology.hosts]
        return SyncCluster(startup_nodes=nodes, reinitialize_steps=0, **options)
    packing = {} if settings.redis_plain else {"command_packer": redisfast.HiredisPacker()}  # stateless
    if topology.mode == "sentinel":
        manager = SyncSentinel(list(topology.hosts), sentinel_kwargs=_sentinel_options(settings), **options)
        return manager.master_for(topology.master, db=topology.db, **packing)
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        health_check_interval=30,
        socket_keepalive=True,
        retry=options["retry"],
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        **packing,
    )
