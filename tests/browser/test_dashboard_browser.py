"""The dashboard in a real browser (Debian's chromium via Playwright) against a live stack."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import shot
from tests.stack import Stack, wait_until

pytestmark = pytest.mark.e2e


def test_overview_cards_and_charts_have_data(page: Page, stack: Stack) -> None:
    for i in range(12):
        stack.submit(type="sleep", payload=0.02 * (i % 4), priority=1 + i % 5)
    stack.submit(type="fail", payload="overview failure", max_retries=0)
    page.goto("/#/overview")
    # charts: the sampler writes every 2 s; throughput and run time need two samples around the runs
    for chart in ("throughput", "depth", "wait", "run"):
        box = page.get_by_test_id(f"chart-{chart}")
        expect(box.locator("canvas")).to_be_visible(timeout=15_000)
    wait_until(lambda: int(page.get_by_test_id("chart-run").get_attribute("data-points") or 0) > 0, 15, "run points")
    points = {c: page.get_by_test_id(f"chart-{c}").get_attribute("data-points") for c in ("throughput", "depth", "run")}
    print(f"\noverview chart points: {points}")
    stats = stack.http.get(f"{stack.api_url}/api/stats").json()
    wait_until(lambda: stack.http.get(f"{stack.api_url}/api/stats").json()["completed"] >= 12, 15, "12 completed")
    expect(page.get_by_test_id("count-completed")).to_have_text(
        str(stack.http.get(f"{stack.api_url}/api/stats").json()["completed"])
    )
    assert stats["total"] >= 13
    expect(page.get_by_test_id("count-failed")).not_to_have_text("0")
    shot(page, "overview")
    page.set_viewport_size({"width": 390, "height": 844})
    # charts are resized to the narrow screen: nothing scrolls sideways
    wait_until(lambda: page.evaluate("document.documentElement.scrollWidth") <= 390, 5, "no sideways scrolling")
    shot(page, "overview-phone")


def test_create_priority_5_in_advanced_tab_completes_live(page: Page, stack: Stack) -> None:
    page.goto("/#/create")
    page.evaluate("window.__noReload = true")
    page.get_by_label("Type").fill("sleep")
    page.get_by_label("Payload (JSON; plain text is sent as a string)").fill("0.4")
    page.get_by_role("tab", name="Advanced").click()
    page.get_by_label("Priority").select_option("5")
    page.get_by_role("button", name="Create task").click()
    row = page.locator("tr[data-task]").first
    expect(row).to_be_visible()
    task_id = row.get_attribute("data-task")
    assert task_id and stack.task(task_id)["priority"] == 5
    expect(row.locator("td").nth(2)).to_have_text("5")
    expect(page.locator(f'tr[data-task="{task_id}"] .badge')).to_have_attribute(
        "data-status", "completed", timeout=10_000
    )
    assert page.evaluate("window.__noReload") is True  # the same page: updated live, never reloaded
    shot(page, "create-completed")


def test_create_shows_each_bad_field(page: Page, stack: Stack) -> None:
    page.goto("/#/create")
    page.get_by_label("Type").fill("echo")
    page.get_by_role("tab", name="Advanced").click()
    page.get_by_label("Webhook URL").fill("ftp://example.com/hook")
    page.get_by_label("Max retries").fill("500")
    page.get_by_role("button", name="Create task").click()
    errors = page.get_by_test_id("create-errors")
    expect(errors).to_contain_text("webhook: Value error, must be an absolute http:// or https:// URL")
    expect(errors).to_contain_text("max_retries: Input should be less than or equal to 100")
    expect(page.locator("tr[data-task]")).to_have_count(0)  # nothing was created
    shot(page, "create-errors")


def test_failed_task_shows_error_and_retry_revives_it(page: Page, stack: Stack) -> None:
    task = stack.submit(type="fail", payload="kaput", max_retries=0)
    page.goto(f"/#/task/{task['id']}")
    expect(page.get_by_test_id("task-status").locator(".badge")).to_have_attribute(
        "data-status", "failed", timeout=10_000
    )
    expect(page.get_by_test_id("task-error")).to_have_text("RuntimeError: kaput")
    shot(page, "task-failed")
    page.get_by_role("button", name=f"Retry task {task['id']}").click()
    # revived: it runs again (and fails again: `fail` always does), so its error history grows to two
    expect(page.locator("table tbody tr")).to_have_count(2, timeout=10_000)
    expect(page.get_by_test_id("task-status").locator(".badge")).to_have_attribute("data-status", "failed")
    assert len(stack.task(task["id"])["history"]) == 2


def test_live_update_without_reload(page: Page, stack: Stack) -> None:
    page.goto("/#/tasks")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    page.evaluate("window.__noReload = true")
    started = time.monotonic()
    task = stack.submit(type="echo", payload="live")
    expect(page.locator(f'tr[data-task="{task["id"]}"] .badge')).to_have_attribute("data-status", "completed")
    print(f"\nsubmitted over REST -> completed row visible in the browser: {time.monotonic() - started:.3f} s")
    assert page.evaluate("window.__noReload") is True


def test_workers_page_lists_running_worker(page: Page, stack: Stack) -> None:
    worker = stack.services["worker"]
    page.goto("/#/workers")
    row = page.locator(f'tr[data-kind="worker"][data-pid="{worker.pid}"]')
    expect(row).to_be_visible()
    expect(row.locator("td").nth(3)).to_have_text("4")  # concurrency
    expect(page.locator('tr[data-kind="api"]')).to_have_count(1)
    expect(page.locator('tr[data-kind="dashboard"]')).to_have_count(1)
    expect(row.locator(".badge")).to_have_text("✓ up", timeout=10_000)
    shot(page, "workers")


def test_tasks_filters_and_dead_letters(page: Page, stack: Stack) -> None:
    failed = stack.submit(type="fail", payload="to the dead letters", max_retries=0)
    wait_until(lambda: stack.task(failed["id"])["status"] == "failed", 10, "failed")
    page.goto("/#/tasks")
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(f'tr[data-task="{failed["id"]}"]')).to_be_visible()
    for badge in page.locator("tbody .badge").all():
        assert badge.get_attribute("data-status") == "failed"
    page.get_by_label("Find by id").fill(failed["id"])
    page.get_by_role("button", name="Open").click()
    expect(page.get_by_test_id("payload")).to_have_text('"to the dead letters"')
    page.goto("/#/dead")
    expect(page.locator(f'tr[data-task="{failed["id"]}"]')).to_be_visible()
    shot(page, "dead-letters")


def test_pages_built_on_endpoints_not_here_say_so(page: Page, stack: Stack) -> None:
    task = stack.submit(type="echo", payload=1, webhook="https://example.com/hook")
    page.goto("/#/schedules")
    expect(page.get_by_test_id("unavailable")).to_contain_text("not available on this server")
    page.goto(f"/#/task/{task['id']}")
    expect(page.get_by_test_id("deliveries").get_by_test_id("unavailable")).to_be_visible()
    page.get_by_label("New due time (local time)").fill("2099-01-01T09:00")
    page.get_by_role("button", name="Reschedule").click()
    expect(page.locator("#toast")).to_have_text("Reschedule is not available on this server")


def test_keyboard_reaches_navigation(page: Page, stack: Stack) -> None:
    page.goto("/#/overview")
    page.keyboard.press("Tab")  # skip link
    page.keyboard.press("Tab")  # brand
    for _ in range(3):
        page.keyboard.press("Tab")  # Overview, Tasks, Create
    assert page.evaluate("document.activeElement.textContent") == "Create"
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Create a task")).to_be_visible()
