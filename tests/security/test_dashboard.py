"""The dashboard against hostile clients, as real processes (api and dashboard) with real Redis: its
``/api/*`` pass-through keeps the api's body limit, its own routes need the scopes the api asks for
the same data, and its login is throttled."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from streamq.dashboard.login import COOKIE
from streamq.dashboard.throttle import MAX_FAILURES, PREFIX_CHARS, WINDOW_S
from streamq.shared.auth import config_line, new_secret
from streamq.testing import RedisServer, Stack
from tests.support import chunked_upload, rss_kib

pytestmark = pytest.mark.e2e
SUBMITTER, READER, SERVICE, OPS = new_secret(), new_secret(), new_secret(), new_secret()
KEYS = " ".join(
    [
        config_line("ops", ["submit", "read", "admin"], OPS),  # the tests' own calls to the api
        config_line("bot", ["submit"], SUBMITTER),
        config_line("reader", ["read"], READER),
        config_line("dashboard", ["read"], SERVICE),
    ]
)
# the dashboard's own data routes: what the api serves only to read keys (events, history, services, config)
READ_ROUTES = ("/dash/events", "/dash/history", "/dash/config", "/dash/services", "/metrics")


@pytest.fixture
def open_stack(redis_server: RedisServer, tmp_path: Path) -> Iterator[Stack]:
    """api and dashboard without keys."""
    stack = Stack(redis_server, tmp_path)
    stack.start("api", "dashboard")
    yield stack
    stack.close()


@pytest.fixture
def keyed(redis_server: RedisServer, tmp_path: Path) -> Iterator[Stack]:
    """api and dashboard with API keys (a submit-only key, a read key, the dashboard's own read key)."""
    stack = Stack(redis_server, tmp_path, STREAMQ_API_KEYS=KEYS, STREAMQ_DASHBOARD_API_KEY=SERVICE)
    stack.http.headers["authorization"] = f"Bearer {OPS}"
    stack.start("api", "dashboard")
    yield stack
    stack.close()


@contextlib.contextmanager
def logged_in(stack: Stack, secret: str) -> Iterator[httpx.Client]:
    """A client holding a dashboard session of the key ``secret`` (logged in through the form)."""
    with httpx.Client(base_url=stack.dashboard_url, timeout=10) as http:
        response = http.post("/login", data={"key": secret})
        assert response.status_code == 303 and COOKIE in http.cookies, response.text
        yield http


def status_of(http: httpx.Client, path: str) -> tuple[int, str]:
    """Status and start of the body of a GET, without reading an event stream to its end."""
    with http.stream("GET", path) as response:
        first = next(response.iter_bytes(), b"")
        return response.status_code, first.decode(errors="replace")


def test_pass_through_cuts_a_large_upload_off_at_the_apis_limit(open_stack: Stack) -> None:
    dashboard = open_stack.services["dashboard"]
    warm = httpx.post(f"{open_stack.dashboard_url}/api/tasks", json={"type": "noop"}, timeout=10)
    assert warm.status_code == 201, warm.text  # the pass-through works for a normal body
    before = rss_kib(dashboard.pid)
    sent, reply = chunked_upload(open_stack.dashboard_port, "/api/tasks", 256 * 1024**2)
    grew = rss_kib(dashboard.pid) - before
    print(f"sent {sent / 1024**2:.1f} MiB before the dashboard answered; its RSS grew {grew} KiB")
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert sent < 64 * 1024**2  # cut off near the 1 MiB limit, not after the whole upload
    assert grew < 8 * 1024
    # the same 413 for a declared length over the limit, before any of the body is read
    big = httpx.post(
        f"{open_stack.dashboard_url}/api/tasks/batch", content=b"x" * (1024 * 1024 + 1), timeout=10,
        headers={"content-type": "application/json"},
    )  # fmt: skip
    assert big.status_code == 413 and "larger than 1048576 bytes" in big.json()["detail"][0]["msg"]
    # and the dashboard still serves
    assert httpx.get(f"{open_stack.dashboard_url}/api/stats", timeout=10).status_code == 200


def test_a_submit_only_session_reads_nothing_the_api_keeps_for_read_keys(keyed: Stack) -> None:
    keyed.submit(type="noop")  # something for the feed, the history and the services to show
    with logged_in(keyed, SUBMITTER) as bot:
        assert bot.get("/dash/session").json()["scopes"] == ["submit"]  # the page still learns its scopes
        for path in READ_ROUTES:
            status, body = status_of(bot, path)
            assert status == 403, (path, body)
            assert "the key 'bot' lacks the 'read' scope" in body, (path, body)
        assert status_of(bot, "/api/stats")[0] == 403  # as the api itself answers this key
        # what the key may do still works through the dashboard
        token = bot.get("/dash/session").json()["csrf"]
        created = bot.post("/api/tasks", json={"type": "noop"}, headers={"x-csrf-token": token})
        assert created.status_code == 201, created.text
    with logged_in(keyed, READER) as reader:
        for path in READ_ROUTES:
            status, body = status_of(reader, path)
            assert status == 200, (path, body)


def log_in_from(stack: Stack, secret: str, source: str) -> httpx.Response:
    """``POST /login`` from the loopback address ``source`` (each 127.0.0.0/8 address is a client of its own)."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=stack.dashboard_url, transport=transport, timeout=10) as http:
        return http.post("/login", data={"key": secret})


def assert_throttled(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert 0 < int(response.headers["retry-after"]) <= WINDOW_S
    assert "Too many failed logins" in response.text and COOKIE not in response.cookies


def test_login_failures_are_throttled_per_address_and_per_key_prefix(keyed: Stack, redis_server: RedisServer) -> None:
    # successes give their attempt back: a client logging in often is never throttled
    for _ in range(MAX_FAILURES + 2):
        assert log_in_from(keyed, READER, "127.0.0.2").status_code == 303
    # one address guessing: refused once its failures are used up, even with the right key (no oracle)
    for _ in range(MAX_FAILURES):
        assert log_in_from(keyed, new_secret(), "127.0.0.3").status_code == 401
    assert_throttled(log_in_from(keyed, new_secret(), "127.0.0.3"))
    assert_throttled(log_in_from(keyed, READER, "127.0.0.3"))
    assert log_in_from(keyed, READER, "127.0.0.4").status_code == 303  # other clients log in as before
    # many addresses completing one key prefix: that prefix is refused, from anywhere
    known = new_secret()[:PREFIX_CHARS]
    for i in range(MAX_FAILURES):
        guess = known + new_secret()[PREFIX_CHARS:]
        assert log_in_from(keyed, guess, f"127.0.1.{i + 1}").status_code == 401
    assert_throttled(log_in_from(keyed, known + new_secret()[PREFIX_CHARS:], "127.0.2.1"))
    assert log_in_from(keyed, SUBMITTER, "127.0.2.1").status_code == 303  # another key from there
    # the state is counters that expire with their window
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        names = client.keys(f"{keyed.prefix}:dashlogin:*")  # a test may scan; the services never do
        assert len(names) >= 2 + MAX_FAILURES
        assert all(0 < client.ttl(name) <= WINDOW_S for name in names)
        assert not any(known in name for name in names)  # the key prefix is stored hashed
    finally:
        client.close()
