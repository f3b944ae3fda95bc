"""client.workflows and ``streamq workflows`` against a real api and worker (built-in handlers)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

import streamq
from streamq.models import Workflow, WorkflowStep, WorkflowSummary
from streamq.shared.workflows import StepPublic, WorkflowPublic
from streamq.shared.workflows import WorkflowSummary as ApiSummary
from tests.client.test_cli import cli

pytestmark = pytest.mark.e2e
CHAIN = {"a": {"type": "echo", "payload": 1}, "b": {"type": "echo", "payload": 2, "after": ["a"]}}
BROKEN = {"a": {"type": "fail", "max_retries": 0}, "b": {"type": "echo", "after": ["a"]}}


@pytest.mark.parametrize(
    ("ours", "theirs"), [(Workflow, WorkflowPublic), (WorkflowStep, StepPublic), (WorkflowSummary, ApiSummary)]
)
def test_client_models_cover_the_api_s(ours: type[BaseModel], theirs: type[BaseModel]) -> None:
    assert set(theirs.model_fields) <= set(ours.model_fields)


def test_create_wait_get_list_retry_cancel(stack: str) -> None:
    with streamq.Client(stack) as client:
        created = client.workflows.create("sdk", CHAIN)
        # the workers may end the chain before the answer reads it back
        assert created.status in ("running", "completed") and set(created.steps) == {"a", "b"}
        done = client.workflows.wait(created.id, timeout=30)
        assert done.status == "completed" and done.steps["b"].result == 2
        assert [w.id for w in client.workflows.list(name="sdk")] == [created.id]
        broken = client.workflows.wait(client.workflows.create("sdk-bad", BROKEN).id, timeout=30)
        assert broken.status == "failed" and broken.steps["b"].status == "skipped"
        again = client.workflows.retry(broken.id)  # `fail` may already have failed again when it is read
        assert again.id == broken.id and again.status in ("running", "failed")
        assert client.workflows.wait(broken.id, timeout=30).status == "failed"  # `fail` fails again
        with pytest.raises(streamq.Conflict):
            client.workflows.cancel(done.id)
        with pytest.raises(streamq.NotFound):
            client.workflows.get("NOSUCHWORKFLOW")


def test_async_client(stack: str) -> None:
    async def go() -> Workflow:
        async with streamq.AsyncClient(stack) as client:
            created = await client.workflows.create("async", CHAIN, idempotency_key="same")
            again = await client.workflows.create("async", CHAIN, idempotency_key="same")
            assert again.id == created.id
            return await client.workflows.wait(created.id, timeout=30)

    assert asyncio.run(go()).status == "completed"


def test_cli(stack: str) -> None:
    with streamq.Client(stack) as client:
        ok = client.workflows.create("cli", CHAIN)
        bad = client.workflows.create("cli-bad", BROKEN)
    shown = cli(stack, "workflows", "get", ok.id, "--wait", "30")
    assert shown["status"] == "completed" and shown["steps"]["a"]["result"] == 1
    cli(stack, "workflows", "get", bad.id, "--wait", "30", code=1)
    listed = cli(stack, "workflows", "ls", "--status", "failed")
    assert [w["id"] for w in listed] == [bad.id]
    assert cli(stack, "workflows", "retry", bad.id)["status"] in ("running", "failed")
    cli(stack, "workflows", "get", bad.id, "--wait", "30", code=1)
    cli(stack, "workflows", "cancel", ok.id, code=1)  # 409: it has ended
