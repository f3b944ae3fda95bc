"""/api/workflows: start a DAG of tasks, read it, list, cancel and retry (docs/workflows.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError

from streamq.services.api.deps import QueueName, SubmissionDep
from streamq.services.api.submission import Submission
from streamq.shared.models import TaskCreate
from streamq.shared.workflows import (
    ON_FAILURE,
    WorkflowCreate,
    WorkflowPage,
    WorkflowPublic,
    Workflows,
    WorkflowStatus,
    graph_problems,
)

router = APIRouter(prefix="/api/workflows", tags=["workflows"])
MAX_LIST_LIMIT = 500


def workflows_of(request: Request) -> Workflows:
    """The app's workflow service (made on first use, over the app's broker)."""
    found: Workflows | None = getattr(request.app.state, "workflows", None)
    if found is None:
        settings = request.app.state.settings
        found = Workflows(request.app.state.broker, idempotency_ttl_s=settings.idempotency_ttl_s)
        request.app.state.workflows = found
    return found


def _with_header_key(wf: WorkflowCreate, header: str | None) -> WorkflowCreate:
    if header is None or wf.idempotency_key == header:
        return wf
    if wf.idempotency_key is None:
        return wf.model_copy(update={"idempotency_key": header})
    msg = "the Idempotency-Key header and the body's idempotency_key differ; send one of them, or the same value"
    raise RequestValidationError(
        [{"loc": ["header", "idempotency-key"], "msg": msg, "type": "idempotency_key_conflict", "input": header}]
    )


async def _task_problems(submission: Submission, wf: WorkflowCreate) -> list[dict[str, Any]]:
    """Each step's (and on_failure's) problems as for tasks (unknown type, bad email/http payload, refused
    webhook URL), located at the step; the workflow's webhook checked as a task's."""
    names = list(wf.steps)
    tasks: list[TaskCreate] = list(wf.steps.values())
    locs: list[list[str]] = [["steps", name] for name in names]
    if wf.on_failure is not None:
        tasks.append(wf.on_failure)
        locs.append([ON_FAILURE])
    if wf.webhook is not None:
        tasks.append(TaskCreate(type=tasks[0].type, webhook=wf.webhook))
        locs.append([])
    errors = await submission.problems(tasks, batch=True)
    for error in errors:
        loc = list(error.get("loc", []))
        if len(loc) >= 3 and loc[:2] == ["body", "tasks"] and isinstance(loc[2], int):
            error["loc"] = ["body", *locs[loc[2]], *loc[3:]]
            where = ".".join(locs[loc[2]]) or "workflow"
            error["msg"] = f"{where}: {error.get('msg', '')}"
    return errors


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": WorkflowPublic, "description": "An earlier workflow with the same idempotency key"}},
)
async def create_workflow(
    wf: WorkflowCreate,
    submission: SubmissionDep,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> WorkflowPublic:
    """Start a workflow: steps without ``after`` are queued at once, each other step the moment its last
    parent completes. 422 naming the step and the rule (unknown parent, self-dependency, a cycle, more
    than 1,000 steps, an unknown task type); nothing is written then. With an ``Idempotency-Key`` seen in
    the last 24 h, the earlier workflow is returned with 200."""
    wf = _with_header_key(wf, idempotency_key)
    errors = graph_problems(wf) or await _task_problems(submission, wf)
    if errors:
        raise RequestValidationError(errors)
    done, duplicate = await workflows_of(request).submit(wf)
    if duplicate:
        response.status_code = status.HTTP_200_OK
    return done


@router.get("")
async def list_workflows(
    request: Request,
    queue: QueueName = None,
    status_: Annotated[WorkflowStatus | None, Query(alias="status")] = None,
    name: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=64, pattern=r"^[0-9A-Z]+$")] = None,
) -> WorkflowPage:
    """Newest first; pass ``next_cursor`` back as ``cursor`` for the next page (null at the end)."""
    found, next_cursor = await workflows_of(request).list(
        status=status_, name=name, queue=queue, limit=limit, cursor=cursor
    )
    return WorkflowPage(workflows=found, next_cursor=next_cursor)


@router.get("/{workflow_id}", responses={404: {"description": "No such workflow"}})
async def get_workflow(workflow_id: str, request: Request) -> WorkflowPublic:
    """The workflow with each step's status, attempts, result or error and timing."""
    return await workflows_of(request).get(workflow_id)


@router.post("/{workflow_id}/cancel", responses={404: {}, 409: {"description": "Not running"}})
async def cancel_workflow(workflow_id: str, request: Request) -> WorkflowPublic:
    """Waiting steps are skipped, pending and scheduled ones cancelled, running ones asked to stop; the
    workflow ends ``cancelled`` once none runs."""
    return await workflows_of(request).cancel(workflow_id)


@router.post("/{workflow_id}/retry", responses={404: {}, 409: {"description": "Not failed or cancelled"}})
async def retry_workflow(workflow_id: str, request: Request) -> WorkflowPublic:
    """Re-run only the failed, cancelled and skipped steps; completed steps keep their results."""
    return await workflows_of(request).retry(workflow_id)
