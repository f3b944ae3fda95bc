"""Forwarded headers (``X-Forwarded-For``, ``X-Forwarded-Proto``) count only from configured proxies,
in the api and the dashboard alike: real processes, requests from loopback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from streamq.shared.auth import config_line, new_secret
from streamq.shared.settings import Settings
from streamq.testing import RedisServer, Stack

pytestmark = pytest.mark.e2e
SECRET = new_secret()


@contextmanager
def running(redis_server: RedisServer, tmp_path: Path, service: str, **env: str) -> Iterator[Stack]:
    stack = Stack(redis_server, tmp_path, **env)
    stack.start(service)
    try:
        yield stack
    finally:
        stack.close()


def stats_codes(stack: Stack, forwarded_for: list[str | None]) -> list[int]:
    """``GET /api/stats`` once per entry, with that ``X-Forwarded-For`` (None: without the header)."""
    codes = []
    with httpx.Client(base_url=stack.api_url, timeout=10) as http:
        for address in forwarded_for:
            headers = {"x-forwarded-for": address} if address else {}
            codes.append(http.get("/api/stats", headers=headers).status_code)
    return codes


def test_api_rate_limit_ignores_forwarded_for_unless_from_a_trusted_proxy(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    rotating: list[str | None] = [f"203.0.113.{i}" for i in range(1, 7)]
    with running(redis_server, tmp_path, "api", STREAMQ_RATE_LIMIT="1/h burst 3") as stack:
        # no trusted proxy: every request is the loopback client's, whatever it claims
        assert stats_codes(stack, rotating) == [200, 200, 200, 429, 429, 429]
    with running(
        redis_server, tmp_path, "api", STREAMQ_RATE_LIMIT="1/h burst 3", STREAMQ_API_TRUSTED_PROXIES="127.0.0.1"
    ) as stack:
        # behind a configured proxy each forwarded client has its own bucket, the proxy's own one too
        assert stats_codes(stack, rotating) == [200] * 6
        assert stats_codes(stack, ["198.51.100.7"] * 4) == [200, 200, 200, 429]
        assert stats_codes(stack, [None]) == [200]


def login_cookie(stack: Stack) -> str:
    """The ``Set-Cookie`` of a login posted with ``X-Forwarded-Proto: https`` over plain http."""
    with httpx.Client(base_url=stack.dashboard_url, timeout=10) as http:
        response = http.post("/login", data={"key": SECRET}, headers={"x-forwarded-proto": "https"})
        assert response.status_code == 303, response.text
        return response.headers["set-cookie"].lower()


def test_dashboard_cookie_is_secure_only_behind_a_trusted_proxy(redis_server: RedisServer, tmp_path: Path) -> None:
    keys = config_line("ops", ["read"], SECRET)
    with running(redis_server, tmp_path, "dashboard", STREAMQ_API_KEYS=keys) as stack:
        flags = login_cookie(stack)
        assert "httponly" in flags and "secure" not in flags
    with running(
        redis_server, tmp_path, "dashboard", STREAMQ_API_KEYS=keys, STREAMQ_DASHBOARD_TRUSTED_PROXIES="127.0.0.1"
    ) as stack:
        assert "secure" in login_cookie(stack)


def test_trusted_proxies_are_addresses_or_networks() -> None:
    settings = Settings(
        api_trusted_proxies=" 10.0.0.0/8, 192.168.1.9,::1", dashboard_trusted_proxies="10.1.2.3/16",  # type: ignore[arg-type]
        _env_file=None,  # type: ignore[call-arg]
    )  # fmt: skip
    assert settings.api_trusted_proxies == ["10.0.0.0/8", "192.168.1.9", "::1"]
    assert settings.dashboard_trusted_proxies == ["10.1.0.0/16"]
    assert Settings(_env_file=None).api_trusted_proxies == []  # type: ignore[call-arg]  # nothing trusted by default
    with pytest.raises(ValueError, match=r"'proxy\.local' is not an IP address or network"):
        Settings(api_trusted_proxies="10.0.0.1,proxy.local", _env_file=None)  # type: ignore[arg-type,call-arg]
