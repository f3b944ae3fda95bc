"""The Queues page's groups section in a real browser against a live stack (docs/groups-and-limits.md):
an admin sets a group's limits through the form, the table shows its pending, running and held-back
tasks from GET /api/queues/{queue}/groups, and removing the limits lets the rest run."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Page, expect

from streamq.testing import Stack, wait_until
from tests.browser.conftest import shot

pytestmark = pytest.mark.e2e


def test_queues_page_shows_groups_and_sets_their_limits(page: Page, stack: Stack) -> None:
    group = f"tenant-{uuid.uuid4().hex[:6]}"
    page.goto("/#/queues")
    section = page.get_by_test_id("groups")
    expect(section.get_by_test_id("group-default")).to_contain_text("Default for every group")

    page.get_by_label("Group name").fill(group)
    page.get_by_label("Group concurrency").fill("1")
    page.get_by_role("button", name="Save group limits").click()
    expect(page.locator("#toast")).to_have_text(f"Limits saved: {group}")
    row = section.locator(f'tr[data-group="{group}"]')
    expect(row.get_by_test_id("group-concurrency")).to_have_text("1")

    ids = [stack.submit(type="sleep", payload=30, group=group)["id"] for _ in range(3)]
    expect(row.locator('td[data-count="running"]')).to_have_text("1")
    expect(row.locator('td[data-count="pending"]')).to_have_text("2")
    expect(row).to_have_attribute("data-held", "true")
    expect(row.get_by_test_id("group-held")).to_have_text("held")
    shot(page, "queues-groups")

    page.get_by_label("Group rate limit").fill("5")
    page.get_by_label("Group rate per seconds").fill("0")  # refused by the api: the 422 names the field
    page.get_by_role("button", name="Save group limits").click()
    expect(page.locator("#toast")).to_contain_text("Limits not saved")
    expect(page.locator("#toast")).to_contain_text("per_s")

    row.get_by_role("button", name=f"Remove limits of group {group}").click()
    expect(page.locator("#toast")).to_have_text(f"Limits removed: {group}")
    # no limit now: the two waiting tasks start at once
    wait_until(lambda: all(stack.task(i)["status"] == "processing" for i in ids), 15, "every task running")
    for task_id in ids:
        stack.http.post(f"{stack.api_url}/api/tasks/{task_id}/cancel")
