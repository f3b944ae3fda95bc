"""Dashboard login with API keys (issue 8), in real chromium against a real api and dashboard with
``STREAMQ_API_KEYS`` set: no action without a session, scopes decide what the page offers, cookie
flags, cross-site requests refused, logout."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import redis
from playwright.sync_api import Browser, Page, expect

from streamq.dashboard.app import warn_about_service_key
from streamq.dashboard.login import COOKIE
from streamq.shared.auth import config_line, digest, new_secret
from streamq.shared.settings import load_settings
from streamq.testing import RedisServer, Stack, free_port, wait_until
from tests.browser.conftest import shot
from tests.browser.pages import open_page

pytestmark = pytest.mark.e2e

READER, ACTOR, SERVICE = new_secret(), new_secret(), new_secret()


@pytest.fixture(scope="module")
def keyed(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    keys = " ".join(
        [
            config_line("reader", ["read"], READER),
            config_line("ops", ["read", "submit", "admin"], ACTOR),
            config_line("dashboard", ["read"], SERVICE),
        ]
    )
    stack = Stack(
        redis_server,
        tmp_path_factory.mktemp("login-logs"),
        STREAMQ_API_KEYS=keys,
        STREAMQ_DASHBOARD_API_KEY=SERVICE,
        STREAMQ_DASHBOARD_TRUSTED_PROXIES="127.0.0.1",
    )
    stack.http.headers["authorization"] = f"Bearer {ACTOR}"  # the tests' own calls to the api
    stack.start("api", "worker", "dashboard")
    yield stack
    stack.close()


@pytest.fixture
def page(browser: Browser, keyed: Stack) -> Iterator[Page]:
    with open_page(browser, keyed.dashboard_url) as page:
        yield page


def log_in(page: Page, secret: str) -> None:
    page.goto("/login")
    page.get_by_label("API key").fill(secret)
    page.get_by_role("button", name="Log in").click()


def scheduled_task(stack: Stack) -> str:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    return str(stack.submit(type="echo", payload="later", scheduled_for=later)["id"])


def failed_task(stack: Stack) -> str:
    task_id = str(stack.submit(type="fail", payload="for the dead letters", max_retries=0)["id"])
    wait_until(lambda: stack.task(task_id)["status"] == "failed", 15, "the task failed")
    return task_id


def fetch(page: Page, method: str, path: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A request made by the page itself (same origin, the session cookie attached by the browser)."""
    result: dict[str, Any] = page.evaluate(
        """async ([method, path, headers]) => {
            const res = await fetch(path, { method, headers });
            return { status: res.status, body: await res.text() };
        }""",
        [method, path, headers or {}],
    )
    return result


def session_cookie(page: Page) -> dict[str, Any]:
    cookies = [c for c in page.context.cookies() if c["name"] == COOKIE]
    assert len(cookies) == 1, cookies
    return dict(cookies[0])


def test_without_a_session_nothing_answers(page: Page, keyed: Stack) -> None:
    task_id = scheduled_task(keyed)
    with httpx.Client(base_url=keyed.dashboard_url, timeout=10) as http:
        for path in ("/api/stats", f"/api/tasks/{task_id}", "/dash/events", "/dash/session", "/dash/history"):
            response = http.get(path)
            assert response.status_code == 401, (path, response.text)
            assert "log in" in response.json()["detail"]
        cancel = http.post(f"/api/tasks/{task_id}/cancel")
        assert cancel.status_code == 401
        page_response = http.get("/")
        assert page_response.status_code == 303 and page_response.headers["location"] == "/login"
        assert http.get("/login").status_code == 200
        assert http.get("/static/style.css").status_code == 200
        assert http.get("/favicon.ico").status_code == 200  # the login page's tab has its icon too
        assert http.get("/healthz").json() == {"status": "ok"}  # the container health check
        assert http.get("/metrics").status_code == 401
        # a scraper may read the dashboard's /metrics with a read key
        scraped = http.get("/metrics", headers={"authorization": f"Bearer {SERVICE}"})
        assert scraped.status_code == 200 and "python_info" in scraped.text
    assert keyed.task(task_id)["status"] == "scheduled"
    page.goto("/#/tasks")
    expect(page).to_have_url(re.compile(re.escape(keyed.dashboard_url) + r"/login(#.*)?$"))
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    shot(page, "login-page")


