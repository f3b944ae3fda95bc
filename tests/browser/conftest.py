"""Browser fixtures: Debian's chromium driven by Playwright (no browser download), one live stack
(api, worker, scheduler, notifier, dashboard as real processes) per module."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from streamq.testing import CHROMIUM, CHROMIUM_FLAGS, RedisServer, Stack, wait_until
from tests.browser.pages import open_page
from tests.support import ROOT

ARTIFACTS = ROOT / "tests" / "artifacts"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"dashboard-browser-test-secret-32").decode()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: run `python3 deploy/ensure_deps.py --install` (apt-get install chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(
        redis_server,
        tmp_path_factory.mktemp("logs"),
        STREAMQ_WORKER_CONCURRENCY="4",
        STREAMQ_HANDLERS="tests.e2e.handlers_extra",  # handlers reporting progress or ignoring cancels, and built-ins
        # webhooks go only to the tests' receiver on 127.0.0.1; nothing leaves loopback
        STREAMQ_ALLOW_PRIVATE_NETWORKS="true",
        STREAMQ_WEBHOOK_SECRET=WEBHOOK_SECRET,
        STREAMQ_WEBHOOK_POLL_S="0.1",
    )
    stack.start("api", "worker", "scheduler", "notifier", "dashboard")
    for kind in ("scheduler", "notifier"):
        wait_until(lambda: stack.services_of(kind), 15, f"the {kind} registered")  # noqa: B023 (called at once)
    yield stack
    stack.close()


@pytest.fixture
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    with open_page(browser, stack.dashboard_url) as page:
        yield page


def shot(page: Page, name: str, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
