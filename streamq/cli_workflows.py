"""``streamq workflows ls|get|cancel|retry`` (docs/workflows.md): attached to the CLI's main group by
streamq/cli.py."""

from __future__ import annotations

import click

from streamq.cli import Group, State, show
from streamq.models import WorkflowStatus

WORKFLOW_COLUMNS = ("id", "name", "queue", "status", "steps_total", "steps_open", "created_at", "completed_at")
STEP_COLUMNS = ("name", "task_id", "type", "status", "attempts", "after", "error")
pass_state = click.make_pass_decorator(State)  # the CLI's State, as its own commands get it
FAILED = 1  # exit code of `get` and `wait` when the workflow did not complete


@click.group(cls=Group)
def workflows() -> None:
    """List, inspect, cancel and retry workflows (DAGs of tasks).

    \b
    Example:
      streamq workflows ls --status failed
    """


@workflows.command("ls")
@click.option("--status", type=click.Choice([s.value for s in WorkflowStatus]))
@click.option("--name")
@click.option("--queue", "-q")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True)
@pass_state
def workflows_ls(state: State, status: str | None, name: str | None, queue: str | None, limit: int) -> None:
    """Workflows, newest first.

    \b
    Example:
      streamq workflows ls --name nightly --limit 10
    """
    with state.client() as client:
        found = client.workflows.list(status=status, name=name, queue=queue, limit=limit)
    show(state, found, WORKFLOW_COLUMNS)


@workflows.command("get")
@click.argument("workflow_id")
@click.option("--wait", "wait_s", type=click.FloatRange(0, min_open=True), help="Wait this many seconds for its end.")
@pass_state
def workflows_get(state: State, workflow_id: str, wait_s: float | None) -> None:
    """Show a workflow and a row per step; with --wait, once it ended (exit 1 unless it completed).

    \b
    Example:
      streamq workflows get 01M8GCFBBVY7Z48VGJPE8C72EQ --wait 300
    """
    with state.client() as client:
        found = client.workflows.wait(workflow_id, wait_s) if wait_s else client.workflows.get(workflow_id)
    if state.json:
        show(state, found)
    else:
        show(state, found.model_copy(update={"steps": {}, "on_failure": None}), None)
        steps = list(found.steps.values()) + ([found.on_failure] if found.on_failure else [])
        show(state, steps, STEP_COLUMNS)
    if wait_s and found.status != WorkflowStatus.COMPLETED:
        raise SystemExit(FAILED)


@workflows.command("cancel")
@click.argument("workflow_id")
@pass_state
def workflows_cancel(state: State, workflow_id: str) -> None:
    """Cancel a running workflow (waiting steps skipped, running ones asked to stop).

    \b
    Example:
      streamq workflows cancel 01M8GCFBBVY7Z48VGJPE8C72EQ
    """
    with state.client() as client:
        show(state, client.workflows.cancel(workflow_id), None)


@workflows.command("retry")
@click.argument("workflow_id")
@pass_state
def workflows_retry(state: State, workflow_id: str) -> None:
    """Re-run the failed, cancelled and skipped steps of a failed or cancelled workflow.

    \b
    Example:
      streamq workflows retry 01M8GCFBBVY7Z48VGJPE8C72EQ
    """
    with state.client() as client:
        show(state, client.workflows.retry(workflow_id), None)