def test_wrong_key_is_refused(page: Page, keyed: Stack) -> None:
    log_in(page, "sq_" + "x" * 43)
    expect(page.get_by_test_id("login-error")).to_have_text("That API key is not valid.")
    expect(page).to_have_url(re.compile(re.escape(keyed.dashboard_url) + r"/login(#.*)?$"))
    assert [c for c in page.context.cookies() if c["name"] == COOKIE] == []
    with httpx.Client(base_url=keyed.dashboard_url, timeout=10) as http:
        # the key's name or its configured digest are not secrets that log in
        for guess in ("reader", digest(READER).hex(), ""):
            response = http.post("/login", data={"key": guess})
            assert response.status_code == 401 and COOKIE not in response.cookies
    shot(page, "login-wrong-key")


def test_read_only_key_sees_no_actions_and_cannot_post(page: Page, keyed: Stack) -> None:
    task_id = scheduled_task(keyed)
    failed = {"id": failed_task(keyed)}
    log_in(page, READER)
    expect(page.get_by_test_id("who")).to_have_text("reader (read)")
    page.goto("/#/tasks")
    row = page.locator(f'tr[data-task="{task_id}"]')
    expect(row).to_be_visible()
    expect(row.locator("button")).to_have_count(0)
    expect(page.locator("[data-action]:not([data-action=logout])")).to_have_count(0)
    expect(page.locator('nav a[data-route="create"]')).to_be_hidden()
    page.goto(f"/#/task/{task_id}")
    expect(page.get_by_text("later")).to_be_visible()
    expect(page.get_by_test_id("reschedule")).to_be_hidden()
    page.goto("/#/create")
    expect(page.get_by_test_id("no-scope")).to_be_visible()
    expect(page.get_by_role("button", name="Create task")).to_have_count(0)
    page.goto("/#/schedules")
    expect(page.get_by_test_id("no-schedules")).to_be_visible()
    expect(page.get_by_role("form", name="New schedule")).to_have_count(0)
    page.goto("/#/dead")
    expect(page.locator(f'tr[data-task="{failed["id"]}"]')).to_be_visible()
    expect(page.locator("main [data-action]")).to_have_count(0)  # no Retry, Delete or "Retry all failed"
    shot(page, "login-read-only")
    # the page's own request, with the session's CSRF token: the api refuses it for the key's scopes
    csrf = fetch(page, "GET", "/dash/session")
    token = json.loads(csrf["body"])["csrf"]
    for method, path in (
        ("POST", f"/api/tasks/{task_id}/cancel"),
        ("POST", "/api/tasks"),
        ("DELETE", f"/api/tasks/{failed['id']}"),
    ):
        result = fetch(page, method, path, {"x-csrf-token": token, "content-type": "application/json"})
        assert result["status"] == 403, (path, result)
        assert "'reader'" in result["body"]
    assert keyed.task(task_id)["status"] == "scheduled"
    assert keyed.http.get(f"{keyed.api_url}/api/tasks/{failed['id']}").status_code == 200


def test_admin_key_can_act(page: Page, keyed: Stack) -> None:
    task_id = scheduled_task(keyed)
    log_in(page, ACTOR)
    expect(page.get_by_test_id("who")).to_have_text("ops (admin, read, submit)")
    page.goto("/#/tasks")
    page.get_by_role("button", name=f"Cancel task {task_id}").click()
    wait_until(lambda: keyed.task(task_id)["status"] == "cancelled", 10, "the task cancelled")
    page.goto("/#/create")
    page.get_by_label("Type").fill("echo")
    page.get_by_role("button", name="Create task").click()
    row = page.locator("tr[data-task]").first
    expect(row).to_be_visible()
    created = row.get_attribute("data-task")
    assert created and keyed.task(created)["type"] == "echo"
    page.goto("/#/schedules")
    expect(page.get_by_role("form", name="New schedule")).to_be_visible()
    failed = failed_task(keyed)
    page.goto("/#/dead")
    expect(page.locator('[data-action="retry-failed"]')).to_be_visible()
    shot(page, "login-admin")
    page.get_by_role("button", name=f"Retry task {failed}").click()
    expect(page.locator("#toast")).to_have_text(f"Retry: {failed}")


