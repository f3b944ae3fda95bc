"""A workflow's end goes to its webhook, signed like task webhooks (real notifier, worker and receiver)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from standardwebhooks import Webhook

from streamq.shared.settings import Settings
from tests.integration.helpers import running_worker
from tests.integration.receivers import Receiver, running_notifier, serving
from tests.integration.test_notifier import SECRET, webhook_settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return webhook_settings(settings)


async def test_workflow_completed_and_failed_post_signed_webhooks(settings: Settings, api: httpx.AsyncClient) -> None:
    async with serving(Receiver()) as receiver, running_worker(settings), running_notifier(settings):
        ok = await api.post("/api/workflows", json={
            "name": "hooked", "webhook": receiver.url(),
            "steps": {"a": {"type": "echo", "payload": 1}, "b": {"type": "echo", "payload": 2, "after": ["a"]}},
        })  # fmt: skip
        bad = await api.post("/api/workflows", json={
            "name": "hooked-bad", "webhook": receiver.url(),
            "steps": {"a": {"type": "fail", "max_retries": 0}, "b": {"type": "echo", "after": ["a"]}},
        })  # fmt: skip
        assert ok.status_code == 201 and bad.status_code == 201, (ok.text, bad.text)
        for _ in range(200):
            if len(receiver.requests) >= 2:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # nothing more arrives (one message per workflow end)
    payloads = [Webhook(SECRET).verify(r.body, r.headers) for r in receiver.requests]
    by_id = {p["data"]["id"]: p for p in payloads}
    assert len(payloads) == 2 and set(by_id) == {ok.json()["id"], bad.json()["id"]}
    assert by_id[ok.json()["id"]]["type"] == "workflow.completed"
    assert by_id[ok.json()["id"]]["data"]["status"] == "completed"
    assert by_id[bad.json()["id"]]["type"] == "workflow.failed"
    assert by_id[bad.json()["id"]]["data"]["name"] == "hooked-bad"
