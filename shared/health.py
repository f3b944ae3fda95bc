"""Liveness and readiness of the worker, scheduler and notifier, served next to ``/metrics``.

One HTTP server per process (a thread, as prometheus-client's own) answers:

- ``/livez``: 200 while the service's asyncio loop is responsive (a tiny task stamps
  ``time.monotonic()`` every second; stale after ``STREAMQ_LIVENESS_STALE_S``). Never touches Redis.
- ``/readyz``: 200 once the service is started (its ``ready`` Event), its last successful Redis
  command is recent (the service-registry heartbeat records it; stale after three heartbeats, the
  registration's TTL, at least 3 s), its intake is not stuck (a worker's: no take or blocking read
  in flight for longer than the read's block plus that same bound; a worker whose slots are all busy
  has none in flight, so long tasks never fail it) and it is not stopping (SIGTERM turns it 503 at once).
- anything else: prometheus-client's own WSGI app, so ``/metrics`` is byte-identical.

Wiring in a service's ``main()``::

    port = health.serve(settings.metrics_host, settings.metrics_port, settings)
    service = Worker(settings, metrics_port=port)
    lifecycle.run(health.watch(service.run, service.ready))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app

from streamq.shared.settings import Settings

log = logging.getLogger("streamq.health")

PULSE_S = 1.0
LIVE_PATH, READY_PATH = "/livez", "/readyz"
Body = dict[str, Any]
Run = Callable[[asyncio.Event], Awaitable[None]]
StartResponse = Callable[..., Any]


def redis_stale_s(heartbeat_s: float) -> float:
    """Three service-registry heartbeats, at least 3 s (as the registration's own TTL)."""
    return max(3.0, 3 * heartbeat_s)


class Health:
    """What ``/livez`` and ``/readyz`` report; written by the asyncio loop, read by the server thread
    (plain floats and Event flags: single reads, safe under the GIL)."""

    def __init__(self, liveness_stale_s: float = 30.0, redis_stale_s: float = 15.0) -> None:
        self.liveness_stale_s = liveness_stale_s
        self.redis_stale_s = redis_stale_s
        self.loop_beat = time.monotonic()  # the loop gets liveness_stale_s to start pulsing
        self.redis_at: float | None = None
        self.ready: asyncio.Event | None = None
        self.stop: asyncio.Event | None = None
        self.intake_age: Callable[[], float] | None = None  # a worker's oldest intake round trip in flight
        self.intake_stale_s = redis_stale_s

    def watch_intake(self, age: Callable[[], float], block_s: float) -> None:
        """Fail readiness while an intake round trip (``age()`` s old) outlasts ``block_s`` + the Redis bound."""
        self.intake_age = age
        self.intake_stale_s = block_s + self.redis_stale_s

    def configure(self, settings: Settings) -> None:
        self.liveness_stale_s = settings.liveness_stale_s
        self.redis_stale_s = redis_stale_s(settings.heartbeat_s)
        self.loop_beat = time.monotonic()

    def redis_ok(self) -> None:
        """Record a successful Redis round trip (called by the loops that talk to Redis anyway)."""
        self.redis_at = time.monotonic()

    def liveness(self) -> tuple[int, Body]:
        age = time.monotonic() - self.loop_beat
        ok = age < self.liveness_stale_s
        body = {"status": "ok" if ok else "stale", "loop_age_s": round(age, 3), "stale_after_s": self.liveness_stale_s}
        return (200 if ok else 503), body

    def readiness(self) -> tuple[int, Body]:
        now = time.monotonic()
        redis_age = None if self.redis_at is None else round(now - self.redis_at, 3)
        intake_age = 0.0 if self.intake_age is None else self.intake_age()
        if self.stop is not None and self.stop.is_set():
            status = "stopping"
        elif self.ready is None or not self.ready.is_set() or redis_age is None:
            status = "starting"
        elif redis_age >= self.redis_stale_s:
            status = "stale"
        elif intake_age >= self.intake_stale_s:
            status = "stuck"
        else:
            status = "ok"
        body = {"status": status, "redis_age_s": redis_age, "stale_after_s": self.redis_stale_s}
        if self.intake_age is not None:
            body |= {"intake_age_s": round(intake_age, 3), "intake_stale_after_s": self.intake_stale_s}
        return (200 if status == "ok" else 503), body

    async def pulse(self) -> None:
        """Stamp the loop's liveness every second until cancelled."""
        while True:
            self.loop_beat = time.monotonic()
            await asyncio.sleep(PULSE_S)


HEALTH = Health()  # one per process, like prometheus-client's REGISTRY


def watch(run: Run, ready: asyncio.Event, health: Health = HEALTH) -> Run:
    """``run`` with the liveness pulse beside it and ``ready``/``stop`` visible to ``/readyz``."""

    async def watched(stop: asyncio.Event) -> None:
        health.ready, health.stop = ready, stop
        pulse = asyncio.create_task(health.pulse(), name="health-pulse")
        try:
            await run(stop)
        finally:
            pulse.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pulse

    return watched


def make_app(
    health: Health = HEALTH, registry: CollectorRegistry = REGISTRY
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The WSGI app: the two probes, and prometheus-client's app for everything else."""
    metrics_app = make_wsgi_app(registry)
    probes = {LIVE_PATH: health.liveness, READY_PATH: health.readiness}

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        probe = probes.get(environ.get("PATH_INFO", ""))
        if probe is None:
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        code, body = probe()
        payload = orjson.dumps(body)
        status = "200 OK" if code == 200 else "503 Service Unavailable"
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        start_response(status, headers)
        return [payload]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the log."""


def start(host: str, port: int, health: Health = HEALTH, registry: CollectorRegistry = REGISTRY) -> WSGIServer:
    """Start the server on a daemon thread; ``shutdown()`` and ``server_close()`` stop it."""
    family, _type, _proto, _name, sockaddr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    server_class: type[_Server] = type("HealthServer", (_Server,), {"address_family": family})
    server: WSGIServer = make_server(
        str(sockaddr[0]), port, make_app(health, registry), server_class, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="metrics-health", daemon=True).start()
    return server


def serve(host: str, port: int, settings: Settings | None = None, health: Health = HEALTH) -> int:
    """Serve ``/metrics``, ``/livez`` and ``/readyz`` for the process; returns the bound port
    (``port=0`` picks one)."""
    if settings is not None:
        health.configure(settings)
    bound = int(start(host, port, health).server_address[1])
    base = f"http://{host}:{bound}"
    log.info("metrics and health served", extra={"url": f"{base}/metrics", "live": LIVE_PATH, "ready": READY_PATH})
    return bound
