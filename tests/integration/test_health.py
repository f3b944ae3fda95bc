"""shared/health.py in-process: each probe state from seeded stamps, /metrics unchanged from
prometheus-client's own server, and the service registry's heartbeat recording Redis for /readyz."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server
from pydantic import ValidationError
from redis.asyncio import Redis

from streamq.shared import health, healthcheck
from streamq.shared.health import HEALTH, Health
from streamq.shared.registry import ServiceRegistration
from streamq.shared.settings import Settings, load_settings
from streamq.testing import free_port


def test_liveness_follows_the_loop_stamp() -> None:
    h = Health(liveness_stale_s=30)
    assert h.liveness()[0] == 200
    h.loop_beat = time.monotonic() - 31
    code, body = h.liveness()
    assert (code, body["status"], body["stale_after_s"]) == (503, "stale", 30)
    assert body["loop_age_s"] >= 31


def test_readiness_states() -> None:
    h = Health(redis_stale_s=15)
    ready, stop = asyncio.Event(), asyncio.Event()
    assert h.readiness() == (503, {"status": "starting", "redis_age_s": None, "stale_after_s": 15})
    h.ready, h.stop = ready, stop
    h.redis_ok()
    assert h.readiness()[1]["status"] == "starting"  # Redis answered but the service is not started
    ready.set()
    code, body = h.readiness()
    assert (code, body["status"]) == (200, "ok") and 0 <= body["redis_age_s"] < 15
    h.redis_at = time.monotonic() - 16
    code, body = h.readiness()
    assert (code, body["status"]) == (503, "stale") and body["redis_age_s"] >= 16
    h.redis_ok()
    stop.set()  # SIGTERM: 503 at once, however fresh Redis is
    code, body = h.readiness()
    assert (code, body["status"]) == (503, "stopping")


def test_configure_derives_both_windows_from_settings() -> None:
    h = Health()
    h.configure(Settings(liveness_stale_s=7, heartbeat_s=2, _env_file=None))  # type: ignore[call-arg]
    assert (h.liveness_stale_s, h.redis_stale_s) == (7, 6)
    h.configure(Settings(heartbeat_s=0.2, _env_file=None))  # type: ignore[call-arg]
    assert (h.liveness_stale_s, h.redis_stale_s) == (30, 3)


def test_metrics_are_byte_identical_to_prometheus_clients_server() -> None:
    registry = CollectorRegistry()
    Counter("streamq_probe_test", "a counter", ["queue"], registry=registry).labels("default").inc(3)
    ours_server = health.start("127.0.0.1", 0, Health(), registry)
    theirs_server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    ours, theirs = ours_server.server_address[1], theirs_server.server_address[1]
    try:
        for path in ["/metrics", "/metrics?name[]=streamq_probe_test_total", "/"]:
            a = httpx.get(f"http://127.0.0.1:{ours}{path}", headers={"Accept-Encoding": "identity"})
            b = httpx.get(f"http://127.0.0.1:{theirs}{path}", headers={"Accept-Encoding": "identity"})
            assert (a.status_code, a.content) == (b.status_code, b.content), path
            assert {k: v for k, v in a.headers.items() if k != "date"} == {
                k: v for k, v in b.headers.items() if k != "date"
            }
        assert b'streamq_probe_test_total{queue="default"} 3.0' in a.content
        gz = httpx.get(f"http://127.0.0.1:{ours}/metrics", headers={"Accept-Encoding": "gzip"})
        assert gz.headers["content-encoding"] == "gzip" and b"streamq_probe_test_total" in gz.content
    finally:
        for server in (ours_server, theirs_server):
            server.shutdown()
            server.server_close()


def test_probe_routes_answer_json() -> None:
    server = health.start("127.0.0.1", 0, Health(), CollectorRegistry())
    port = server.server_address[1]
    try:
        live = httpx.get(f"http://127.0.0.1:{port}/livez")
        assert live.status_code == 200 and live.headers["content-type"] == "application/json"
        assert live.json()["status"] == "ok"
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "starting"
    finally:
        server.shutdown()
        server.server_close()


async def test_watch_runs_the_pulse_beside_the_service_and_exposes_its_events() -> None:
    h = Health()
    h.loop_beat = 0.0  # as if the loop had never pulsed
    ready, stop = asyncio.Event(), asyncio.Event()
    seen: list[tuple[int, str]] = []

    async def service(stop_event: asyncio.Event) -> None:
        ready.set()
        h.redis_ok()
        await asyncio.sleep(0)  # the pulse task stamps once
        seen.append((h.liveness()[0], h.readiness()[1]["status"]))
        stop_event.set()
        seen.append((h.liveness()[0], h.readiness()[1]["status"]))

    await health.watch(service, ready, h)(stop)
    assert seen == [(200, "ok"), (200, "stopping")]
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "health-pulse"]  # cancelled and awaited


async def test_the_registry_heartbeat_records_redis_for_readiness(redis: Redis, settings: Settings) -> None:
    HEALTH.redis_at = None
    registration = ServiceRegistration.for_settings(redis, settings, kind="worker", metrics_port=9100)
    await registration.tick()
    assert HEALTH.redis_at is not None and time.monotonic() - HEALTH.redis_at < HEALTH.redis_stale_s
    assert await redis.zscore(registration.keys.services, registration.service_id) is not None
    await registration.stop()  # never started: just unregisters


def test_the_container_healthcheck_defaults_to_the_services_own_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m streamq.shared.healthcheck``: /readyz on STREAMQ_METRICS_PORT without a URL, /livez with --live."""
    h = Health()
    server = health.start("127.0.0.1", 0, h, CollectorRegistry())
    port = server.server_address[1]
    monkeypatch.delenv("STREAMQ_HEALTHCHECK_URL", raising=False)
    monkeypatch.setenv("STREAMQ_METRICS_HOST", "0.0.0.0")
    monkeypatch.setenv("STREAMQ_METRICS_PORT", str(port))
    try:
        assert healthcheck.default_url(load_settings()) == f"http://127.0.0.1:{port}/readyz"
        assert (healthcheck.main([]), healthcheck.main(["--live"])) == (1, 0)  # starting, but alive
        ready = asyncio.Event()
        ready.set()
        h.ready = ready
        h.redis_ok()
        assert healthcheck.main([]) == 0
        h.loop_beat = time.monotonic() - h.liveness_stale_s - 1
        assert healthcheck.main(["--live"]) == 1
        assert healthcheck.main([]) == 0
        monkeypatch.setenv("STREAMQ_HEALTHCHECK_URL", f"http://127.0.0.1:{free_port()}/readyz")
        assert healthcheck.main([]) == 1  # the URL wins over the default (nothing listens there)
    finally:
        server.shutdown()
        server.server_close()


def test_a_liveness_window_shorter_than_two_pulses_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"liveness_stale_s\n.*greater than or equal to 2"):
        Settings(liveness_stale_s=1, _env_file=None)  # type: ignore[call-arg]
