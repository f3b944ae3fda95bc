"""The dashboard's Overview shows a banner while Redis refuses writes (real api, dashboard and chromium
against a redis-server of the test's own, made full)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect
from redis import Redis

from streamq.testing import RedisServer, Stack, wait_until
from tests.browser.pages import open_page

pytestmark = pytest.mark.standalone_only(reason="makes its own plain redis-server full")


@pytest.fixture
def full_stack(tmp_path: Path) -> Iterator[tuple[Stack, Redis]]:
    server = RedisServer()
    stack = Stack(server, tmp_path).start("api", "dashboard")
    client = Redis(port=server.port, decode_responses=True)
    yield stack, client
    client.close()
    stack.close()
    server.stop()


def test_overview_shows_that_redis_refuses_writes(browser: Browser, full_stack: tuple[Stack, Redis]) -> None:
    stack, redis = full_stack
    with open_page(browser, stack.dashboard_url) as page:
        page.goto("/#/overview")
        expect(page.get_by_test_id("count-total")).to_have_text("0")
        expect(page.get_by_test_id("writes-refused")).to_be_hidden()
        redis.config_set("maxmemory", "1")  # full: every write refused (noeviction)
        page.reload()
        banner = page.get_by_test_id("writes-refused")
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("Redis refuses writes (out_of_memory)")
        expect(page.get_by_test_id("count-total")).to_have_text("0")  # reads still work
        redis.config_set("maxmemory", "0")
        # the api samples Redis's memory once a second (its memory guard): reload once it writes again
        wait_until(lambda: stack.http.get(f"{stack.api_url}/api/health").json().get("writes") == "ok", 15, "writes ok")
        page.reload()
        expect(page.get_by_test_id("count-total")).to_have_text("0")
        expect(page.get_by_test_id("writes-refused")).to_be_hidden()
