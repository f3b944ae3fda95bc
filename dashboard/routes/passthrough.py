"""``/api/*``: the api's REST endpoints under the dashboard's own origin (no CORS, one URL for the
browser), called with the logged-in user's key."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from streamq.dashboard.deps import BearerDep, UpstreamDep
from streamq.dashboard.upstream import UpstreamError

router = APIRouter()
PASS_HEADERS = ("content-type", "idempotency-key")


@router.api_route("/api/{path:path}", methods=["GET", "POST", "PUT", "DELETE"], include_in_schema=False)
async def pass_through(path: str, request: Request, upstream: UpstreamDep, bearer: BearerDep) -> Response:
    """The api's REST endpoints under the dashboard's own origin (no CORS, one URL for the browser)."""
    headers = {k: v for k, v in request.headers.items() if k.lower() in PASS_HEADERS}
    headers.update(bearer)
    try:
        body = await request.body()  # at most MAX_BODY_BYTES: BodyLimit answers 413 past it
    except ClientDisconnect:  # over the limit (413 already sent) or the client went away
        return Response(status_code=499)  # never sent: the connection is done
    try:
        answer = await upstream.request(
            request.method, f"/api/{path}", params=request.query_params.multi_items(), content=body, headers=headers
        )
    except UpstreamError as error:
        return JSONResponse({"detail": str(error)}, status_code=502)
    media = answer.headers.get("content-type")
    return Response(answer.content, status_code=answer.status_code, media_type=media)