def test_cookie_flags_and_nothing_secret_in_it(page: Page, keyed: Stack, redis_server: RedisServer) -> None:
    log_in(page, ACTOR)
    expect(page.get_by_test_id("who")).to_be_visible()
    cookie = session_cookie(page)
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["secure"] is False  # plain http here
    assert ACTOR not in cookie["value"] and len(cookie["value"]) >= 40
    assert page.evaluate("document.cookie") == ""  # not readable by scripts
    index = page.request.get("/")  # with the context's session cookie
    assert index.status == 200 and index.headers["x-frame-options"] == "DENY"
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        names = client.keys(f"{keyed.prefix}:dashsession:*")  # a test may scan; the services never do
        assert names, "no session in Redis"
        for name in names:
            fields = client.hgetall(name)
            assert ACTOR not in str(fields) and cookie["value"] not in name
            assert 0 < client.ttl(name) <= 8 * 3600
    finally:
        client.close()
    # behind a trusted proxy that says https, the cookie is Secure
    with httpx.Client(base_url=keyed.dashboard_url, timeout=10) as http:
        response = http.post("/login", data={"key": READER}, headers={"x-forwarded-proto": "https"})
        assert response.status_code == 303
        flags = response.headers["set-cookie"].lower()
        assert "secure" in flags and "httponly" in flags and "samesite=strict" in flags


def test_missing_service_key_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    keys = config_line("reader", ["read"], READER) + " " + config_line("bot", ["submit"], ACTOR)
    for service_key, warned in (("", True), (ACTOR, True), (READER, False)):
        caplog.clear()
        warn_about_service_key(load_settings(api_keys=keys, dashboard_api_key=service_key))
        assert ("STREAMQ_DASHBOARD_API_KEY" in caplog.text) is warned, service_key
    caplog.clear()
    warn_about_service_key(load_settings(api_keys=""))  # no keys: nothing to say
    assert caplog.text == ""


class EvilSite:
    """Another site (``localhost`` vs the dashboard's ``127.0.0.1``) whose page posts to the dashboard."""

    def __init__(self, target: str) -> None:
        body = (
            f'<form id="f" method="post" action="{target}"><input name="x" value="1"></form>'
            '<script>document.getElementById("f").submit()</script>'
        ).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://localhost:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_cross_site_post_is_refused(page: Page, keyed: Stack) -> None:
    task_id = scheduled_task(keyed)
    log_in(page, ACTOR)
    expect(page.get_by_test_id("who")).to_be_visible()
    # same origin but no CSRF token (what a forged request lacks)
    result = fetch(page, "POST", f"/api/tasks/{task_id}/cancel")
    assert result["status"] == 403 and "x-csrf-token" in result["body"]
    # a page on another site posting a form to the dashboard, in the logged-in browser
    evil = EvilSite(f"{keyed.dashboard_url}/api/tasks/{task_id}/cancel")
    try:
        with page.expect_response(lambda r: r.url.endswith(f"/api/tasks/{task_id}/cancel")) as answer:
            page.goto(evil.url)
        assert answer.value.status == 403
        assert "cross-site request refused" in answer.value.text()
    finally:
        evil.close()
    # with the session cookie and the right token, but from another Origin (SameSite aside)
    cookie = session_cookie(page)
    page.goto("/")
    token = json.loads(fetch(page, "GET", "/dash/session")["body"])["csrf"]
    with httpx.Client(base_url=keyed.dashboard_url, timeout=10, cookies={COOKIE: cookie["value"]}) as http:
        refused = http.post(
            f"/api/tasks/{task_id}/cancel", headers={"x-csrf-token": token, "origin": "http://evil.example"}
        )
        assert refused.status_code == 403 and "Origin" in refused.json()["detail"]
        wrong = http.post(f"/api/tasks/{task_id}/cancel", headers={"x-csrf-token": token[:-2] + "xx"})
        assert wrong.status_code == 403
        assert keyed.task(task_id)["status"] == "scheduled"  # nothing above changed it
        allowed = http.post(f"/api/tasks/{task_id}/cancel", headers={"x-csrf-token": token})
        assert allowed.status_code == 200, allowed.text
    assert keyed.task(task_id)["status"] == "cancelled"


