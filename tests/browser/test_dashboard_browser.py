"""The dashboard in a real browser (Debian's chromium via Playwright) against a live stack."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from playwright.sync_api import APIResponse, Page, Route, expect
from standardwebhooks import Webhook

from streamq.testing import Stack, wait_until
from tests.browser.conftest import WEBHOOK_SECRET, shot
from tests.browser.receiver import Receiver

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


def legend_values(page: Page, chart: str) -> list[str]:
    return page.get_by_test_id(f"chart-{chart}").locator(".u-legend .u-value").all_inner_texts()


def test_chart_legends_show_the_latest_values_until_hovered(page: Page, stack: Stack) -> None:
    for _ in range(4):
        stack.submit(type="echo", payload="legend")
    page.goto("/#/overview")
    # two samples make a rate: then every series of the throughput chart has a latest value
    wait_until(lambda: int(page.get_by_test_id("chart-throughput").get_attribute("data-points") or 0) >= 2, 20, "rates")
    empty = ("--", "—", "")
    wait_until(lambda: not any(v in empty for v in legend_values(page, "throughput")), 10, "the legend's values")
    legend = legend_values(page, "throughput")  # time, completed/s, failed/s: numbers, not placeholders
    assert len(legend) == 3 and all(float(v) >= 0 for v in legend[1:]), legend
    box = page.get_by_test_id("chart-throughput").locator(".u-over").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # hovered: the values there
    page.mouse.move(5, 5)  # and off again: back to the latest values
    wait_until(lambda: not any(v in empty for v in legend_values(page, "throughput")), 5, "latest again")


def test_the_page_has_an_icon_and_no_outline_after_navigation_by_address(page: Page, stack: Stack) -> None:
    page.goto("/#/overview")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    icon = page.request.get("/favicon.ico")  # where browsers look without a <link>
    assert icon.status == 200 and icon.headers["content-type"] == "image/x-icon"
    assert icon.body()[:4] == b"\x00\x00\x01\x00"  # an ICO file
    linked = page.request.get(page.locator("link[rel=icon]").get_attribute("href") or "")
    assert linked.status == 200 and linked.headers["content-type"].startswith("image/svg+xml")
    page.goto("/#/tasks")  # typed into the address bar: the view changes, focus moves to <main>
    expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    assert page.evaluate("document.activeElement.id") == "main"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "none"


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


def test_created_row_catches_events_that_came_before_the_reply(page: Page, stack: Stack) -> None:
    """The Create page's row of a task whose ``started``/``completed`` events reach the page before
    the POST's reply does (there is no row to update yet) still ends ``completed``: the reply is held
    until the page has received the ``completed`` event."""
    page.goto("/#/create")
    page.evaluate("window.__events = []; listeners.add((batch) => window.__events.push(...batch))")
    held: list[tuple[Route, APIResponse]] = []

    def hold(route: Route) -> None:
        if route.request.method != "POST":
            route.fallback()
            return
        held.append((route, route.fetch()))

    page.route("**/api/tasks", hold)
    page.get_by_label("Type").fill("echo")
    page.get_by_role("button", name="Create task").click()
    wait_until(lambda: page.evaluate("1") and held, 15, "the POST")
    [(route, reply)] = held
    task_id = reply.json()["id"]
    completed = f"e.task === '{task_id}' && e.status === 'completed'"
    wait_until(lambda: page.evaluate(f"window.__events.some((e) => {completed})"), 15, "the completed event")
    route.fulfill(response=reply)  # the task as created (pending), after it completed
    expect(page.locator(f'tr[data-task="{task_id}"] .badge')).to_have_attribute(
        "data-status", "completed", timeout=15_000
    )


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
    expect(page.locator(f'tr[data-task="{task["id"]}"] .badge')).to_have_attribute(
        "data-status", "completed", timeout=15_000
    )
    print(f"\nsubmitted over REST -> completed row visible in the browser: {time.monotonic() - started:.3f} s")
    assert page.evaluate("window.__noReload") is True


def test_tasks_list_keeps_events_that_arrive_while_it_loads(page: Page, stack: Stack) -> None:
    """A task's events that reach the page while the Tasks list is being fetched are not lost.

    The list reloads on a ``created`` event; the task's ``started``/``completed`` events can arrive
    while that reload's GET is in flight (a slow network or a loaded server), and they concern a row
    the list does not show yet. The reply then shows the task as it was (pending): the page must load
    again, not keep the stale row forever. Made deterministic: the queue is paused while the list's
    reply is taken (so it shows ``pending``), and that reply is held until the page has received the
    ``completed`` event."""
    queue = stack.env.get("STREAMQ_QUEUE", "default")
    page.goto("/#/tasks")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    page.evaluate("window.__noReload = true")
    # the page's own dispatch of each SSE batch (app.js `listeners`), so the test knows what it got
    page.evaluate("window.__events = []; listeners.add((batch) => window.__events.push(...batch))")
    held: list[tuple[Route, APIResponse]] = []
    target: list[str] = []  # the task's id once submitted

    def hold(route: Route) -> None:
        """A reply that shows the task is taken at once (what the server had then) and sent later;
        any other (another task's created event reloaded the list) goes through."""
        reply = route.fetch()
        if target and not held and any(t["id"] == target[0] for t in reply.json()["tasks"]):
            held.append((route, reply))
        else:
            route.fulfill(response=reply)

    page.route("**/api/tasks?*", hold)
    assert stack.http.post(f"{stack.api_url}/api/queues/{queue}/pause").status_code == 200
    try:
        task = stack.submit(type="echo", payload="while the list loads")
        target.append(task["id"])  # before any handler runs: they run inside the page calls below
        wait_until(lambda: page.evaluate("1") and held, 15, "the list reloaded on the created event")
        [(route, reply)] = held
        assert {t["id"]: t["status"] for t in reply.json()["tasks"]}[task["id"]] == "pending"
    finally:
        assert stack.http.post(f"{stack.api_url}/api/queues/{queue}/resume").status_code == 200
    completed = f"e.task === '{task['id']}' && e.status === 'completed'"
    wait_until(lambda: page.evaluate(f"window.__events.some((e) => {completed})"), 15, "the completed event")
    route.fulfill(response=reply)  # the list as it was before the task ran
    expect(page.locator(f'tr[data-task="{task["id"]}"] .badge')).to_have_attribute(
        "data-status", "completed", timeout=15_000
    )
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


def test_webhook_delivery_log_and_redeliver(page: Page, stack: Stack) -> None:
    with Receiver() as receiver:
        task = stack.submit(type="echo", payload="hook me", webhook=receiver.url("/hook"))
        page.goto(f"/#/task/{task['id']}")
        rows = page.get_by_test_id("delivery-log").locator("tbody tr")
        expect(rows).to_have_count(1, timeout=15_000)
        expect(rows.first).to_have_attribute("data-outcome", "delivered")
        expect(rows.first.locator("td").nth(4)).to_have_text("200")  # status code column
        expect(rows.first.locator("td").nth(2)).to_have_text("completed")  # event column
        expect(page.get_by_test_id("webhook-status")).to_have_text("webhook status: delivered")
        shot(page, "task-webhook-delivered")
        page.get_by_role("button", name=f"Redeliver the webhook of task {task['id']}").click()
        expect(page.locator("#toast")).to_have_text("Webhook queued for redelivery")
        expect(rows).to_have_count(2, timeout=15_000)
        expect(rows.nth(1)).to_have_attribute("data-outcome", "delivered")
        expect(rows.nth(1).locator("td").nth(4)).to_have_text("200")
        wait_until(lambda: len(receiver.hits) == 2, 5, "two requests at the receiver")
    assert {hit.path for hit in receiver.hits} == {"/hook"}
    assert len({hit.headers["webhook-id"] for hit in receiver.hits}) == 1  # the same message, sent again
    for hit in receiver.hits:
        Webhook(WEBHOOK_SECRET).verify(hit.body, hit.headers)
        assert orjson.loads(hit.body)["data"]["id"] == task["id"]
    shot(page, "task-webhook-redelivered")


def test_schedule_create_pause_resume_delete_on_page(page: Page, stack: Stack) -> None:
    page.on("dialog", lambda dialog: dialog.accept())
    name = f"browser-{uuid.uuid4().hex[:8]}"
    page.goto("/#/schedules")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Cron (minute hour day month weekday)").fill("every morning")
    page.get_by_label("Time zone").fill("Europe/Paris")
    page.get_by_label("Task type").fill("echo")
    page.get_by_role("button", name="Create schedule").click()
    expect(page.get_by_test_id("schedule-errors")).to_contain_text("cron: Value error, is not a valid cron expression")
    assert stack.http.get(f"{stack.api_url}/api/schedules/{name}").status_code == 404  # nothing half-written
    page.get_by_label("Cron (minute hour day month weekday)").fill("0 9 * * 1-5")
    page.get_by_role("button", name="Create schedule").click()
    row = page.locator(f'tr[data-schedule="{name}"]')
    expect(row).to_be_visible()
    expect(page.get_by_test_id("schedule-errors")).to_be_empty()
    cells = row.locator("td")
    expect(cells.nth(1)).to_have_text("0 9 * * 1-5")
    expect(cells.nth(2)).to_have_text("Europe/Paris")
    expect(cells.nth(3)).to_have_text("echo")
    expect(cells.nth(4)).not_to_have_text("—")  # next run
    schedule = stack.http.get(f"{stack.api_url}/api/schedules/{name}").json()
    assert schedule["paused"] is False and schedule["next_run_at"] is not None
    shot(page, "schedules")
    row.get_by_role("button", name=f"Pause schedule {name}").click()
    expect(row).to_have_attribute("data-paused", "true")
    expect(row.get_by_test_id("schedule-state")).to_have_text("⏸ paused")
    assert stack.http.get(f"{stack.api_url}/api/schedules/{name}").json()["paused"] is True
    row.get_by_role("button", name=f"Resume schedule {name}").click()
    expect(row).to_have_attribute("data-paused", "false")
    assert stack.http.get(f"{stack.api_url}/api/schedules/{name}").json()["paused"] is False
    row.get_by_role("button", name=f"Delete schedule {name}").click()
    expect(row).to_have_count(0)
    assert stack.http.get(f"{stack.api_url}/api/schedules/{name}").status_code == 404


WATCH_DELIVERIES = """() => {
  window.__deliveries = document.querySelector('[data-testid=deliveries]');
  window.__loading = 0;
  new MutationObserver(() => {
    if (document.querySelector('[data-testid=deliveries]').textContent.includes('Loading')) window.__loading += 1;
  }).observe(document.getElementById('main'), { childList: true, subtree: true, characterData: true });
}"""


def test_reschedule_a_scheduled_task_from_its_page(page: Page, stack: Stack) -> None:
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    task = stack.submit(type="echo", payload="later", scheduled_for=later)
    page.goto(f"/#/task/{task['id']}")
    status = page.get_by_test_id("task-status").locator(".badge")
    expect(status).to_have_attribute("data-status", "scheduled")
    expect(page.get_by_test_id("deliveries")).to_have_text("No deliveries yet.")
    page.evaluate(WATCH_DELIVERIES)
    when = page.get_by_label("New due time (local time)")
    when.fill("2099-01-01T09:00")
    page.get_by_role("button", name="Reschedule", exact=True).click()
    expect(page.locator("#toast")).to_have_text("Rescheduled")
    due_ms = page.evaluate("new Date('2099-01-01T09:00').getTime()")
    expect(page.get_by_test_id("scheduled-for")).to_have_text(page.evaluate(f"new Date({due_ms}).toLocaleString()"))
    scheduled_for = datetime.fromisoformat(stack.task(task["id"])["scheduled_for"])
    assert scheduled_for.timestamp() * 1000 == due_ms
    expect(when).to_have_value("2099-01-01T09:00")  # what was typed survives the live refresh
    # a past time runs it now (the scheduler process promotes it, the worker runs it)
    when.fill("2000-01-01T00:00")
    page.get_by_role("button", name="Reschedule", exact=True).click()
    expect(status).to_have_attribute("data-status", "completed", timeout=10_000)
    expect(page.get_by_test_id("result")).to_have_text('"later"')
    expect(page.get_by_test_id("reschedule")).to_be_hidden()
    # no flicker: the deliveries part was never rebuilt ("Loading deliveries..." never shown again)
    assert page.evaluate("window.__loading") == 0
    assert page.evaluate("window.__deliveries === document.querySelector('[data-testid=deliveries]')") is True


def test_retry_all_failed_revives_failed_tasks(page: Page, stack: Stack) -> None:
    failed = [stack.submit(type="fail", payload=f"bulk {i}", max_retries=0)["id"] for i in range(3)]
    wait_until(lambda: all(stack.task(t)["status"] == "failed" for t in failed), 10, "three failed")
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto("/#/dead")
    for task_id in failed:
        expect(page.locator(f'tr[data-task="{task_id}"]')).to_be_visible()
    page.get_by_role("button", name="Retry all failed").click()
    expect(page.locator("#toast")).to_contain_text("Revived ")
    revived = int((page.locator("#toast").text_content() or "").split()[1])
    assert revived >= len(failed)
    # each ran again (and failed again: `fail` always does), so each has a second failed attempt
    wait_until(lambda: all(len(stack.task(t)["history"]) == 2 for t in failed), 15, "every task run again")
    for task_id in failed:
        expect(page.locator(f'tr[data-task="{task_id}"] .badge')).to_have_attribute("data-status", "failed")
    print(f"\nRetry all failed revived {revived} tasks")


def test_keyboard_reaches_navigation(page: Page, stack: Stack) -> None:
    page.goto("/#/overview")
    page.keyboard.press("Tab")  # skip link
    page.keyboard.press("Tab")  # brand
    for _ in range(3):
        page.keyboard.press("Tab")  # Overview, Tasks, Create
    assert page.evaluate("document.activeElement.textContent") == "Create"
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Create a task")).to_be_visible()


def test_the_skip_link_moves_focus_to_the_content_and_keeps_the_view(page: Page, stack: Stack) -> None:
    page.goto("/#/tasks")
    expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    page.keyboard.press("Tab")  # the skip link
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    assert page.evaluate("location.hash") == "#/tasks"  # not "#main": the router stays on the view
    expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
