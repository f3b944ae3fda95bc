"""``client.workflows``: start a DAG of tasks, read it, wait for it, cancel and retry it (docs/workflows.md).

Each api call is a :class:`streamq._core.Call`, sent by the client it is attached to, so the retry policy
and errors are the client's. A workflow is started with an idempotency key (one is made when none is
given), so a retried create makes it once."""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from streamq import _core as core
from streamq._core import Call
from streamq.errors import Timeout
from streamq.models import Workflow, WorkflowStatus, WorkflowSummary

if TYPE_CHECKING:
    from streamq.client import AsyncClient, Client

POLL_S = 0.2  # wait(): the pause between two reads of a running workflow

_workflow = core._model(Workflow)


def create(body: dict[str, Any]) -> Call[Workflow]:
    return Call("POST", "/api/workflows", _workflow, body=body)


def get(workflow_id: str) -> Call[Workflow]:
    return Call("GET", f"/api/workflows/{workflow_id}", _workflow)


def cancel(workflow_id: str) -> Call[Workflow]:
    return Call("POST", f"/api/workflows/{workflow_id}/cancel", _workflow)


def retry(workflow_id: str) -> Call[Workflow]:
    return Call("POST", f"/api/workflows/{workflow_id}/retry", _workflow)


def list_page(params: dict[str, Any]) -> Call[tuple[list[WorkflowSummary], str | None]]:
    def parse(response: httpx.Response) -> tuple[list[WorkflowSummary], str | None]:
        body = response.json()
        return [WorkflowSummary.model_validate(w) for w in body["workflows"]], body.get("next_cursor")

    return Call("GET", "/api/workflows", parse, params={k: str(v) for k, v in params.items() if v is not None})


def create_body(
    name: str,
    steps: Mapping[str, Mapping[str, Any]],
    *,
    queue: str | None,
    webhook: str | None,
    on_failure: Mapping[str, Any] | None,
    idempotency_key: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "steps": {k: dict(v) for k, v in steps.items()}}
    body["idempotency_key"] = idempotency_key or core.new_idempotency_key()
    if queue is not None:
        body["queue"] = queue
    if webhook is not None:
        body["webhook"] = webhook
    if on_failure is not None:
        body["on_failure"] = dict(on_failure)
    return body


def wait_timeout(workflow: Workflow, timeout: float) -> Timeout:
    return Timeout(f"workflow {workflow.id} is still {workflow.status.value} after {timeout:g} s")


class Workflows:
    """``client.workflows`` of a :class:`streamq.Client`."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        name: str,
        steps: Mapping[str, Mapping[str, Any]],
        *,
        queue: str | None = None,
        webhook: str | None = None,
        on_failure: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Workflow:
        """Start a workflow: ``steps`` maps each step's name to its task fields and ``after`` (the steps
        it runs after), e.g. ``{"a": {"type": "extract"}, "b": {"type": "load", "after": ["a"]}}``."""
        body = create_body(
            name, steps, queue=queue, webhook=webhook, on_failure=on_failure, idempotency_key=idempotency_key
        )
        return self._client.send(create(body))

    def get(self, workflow_id: str) -> Workflow:
        return self._client.send(get(workflow_id))

    def wait(self, workflow_id: str, timeout: float = 60.0) -> Workflow:
        """The workflow once it has ended (completed, failed or cancelled); :class:`streamq.Timeout` if
        it still runs after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.get(workflow_id)
            if found.status != WorkflowStatus.RUNNING:
                return found
            if time.monotonic() >= deadline:
                raise wait_timeout(found, timeout)
            time.sleep(POLL_S)

    def cancel(self, workflow_id: str) -> Workflow:
        return self._client.send(cancel(workflow_id))

    def retry(self, workflow_id: str) -> Workflow:
        """Re-run the failed, cancelled and skipped steps of a failed or cancelled workflow."""
        return self._client.send(retry(workflow_id))

    def list(
        self, *, status: str | None = None, name: str | None = None, queue: str | None = None, limit: int = 50
    ) -> builtins.list[WorkflowSummary]:
        """Newest first, at most ``limit``, following the api's cursor."""
        return builtins.list(self.iter(status=status, name=name, queue=queue, limit=limit))

    def iter(
        self, *, status: str | None = None, name: str | None = None, queue: str | None = None, limit: int = 50
    ) -> Iterator[WorkflowSummary]:
        cursor: str | None = None
        left = limit
        while left > 0:
            params = {"status": status, "name": name, "queue": queue, "limit": min(left, 500), "cursor": cursor}
            found, cursor = self._client.send(list_page(params))
            yield from found[:left]
            left -= len(found)
            if cursor is None:
                return


class AsyncWorkflows:
    """``client.workflows`` of a :class:`streamq.AsyncClient`."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        name: str,
        steps: Mapping[str, Mapping[str, Any]],
        *,
        queue: str | None = None,
        webhook: str | None = None,
        on_failure: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Workflow:
        body = create_body(
            name, steps, queue=queue, webhook=webhook, on_failure=on_failure, idempotency_key=idempotency_key
        )
        return await self._client.send(create(body))

    async def get(self, workflow_id: str) -> Workflow:
        return await self._client.send(get(workflow_id))

    async def wait(self, workflow_id: str, timeout: float = 60.0) -> Workflow:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while True:
            found = await self.get(workflow_id)
            if found.status != WorkflowStatus.RUNNING:
                return found
            if time.monotonic() >= deadline:
                raise wait_timeout(found, timeout)
            await asyncio.sleep(POLL_S)

    async def cancel(self, workflow_id: str) -> Workflow:
        return await self._client.send(cancel(workflow_id))

    async def retry(self, workflow_id: str) -> Workflow:
        return await self._client.send(retry(workflow_id))

    async def list(
        self, *, status: str | None = None, name: str | None = None, queue: str | None = None, limit: int = 50
    ) -> builtins.list[WorkflowSummary]:
        out: builtins.list[WorkflowSummary] = []
        cursor: str | None = None
        while len(out) < limit:
            params = {"status": status, "name": name, "queue": queue, "limit": min(limit - len(out), 500),
                      "cursor": cursor}  # fmt: skip
            found, cursor = await self._client.send(list_page(params))
            out += found[: limit - len(out)]
            if cursor is None:
                break
        return out
