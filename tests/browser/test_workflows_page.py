"""The dashboard's Workflows pages in a real browser against a live stack: the list and its status
filter, the DAG view with each step's live state, and the admin's cancel and retry buttons."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from streamq.testing import Stack
from tests.browser.conftest import shot

pytestmark = pytest.mark.e2e


def start(stack: Stack, body: dict[str, Any]) -> dict[str, Any]:
    response = stack.http.post(f"{stack.api_url}/api/workflows", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_workflow_list_dag_live_states_cancel_and_retry(page: Page, stack: Stack) -> None:
    page.on("dialog", lambda dialog: dialog.accept())
    done = start(stack, {"name": "diamond", "steps": {
        "top": {"type": "sleep", "payload": 0.5}, "left": {"type": "echo", "payload": 1, "after": ["top"]},
        "right": {"type": "echo", "payload": 2, "after": ["top"]},
        "bottom": {"type": "echo", "after": ["left", "right"]}}})  # fmt: skip
    slow = start(stack, {"name": "slow", "steps": {
        "wait": {"type": "sleep", "payload": 60}, "after": {"type": "echo", "after": ["wait"]}}})  # fmt: skip

    page.goto("/#/workflows")
    expect(page.locator(f'tr[data-workflow="{done["id"]}"]')).to_be_visible()
    expect(page.locator(f'tr[data-workflow="{slow["id"]}"]')).to_have_attribute("data-status", "running")

    page.locator(f'tr[data-workflow="{done["id"]}"]').get_by_role("link", name="diamond").click()
    nodes = page.get_by_test_id("dag-node")
    expect(nodes).to_have_count(4)
    expect(page.locator('[data-testid="dag-node"][data-step="bottom"]')).to_have_attribute("data-status", "completed")
    expect(page.get_by_test_id("workflow-status")).to_have_text("✓ completed")
    shot(page, "workflow-dag")

    page.goto(f"/#/workflow/{slow['id']}")
    expect(page.locator('[data-testid="dag-node"][data-step="wait"]')).to_have_attribute("data-status", "processing")
    expect(page.locator('[data-testid="dag-node"][data-step="after"]')).to_have_attribute("data-status", "waiting")
    page.get_by_role("button", name="Cancel workflow").click()
    expect(page.get_by_test_id("workflow-status")).to_have_text("⊘ cancelled", timeout=15_000)
    expect(page.locator('[data-testid="dag-node"][data-step="after"]')).to_have_attribute("data-status", "skipped")
    page.get_by_role("button", name="Retry workflow").click()
    expect(page.locator('[data-testid="dag-node"][data-step="wait"]')).to_have_attribute(
        "data-status", "processing", timeout=15_000
    )
    stack.http.post(f"{stack.api_url}/api/workflows/{slow['id']}/cancel")

    page.goto("/#/workflows?status=completed")
    expect(page.get_by_label("Status")).to_have_value("completed")
    expect(page.locator("tr[data-workflow]")).to_have_count(1)
    expect(page.locator(f'tr[data-workflow="{done["id"]}"]')).to_be_visible()
