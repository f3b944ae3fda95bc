"""The service registry: every process of every service announces itself in Redis.

Each process runs one :class:`ServiceRegistration` loop. Its first tick registers the process (a hash
with a TTL plus an entry in the registry's sorted set); every ``heartbeat_s`` it refreshes both in
one pipeline; :meth:`ServiceRegistration.stop` removes it. ``GET /api/services`` lists what is live,
and the dashboard and Prometheus (``/api/services/prometheus-targets``) find every ``/metrics`` there.

Wiring it into a service is one line next to its other loops::

    loops.append(ServiceRegistration.for_settings(redis, settings, kind="scheduler", metrics_port=port))
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urlsplit

from pydantic import BaseModel, Field
from redis.asyncio import Redis

from streamq.shared.health import HEALTH
from streamq.shared.keys import KeySchema
from streamq.shared.loops import PeriodicLoop
from streamq.shared.models import ms_to_dt
from streamq.shared.settings import Settings

log = logging.getLogger("streamq.registry")
UNREGISTER_WITHIN_S = 1.0  # a shutdown's last Redis call (Redis down: the registration's TTL removes it)

STATIC_FIELDS = ("id", "kind", "host", "pid", "metrics_url", "version", "queue", "started_at")
Info = Callable[[], Mapping[str, int | str]]


def package_version() -> str:
    try:
        return version("streamq")
    except PackageNotFoundError:  # pragma: no cover - the project is always installed
        return "0+unknown"


def advertised_host(bind_host: str, advertise: str | None = None) -> str:
    """The host name others use to reach a server bound to ``bind_host``."""
    if advertise:
        return advertise
    if bind_host in ("", "0.0.0.0", "::", "[::]"):
        return socket.gethostname()
    return bind_host


def metrics_url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"


def ttl_for(heartbeat_s: float) -> int:
    """Seconds a registration survives without a heartbeat: three beats, at least 3 s."""
    return max(3, int(heartbeat_s * 3 + 0.999))


class ServiceInfo(BaseModel):
    """One live process of one service, as registered."""

    id: str
    kind: str
    host: str
    pid: int
    metrics_url: str
    version: str
    queue: str
    started_at: datetime
    last_heartbeat: datetime
    uptime_s: float = Field(description="seconds since the process started")
    info: dict[str, int | str] = Field(default_factory=dict, description="kind-specific figures")


class ServiceRegistration(PeriodicLoop):
    """Registers one process and keeps its registration alive; :meth:`stop` unregisters it."""

    name = "service-registry"

    def __init__(
        self,
        redis: Redis,
        keys: KeySchema,
        *,
        kind: str,
        metrics_url: str,
        heartbeat_s: float,
        info: Info | None = None,
        service_id: str | None = None,
    ) -> None:
        super().__init__(heartbeat_s)
        self.redis = redis
        self.keys = keys
        self.info = info
        self.ttl_s = ttl_for(heartbeat_s)
        host = socket.gethostname()
        self.service_id = service_id or f"{kind}:{host}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.static: dict[str, str | int] = {
            "id": self.service_id,
            "kind": kind,
            "host": host,
            "pid": os.getpid(),
            "metrics_url": metrics_url,
            "version": package_version(),
            "queue": keys.queue,
            "started_at": int(time.time() * 1000),
        }

    @classmethod
    def for_settings(
        cls,
        redis: Redis,
        settings: Settings,
        *,
        kind: str,
        metrics_port: int,
        metrics_host: str | None = None,
        info: Info | None = None,
        service_id: str | None = None,
    ) -> ServiceRegistration:
        """The usual wiring: key prefix, queue and heartbeat from the settings; ``/metrics`` on
        ``metrics_host`` (default ``STREAMQ_METRICS_HOST``) and the bound ``metrics_port``."""
        host = advertised_host(metrics_host or settings.metrics_host, settings.advertise_host)
        return cls(
            redis,
            KeySchema(settings.key_prefix, settings.queue),
            kind=kind,
            metrics_url=metrics_url(host, metrics_port),
            heartbeat_s=settings.heartbeat_s,
            info=info,
            service_id=service_id,
        )

    async def tick(self) -> None:
        now = int(time.time() * 1000)
        key = self.keys.service(self.service_id)
        fields: dict[str, str | int] = {**self.static, "last_heartbeat": now}
        if self.info is not None:
            fields.update({f"info.{name}": value for name, value in self.info().items()})
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, mapping=fields)
        pipe.expire(key, self.ttl_s)
        pipe.zadd(self.keys.services, {self.service_id: now})
        pipe.zremrangebyscore(self.keys.services, "-inf", now - self.ttl_s * 1000)
        await pipe.execute()
        HEALTH.redis_ok()  # readiness (/readyz): Redis answered this process just now

    async def stop(self) -> None:
        await super().stop()
        if not await unregister(self.redis, self.keys.service(self.service_id), self.keys.services, self.service_id):
            log.warning("could not unregister; the registration expires by itself", extra={"id": self.service_id})


async def unregister(redis: Redis, key: str, index: str, member: str) -> bool:
    """At shutdown: delete a registration's hash and its index entry, within ``UNREGISTER_WITHIN_S``.
    False when Redis did not answer in time or failed (gone at shutdown: the hash's TTL removes it)."""
    try:
        async with asyncio.timeout(UNREGISTER_WITHIN_S):
            pipe = redis.pipeline(transaction=False)
            pipe.delete(key)
            pipe.zrem(index, member)
            await pipe.execute()
    except Exception:
        return False
    return True


def decode_service(raw: Mapping[str, str], now_ms: int) -> ServiceInfo:
    info: dict[str, int | str] = {}
    for name, value in raw.items():
        if name.startswith("info."):
            info[name[5:]] = int(value) if value.lstrip("-").isdigit() else value
    started = int(raw["started_at"])
    return ServiceInfo(
        id=raw["id"],
        kind=raw["kind"],
        host=raw["host"],
        pid=int(raw["pid"]),
        metrics_url=raw["metrics_url"],
        version=raw.get("version", ""),
        queue=raw.get("queue", ""),
        started_at=ms_to_dt(started),  # type: ignore[arg-type]
        last_heartbeat=ms_to_dt(raw["last_heartbeat"]),  # type: ignore[arg-type]
        uptime_s=max(0.0, (now_ms - started) / 1000),
        info=info,
    )


async def live_services(redis: Redis, keys: KeySchema) -> list[ServiceInfo]:
    """Every registration whose hash is still alive, by kind then start time; two round trips."""
    ids: list[str] = await redis.zrange(keys.services, 0, -1)
    if not ids:
        return []
    pipe = redis.pipeline(transaction=False)
    for service_id in ids:
        pipe.hgetall(keys.service(service_id))
    now = int(time.time() * 1000)
    out = [decode_service(raw, now) for raw in await pipe.execute() if raw and "last_heartbeat" in raw]
    return sorted(out, key=lambda s: (s.kind, s.started_at, s.id))


def prometheus_targets(services: list[ServiceInfo]) -> list[dict[str, object]]:
    """Prometheus ``file_sd`` / ``http_sd`` target groups: one group per process."""
    groups: list[dict[str, object]] = []
    for service in services:
        url = urlsplit(service.metrics_url)
        groups.append(
            {
                "targets": [url.netloc],
                "labels": {
                    "job": f"streamq-{service.kind}",
                    "__metrics_path__": url.path or "/metrics",
                    "__scheme__": url.scheme or "http",
                    "streamq_kind": service.kind,
                    "streamq_id": service.id,
                    "streamq_queue": service.queue,
                },
            }
        )
    return groups