def test_logout_ends_the_session(page: Page, keyed: Stack, redis_server: RedisServer) -> None:
    log_in(page, ACTOR)
    expect(page.get_by_test_id("who")).to_be_visible()
    old = session_cookie(page)["value"]
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(re.escape(keyed.dashboard_url) + r"/login(#.*)?$"))
    assert [c for c in page.context.cookies() if c["name"] == COOKIE] == []
    with httpx.Client(base_url=keyed.dashboard_url, timeout=10, cookies={COOKIE: old}) as http:
        assert http.get("/dash/session").status_code == 401  # the old cookie is worth nothing now
        assert http.get("/api/stats").status_code == 401
    page.goto("/")
    expect(page).to_have_url(re.compile(re.escape(keyed.dashboard_url) + r"/login(#.*)?$"))


def test_logout_ends_open_event_streams(keyed: Stack) -> None:
    with httpx.Client(base_url=keyed.dashboard_url, timeout=httpx.Timeout(10, read=5)) as http:
        assert http.post("/login", data={"key": READER}).status_code == 303
        token = http.get("/dash/session").json()["csrf"]
        with http.stream("GET", "/dash/events") as events:
            assert events.status_code == 200
            chunks = events.iter_bytes()
            assert b"event: hello" in next(chunks)
            with httpx.Client(base_url=keyed.dashboard_url, timeout=10, cookies=dict(http.cookies)) as other:
                assert other.post("/logout", headers={"x-csrf-token": token}).status_code == 200
            rest = b"".join(chunks)  # ends at once (a read timeout of 5 s would raise here)
            assert b"data:" not in rest
        assert http.get("/dash/events").status_code == 401


def test_background_reads_work_with_keys(page: Page, keyed: Stack) -> None:
    """History sampling and /metrics scraping use STREAMQ_DASHBOARD_API_KEY."""
    log_in(page, READER)
    expect(page.get_by_test_id("who")).to_be_visible()

    def sampled() -> bool:
        body = fetch(page, "GET", "/dash/history?range_s=300")["body"]
        return len(json.loads(body)["points"]) >= 2

    wait_until(sampled, 15, "two history samples")
    services = json.loads(fetch(page, "GET", "/dash/services")["body"])
    api = [s for s in services if s["kind"] == "api"]
    assert api and api[0]["metrics_up"] is True, api  # the api's /metrics needs a read key


def test_a_key_removed_from_the_configuration_ends_its_sessions(keyed: Stack) -> None:
    with httpx.Client(base_url=keyed.dashboard_url, timeout=10) as http:
        assert http.post("/login", data={"key": READER}).status_code == 303
        assert http.get("/dash/session").json()["name"] == "reader"
        configured = keyed.env["STREAMQ_API_KEYS"]
        keyed.stop("dashboard")
        keyed.env["STREAMQ_API_KEYS"] = " ".join(e for e in configured.split() if not e.startswith("reader:"))
        try:
            keyed.start("dashboard")
            assert http.get("/dash/session").status_code == 401  # the session in Redis no longer counts
            assert http.get("/api/stats").status_code == 401
        finally:
            keyed.stop("dashboard")
            keyed.env["STREAMQ_API_KEYS"] = configured
            keyed.start("dashboard")
