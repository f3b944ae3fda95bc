"""The task view of a running task in a real browser: its progress line follows the handler's reports
live, a Cancel button asks a processing task to stop, and the "cancel requested" line shows while the
handler has not stopped yet (handlers of tests/e2e/handlers_extra.py, run by the stack's worker)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from streamq.testing import Stack
from tests.browser.conftest import shot

pytestmark = pytest.mark.e2e
PROGRESS = re.compile(r"^\d+% — tick (\d+) on \d+$")


def open_running(page: Page, stack: Stack, task_type: str, payload: float) -> str:
    """A task submitted, and its view open once the page shows it processing."""
    task_id = str(stack.submit(type=task_type, payload=payload, max_retries=3)["id"])
    page.goto(f"/#/task/{task_id}")
    expect(page.get_by_test_id("task-status").locator(".badge")).to_have_attribute(
        "data-status", "processing", timeout=15_000
    )
    return task_id


def test_progress_line_updates_live_and_cancel_stops_the_task(page: Page, stack: Stack) -> None:
    task_id = open_running(page, stack, "progress_forever", 60)  # a report every 50 ms for a minute
    line = page.get_by_test_id("task-progress")
    expect(line).to_have_text(PROGRESS, timeout=10_000)
    first = line.inner_text()
    expect(line).not_to_have_text(first, timeout=10_000)  # a later report reached the page without a reload
    match = PROGRESS.match(line.inner_text())
    assert match and int(match[1]) > int(PROGRESS.match(first)[1])  # type: ignore[index]
    shot(page, "task-progress")

    cancel = page.get_by_role("button", name=f"Cancel task {task_id}")
    expect(cancel).to_be_visible()
    cancel.click()
    # the async handler gets CancelledError: the task ends cancelled, not retried, and offers Retry instead
    expect(page.get_by_test_id("task-status").locator(".badge")).to_have_attribute(
        "data-status", "cancelled", timeout=15_000
    )
    expect(page.get_by_test_id("task-error")).to_contain_text("cancelled while it ran")
    expect(page.get_by_role("button", name=f"Cancel task {task_id}")).to_have_count(0)
    expect(page.get_by_role("button", name=f"Retry task {task_id}")).to_be_visible()
    expect(line).to_have_text(PROGRESS)  # the last report stays on the task
    task = stack.task(task_id)
    assert task["status"] == "cancelled" and task["attempts"] == 1 and task["cancel_requested"] is True


def test_cancel_requested_shows_while_the_handler_has_not_stopped(page: Page, stack: Stack) -> None:
    # a sync handler that never looks at ctx.cancelled: processing until its 6 s sleep ends
    task_id = open_running(page, stack, "cancel_deaf", 6)
    expect(page.get_by_test_id("cancel-requested")).to_have_count(0)
    page.get_by_role("button", name=f"Cancel task {task_id}").click()
    expect(page.get_by_test_id("cancel-requested")).to_have_text("requested: the worker is stopping it")
    expect(page.get_by_test_id("task-status").locator(".badge")).to_have_attribute("data-status", "processing")
    expect(page.get_by_role("button", name=f"Cancel task {task_id}")).to_have_count(0)  # asked once is enough
    assert stack.task(task_id)["cancel_requested"] is True
    shot(page, "task-cancel-requested")
    expect(page.get_by_test_id("task-status").locator(".badge")).to_have_attribute(
        "data-status", "cancelled", timeout=20_000
    )
    expect(page.get_by_test_id("cancel-requested")).to_have_count(0)  # ended: no longer "stopping it"
